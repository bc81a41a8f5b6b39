"""The background safety dump's own process (started by :func:`rollback.commands.db.background.start_safety_dump`):
open the run's journal without the run lock, say so on ``--ready-fd``, run the one dump step.

Kept apart from the starter so that starting it loads nothing of the step registry.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from rollback.context import Services
from rollback.errors import RollbackError

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """The background process: open the run's journal, say so on ``--ready-fd``, run the dump."""
    parser = argparse.ArgumentParser(prog="python -m rollback.commands.db.background_run")
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
