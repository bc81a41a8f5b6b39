"""Run the real ``rollback`` CLI and stop the process (SIGSTOP, sent to itself) inside the db layer:
right after the swap step's check, the last moment before the swap's act.

With ``$STOP_IN_SWAP_CHECK`` set, the first check of a ``db.swap`` step (not in a dry run) runs as it
always does and then the process stops itself; the test continues it with SIGCONT. Nothing else is
changed: every step runs against the real servers.

    STOP_IN_SWAP_CHECK=1 python -m tests.incident.stop_in_swap_check db restore NAME --swap --yes
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from rollback.commands.db.restore import RestoreSteps

_check_swap = RestoreSteps.check_swap


def check_swap(self: Any, step: Any, ctx: Any) -> Any:
    found = _check_swap(self, step, ctx)
    if os.environ.pop("STOP_IN_SWAP_CHECK", None) and not ctx.dry_run and not found.done:
        os.kill(os.getpid(), signal.SIGSTOP)
    return found


RestoreSteps.check_swap = check_swap  # type: ignore[method-assign]

if __name__ == "__main__":
    from rollback.cli import main

    sys.exit(main(sys.argv[1:]))
