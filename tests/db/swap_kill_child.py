"""Run the real ``rollback`` CLI, pausing after each statement of the swap's transaction.

Used by tests/db/test_swap_kill.py, which kills this process at each pause. The pause
only widens the moments between statements so that the test can see them in the
catalog and send its signal there; every statement still runs against the real
server, and the process dies (or handles the signal) exactly as ``rollback`` would.
The pauses follow the statements that rename or mark databases (and ALLOW_CONNECTIONS, which
an older swap committed) on connections to the maintenance database, and every COMMIT.

    python tests/db/swap_kill_child.py db swap app_restore_20261128000000 --yes
"""

from __future__ import annotations

import os
import re
import sys
import time
from typing import Any

import psycopg

PAUSE = float(os.environ.get("SWAP_KILL_PAUSE", "0.5"))
STATEMENTS = re.compile(r"SET LOCAL statement_timeout|RENAME TO|COMMENT ON DATABASE|ALLOW_CONNECTIONS")

_execute = psycopg.Connection.execute
_commit = psycopg.Connection.commit


def execute(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
    cursor = _execute(self, query, *args, **kwargs)
    if self.info.dbname in ("postgres", "template1"):
        text = query if isinstance(query, str) else query.as_string(self)
        if STATEMENTS.search(text):
            time.sleep(PAUSE)
    return cursor


def commit(self: Any) -> None:
    _commit(self)
    time.sleep(PAUSE)


psycopg.Connection.execute = execute  # type: ignore[method-assign]
psycopg.Connection.commit = commit  # type: ignore[method-assign]

if __name__ == "__main__":
    from rollback.cli import main

    sys.exit(main(sys.argv[1:]))
