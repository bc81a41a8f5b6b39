"""``rollback drill``: the runbook's quarterly rollback drill, timed from the bad deploy to the report.

The drill drives the product the way an on-call engineer does, through its
command-line contract: each phase is one ``rollback`` command, run in this
process through :func:`rollback.cli.main` (what a shell would run, argument for
argument), and its ``--json`` document is read back. So a drill exercises
exactly what people type at 3 a.m., and keeps working while the functions
underneath change shape.

Phases (each timed):

``sandbox``   (``--sandbox``) start and seed the sandbox in ``.rollback/sandbox``, or re-break the one
              already running there (:mod:`rollback.sandbox.world`, Contract D); its exports are set
              in this process's environment, as ``eval "$(rollback sandbox status)"`` sets them in a
              shell. The moment the sandbox deployed its bad release is the drill's "deployment
              initiated". With ``--rolling`` the bad app release is the canary of a Vercel rolling
              release at 10 % (``sandbox up --rolling``), so the rollback's app step is its abort.
``status``    (not timed) ``rollback status --json``, shown as the status screen: what is live in every layer
              and whether it is healthy, before anything is detected.
``detect``    ``rollback decide --live --no-incident --json`` until the rollback alarms and the health
              probe see the bad deploy (in a real environment: until either does; a canary at 10 % fails
              only its share of the probes, so there the canary's judged error rate counts as the probe).
``decide``    ``rollback decide --live --drill --detected-at T --json`` (``--changed LAYERS`` with ``--layers``):
              opens the incident, marked as a drill, with the severity, the layers and the command to run.
``rollback``  that command, verbatim, with ``--yes --json``.

With ``--auto`` the detect and decide phases are ``rollback watch``'s: ``rollback watch --interval 1s
--auto LAYERS --drill --json`` (the drill's layers but the database; ``--deployed-at`` the bad deploy)
reads the live signals, opens the incident at its first bad reading, decides after ``--min-bad``
readings and rolls back its layers itself (``--cooldown 0``: a drill breaks the world again on purpose);
the drill's detect and decide phases are the watch's own
times (from its start to its first bad reading, then to its decision). The rollback phase is the rest
of the watch, then, playing the person it paged, the ``rollback run`` command it posted for the
database (``--yes --json``).
``verify``    ``rollback verify --json --wait <verify target> --interval 1s``.
``report``    ``rollback incident close``, ``rollback report ID --format json`` (the timeline and the
              metrics printed at the end) and ``--format md --out FILE``.
``teardown``  (``--sandbox``) ``down`` the sandbox this drill started (not with ``--keep``, and never
              one that was already running).

Everything the commands print goes to the drill's log, ``<root>/.rollback/drills/<drill id>.log``;
the plan and progress of the rollback itself are also shown as it runs. Ctrl-C, SIGTERM or SIGHUP
stop the drill, and the sandbox it started, and exit 130. A drill killed with SIGKILL leaves a
marker (``DIR/drill.json``) so that the next drill in that directory treats the sandbox as its own.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import shlex
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rollback.commands.drill_runner import (
    DrillInterrupted,
    Invocation,
    Progress,
    Runner,
    scoped_environ,
    signals_ignored,
    signals_interrupt,
)
from rollback.config import load_config
from rollback.errors import (
    EXIT_BAD_INPUT,
    EXIT_CHECKS_FAILED,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    BadInput,
    OperationFailed,
    Refused,
)
from rollback.model.report import parse_time
from rollback.notify import Notifier
from rollback.plan import SERVICE_LAYERS as LAYERS
from rollback.sandbox import world
from rollback.sandbox.processes import ProcessRef, process_ref

__all__ = ["DEFAULT_LAYERS", "PHASES", "DrillOptions", "DrillResult", "Invocation", "PhaseResult", "run_drill"]

PHASES = ("sandbox", "detect", "decide", "rollback", "verify", "report", "teardown")
DEFAULT_LAYERS = {"sandbox": ("app", "edge", "assets", "db"), "env": ("app",)}
SANDBOX_DETECT_TIMEOUT = 60.0
POLL_INTERVAL = 0.5
MARKER = "drill.json"
LOCK = "drill.lock"
# What a drill in the sandbox must not inherit from the shell it runs in.
HERMETIC_UNSET = ("ROLLBACK_JOURNAL_DIR", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "PULUMI_BACKEND_URL",
                  "AWS_CA_BUNDLE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE")



@dataclass(frozen=True)
class DrillOptions:
    sandbox: bool = False
    env: str | None = None
    config_path: str | None = None
    layers: tuple[str, ...] = ()
    out: Path | None = None
    keep: bool = False
    i_know_this_is_production: bool = False
    sandbox_dir: Path = Path(".rollback") / "sandbox"
    detect_timeout: float | None = None
    verify_wait: float | None = None
    rolling: bool = False  # --sandbox: the bad release as a rolling release's canary at 10 %
    auto: bool = False  # detect and decide by 'rollback watch', which rolls back all but the database itself

    def mode(self) -> str:
        return "sandbox" if self.sandbox else "env"


@dataclass
class PhaseResult:
    name: str
    started: float  # seconds after the drill started
    seconds: float | None = None
    ok: bool | None = None
    detail: str = ""
    commands: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"phase": self.name, "started": round(self.started, 3),
                "seconds": None if self.seconds is None else round(self.seconds, 3), "ok": self.ok,
                "detail": self.detail, "commands": self.commands}


@dataclass
class DrillResult:
    id: str
    mode: str
    env: str | None = None
    exit_code: int = EXIT_FAILED
    error: str | None = None
    phases: list[PhaseResult] = field(default_factory=list)
    seconds: float = 0.0
    sandbox: dict[str, Any] = field(default_factory=dict)
    incident: str | None = None
    severity: str | None = None
    layers: list[str] = field(default_factory=list)
    command: str | None = None
    runs: list[str] = field(default_factory=list)
    verification: dict[str, Any] | None = None
    report: dict[str, Any] | None = None  # the report's data (rollback.report/1)
    report_path: str | None = None
    log_path: str | None = None
    notifications: dict[str, Any] | None = None
    status: dict[str, Any] | None = None  # ``rollback status --json`` before the drill detects anything

    @property
    def ok(self) -> bool:
        return self.exit_code == EXIT_OK

    def phase(self, name: str) -> PhaseResult | None:
        return next((p for p in self.phases if p.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        report = self.report or {}
        return {
            "ok": self.ok, "exit_code": self.exit_code, "error": self.error, "drill": self.id, "mode": self.mode,
            "env": self.env, "seconds": round(self.seconds, 3), "phases": [p.to_dict() for p in self.phases],
            "sandbox": self.sandbox or None, "incident": self.incident, "severity": self.severity,
            "layers": self.layers, "command": self.command, "runs": self.runs,
            "timeline": report.get("timeline"), "metrics": report.get("metrics"),
            "verification": self.verification, "report": self.report_path, "log": self.log_path,
            "notifications": self.notifications, "status": self.status,
        }


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _layers(options: DrillOptions) -> tuple[str, ...]:
    chosen = options.layers or DEFAULT_LAYERS[options.mode()]
    unknown = [layer for layer in chosen if layer not in LAYERS]
    if unknown:
        raise BadInput(f"{', '.join(map(repr, unknown))} is not a layer", f"use {', '.join(LAYERS)}")
    return tuple(dict.fromkeys(chosen))


# --------------------------------------------------------------------------- the drill


class Drill:
    def __init__(self, options: DrillOptions, progress: Progress, echo: Progress | None) -> None:
        self.options = options
        self.say = progress
        self.echo = echo
        self.started = time.monotonic()
        self.result = DrillResult(id=_now().strftime("DRILL-%Y%m%dT%H%M%SZ"), mode=options.mode())
        self.run: Runner = Runner(None)
        self.info: Any = None  # SandboxInfo
        self.started_sandbox = False
        self.exports: dict[str, str] = {}
        self.config: Any = None  # Config
        self.global_args: list[str] = []
        self.deployed_at: dt.datetime | None = None
        self._lock: Any = None

    # ------------------------------------------------------------------ phases

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[PhaseResult]:
        entry = PhaseResult(name, time.monotonic() - self.started)
        self.result.phases.append(entry)
        begun = time.monotonic()
        self.run.note(f"## phase {name}")
        try:
            yield entry
        except BaseException:
            entry.ok = False if entry.ok is None else entry.ok
            raise
        finally:
            entry.seconds = time.monotonic() - begun
            if entry.ok is None:
                entry.ok = True
            mark = "ok" if entry.ok else "FAILED"
            detail = f": {entry.detail}" if entry.detail else ""
            self.say(f"[{time.monotonic() - self.started:5.1f} s] {name} {mark} in {entry.seconds:.1f} s{detail}")

    def invoke(self, entry: PhaseResult, argv: Sequence[str], *, stream: bool = False) -> Invocation:
        done = self.run([*self.global_args, *argv], stream=stream)
        entry.commands.append({"argv": ["rollback", *done.argv], "exit_code": done.code,
                               "seconds": round(done.seconds, 3)})
        return done

    # ------------------------------------------------------------------ setup

    def prepare_env(self) -> None:
        """``--env NAME``: the config, the production guard."""

        options = self.options
        config = load_config(options.config_path, options.env)
        why = config.protection
        if why is not None and not options.i_know_this_is_production:
            raise Refused(f"environment {config.env_name!r} is protected ({why}): a drill rolls it back for real",
                          "drill the sandbox (--sandbox) or an environment marked sandbox = true in its "
                          "[env.<name>] table, or pass --i-know-this-is-production if that is really the plan",
                          details={"protection": why})
        self.config = config
        self.result.env = config.env_name
        self.exports = {"ROLLBACK_CONFIG": str(config.path), "ROLLBACK_ENV": config.env_name}

    def start_sandbox(self) -> None:
        directory = self.options.sandbox_dir.expanduser().resolve()
        marker = directory / MARKER
        with self.phase("sandbox") as entry:
            self._lock_directory(directory)
            running = world.status(directory)
            self.result.sandbox = {"dir": str(directory), "reused": running is not None}
            owner = None
            if marker.exists():  # a drill started the sandbox here and never stopped it (SIGKILL)
                with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                    owner = ProcessRef.from_dict(json.loads(marker.read_text(encoding="utf-8")))
            if running is not None and running.is_ready:
                # Someone's sandbox (or one a killed drill left): re-break it, as `rollback sandbox reset`.
                self.say(f"sandbox already running in {directory}: breaking it again (reset)")
                self.started_sandbox = owner is not None  # a drill started it and died: it is ours to stop
                if self.started_sandbox:
                    self._write_marker(marker, process_ref("drill", os.getpid()))
                self.info = world.reset(directory, rolling=self.options.rolling)
                entry.detail = "reused the running sandbox, re-seeded"
            else:
                directory.mkdir(parents=True, exist_ok=True)
                self._write_marker(marker, process_ref("drill", os.getpid()))
                self.started_sandbox = True
                self.info = world.up(directory, progress=lambda m: self.run.note(m), rolling=self.options.rolling)
                entry.detail = f"started and seeded in {self.info.seconds_to_ready or 0:.1f} s"
            rolling = ((self.info.world or {}).get("vercel") or {}).get("rolling")
            if rolling:
                entry.detail += (f"; the bad release is the canary {rolling.get('canary')} of a rolling release at "
                                 f"{rolling.get('percentage', 0):g} % (base {rolling.get('base')})")
            timeline = (self.info.world or {}).get("timeline") or {}

            self.deployed_at = parse_time(timeline.get("now")) or _now()
        self.result.sandbox.update(started=self.started_sandbox, kept=None)
        self.result.env = str((self.info.world or {}).get("env") or "sandbox")
        self.exports = dict(self.info.exports())
        # Hermetic, as the sandbox's own processes are: the user's ~/.aws must not re-credential it.
        self.exports.update({"AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull})

    def _lock_directory(self, directory: Path) -> None:
        """One drill per sandbox directory: an exclusive lock held for the whole drill (the kernel
        releases it however the drill ends, SIGKILL included)."""

        directory.mkdir(parents=True, exist_ok=True)
        handle = open(directory / LOCK, "a+")  # noqa: SIM115 (held until the drill ends)
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise Refused(f"another drill is using the sandbox in {directory}",
                          "wait for it to finish, or drill in another directory (--dir)") from None
        self._lock = handle

    def release(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    @staticmethod
    def _write_marker(path: Path, ref: Any) -> None:
        path.write_text(json.dumps(ref.to_dict()) + "\n", encoding="utf-8")

    def stop_sandbox(self) -> None:
        if self.info is None:
            return

        directory = self.info.dir
        keep = self.options.keep or not self.started_sandbox
        with self.phase("teardown") as entry, signals_ignored():
            if keep:
                entry.detail = ("kept running (--keep)" if self.options.keep else
                                "left running: it was running before the drill")
            else:
                world.down(directory)
                entry.detail = "sandbox stopped"
            (directory / MARKER).unlink(missing_ok=True)
        self.result.sandbox["kept"] = keep

    def load_config(self) -> None:
        self.config = load_config(self.exports.get("ROLLBACK_CONFIG"), self.exports.get("ROLLBACK_ENV"))
        self.result.env = self.config.env_name

    def open_log(self) -> None:
        root = self.config.journal_dir.resolve().parent
        path = root / "drills" / f"{self.result.id}.log"
        early = self.run
        self.run = Runner(path, self.echo)
        self.result.log_path = str(path)
        del early

    # ------------------------------------------------------------------ incident hygiene

    def close_stale_incidents(self) -> None:
        """A drill opens a new incident, never joins an open one: open drill incidents (a drill that
        was interrupted) are closed first; any open incident in the sandbox is practice; an open real
        incident in an environment stops the drill."""
        done = self.run(["incident", "list", "--open", "--json"])
        if done.code != EXIT_OK:
            raise OperationFailed(f"cannot list the open incidents: {done.error_line()}",
                                  f"see {self.result.log_path}")
        for item in (done.document() or {}).get("incidents", []):
            if not item.get("drill") and not self.options.sandbox:
                raise Refused(f"environment {self.result.env!r} has an open incident, {item['id']}: a drill "
                              "would record itself on it", "close it ('rollback incident close') or wait")
            closed = self.run(["incident", "close", str(item["id"]), "--by", "rollback drill", "--resolution",
                               f"superseded by {self.result.id}", "--json"])
            if closed.code == EXIT_OK:
                self.say(f"closed the open incident {item['id']} (left by an earlier drill or practice)")

    # ------------------------------------------------------------------ status, detect, decide

    def show_status(self) -> None:
        """The first thing a drill shows: ``rollback status`` of the environment it is about to break
        (or, in the sandbox, already broke), as the on-call engineer would look first."""
        from rollback.commands.status import status_lines

        done = self.run(["status", "--json"])
        document = done.document()
        if not isinstance(document, dict) or "sections" not in document:
            self.say(f"status: not read ({done.error_line()})")
            return
        self.result.status = document
        for line in status_lines(document):
            self.say(line)

    def _signals_seen(self, document: Mapping[str, Any]) -> tuple[list[str], bool]:
        signals = [s for s in document.get("signals") or [] if isinstance(s, Mapping)]
        firing = [str(s.get("detail") or s.get("signal")).split(" since ")[0] for s in signals
                  if str(s.get("signal", "")).startswith("alarm.") and s.get("value") == "ALARM"]
        health = any(s.get("signal") in ("service_down", "health_failing") and s.get("value") is True
                     for s in signals)
        # A canary fails only its share of the probes: its judged error rate is what the probe sees of it.
        canary = any(r.get("signal") == "canary_error_rate" for r in document.get("reasons") or []
                     if isinstance(r, Mapping))
        return firing, health or canary

    def detect(self) -> dt.datetime:
        timeout = self.options.detect_timeout
        if timeout is None:
            timeout = SANDBOX_DETECT_TIMEOUT if self.options.sandbox else self.config.env.targets.detect * 60
        with self.phase("detect") as entry:
            deadline = time.monotonic() + timeout
            polls = 0
            while True:
                polls += 1
                done = self.invoke(entry, ["decide", "--live", "--no-incident", "--json"])
                seen = _now()
                if done.code == EXIT_BAD_INPUT:
                    entry.ok = False
                    entry.detail = done.error_line()
                    raise BadInput(f"rollback decide: {done.error_line()}", f"see {self.result.log_path}")
                document = done.document() if done.code == EXIT_OK else None
                if document is not None:
                    firing, health = self._signals_seen(document)
                    both = bool(firing) and health
                    if both or (not self.options.sandbox and document.get("severity") and (firing or health)):
                        what = [f"{len(firing)} alarm(s) in ALARM" if firing else "",
                                "the health probe failing" if health else ""]
                        entry.detail = f"{' and '.join(w for w in what if w)} after {polls} poll(s)"
                        return seen
                if time.monotonic() + POLL_INTERVAL > deadline:
                    why = done.error_line() if done.code != EXIT_OK else "no alarm in ALARM and no failing health check"
                    entry.ok = False
                    entry.detail = f"not detected within {timeout:g} s ({why})"
                    raise OperationFailed(f"the bad deploy was not detected within {timeout:g} s: {why}",
                                          "a drill finding: check the rollback alarms and health URLs "
                                          "(rollback decide --live)")
                time.sleep(POLL_INTERVAL)

    def decide(self, detected: dt.datetime, layers: Sequence[str]) -> dict[str, Any]:
        argv = ["decide", "--live", "--drill", "--json", "--detected-at", _iso(detected),
                *(["--changed", ",".join(layers)] if self.options.layers else [])]  # else decide finds them
        if "db" in layers:
            argv.append("--data-loss")  # the drill's bad change destroyed rows: what users would report
        if self.deployed_at is not None:
            argv += ["--deployed-at", _iso(self.deployed_at)]
        with self.phase("decide") as entry:
            done = self.invoke(entry, argv)
            document = done.document()
            if done.code != EXIT_OK or not isinstance(document, dict):
                entry.ok = False
                entry.detail = done.error_line()
                raise OperationFailed(f"rollback decide failed: {done.error_line()}", f"see {self.result.log_path}")
            if not document.get("command") or not document.get("incident"):
                entry.ok = False
                entry.detail = "no rollback indicated"
                raise OperationFailed("rollback decide recommends no rollback for the drill's bad deploy",
                                      "a drill finding: see the signals in " + str(self.result.log_path))
            self.result.incident = str(document["incident"])
            self.result.severity = document.get("severity")
            self.result.layers = [str(x) for x in document.get("layers") or []]
            self.result.command = str(document["command"])
            entry.detail = (f"{self.result.severity}, layers {','.join(self.result.layers)}; incident "
                            f"{self.result.incident}")
            return document

    # ------------------------------------------------------------------ detect, decide and roll back by watch

    def watch(self, layers: Sequence[str]) -> bool:
        """``--auto``: ``rollback watch`` detects, decides and rolls back all but the database; then the drill
        runs the command it posted for a person. Whether everything was rolled back."""
        timeout = self.options.detect_timeout
        if timeout is None:
            timeout = SANDBOX_DETECT_TIMEOUT if self.options.sandbox else self.config.env.targets.detect * 60
        auto = ",".join(layer for layer in layers if layer != "db") or "none"
        # --cooldown 0: a drill breaks the world again on purpose, and its watch must act each time (its
        # automatic rollback is still recorded, so a real watch of the environment within the hour pages).
        argv = ["watch", "--for", f"{timeout:g}s", "--interval", "1s", "--auto", auto, "--cooldown", "0",
                "--drill", "--json"]
        if self.deployed_at is not None:
            argv += ["--deployed-at", _iso(self.deployed_at)]
        begun = time.monotonic() - self.started
        done = self.run([*self.global_args, *argv], stream=True)
        document = done.document()
        if not isinstance(document, dict) or "outcome" not in document:
            entry = PhaseResult("detect", begun, done.seconds, False, f"rollback watch: {done.error_line()}")
            self.result.phases.append(entry)
            raise OperationFailed(f"rollback watch failed: {done.error_line()}", f"see {self.result.log_path}")
        command = {"argv": ["rollback", *done.argv], "exit_code": done.code, "seconds": round(done.seconds, 3)}
        since = document.get("since_start") or {}
        detected, decided = since.get("detected"), since.get("decided")
        if detected is None or decided is None:
            entry = PhaseResult("detect", begun, done.seconds, False, f"not detected within {timeout:g} s "
                                f"(rollback watch: {document.get('outcome')})", [command])
            self.result.phases.append(entry)
            raise OperationFailed(f"rollback watch did not detect the bad deploy within {timeout:g} s",
                                  "a drill finding: check the rollback alarms and health URLs (rollback decide --live)")
        decision = document.get("decision") or {}
        readings = (document.get("readings") or {}).get("readings")
        self.result.phases += [
            PhaseResult("detect", begun, detected, True, f"rollback watch: first bad reading after {detected:.1f} s",
                        [command]),
            PhaseResult("decide", begun + detected, decided - detected, True,
                        f"rollback watch: {decision.get('severity')} after {readings} readings, layers "
                        f"{','.join(decision.get('layers') or [])}; incident {document.get('incident')}")]
        for phase in self.result.phases[-2:]:
            self.say(f"[{phase.started + (phase.seconds or 0):5.1f} s] {phase.name} ok in {phase.seconds or 0:.1f} s: "
                     f"{phase.detail}")
        self.result.incident = str(document.get("incident"))
        self.result.severity = decision.get("severity")
        self.result.layers = [str(x) for x in decision.get("layers") or []]
        self.result.command = decision.get("command")
        acted = document.get("acted") or {}
        if acted.get("run"):
            self.result.runs.append(str(acted["run"]))
        entry = PhaseResult("rollback", begun + decided, None)
        self.result.phases.append(entry)
        watched = (f"rollback watch rolled back {', '.join(acted.get('layers') or []) or 'nothing'} "
                   f"({acted.get('status')})")
        ok = acted.get("status") == "succeeded"
        person = (document.get("person") or {}).get("command")
        if ok and person and str(person).startswith("rollback ") and " run " in f" {person} ":
            more = shlex.split(str(person))[1:]
            rest = self.run([*self.global_args, *more, "--yes", "--json"], stream=True)
            entry.commands.append({"argv": ["rollback", *rest.argv], "exit_code": rest.code,
                                   "seconds": round(rest.seconds, 3)})
            body = rest.document()
            if isinstance(body, dict) and body.get("run"):
                self.result.runs.append(str(body["run"]))
            ok = rest.code == EXIT_OK
            watched += f"; then the person's {shlex.join(['rollback', *more, '--yes'])}" + \
                ("" if ok else f" failed (exit {rest.code}): {rest.error_line()}")
        elif not ok or document.get("outcome") not in ("rolled_back", "needs_person"):
            ok = False
            watched += f": {document.get('error') or (document.get('person') or {}).get('why') or 'nothing done'}"
        entry.seconds = time.monotonic() - self.started - entry.started
        entry.ok = ok
        entry.detail = watched
        self.say(f"[{time.monotonic() - self.started:5.1f} s] rollback {'ok' if ok else 'FAILED'} in "
                 f"{entry.seconds:.1f} s: {watched}")
        return ok

    # ------------------------------------------------------------------ rollback

    def rollback(self, decision: Mapping[str, Any]) -> bool:
        """The command decide recommends, as printed, confirmed with ``--yes``."""
        command = shlex.split(str(decision["command"]))
        if command[:1] == ["rollback"]:
            command = command[1:]
        with self.phase("rollback") as entry:
            done = self.invoke(entry, [*command, "--yes", "--json"], stream=True)
            document = done.document()
            run_id = document.get("run") if isinstance(document, dict) else None
            if run_id:
                self.result.runs.append(str(run_id))
            entry.ok = done.code == EXIT_OK
            entry.detail = shlex.join(["rollback", *command, "--yes"]) + \
                ("" if entry.ok else f" failed (exit {done.code}): {done.error_line()}")
            return entry.ok

    # ------------------------------------------------------------------ verify, report

    def verify(self, *, wait: bool) -> bool:
        seconds = self.options.verify_wait
        if seconds is None:
            seconds = self.config.env.targets.verify * 60 if wait else 0.0
        argv = ["verify", "--json", "--incident", str(self.result.incident), "--wait", f"{seconds:g}s",
                "--interval", "1s"]
        baseline = (((self.info.world if self.info else None) or {}).get("database") or {}).get("good_backup")
        if baseline:
            argv += ["--baseline", str(baseline)]
        with self.phase("verify") as entry:
            done = self.invoke(entry, argv)
            document = done.document()
            if not isinstance(document, dict) or "items" not in document:
                entry.ok = False
                entry.detail = done.error_line()
                self.result.verification = {"ok": False, "error": done.error_line()}
                return False
            summary = document.get("summary") or {}
            failing = [i.get("id") for i in document.get("items") or [] if i.get("status") == "fail"]
            self.result.verification = {"ok": bool(document.get("ok")), "summary": summary,
                                        "rounds": document.get("rounds"), "failing": failing}
            entry.ok = bool(document.get("ok"))
            entry.detail = (f"{summary.get('pass', 0)} passed, {summary.get('fail', 0)} failed, "
                            f"{summary.get('not_measured', 0)} not measured in {document.get('rounds')} round(s)")
            return entry.ok

    def report(self, outcome: str) -> None:
        incident = str(self.result.incident)
        out = self.options.out
        if out is None:
            out = self.config.journal_dir.resolve().parent / "reports" / f"{incident}.md"
        with self.phase("report") as entry:
            self.invoke(entry, ["incident", "close", incident, "--by", "rollback drill", "--resolution",
                                f"{self.result.id}: {outcome}", "--json"])
            data = self.invoke(entry, ["report", incident, "--format", "json"])
            document = data.document()
            if data.code == EXIT_OK and isinstance(document, dict):
                self.result.report = document
            written = self.invoke(entry, ["report", incident, "--format", "md", "--out", str(out)])
            if written.code != EXIT_OK:
                entry.ok = False
                entry.detail = written.error_line()
                raise OperationFailed(f"the report could not be written: {written.error_line()}",
                                      f"see {self.result.log_path}")
            self.result.report_path = str(Path(out).expanduser().resolve())
            entry.detail = self.result.report_path

    def notify(self, kind: str) -> None:
        """The drill's own posts to the incident channel: that it starts, and its metrics at the end."""

        if self.config is None or self.config.env.notify is None:
            return
        notifier = Notifier.from_config(self.config, incident=self.result.incident, drill=True,
                                        stderr=lambda line: self.run.note(line))
        try:
            if kind == "start":
                notifier.post(f"rollback drill {self.result.id} started: layers {', '.join(self.result.layers)}, "
                              f"severity {self.result.severity}; running {self.result.command} --yes")
            else:
                report = self.result.report or {}
                metrics = {m["phase"]: m.get("seconds") for m in report.get("metrics") or []}
                targets = {m["phase"]: m.get("target_seconds") for m in report.get("metrics") or []}
                verified = None if self.result.verification is None else bool(self.result.verification.get("ok"))
                notifier.end(restored=bool(report.get("timeline")) and any(
                    r.get("key") == "restored" and r.get("known") for r in report.get("timeline") or []),
                    verified=verified, metrics=metrics, targets=targets)
                if self.result.report_path:
                    notifier.post(f"rollback drill {self.result.id} report: {self.result.report_path}")
        finally:
            delivery = notifier.close(timeout=5)
        counts = self.result.notifications or {"sent": 0, "failed": 0}
        counts["sent"] = counts.get("sent", 0) + delivery.sent
        counts["failed"] = counts.get("failed", 0) + delivery.failed + delivery.unsent
        self.result.notifications = counts

    # ------------------------------------------------------------------ the whole drill

    def execute(self) -> DrillResult:
        options = self.options
        result = self.result
        layers = _layers(options)
        try:
            with signals_interrupt():
                if options.sandbox:
                    self.start_sandbox()
                else:
                    self.prepare_env()
                with scoped_environ(self.exports, HERMETIC_UNSET if options.sandbox else ()):
                    self.load_config()
                    self.open_log()
                    self.close_stale_incidents()
                    self.show_status()
                    if options.auto:
                        rolled_back = self.watch(layers)
                    else:
                        detected = self.detect()
                        decision = self.decide(detected, layers)
                        self.notify("start")
                        rolled_back = self.rollback(decision)
                    verified = self.verify(wait=rolled_back)
                    outcome = ("rolled back and verified" if rolled_back and verified else
                               "rolled back, verification failed" if rolled_back else "the rollback failed")
                    self.report(outcome)
                    self.notify("end")
                    result.exit_code = EXIT_OK if rolled_back and verified else \
                        (EXIT_CHECKS_FAILED if rolled_back else EXIT_FAILED)
                    if not rolled_back:
                        result.error = "the rollback failed (see the drill's log and 'rollback journal show last')"
                    elif not verified:
                        result.error = "verification failed after the rollback"
        except (KeyboardInterrupt, DrillInterrupted):
            result.exit_code = EXIT_INTERRUPTED
            result.error = "interrupted"
        except Refused as exc:
            result.exit_code, result.error = exc.exit_code, exc.one_line()
            raise
        except BadInput as exc:
            result.exit_code, result.error = exc.exit_code, exc.one_line()
            raise
        except OperationFailed as exc:
            result.exit_code, result.error = exc.exit_code, exc.one_line()
        finally:
            try:
                self.stop_sandbox()
            finally:
                self.run.close()
                self.release()
                result.seconds = time.monotonic() - self.started
        return result


def run_drill(options: DrillOptions, *, progress: Progress, echo: Progress | None = None) -> DrillResult:
    """Run a timed drill (see the module's docstring). ``progress`` gets one line per phase;
    ``echo`` (when given) the rollback's own progress lines as they come.

    Raises :class:`BadInput` (exit 2) and :class:`Refused` (exit 4) before anything is started;
    every other outcome is in the result (``exit_code``: 0 verified, 1 a phase failed, 3 the
    verification failed, 130 interrupted).
    """
    if options.sandbox and options.env:
        raise BadInput("--sandbox and --env exclude each other", "drill the sandbox, or a named environment")
    if options.rolling and not options.sandbox:
        raise BadInput("--rolling seeds the sandbox's bad release as a canary: it needs --sandbox",
                       "drill --sandbox --rolling (a real environment's rolling release is whatever it is)")
    if not options.sandbox and not options.env:
        raise BadInput("nothing to drill", "pass --sandbox (no configuration needed) or --env NAME (e.g. staging)")
    _layers(options)
    return Drill(options, progress, echo).execute()

