"""Run the real ``rollback`` CLI and hold it just after the swap's COMMIT, so a test can kill it there.

The swap renames the databases in one transaction on a maintenance database (``postgres``,
``template1``). After the COMMIT of a transaction that renamed a database this wrapper creates the
file named by ``$PAUSE_AFTER_COMMIT_FILE`` and waits (up to a minute) for the test to kill the
process; the statements themselves run against the real server, unchanged.

    PAUSE_AFTER_COMMIT_FILE=/tmp/x python -m tests.db.pause_after_commit db restore NAME --swap --yes
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

_commit = psycopg.Connection.commit
_execute = psycopg.Connection.execute
_renaming: set[int] = set()  # connections whose open transaction renamed a database


def execute(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
    text = query if isinstance(query, str) else query.as_string(self) if hasattr(query, "as_string") else ""
    if "RENAME TO" in str(text):
        _renaming.add(id(self))
    return _execute(self, query, *args, **kwargs)


def commit(self: Any) -> None:
    _commit(self)
    marker = os.environ.get("PAUSE_AFTER_COMMIT_FILE")
    if marker and id(self) in _renaming:
        Path(marker).write_text(str(os.getpid()))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the test kills us here
            time.sleep(0.05)


psycopg.Connection.commit = commit  # type: ignore[method-assign]
psycopg.Connection.execute = execute  # type: ignore[method-assign]

if __name__ == "__main__":
    from rollback.cli import main

    sys.exit(main(sys.argv[1:]))
