"""Take an environment's run lock (and team lease) the way a state-changing command does, then hold it.

Run as ``python -m tests.incident.hold_lock [SECONDS]`` with ROLLBACK_CONFIG (and the rest of the
environment) set: prints ``held <run id>`` once it holds the lock, then sleeps. Exits 4 (printing the
error line) when someone else holds it. The tests start two of these, or one and a real CLI command.
SIGTERM ends it as a run that did nothing ends: its journal finished, the lock and the lease released
(SIGKILL leaves the lease to expire, and a journal whose copy has no end).
"""

from __future__ import annotations

import signal
import sys
import time
from types import FrameType

from rollback.cli.support import AppContext
from rollback.errors import RollbackError


def main() -> int:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 60.0
    app = AppContext(argv=["hold-lock"])
    try:
        journal = app.start_journal()
    except RollbackError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr, flush=True)
        return exc.exit_code
    print(f"held {journal.run_id}", flush=True)

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    try:
        time.sleep(seconds)
    finally:
        app.close_journals("succeeded", 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
