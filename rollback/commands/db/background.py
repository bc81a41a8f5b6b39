"""The safety dump of a swap's kept copy, written in the background (``db restore --swap --no-wait-backup``).

:func:`start_safety_dump` starts ``python -m rollback.commands.db.background_run`` in a session of its own
(a closed terminal, or a Ctrl-C in it, does not reach it) and returns once that process has opened its
journal: a run of its own, whose one step is the dump (``db.backup_replaced``, waiting for it), journaled
and resumable like every run. The restore's own run records which run that is.

It takes no run lock: it only reads the kept copy and writes a new backup, which nothing else touches
(``db prune`` keeps the copy until its dump is written, and a second dump of it refuses while this
one's ``.inprogress`` lock is held), so the on-call engineer's next command is not refused because of
it. When it stops before the end (killed, the machine rebooted), its journal says where, the copy stays
marked as waiting for its dump, and ``rollback resume RUN`` writes it.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

from rollback.errors import DatabaseError

if TYPE_CHECKING:
    from rollback.config import Config
    from rollback.plan import Step

__all__ = ["START_TIMEOUT", "start_safety_dump"]

START_TIMEOUT = 60.0  # seconds for the background process to open its journal (start-up, config, journal)


def start_safety_dump(config: Config, step: Step, *, parent_run: str | None) -> dict[str, Any]:
    """Start ``step`` (a ``db.backup_replaced`` step) as a journaled run of its own in the background;
    return ``{"run", "pid"}`` once its journal is open. Raises :class:`DatabaseError` when it cannot start
    (nothing was dumped; the kept copy stays marked as waiting for its dump)."""
    from rollback.plan import Step as PlanStep

    dump = PlanStep(step.id, step.action, step.summary.replace("in the background (a journaled run of its own)",
                                                               f"into {step.params['out']}"),
                    target=step.target, params={**step.params, "wait": True})
    ready_r, ready_w = os.pipe()
    argv = [sys.executable, "-m", "rollback.commands.db.background_run", "--config", str(config.path),
            "--env", config.env_name, "--ready-fd", str(ready_w), "--parent", parent_run or "",
            json.dumps(dump.to_dict())]
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                pass_fds=(ready_w,), start_new_session=True,
                                env={**os.environ, **dict(config.environ)}, cwd=str(config.root))
    except OSError as exc:
        os.close(ready_r)
        os.close(ready_w)
        raise DatabaseError(f"the safety dump could not be started in the background: {exc.strerror}",
                            _hint(step)) from exc
    os.close(ready_w)
    with os.fdopen(ready_r, "r", encoding="utf-8", errors="replace") as ready:
        line = _first_line(ready, START_TIMEOUT)
    if line.startswith("run "):
        return {"run": line.removeprefix("run ").strip(), "pid": proc.pid}
    if proc.poll() is None:  # it never said it started: do not leave an unknown process behind
        proc.kill()
    proc.wait()
    why = line.removeprefix("error ").strip() or f"it ended (exit {proc.returncode}) before opening its journal"
    raise DatabaseError(f"the safety dump could not be started in the background: {why}", _hint(step))


def _first_line(stream: Any, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        ready, _, _ = select.select([stream], [], [], max(0.0, deadline - time.monotonic()))
        if ready or time.monotonic() >= deadline:
            return str(stream.readline()) if ready else ""


def _hint(step: Step) -> str:
    return (f"the restored database is live and {step.params['database']} (the previous one) is kept until its "
            "dump is written: 'rollback resume' tries again, or run the restore without --no-wait-backup")
