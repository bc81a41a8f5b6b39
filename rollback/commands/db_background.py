"""The safety dump of a swap's kept copy, written in the background (``db restore --swap --no-wait-backup``).

:func:`start_safety_dump` starts ``python -m rollback.commands.db_background`` in a session of its own
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

import argparse
import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rollback.context import Services
from rollback.errors import DatabaseError, RollbackError

if TYPE_CHECKING:
    from rollback.config import Config
    from rollback.plan import Step

__all__ = ["START_TIMEOUT", "main", "start_safety_dump"]

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
    argv = [sys.executable, "-m", "rollback.commands.db_background", "--config", str(config.path),
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


def main(argv: Sequence[str] | None = None) -> int:
    """The background process: open the run's journal, say so on ``--ready-fd``, run the dump."""
    parser = argparse.ArgumentParser(prog="python -m rollback.commands.db_background")
    parser.add_argument("--config", required=True)
    parser.add_argument("--env", required=True)
    parser.add_argument("--ready-fd", type=int, required=True)
    parser.add_argument("--parent", default="")
    parser.add_argument("step")
    args = parser.parse_args(argv)
    ready: int | None = args.ready_fd

    def say(line: str) -> None:
        nonlocal ready
        if ready is not None:
            os.write(ready, (" ".join(line.split())[:500] + "\n").encode())
            os.close(ready)
            ready = None

    from rollback.plan import Plan, Step
    from rollback.redact import redact_text
    from rollback.runner import execute, open_journal

    try:
        from rollback.commands.registry import handlers_for
        from rollback.config import load_config

        services = Services(load_config(args.config, args.env))  # this process's own: it runs one step
        config = services.config
        step = Step.from_dict(json.loads(args.step))
        aside = step.params["database"]
        plan = Plan.of(f"db safety dump of {aside}", config.env_name, [step],
                       [f"started by run {args.parent} (db restore --swap --no-wait-backup) once the database "
                        "was restored; 'rollback db prune' keeps the copy until this dump is written"])
        # The one opener, without the run lock (see the module's docstring: the engineer's next command
        # must not be refused because of this dump).
        journal = open_journal(config, lock=False, command=f"rollback db restore --swap --no-wait-backup: safety "
                                                           f"dump of {aside} (in the background)",
                               details={"continues": args.parent or None, "background": True})
    except RollbackError as exc:
        say(f"error {redact_text(exc.one_line())}")
        return exc.exit_code
    except Exception as exc:  # a bug: one line back to the command that started us
        say(f"error {redact_text(f'{type(exc).__name__}: {exc}')}")
        return 1
    say(f"run {journal.run_id}")
    try:
        execute(plan, handlers_for(config, plan.actions, services), journal=journal)
    except RollbackError as exc:  # journaled by the runner (where it stopped, how to resume)
        return exc.exit_code
    finally:
        journal.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
