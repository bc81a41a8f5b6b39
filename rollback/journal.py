"""The run journal: an append-only JSON-lines record of every state-changing run.

Each run gets an id (``20261128T093512.048213Z-1a2b3c``, sortable by start time to the
microsecond, so two runs in the same second keep their order) and one file
``<journal dir>/<run id>.jsonl``. Events, one JSON object a line:

- ``run_started``: who, host, pid, command, env, dry_run
- ``step_planned``: the plan's title, env, notes and steps in order (each step
  whole, params included: :func:`rollback.runner.resume` rebuilds the plan from it),
  and ``plan_format`` (:data:`rollback.plan.PLAN_FORMAT`: how to read the steps back)
- ``step_started`` / ``step_finished`` (with its result; ``already_done`` when
  the step's check found its effect already there) / ``step_failed`` (with the
  error and how to resume)
- ``run_finished``: status (``succeeded``, ``failed``, ``refused``,
  ``interrupted``) and exit code

Every entry is redacted, written, flushed and fsynced before the call returns,
so a crash (even SIGKILL) loses nothing already done; the reader tolerates a
torn last line. A run with no ``run_finished`` is reported as ``unfinished``.

A journal that cannot be written (a full disk, a quota, an I/O error) stops
nothing once the run has started: what the run did has happened and must be
reported, so :meth:`Journal.write` says "journal could not be written: disk full"
once (on stderr) and the run goes on, its output now the only record. Before
the run starts it is a refusal instead (exit 4: nothing was changed).
Reading is as forgiving: a file that is not a journal (a directory, a dangling
symlink, entries of the wrong shape) is skipped with a warning by
:func:`list_runs`, never fatal for the other runs.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import getpass
import os
import secrets
import socket
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rollback.errors import BadInput, Refused
from rollback.jsonl import JsonLines, append_line, parse_json_lines, read_json_lines
from rollback.lock import SUFFIX, RunLock, TeamLock, acquire
from rollback.plan import PLAN_FORMAT, Plan, Step
from rollback.redact import redact
from rollback.safetext import printable

__all__ = ["Journal", "JournalEntry", "RunRecord", "find_run", "list_runs", "new_run_id", "parse_run", "read_run",
           "utc_now"]



def utc_now() -> str:
    """An ISO-8601 UTC timestamp with milliseconds and a ``Z``."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_run_id(now: dt.datetime | None = None) -> str:
    moment = now or dt.datetime.now(dt.UTC)
    return f"{moment.strftime('%Y%m%dT%H%M%S')}.{moment.microsecond:06d}Z-{secrets.token_hex(3)}"


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid()) if hasattr(os, "getuid") else "unknown"


JournalEntry = dict[str, Any]

_WRITE_ERRORS = {errno.ENOSPC: "disk full", errno.EDQUOT: "disk quota exceeded", errno.EIO: "I/O error",
                 errno.EROFS: "read-only file system", errno.EFBIG: "file too large"}


def write_error_reason(exc: OSError) -> str:
    """"disk full", "I/O error"...: what a failed write of ours tells the operator."""
    return _WRITE_ERRORS.get(exc.errno or 0) or (exc.strerror or type(exc).__name__).lower()


def _stderr(message: str) -> None:
    print(printable(message), file=sys.stderr, flush=True)


