"""The incident record: one timeline from detection to verification.

``rollback decide`` (or ``rollback run`` without one) opens an incident of an
environment; later ``run``, ``resume`` and ``verify`` attach to the open
incident of their environment (or to ``--incident ID``). The record is an
append-only JSON-lines file beside the run journals,
``<journal dir>/../incidents/<incident id>.jsonl`` (``.rollback/incidents/``
for the default ``.rollback/runs``), written like the journal: every line is
redacted, written whole with ``O_APPEND``, and fsynced before the call returns.

Incident id: ``INC-<YYYYMMDDTHHMMSSZ>-<env>`` (plus ``-<hex4>`` when taken).

Events (each line also has ``ts``, ``incident`` and ``event``):

- ``opened``      env, drill, detected_at, detected_from (flag|alarm|now),
                  deployment_initiated_at, deployment
- ``decided``     severity, reasons, layers, options, command, seconds
- ``run_started`` run, layers, plan_title; ``run_finished`` run, status, exit_code
- ``initiated``   run (its first state-changing step started)
- ``restored``    run, layer, health (the layer that brings service back finished and its health check passed)
- ``verified``    ok, strict, document (the ``rollback verify`` document), skipped (sources left out)
- ``needs_person`` why, layers, command (``rollback watch``: what it will not do by itself, and the exact
                  ``rollback run`` a person types)
- ``note``        message; ``closed`` by, resolution

:class:`IncidentRecord` is the read model (``rollback incident show --json``):
the timeline, the latest decision, the runs and verifications, and the
runbook's recovery metrics against the environment's targets.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import secrets
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rollback.errors import BadInput, OperationFailed, Refused
from rollback.journal import write_error_reason
from rollback.jsonl import append_line, read_json_lines
from rollback.redact import redact
from rollback.safetext import printable

__all__ = [
    "EVENTS",
    "IncidentLog",
    "IncidentRecord",
    "find_incident",
    "incidents_dir",
    "list_incidents",
    "new_incident_id",
    "open_incident_of",
    "parse_ts",
    "read_incident",
]

SUFFIX = ".jsonl"
EVENTS = ("opened", "decided", "run_started", "run_finished", "initiated", "restored", "verified", "needs_person",
          "note", "closed")
TARGET_KEYS = ("detect", "decide", "rollback", "verify", "total")


def incidents_dir(journal_dir: Path) -> Path:
    """Where incidents live: beside the journal directory (``.rollback/runs`` -> ``.rollback/incidents``)."""
    return journal_dir.parent / "incidents"


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_ts(text: Any) -> dt.datetime | None:
    """An aware datetime from an ISO timestamp in the record, or ``None``."""
    if not isinstance(text, str) or not text:
        return None
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def new_incident_id(directory: Path, env: str, now: dt.datetime | None = None) -> str:
    moment = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    base = f"INC-{moment.strftime('%Y%m%dT%H%M%SZ')}-{env}"
    if not (directory / f"{base}{SUFFIX}").exists():
        return base
    while True:
        candidate = f"{base}-{secrets.token_hex(2)}"
        if not (directory / f"{candidate}{SUFFIX}").exists():
            return candidate


class IncidentLog:
    """Appends events to one incident's file (durably, redacted).

    :meth:`write` never raises: it is called while a rollback runs (``run_started``, ``restored``...),
    and a full disk must not turn a rollback that worked into a traceback. A failed write is said once
    through :attr:`warn` and counted in :attr:`lost_events`; the next line that lands carries the
    count. :meth:`must_write` is for commands whose only job is the record (``incident note``,
    ``close``, a decision): there a failed write is a one-line :class:`OperationFailed`.
    """

    def __init__(self, path: Path, *, warn: Callable[[str], None] | None = None) -> None:
        self.path = path
        self.id = path.name.removesuffix(SUFFIX)
        self.warn: Callable[[str], None] = warn or _to_stderr
        self.lost_events = 0
        self.write_error: str | None = None
        self._torn = False

    @classmethod
    def create(cls, directory: Path, env: str, *, now: dt.datetime | None = None, **opened: Any) -> IncidentLog:
        """Create a new incident file and write its ``opened`` event; a disk that cannot take it
        refuses (nothing has happened yet) and leaves no empty incident behind."""
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _refused(exc, directory) from None
        for _ in range(20):
            incident_id = new_incident_id(directory, env, now)
            path = directory / f"{incident_id}{SUFFIX}"
            try:
                # O_EXCL: two processes opening an incident in the same second get two ids, not one file.
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                continue
            except OSError as exc:
                raise _refused(exc, directory) from None
            os.close(fd)
            log = cls(path)
            try:
                log._append(log._entry("opened", env=env, **opened))
            except OSError as exc:
                with contextlib.suppress(OSError):
                    path.unlink()
                raise _refused(exc, directory) from None
            log._written()
            return log
        raise BadInput(f"cannot create an incident file in {directory}", "check the directory")

    def _entry(self, event: str, **fields: Any) -> dict[str, Any]:
        entry: dict[str, Any] = redact({"ts": iso(dt.datetime.now(dt.UTC)), "incident": self.id, "event": event,
                                        **fields})
        if self.lost_events:
            entry["lost_events"] = self.lost_events
        return entry

    def _append(self, entry: Mapping[str, Any]) -> None:
        """One line, durably; raises OSError (then the caller marks the line torn)."""
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            append_line(fd, entry, after_torn=self._torn)
        finally:
            os.close(fd)
        self._torn = False
        self.lost_events = 0

    def _written(self) -> None:
        """Called after each event that landed (subclasses copy the file elsewhere)."""

    def write(self, event: str, **fields: Any) -> dict[str, Any]:
        """Append one event; never raises (see the class)."""
        entry = self._entry(event, **fields)
        try:
            self._append(entry)
        except OSError as exc:
            self._torn = True
            self.lost_events += 1
            if self.write_error is None:
                self.write_error = write_error_reason(exc)
                self.warn(f"warning: incident {self.id} could not be written: {self.write_error} ({self.path}); "
                          "the rollback goes on, and its output and journal are the record of what it does")
            return entry
        self._written()
        return entry

    def must_write(self, event: str, **fields: Any) -> dict[str, Any]:
        """Append one event or fail with one line: for commands whose only job is the record."""
        entry = self._entry(event, **fields)
        try:
            self._append(entry)
        except OSError as exc:
            self._torn = True
            raise OperationFailed(
                f"incident {self.id} could not be written: {write_error_reason(exc)} ({self.path})",
                "nothing was recorded; free space there, then run the command again") from None
        self._written()
        return entry


def _to_stderr(message: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(printable(message) + "\n")
        sys.stderr.flush()


def _refused(exc: OSError, directory: Path) -> Refused:
    return Refused(f"incident record could not be written: {write_error_reason(exc)} ({exc.filename or directory})",
                   "nothing was changed; free space there, or set ROLLBACK_JOURNAL_DIR to a directory on "
                   "another disk (incidents live beside the journals)")


def _seconds(later: dt.datetime | None, earlier: dt.datetime | None) -> float | None:
    if later is None or earlier is None:
        return None
    return round((later - earlier).total_seconds(), 3)


@dataclass
class IncidentRecord:
    """An incident as read back from its file."""

    id: str
    path: Path
    events: list[dict[str, Any]] = field(default_factory=list)
    torn_lines: int = 0

    def _all(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == event]

    def _first(self, event: str) -> dict[str, Any] | None:
        found = self._all(event)
        return found[0] if found else None

    def _last(self, event: str) -> dict[str, Any] | None:
        found = self._all(event)
        return found[-1] if found else None

    @property
    def opened(self) -> dict[str, Any]:
        return self._first("opened") or {}

    @property
    def env(self) -> str:
        return str(self.opened.get("env") or "")

    @property
    def drill(self) -> bool:
        return bool(self.opened.get("drill", False))

    @property
    def status(self) -> str:
        return "closed" if self._first("closed") else "open"

    @property
    def decision(self) -> dict[str, Any]:
        """The latest decision (the one acted on)."""
        return self._last("decided") or {}

    def timeline(self) -> dict[str, str | None]:
        """Moments of the runbook's incident timeline (ISO UTC), ``None`` when not reached yet.

        ``decided``, ``initiated`` and ``restored`` are the first such events;
        ``verified`` the first passing verification of the whole checklist (one that left sources out,
        ``skipped``, as ``rollback watch``'s does when a person restores the database, is not it).
        """
        opened = self.opened
        verified = next((e for e in self._all("verified") if e.get("ok") and not e.get("skipped")), None)

        def ts(entry: Mapping[str, Any] | None) -> str | None:
            return str(entry["ts"]) if entry and entry.get("ts") else None

        return {
            "deployment_initiated": opened.get("deployment_initiated_at") or None,
            "detected": opened.get("detected_at") or ts(opened),
            "decided": ts(self._first("decided")),
            "initiated": ts(self._first("initiated")),
            "restored": ts(self._first("restored")),
            "verified": ts(verified),
            "closed": ts(self._first("closed")),
        }

    def metrics(self) -> dict[str, float | None]:
        """Seconds per phase: detect, decide, rollback (decided -> restored), verify, total (detected -> verified)."""
        moments = {key: parse_ts(value) for key, value in self.timeline().items()}
        return {
            "detect": _seconds(moments["detected"], moments["deployment_initiated"]),
            "decide": _seconds(moments["decided"], moments["detected"]),
            "rollback": _seconds(moments["restored"], moments["decided"]),
            "verify": _seconds(moments["verified"], moments["restored"]),
            "total": _seconds(moments["verified"], moments["detected"]),
        }

    @property
    def runs(self) -> list[str]:
        return list(dict.fromkeys(str(e["run"]) for e in self.events
                                  if e.get("event") in ("run_started", "initiated") and e.get("run")))

    def to_dict(self, targets: Mapping[str, float] | None = None) -> dict[str, Any]:
        """The read model of Contract B. ``targets`` in seconds (default: the runbook's)."""
        decision = self.decision
        chosen = dict(targets or {})
        return {
            "id": self.id,
            "env": self.env,
            "drill": self.drill,
            "status": self.status,
            "timeline": self.timeline(),
            "severity": decision.get("severity"),
            "reasons": decision.get("reasons", []),
            "layers": decision.get("layers", []),
            "options": decision.get("options", {}),
            "command": decision.get("command"),
            "runs": self.runs,
            "verifications": [e.get("document") for e in self._all("verified")],
            "needs_person": [{k: e.get(k) for k in ("ts", "why", "layers", "command")}
                             for e in self._all("needs_person")],
            "metrics": self.metrics(),
            "targets": {key: chosen.get(key, DEFAULT_TARGETS[key]) for key in TARGET_KEYS},
            "events": self.events,
        }

    def summary(self) -> dict[str, Any]:
        timeline = self.timeline()
        return {"id": self.id, "env": self.env, "status": self.status, "drill": self.drill,
                "severity": self.decision.get("severity"), "layers": self.decision.get("layers", []),
                "detected": timeline["detected"], "verified": timeline["verified"], "closed": timeline["closed"],
                "runs": len(self.runs), "path": str(self.path)}


# The runbook's "Rollback Metrics" targets, in seconds.
DEFAULT_TARGETS: dict[str, float] = {"detect": 300, "decide": 120, "rollback": 600, "verify": 300, "total": 900}


# The fields each event's readers rely on, and the JSON types they may have (a missing field is fine:
# readers take a default). A hand-edited or foreign file that breaks them is refused in one line.
_NONE = type(None)
_SHAPES: dict[str, dict[str, tuple[type, ...]]] = {
    "opened": {"env": (str,), "drill": (bool,), "detected_at": (str, _NONE), "detected_from": (str, _NONE),
               "detected_detail": (str, _NONE), "deployment_initiated_at": (str, _NONE),
               "deployment": (dict, _NONE)},
    "decided": {"severity": (str, _NONE), "reasons": (list,), "layers": (list,), "options": (dict,),
                "command": (str, _NONE), "signals": (list,), "seconds": (int, float, _NONE)},
    "verified": {"ok": (bool,), "document": (dict, _NONE)},
    "run_started": {"run": (str,)},
    "initiated": {"run": (str,), "step": (str, _NONE)},
    "restored": {"run": (str,), "layer": (str, _NONE), "health": (list, _NONE)},
    "run_finished": {"run": (str,), "status": (str, _NONE), "exit_code": (int, _NONE)},
    "note": {"message": (str,)},
    "closed": {"by": (str, _NONE), "resolution": (str, _NONE)},
}
_ITEMS: dict[tuple[str, str], type] = {("decided", "reasons"): dict, ("decided", "layers"): str,
                                       ("decided", "signals"): dict, ("restored", "health"): dict}
_TYPE_NAMES = {str: "text", bool: "true/false", dict: "an object", list: "a list", int: "a number",
               float: "a number", _NONE: "null"}


def _shape_problem(entry: Mapping[str, Any]) -> str | None:
    """What is wrong with one event's shape (``None`` when its readers can use it)."""
    event = entry.get("event")
    if not isinstance(event, str):
        return "an entry has no event name"
    if not isinstance(entry.get("ts", ""), str):
        return f"{event}: ts is not text"
    for key, types in _SHAPES.get(event, {}).items():
        if key not in entry:
            continue
        value = entry[key]
        if isinstance(value, bool) and bool not in types:
            return f"{event}: {key} is true/false, expected {_TYPE_NAMES[types[0]]}"
        if not isinstance(value, types):
            return f"{event}: {key} is {_TYPE_NAMES.get(type(value), type(value).__name__)}, expected " \
                   f"{_TYPE_NAMES[types[0]]}"
        item = _ITEMS.get((event, key))
        if item is not None and isinstance(value, list) and not all(isinstance(v, item) for v in value):
            return f"{event}: {key} holds something that is not {_TYPE_NAMES[item]}"
    return None


def read_incident(path: Path, *, strict: bool = False) -> IncidentRecord:
    """One incident file; a torn last line (a crash mid-write) is counted, not fatal. With ``strict``
    (an incident a command shows or acts on), an event of the wrong shape (a hand-edited or foreign
    file) is :class:`BadInput` naming its line, never a traceback further on."""
    record = IncidentRecord(id=path.name.removesuffix(SUFFIX), path=path)
    try:
        read = read_json_lines(path)
    except OSError as exc:
        raise BadInput(f"cannot read incident {path.name}: {exc.strerror}", "check the file") from exc
    record.torn_lines = read.torn
    for number, entry in read.lines:
        problem = _shape_problem(entry) if isinstance(entry, dict) else "a line is not a JSON object"
        if problem is None:
            record.events.append(entry)
        elif strict:
            raise BadInput(f"incident file {path.name} is malformed: line {number}: {problem}",
                           f"fix or move {path}; 'rollback incident list' shows the other incidents")
        else:
            record.torn_lines += 1
    return record


def _paths(directory: Path) -> Iterator[Path]:
    if directory.is_dir():
        for path in sorted(directory.glob(f"INC-*{SUFFIX}")):
            if path.is_file():
                yield path


def list_incidents(directory: Path, *, env: str | None = None) -> list[IncidentRecord]:
    """Every incident (of ``env``), newest first. Unreadable files are skipped."""
    records: list[IncidentRecord] = []
    for path in reversed(list(_paths(directory))):
        with contextlib.suppress(BadInput):
            record = read_incident(path)
            if env is None or record.env == env:
                records.append(record)
    return records


def open_incident_of(directory: Path, env: str) -> IncidentRecord | None:
    """The newest open incident of ``env``, if any."""
    return next((r for r in list_incidents(directory, env=env) if r.status == "open"), None)


def find_incident(directory: Path, ref: str, *, env: str | None = None) -> IncidentRecord:
    """An incident by id, unique id prefix, ``last`` or ``open`` (of ``env`` when given)."""
    if ref in ("last", "latest", "open"):
        records = list_incidents(directory, env=env)
        if ref == "open":
            records = [r for r in records if r.status == "open"]
        if not records:
            which = "open incident" if ref == "open" else "incident"
            scope = f" of env {env!r}" if env else ""
            raise BadInput(f"no {which}{scope} in {directory}", "open one with 'rollback decide'")
        return read_incident(records[0].path, strict=True)
    matches = [p for p in _paths(directory) if p.name.startswith(ref)]
    exact = [p for p in matches if p.name == f"{ref}{SUFFIX}"]
    if exact:
        return read_incident(exact[0], strict=True)
    if len(matches) == 1:
        return read_incident(matches[0], strict=True)
    if not matches:
        raise BadInput(f"no incident {ref!r} in {directory}", "see 'rollback incident list'")
    raise BadInput(f"incident id {ref!r} is ambiguous ({len(matches)} match)", "give more of the id")
