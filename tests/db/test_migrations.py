"""Prisma migrations: status, resolve with Prisma's preconditions and codes, down migrations."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable

import pytest

from rollback.commands.db import migrations as db_migrations
from rollback.context import Services
from tests.conftest import CliResult
from tests.db.conftest import LiveDb
from tests.db.test_backup_restore import one_line_error

RunCli = Callable[..., CliResult]

FAILED = "20261125000000_broken"


def add_failed(live_db: LiveDb, name: str = FAILED) -> None:
    live_db.sql(f"""INSERT INTO _prisma_migrations (id, checksum, migration_name, started_at, logs)
                    VALUES (gen_random_uuid()::text, repeat('c', 64), '{name}', now(), 'ERROR: boom')""")


def write_migration(live_db: LiveDb, name: str, sql: str = "SELECT 1;", down: str | None = None) -> None:
    directory = live_db.migrations_dir / name
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "migration.sql").write_text(sql)
    if down is not None:
        (directory / "down.sql").write_text(down)


def rows(live_db: LiveDb, name: str) -> list[tuple[object, ...]]:
    return live_db.sql("SELECT checksum, finished_at IS NOT NULL, rolled_back_at IS NOT NULL, applied_steps_count "
                       f"FROM _prisma_migrations WHERE migration_name = '{name}' ORDER BY started_at")


def test_migrations_lists_statuses(run_cli: RunCli, live_db: LiveDb) -> None:
    add_failed(live_db)
    live_db.sql("INSERT INTO _prisma_migrations (id, checksum, migration_name, started_at, finished_at, "
                "rolled_back_at) VALUES ('r1', repeat('d', 64), '20261126000000_undone', now(), now(), now())")
    write_migration(live_db, "20261127000000_pending")
    result = run_cli("db", "migrations", "--json")
    assert result.code == 0, result.err
    doc = result.json()
    assert doc["managed"] is True
    status = {m["name"]: m["status"] for m in doc["migrations"]}
    assert status == {"20261101000000_init": "applied", "20261120000000_stats": "applied", FAILED: "failed",
                      "20261126000000_undone": "rolled back"}
    assert doc["failed"] == [FAILED]
    assert doc["not_in_database"] == ["20261127000000_pending"]
    human = run_cli("db", "migrations")
    assert human.code == 0 and FAILED in human.out


def test_a_database_without_the_table_is_not_managed(run_cli: RunCli, live_db: LiveDb) -> None:
    live_db.sql("DROP TABLE _prisma_migrations")
    result = run_cli("db", "migrations", "--json")
    assert result.code == 0
    assert result.json()["managed"] is False
    assert "not managed by Prisma Migrate" in result.json()["note"]
    one_line_error(run_cli("db", "resolve", "--rolled-back", "x", "--yes"), 2, "P3011")


def test_resolve_rolled_back_follows_prisma(run_cli: RunCli, live_db: LiveDb) -> None:
    one_line_error(run_cli("db", "resolve", "--rolled-back", "20990101000000_nope", "--yes"), 2, "P3011",
                   "never applied")
    one_line_error(run_cli("db", "resolve", "--rolled-back", "20261120000000_stats", "--yes"), 4, "P3012",
                   "not in a failed state")
    add_failed(live_db)
    dry = run_cli("db", "resolve", "--rolled-back", FAILED, "--dry-run")
    assert dry.code == 0 and rows(live_db, FAILED)[0][2] is False
    # it changes the database's state: like every such command, it asks first (no terminal: refused)
    one_line_error(run_cli("db", "resolve", "--rolled-back", FAILED), 4, "without confirmation")
    assert rows(live_db, FAILED)[0][2] is False
    done = run_cli("db", "resolve", "--rolled-back", FAILED, "--json", "--yes")
    assert done.code == 0, done.err
    assert rows(live_db, FAILED)[0][2] is True
    # a second time it is no longer failed: P3012, like Prisma
    one_line_error(run_cli("db", "resolve", "--rolled-back", FAILED, "--yes"), 4, "P3012")
    assert FAILED in live_db.journal_text()


def test_resolve_applied_follows_prisma(run_cli: RunCli, live_db: LiveDb) -> None:
    one_line_error(run_cli("db", "resolve", "--applied", FAILED, "--yes"), 2, "P3017")
    script = "ALTER TABLE \"User\" ADD COLUMN nickname TEXT;\n"
    write_migration(live_db, FAILED, script)
    write_migration(live_db, "20261120000000_stats")
    one_line_error(run_cli("db", "resolve", "--applied", "20261120000000_stats", "--yes"), 4, "P3008",
                   "already recorded")
    add_failed(live_db)
    done = run_cli("db", "resolve", "--applied", FAILED, "--json", "--yes")
    assert done.code == 0, done.err
    recorded = rows(live_db, FAILED)
    assert len(recorded) == 2
    assert recorded[0][1:3] == (False, True)  # the failed attempt is marked rolled back
    assert recorded[1] == (hashlib.sha256(script.encode()).hexdigest(), True, False, 1)
    one_line_error(run_cli("db", "resolve", "--applied", FAILED, "--yes"), 4, "P3008")
    assert run_cli("db", "migrations", "--json").json()["head"] == FAILED


def test_resolve_applied_creates_the_table_when_missing(run_cli: RunCli, live_db: LiveDb) -> None:
    live_db.sql("DROP TABLE _prisma_migrations")
    write_migration(live_db, "20261101000000_init", "CREATE TABLE x (id int);")
    done = run_cli("db", "resolve", "--applied", "20261101000000_init", "--yes")
    assert done.code == 0, done.err
    assert run_cli("db", "migrations", "--json").json()["head"] == "20261101000000_init"


def test_resolve_waits_for_prismas_advisory_lock(live_db: LiveDb) -> None:
    import psycopg

    from rollback.commands.db import handlers as commands
    from rollback.errors import LockHeld

    add_failed(live_db)
    config = live_db.config()
    holder = psycopg.connect(live_db.url, autocommit=True)
    try:
        holder.execute("SELECT pg_advisory_lock(72707369)")
        plan = db_migrations.plan_resolve(config, rolled_back=FAILED, applied=None, services=Services(config))
        with pytest.raises(LockHeld):
            commands.run(config, plan, handlers=commands.DbHandlers(Services(config), lock_timeout=0.5))
        assert rows(live_db, FAILED)[0][2] is False
        # released while we wait: we go ahead
        threading.Timer(0.3, lambda: holder.execute("SELECT pg_advisory_unlock(72707369)")).start()
        commands.run(config, plan, handlers=commands.DbHandlers(Services(config), lock_timeout=10))
        assert rows(live_db, FAILED)[0][2] is True
    finally:
        holder.close()


def test_down_runs_in_one_transaction_after_an_emergency_backup(run_cli: RunCli, live_db: LiveDb) -> None:
    name = "20261120000000_stats"
    write_migration(live_db, name, 'ALTER TABLE "UserStats" ADD COLUMN streak INT;',
                    down='ALTER TABLE "UserStats" DROP COLUMN streak;\nDROP INDEX IF EXISTS "nothing";\n')
    live_db.sql('ALTER TABLE "UserStats" ADD COLUMN streak INT')
    refused = run_cli("db", "down", name)
    one_line_error(refused, 4, "without confirmation")
    done = run_cli("db", "down", name, "--yes", "--json")
    assert done.code == 0, done.err
    columns = [r[0] for r in live_db.sql("SELECT column_name FROM information_schema.columns "
                                         "WHERE table_name = 'UserStats'")]
    assert "streak" not in columns
    assert rows(live_db, name)[0][2] is True
    kinds = [b["kind"] for b in run_cli("db", "backups", "--json").json()["backups"]]
    assert kinds == ["emergency"]
    one_line_error(run_cli("db", "down", name, "--yes"), 4, "already rolled back")


def test_a_failing_down_script_changes_nothing(run_cli: RunCli, live_db: LiveDb) -> None:
    name = "20261120000000_stats"
    write_migration(live_db, name, "SELECT 1;", down='DROP TABLE "UserStats";\nSELECT no_such_function();\n')
    result = run_cli("db", "down", name, "--yes", "--skip-emergency-backup", "--reason", "test")
    one_line_error(result, 1, "no_such_function", "rolled back")
    assert live_db.scalar('SELECT count(*) FROM "UserStats"') == 200
    assert rows(live_db, name)[0][2] is False


def test_down_needs_a_down_script(run_cli: RunCli, live_db: LiveDb) -> None:
    one_line_error(run_cli("db", "down", "20261120000000_stats", "--yes"), 2, "no down migration")


def test_an_unreadable_migrations_table_is_one_line(run_cli: RunCli, live_db: LiveDb) -> None:
    write_migration(live_db, "20261120000000_stats", down="SELECT 1;")
    live_db.sql("REVOKE SELECT ON _prisma_migrations FROM CURRENT_USER", user="app")
    result = run_cli("db", "down", "20261120000000_stats", "--skip-emergency-backup", "--reason", "test", "--yes")
    one_line_error(result, 1, "reading migration 20261120000000_stats failed", "permission denied")