class Journal:
    """Writer for one run's journal file. Use :meth:`start` to open a new run."""

    # Test-only switch: the end-to-end secret tests also run with this off, to prove that what
    # reaches the journal was redacted where it was made, not only here.
    redact_entries = True

    def __init__(self, path: Path, run_id: str, *, warn: Callable[[str], None] | None = None) -> None:
        self.path = path
        self.run_id = run_id
        self._fd: int | None = None
        # Released with the journal: see rollback.lock.
        self.lock: RunLock | None = None
        self.finished = False
        # Where the one "journal could not be written" line goes (stderr by default).
        self.warn = warn or _stderr
        self.write_error: str | None = None
        self.lost_entries = 0
        self._torn = False

    @classmethod
    def start(
        cls,
        directory: Path,
        *,
        command: Sequence[str] | str,
        env: str,
        dry_run: bool = False,
        details: Mapping[str, Any] | None = None,
        lock: bool = False,
        lock_identity: str | None = None,
        team_lock: TeamLock | None = None,
    ) -> Journal:
        """Create the run's file and write ``run_started``.

        With ``lock``, first take the environment's run lock (:mod:`rollback.lock`):
        a second state-changing run on the same environment is refused (exit 4).
        ``lock_identity`` names the environment (``Config.identity``); without it
        the journal directory and ``env`` do. With ``team_lock``, the team lease
        is taken too, and the journal is copied to the team's prefix.
        """
        run_id = new_run_id()
        journal = cls(directory / f"{run_id}{SUFFIX}", run_id)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            if lock:
                identity = lock_identity or f"{directory.resolve()}\0{env}"
                journal.lock = acquire(env, {
                    "run": run_id, "who": _who(), "host": socket.gethostname(), "pid": os.getpid(),
                    "command": command if isinstance(command, str) else " ".join(command)},
                    identity=identity, team=team_lock)
                journal.lock.mirror("runs", journal.path)
            journal._append(journal._entry(
                "run_started",
                who=_who(),
                host=socket.gethostname(),
                pid=os.getpid(),
                command=command if isinstance(command, str) else " ".join(command),
                env=env,
                dry_run=dry_run,
                **dict(details or {}),
            ))
        except OSError as exc:
            # Nothing has happened yet: refuse rather than act without a record (or a lock).
            journal.close()
            with contextlib.suppress(OSError):
                if journal.path.exists() and journal.path.stat().st_size == 0:
                    journal.path.unlink()
            raise Refused(f"journal could not be written: {write_error_reason(exc)} ({exc.filename or directory})",
                          "nothing was changed; free space there, or set ROLLBACK_JOURNAL_DIR to a directory "
                          "on another disk", details={"path": str(directory)}) from None
        if journal.lock is not None:
            journal.lock.sync()  # the team sees the run from its first line
        return journal

    def _entry(self, event: str, **fields: Any) -> JournalEntry:
        entry: JournalEntry = {"ts": utc_now(), "run": self.run_id, "event": event, **fields}
        return redact(entry) if self.redact_entries else entry

    def _append(self, entry: JournalEntry) -> None:
        """One line, durably; raises OSError (then the caller marks the line torn)."""
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        append_line(self._fd, entry, after_torn=self._torn)
        self._torn = False

    def write(self, event: str, **fields: Any) -> JournalEntry:
        """Append one event, durably: redacted, written, flushed and fsynced.

        A failed write (disk full...) is reported once through :attr:`warn` and
        counted in :attr:`lost_entries`; it never raises: the run has already
        acted, and stopping it now would leave its result unreported.
        """
        entry = self._entry(event, **fields)
        if self.lost_entries:
            # The first entry that lands after a failure says how many are missing before it.
            entry["lost_entries"] = self.lost_entries
        try:
            self._append(entry)
        except OSError as exc:
            self._torn = True
            self.lost_entries += 1
            if self.write_error is None:
                self.write_error = write_error_reason(exc)
                self.warn(f"warning: journal could not be written: {self.write_error} ({self.path}); the run "
                          "goes on and its output here is the record of what it does: keep it")
        else:
            self.lost_entries = 0
        return entry

    def plan(self, plan: Plan, *, creating: Sequence[str] = ()) -> None:
        """``creating``: the ids of the steps that make a database beside the live one (their handlers say so);
        a journal naming such a database is the proof rollback made it."""
        self.write("step_planned", title=plan.title, env=plan.env, steps=[step.to_dict() for step in plan.steps],
                   notes=list(plan.notes), plan_format=PLAN_FORMAT, creates_database=list(creating))

    def step_started(self, step: Step) -> None:
        # (a team lease lost mid-run stops the run before this: rollback.runner checks it first)
        self.write("step_started", step=step.id, description=step.describe())

    def step_finished(self, step: Step, result: Mapping[str, Any] | None = None, *,
                      dry_run: bool = False, already_done: bool = False) -> None:
        self.write("step_finished", step=step.id, description=step.describe(), result=dict(result or {}),
                   dry_run=dry_run, already_done=already_done)

    def step_failed(self, step: Step, error: str, *, resume: str | None = None,
                    error_type: str | None = None) -> None:
        self.write("step_failed", step=step.id, description=step.describe(), error=error,
                   error_type=error_type, resume=resume)

    def note(self, message: str, **fields: Any) -> None:
        self.write("note", message=message, **fields)

    def finish(self, status: str, exit_code: int, **fields: Any) -> None:
        self.write("run_finished", status=status, exit_code=exit_code, **fields)
        self.finished = True
        self.close()

    def close(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class RunRecord:
    """A run as read back from its journal file."""

    run_id: str
    path: Path
    entries: list[JournalEntry] = field(default_factory=list)
    torn_lines: int = 0

    def _first(self, event: str) -> JournalEntry | None:
        return next((e for e in self.entries if e.get("event") == event), None)

    @property
    def started(self) -> JournalEntry:
        return self._first("run_started") or {}

    @property
    def finished(self) -> JournalEntry | None:
        return self._first("run_finished")

    @property
    def status(self) -> str:
        if self.finished is not None:
            return str(self.finished.get("status", "unknown"))
        return "unfinished"

    @property
    def steps(self) -> list[dict[str, Any]]:
        """Every planned or started step with its latest state, in plan order."""
        order: list[str] = []
        state: dict[str, dict[str, Any]] = {}
        for entry in self.entries:
            event = entry.get("event")
            if event == "step_planned":
                planned = entry.get("steps")
                # A hand-edited or foreign file may hold anything here: take what has a step's shape.
                for step in planned if isinstance(planned, list) else []:
                    if not isinstance(step, dict):
                        continue
                    sid = str(step.get("id"))
                    if sid not in state:
                        order.append(sid)
                        state[sid] = {"id": sid, "description": step.get("description", ""),
                                      "status": "planned"}
            elif event in ("step_started", "step_finished", "step_failed"):
                sid = str(entry.get("step"))
                if sid not in state:
                    order.append(sid)
                    state[sid] = {"id": sid, "description": entry.get("description", "")}
                record = state[sid]
                record["status"] = {"step_started": "started", "step_finished": "done",
                                    "step_failed": "failed"}[event]
                record[f"{record['status']}_at"] = entry.get("ts")
                if event == "step_finished":
                    record["result"] = entry.get("result", {})
                    if entry.get("already_done"):
                        record["already_done"] = True
                    if entry.get("dry_run"):
                        record["status"] = "dry-run"
                if event == "step_failed":
                    record["error"] = entry.get("error")
                    record["resume"] = entry.get("resume")
        return [state[sid] for sid in order]

    @property
    def last_completed_step(self) -> dict[str, Any] | None:
        done = [s for s in self.steps if s.get("status") == "done"]
        return done[-1] if done else None

    @property
    def failed_step(self) -> dict[str, Any] | None:
        return next((s for s in self.steps if s.get("status") == "failed"), None)

    def summary(self) -> dict[str, Any]:
        started = self.started
        last = self.last_completed_step
        failed = self.failed_step
        return {
            "run": self.run_id,
            "status": self.status,
            "command": started.get("command"),
            "env": started.get("env"),
            "who": started.get("who"),
            "host": started.get("host"),
            "dry_run": started.get("dry_run", False),
            "resumes": started.get("resumes"),
            "started_at": started.get("ts"),
            "finished_at": (self.finished or {}).get("ts"),
            "last_completed_step": last["id"] if last else None,
            "failed_step": failed["id"] if failed else None,
            "path": str(self.path),
        }

    def to_dict(self) -> dict[str, Any]:
        return {**self.summary(), "steps": self.steps, "entries": self.entries,
                "torn_lines": self.torn_lines}


def read_run(path: Path) -> RunRecord:
    """Read one journal file. A torn line (a crash mid-write) is counted, not fatal.

    Raises ``OSError`` when the file cannot be read at all (a directory, a dangling symlink...).
    """
    return _record(path.name.removesuffix(SUFFIX), path, read_json_lines(path))


def parse_run(run_id: str, data: bytes, path: Path) -> RunRecord:
    """A run from a journal's bytes (a copy read from the team's prefix), as :func:`read_run` reads a file."""
    return _record(run_id, path, parse_json_lines(data.splitlines()))


def _record(run_id: str, path: Path, read: JsonLines) -> RunRecord:
    record = RunRecord(run_id=run_id, path=path, torn_lines=read.torn)
    for _, entry in read.lines:
        if isinstance(entry, dict):
            record.entries.append(entry)
        else:
            record.torn_lines += 1
    return record


def _runs(directory: Path) -> Iterator[Path]:
    if directory.is_dir():
        yield from sorted(directory.glob(f"*{SUFFIX}"))


def _unreadable(path: Path, exc: OSError) -> str:
    if path.is_symlink() and not path.exists():
        why = "a symlink to nothing"
    elif path.is_dir():
        why = "a directory"
    else:
        why = (exc.strerror or type(exc).__name__).lower()
    return f"{path.name}: {why}"


def list_runs(directory: Path, skipped: list[str] | None = None, *, after: str = "") -> list[RunRecord]:
    """Every run in the journal directory, newest first (with ``after``: only the runs whose id sorts
    after it, that is, started later; the others are not read).

    A ``*.jsonl`` that cannot be read (a directory, a dangling symlink, a device or a
    pipe...) is left out, and described in ``skipped`` when a list is given.
    """
    records = []
    for path in reversed([p for p in _runs(directory) if p.name.removesuffix(SUFFIX) > after]):
        # A device or a pipe (a symlink to /dev/full) would never end: not even opened.
        if path.exists() and not path.is_file() and not path.is_dir():
            if skipped is not None:
                skipped.append(f"{path.name}: not a regular file")
            continue
        try:
            records.append(read_run(path))
        except OSError as exc:
            if skipped is not None:
                skipped.append(_unreadable(path, exc))
    return records


def _read_or_refuse(path: Path) -> RunRecord:
    try:
        return read_run(path)
    except OSError as exc:
        raise BadInput(f"the journal {_unreadable(path, exc)}, not a journal file",
                       "remove or rename it; 'rollback journal list' shows the other runs") from None


def find_run(directory: Path, run: str) -> RunRecord:
    """A run by id, unique id prefix, or ``last`` (the newest run whose journal can be read)."""
    paths = list(_runs(directory))
    if run in ("last", "latest"):
        for path in reversed(paths):
            with contextlib.suppress(OSError):
                return read_run(path)
        raise BadInput(f"no runs journaled in {directory}", "run a state-changing command first")
    matches = [p for p in paths if p.name.startswith(run)]
    if len(matches) == 1:
        return _read_or_refuse(matches[0])
    if not matches:
        raise BadInput(f"no run {run!r} in {directory}", "see 'rollback journal list' for run ids")
    raise BadInput(f"run id {run!r} is ambiguous ({len(matches)} runs match)", "give more of the id")
