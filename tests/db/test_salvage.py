"""``db salvage``: backup -> new writes -> restore --swap -> salvage --apply loses none of the new rows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import CliResult
from tests.db.conftest import LiveDb

RunCli = Callable[..., CliResult]

AFTER_BACKUP = """
INSERT INTO "User"(id, email) SELECT g, 'new' || g || '@example.com' FROM generate_series(301, 310) g;
INSERT INTO "Integration"("userId", provider) SELECT g, 'gitlab' FROM generate_series(301, 310) g;
INSERT INTO "UserStats"("userId", visits) SELECT g, 1 FROM generate_series(301, 305) g;
UPDATE "User" SET email = 'changed2@example.com' WHERE id = 2;
-- takes the address user 2 had in the backup: it conflicts once the backup is back
INSERT INTO "User"(id, email) VALUES (311, 'user2@example.com');
INSERT INTO "Integration"("userId", provider) VALUES (311, 'bitbucket');
SELECT setval('"User_id_seq"', 311);
INSERT INTO "AuditLog" VALUES ('after the backup');
"""


def keys(live_db: LiveDb, table: str, dbname: str | None = None) -> set[int]:
    return {int(r[0]) for r in live_db.sql(f'SELECT id FROM "{table}"', dbname=dbname)}


@pytest.fixture
def swapped(run_cli: RunCli, live_db: LiveDb) -> dict[str, Any]:
    """The scenario of the issue up to the swap; returns the rows written after the backup, by table."""
    live_db.sql('CREATE TABLE "AuditLog" (message text); INSERT INTO "AuditLog" VALUES (\'before\')', user="app")
    backup = run_cli("db", "backup", "--json")
    assert backup.code == 0, backup.err
    before = {t: keys(live_db, t) for t in ("User", "Integration", "UserStats")}
    live_db.sql(AFTER_BACKUP, user="app")
    written = {t: keys(live_db, t) - before[t] for t in before}
    restored = run_cli("db", "restore", backup.json()["backup"]["name"], "--swap", "--yes", "--json")
    assert restored.code == 0, restored.err
    return {"written": written, "kept": restored.json()["swap"]["set_aside"]}


def test_salvage_reports_by_key_and_apply_loses_no_row_written_after_the_backup(
        run_cli: RunCli, live_db: LiveDb, swapped: dict[str, Any]) -> None:
    written, kept = swapped["written"], swapped["kept"]
    assert sum(len(v) for v in written.values()) == 27
    report = run_cli("db", "salvage", "--json")
    assert report.code == 0, report.err
    tables = {t["table"]: t for t in report.json()["tables"]}
    assert report.json()["kept"] == kept
    assert set(tables["User"]["keys_only_in_kept"]) == {str(i) for i in written["User"]}
    assert tables["User"]["keys_differ"] == ["2"]
    assert tables["Integration"]["only_in_kept"] == 11 and tables["UserStats"]["only_in_kept"] == 5
    assert tables["AuditLog"]["salvageable"] is False and "no primary key" in tables["AuditLog"]["reason"]
    assert tables["_prisma_migrations"]["salvageable"] is False
    order = [t["table"] for t in report.json()["tables"]]
    assert order.index("User") < order.index("Integration")  # parents first
    human = run_cli("db", "salvage")
    assert human.code == 0 and "not salvageable" in human.out and "user2@example.com" not in human.out

    refused = run_cli("db", "salvage", "--apply")
    assert refused.code == 4 and "without confirmation" in refused.err
    applied = run_cli("db", "salvage", "--apply", "--yes", "--json")
    assert applied.code == 0, applied.err
    result = {t["table"]: t for t in applied.json()["salvage"]["tables"]}
    # every row written after the backup is back, or skipped and named by its key
    for table, ids in written.items():
        back = keys(live_db, table) & ids
        skipped = {int(s["key"]) for s in result[table].get("skipped", [])}
        assert back | skipped == ids and not back & skipped, table
    assert [s["key"] for s in result["User"]["skipped"]] == ["311"]
    assert "unique constraint User_email_key" in result["User"]["skipped"][0]["reason"]
    assert "foreign key" in result["Integration"]["skipped"][0]["reason"]
    assert result["User"]["copied"] == 10 and result["Integration"]["copied"] == 10
    # children came with their parents
    assert live_db.scalar('SELECT count(*) FROM "Integration" WHERE "userId" BETWEEN 301 AND 310') == 10
    # the row that differs was not overwritten
    assert live_db.scalar('SELECT email FROM "User" WHERE id = 2') == "user2@example.com"
    # sequences continue past every id the kept copy handed out
    assert live_db.scalar("""SELECT nextval('"User_id_seq"')""") == 312
    next_integration = live_db.scalar("""SELECT nextval('"Integration_id_seq"')""")
    assert next_integration > max(keys(live_db, "Integration", dbname=kept))
    # journaled, after an emergency backup
    assert [s["id"] for s in applied.json()["steps"]] == ["compare", "emergency-backup", "apply"]
    kinds = [b["kind"] for b in run_cli("db", "backups", "--json").json()["backups"]]
    assert kinds.count("emergency") == 2  # the swap's and the salvage's
    assert "user2@example.com" not in live_db.journal_text() and "new301@example.com" not in live_db.journal_text()
    again = run_cli("db", "salvage", "--json").json()
    assert {t["table"]: t["only_in_kept"] for t in again["tables"]}["User"] == 1  # only the conflicting row


def test_a_copy_that_a_swap_of_this_database_did_not_keep_is_refused(run_cli: RunCli, live_db: LiveDb) -> None:
    other = f"other{live_db.name[4:]}_replaced_20260101000000"
    lookalike = f"{live_db.name}_replaced_20260101000000"
    for name in (other, lookalike):
        live_db.pg.create_database(name, owner="app")
    try:
        for name in (other, lookalike):
            result = run_cli("db", "salvage", name, "--apply", "--yes")
            assert result.code == 4, result.err
            assert f"{name} is not a copy of {live_db.name}" in result.err and "Traceback" not in result.err
        missing = run_cli("db", "salvage", f"{live_db.name}_replaced_20260101000009")
        assert missing.code == 2
    finally:
        live_db.pg.drop_database(other)


def test_dry_run_and_table_filter(run_cli: RunCli, live_db: LiveDb, swapped: dict[str, Any]) -> None:
    dry = run_cli("db", "salvage", "--tables", "UserStats", "--apply", "--dry-run", "--json")
    assert dry.code == 0, dry.err
    assert [t["table"] for t in dry.json()["salvage"]["tables"]] == ["UserStats"]
    assert keys(live_db, "UserStats") & swapped["written"]["UserStats"] == set()
    unknown = run_cli("db", "salvage", "--tables", "Nope")
    assert unknown.code == 2 and "no table Nope" in unknown.err
