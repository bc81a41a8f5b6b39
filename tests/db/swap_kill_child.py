"""Run the real ``rollback`` CLI, stopping after each statement of the swap's transaction until told to go on.

Used by tests/db/test_swap_kill.py, which kills this process at one of those stops. Each stop is a
handshake over two pipes the test passes in (``SWAP_KILL_REPORT_FD``, ``SWAP_KILL_GO_FD``): the child
writes what it just did (``statement <text>`` or ``commit``) and blocks reading one byte; the test
looks at the catalog and either sends its signal there or writes a byte to let the child go on. When
the test closes its end, the child runs on without stopping (a read at EOF returns at once). So no
moment is widened by a sleep: the test acts exactly when the swap stands at the point, however loaded
the machine. Every statement still runs against the real server, and the process dies (or handles the
signal) exactly as ``rollback`` would.

The stops follow the statements that rename or mark databases (and ALLOW_CONNECTIONS, which an older
swap committed) on connections to the maintenance database, and every COMMIT; and, in the safety dump
after a swap, the moment rollback waits for a running ``pg_dump`` (``pg_dump running``).

    python tests/db/swap_kill_child.py db swap app_restore_20261128000000 --yes
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import Any

import psycopg

STATEMENTS = re.compile(r"SET LOCAL statement_timeout|RENAME TO|COMMENT ON DATABASE|ALLOW_CONNECTIONS")
REPORT_FD = int(os.environ.get("SWAP_KILL_REPORT_FD", "-1"))
GO_FD = int(os.environ.get("SWAP_KILL_GO_FD", "-1"))

_execute = psycopg.Connection.execute
_commit = psycopg.Connection.commit
_wait = subprocess.Popen.wait


def stop(what: str) -> None:
    """Tell the test where we are and wait until it lets us go on (or has closed the pipe)."""
    if REPORT_FD < 0:
        return
    try:
        os.write(REPORT_FD, (" ".join(what.split())[:200] + "\n").encode())
    except BrokenPipeError:  # the test has stopped listening: run on
        return
    os.read(GO_FD, 1)


def execute(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
    cursor = _execute(self, query, *args, **kwargs)
    if self.info.dbname in ("postgres", "template1"):
        text = query if isinstance(query, str) else query.as_string(self)
        if STATEMENTS.search(text):
            stop(f"statement {text}")
    return cursor


def commit(self: Any) -> None:
    _commit(self)
    stop("commit")


def wait(self: Any, timeout: float | None = None) -> Any:
    # pg_dump is running (rollback waits for it here): a signal now lands where a real one would
    if timeout is None and os.path.basename(str(self.args[0])) == "pg_dump" and "--version" not in self.args:
        stop("pg_dump running")
    return _wait(self, timeout)


psycopg.Connection.execute = execute  # type: ignore[method-assign]
psycopg.Connection.commit = commit  # type: ignore[method-assign]
subprocess.Popen.wait = wait  # type: ignore[method-assign]

if __name__ == "__main__":
    from rollback.cli import main

    sys.exit(main(sys.argv[1:]))
