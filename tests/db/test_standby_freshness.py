"""A staged standby stays fresh while its data is as staged, whatever autovacuum or ``VACUUM ANALYZE`` did
to its size; rows edited while connections were allowed are found.

Against a real PostgreSQL: autovacuum works in a database that refuses connections ("the
checks are not enforced for autovacuum worker processes", postinit.c), VACUUM adds the
visibility and free-space maps and ANALYZE writes pg_statistic, so the database's size changes
while its rows do not; every row written carries its transaction's id in ``xmin``, which
freezing keeps (PostgreSQL documentation, "Preventing Transaction ID Wraparound Failures": since
9.4 freezing sets a flag bit and preserves the original xmin); ALTER DATABASE writes a new
version of the pg_database row, VACUUM updates datfrozenxid in place.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from rollback.setaside import Mark
from tests.conftest import CliResult
from tests.db.conftest import LiveDb
from tests.db.test_backup_restore import one_line_error
from tests.db.test_staged import stage

RunCli = Callable[..., CliResult]


def _open(live_db: LiveDb, standby: str, allowed: bool) -> None:
    live_db.sql(f'ALTER DATABASE "{standby}" ALLOW_CONNECTIONS {"true" if allowed else "false"}', dbname="postgres")


def _in_standby(live_db: LiveDb, standby: str, *statements: str) -> None:
    """Connections allowed, the statements run in the standby as its owner, closed again."""
    _open(live_db, standby, True)
    try:
        with psycopg.connect(live_db.url.rsplit("/", 1)[0] + f"/{standby}", autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement.encode())
    finally:
        _open(live_db, standby, False)


def _size(live_db: LiveDb, name: str) -> int:
    return int(live_db.scalar(f"SELECT pg_database_size('{name}')", dbname="postgres"))


def _mark(live_db: LiveDb, name: str) -> Mark | None:
    return Mark.from_comment(live_db.scalar(
        f"SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = '{name}'",
        dbname="postgres"))


def test_vacuum_analyze_leaves_a_standby_fresh(run_cli: RunCli, live_db: LiveDb) -> None:
    backup = stage(run_cli)
    standby = backup["standby"]
    before = _size(live_db, standby)
    _in_standby(live_db, standby, "VACUUM ANALYZE")
    assert _size(live_db, standby) != before  # what the size check called stale
    planned = run_cli("db", "restore", "latest", "--swap", "--dry-run", "--json")
    assert planned.code == 0, planned.err
    assert planned.json()["steps"][0]["id"] == "check-standby"
    assert any("its clone is checked for rows written since staging" in n for n in planned.json()["plan"]["notes"])
    live_db.sql('DELETE FROM "UserStats"')
    result = run_cli("db", "restore", "latest", "--swap", "--yes", "--json")
    assert result.code == 0, result.err
    restore = next(s for s in result.json()["steps"] if s["id"] == "restore")
    assert restore["result"]["standby"] == standby and restore["result"]["data_checked"] is True
    assert live_db.scalar('SELECT count(*) FROM "UserStats"') == 200


def test_a_standby_never_reopened_is_not_read(run_cli: RunCli, live_db: LiveDb) -> None:
    """Connections never allowed since staging: the data cannot have changed, nothing is read."""
    stage(run_cli)
    result = run_cli("db", "restore", "latest", "--yes", "--json")
    assert result.code == 0, result.err
    restore = next(s for s in result.json()["steps"] if s["id"] == "restore")
    assert restore["result"]["standby"] and restore["result"]["data_checked"] is False


@pytest.mark.parametrize(("statement", "found"), [
    ('UPDATE "User" SET email = \'changed@example.com\' WHERE id = 7', "public.User (rows)"),
    ('DELETE FROM "UserStats" WHERE id = 3; INSERT INTO "UserStats"("userId", visits) VALUES (3, 0)',
     "public.UserStats (rows)"),
    ('ALTER TABLE "Integration" ADD COLUMN note TEXT', "public.Integration (columns)"),
    ("SELECT nextval('\"User_id_seq\"')", "sequences"),
    ('UPDATE "User" SET email = email || \'.x\' WHERE id = 9; VACUUM (FREEZE, ANALYZE)', "public.User (rows)"),
], ids=["update", "delete-and-insert", "column", "sequence", "update-then-freeze"])
def test_an_edited_standby_is_found_and_never_swapped_in(run_cli: RunCli, live_db: LiveDb, statement: str,
                                                         found: str) -> None:
    backup = stage(run_cli)
    standby = backup["standby"]
    _in_standby(live_db, standby, *statement.split("; "))
    live_db.sql('DELETE FROM "Integration"')
    result = run_cli("db", "restore", "latest", "--swap", "--yes")
    one_line_error(result, 3, f"standby {standby} was changed after it was staged", found,
                   "run the restore again")
    assert live_db.scalar('SELECT count(*) FROM "Integration"') == 0  # live untouched, not swapped
    assert not [d for d in live_db.databases() if "_restore_" in d]  # the clone is gone
    mark = _mark(live_db, standby)
    assert mark is not None and "changed since staging" in str(mark.get("stale"))
    again = run_cli("db", "restore", "latest", "--swap", "--yes", "--json")
    assert again.code == 0, again.err
    document: dict[str, Any] = again.json()
    assert document["steps"][0]["id"] == "verify-backup"  # from the dump
    assert any("its data changed after it was staged" in n for n in document["plan"]["notes"])
    assert live_db.scalar('SELECT count(*) FROM "Integration"') == 150
