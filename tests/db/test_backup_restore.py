"""Backup -> damage -> restore -> swap against a real PostgreSQL, and every failure path."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from rollback.adapters.postgres import Database
from rollback.commands.db import backup as db_backup
from rollback.commands.db import restore as db_restore
from rollback.context import Services
from rollback.errors import DatabaseError
from tests.conftest import CliResult
from tests.db.conftest import LiveDb

RunCli = Callable[..., CliResult]


def app_role(live_db: LiveDb) -> str:
    return str(getattr(live_db.pg, "app_role", "app"))


def take_backup(run_cli: RunCli) -> dict[str, Any]:
    result = run_cli("db", "backup", "--json")
    assert result.code == 0, result.err
    backup: dict[str, Any] = result.json()["backup"]
    return backup


def overstate_user_rows(backup: dict[str, Any]) -> None:
    """Make the manifest claim 301 "User" rows where the dump holds 300: the count check must fail."""
    manifest_path = Path(backup["manifest_path"])
    manifest = json.loads(manifest_path.read_text())
    for table in manifest["tables"]:
        if table["name"] == "User":
            table["rows"] = 301
    manifest_path.write_text(json.dumps(manifest))


def one_line_error(result: CliResult, code: int, *needles: str) -> None:
    assert result.code == code, (result.code, result.out, result.err)
    assert "Traceback" not in result.err
    lines = [line for line in result.err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.err
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_backup_writes_a_verified_manifest(run_cli: RunCli, live_db: LiveDb, password_of: str,
                                          journal_redaction: bool) -> None:
    backup = take_backup(run_cli)
    manifest_path = Path(backup["manifest_path"])
    manifest = json.loads(manifest_path.read_text())
    assert manifest["database"] == live_db.name
    assert manifest["server_version"].startswith(str(live_db.pg.major))
    rows = {t["name"]: t["rows"] for t in manifest["tables"]}
    assert rows == {"User": 300, "Integration": 150, "UserStats": 200, "_prisma_migrations": 2}
    assert manifest["prisma_migration_head"] == "20261120000000_stats"
    dump_dir = manifest_path.parent / manifest["dump_dir"]
    assert (dump_dir / "toc.dat").is_file()
    import hashlib

    for item in manifest["files"]:
        data = (dump_dir / item["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == item["sha256"]
        assert len(data) == item["bytes"]
    assert any(f["path"].endswith(".gz") for f in manifest["files"])  # compressed
    assert manifest["verified"]["toc_entries"] > 0
    assert set(manifest["durations"]) >= {"dump_seconds", "total_seconds"}
    # never the password: not in the manifest, the output or the journal
    assert password_of not in manifest_path.read_text()
    assert password_of not in live_db.journal_text()

    listed = run_cli("db", "backups", "--json")
    assert listed.code == 0
    names = [b["name"] for b in listed.json()["backups"]]
    assert names == [manifest["name"]]
    human = run_cli("db", "backups")
    assert human.code == 0 and password_of not in human.out + human.err


def damage(live_db: LiveDb) -> None:
    live_db.sql('DELETE FROM "Integration" WHERE id % 3 = 0; DROP INDEX "User_email_key"; '
                'DROP TABLE "UserStats"; UPDATE "User" SET email = \'x\'; '
                "UPDATE _prisma_migrations SET rolled_back_at = now(); "
                "SELECT setval('\"User_id_seq\"', 5)")


def test_round_trip_backup_damage_restore_swap(run_cli: RunCli, live_db: LiveDb, password_of: str) -> None:
    live_db.sql("SELECT nextval('\"User_id_seq\"')")  # sequence state ahead of max(id)
    seq_before = live_db.scalar('SELECT last_value FROM "User_id_seq"')
    backup = take_backup(run_cli)
    damage(live_db)
    result = run_cli("db", "restore", backup["name"], "--swap", "--yes", "--json")
    assert result.code == 0, result.err
    doc = result.json()
    swap = doc["swap"]
    assert swap["live"] == live_db.name  # (downtime is measured in bench/db_restore.py, not asserted here)
    # everything is back
    assert live_db.scalar('SELECT count(*) FROM "User"') == 300
    assert live_db.scalar('SELECT count(DISTINCT email) FROM "User"') == 300
    assert live_db.scalar('SELECT count(*) FROM "Integration"') == 150
    assert live_db.scalar('SELECT count(*) FROM "UserStats"') == 200
    assert live_db.scalar('SELECT last_value FROM "User_id_seq"') == seq_before
    assert live_db.scalar("SELECT nextval('\"User_id_seq\"')") == seq_before + 1
    indexes = {r[0] for r in live_db.sql("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")}
    assert {"User_email_key", "Integration_userId_idx", "User_pkey"} <= indexes
    import psycopg

    with pytest.raises(psycopg.errors.UniqueViolation):
        live_db.sql("INSERT INTO \"User\"(email) VALUES ('user1@example.com')", user="app")
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        live_db.sql("INSERT INTO \"Integration\"(\"userId\", provider) VALUES (99999, 'x')", user="app")
    with pytest.raises(psycopg.errors.CheckViolation):
        live_db.sql("INSERT INTO \"Integration\"(\"userId\", provider) VALUES (1, '')", user="app")
    migrations = run_cli("db", "migrations", "--json").json()
    assert [m["status"] for m in migrations["migrations"]] == ["applied", "applied"]
    assert migrations["head"] == "20261120000000_stats"
    # the damaged database is kept aside, never dropped
    aside = swap["set_aside"]
    assert aside in live_db.databases()
    assert live_db.scalar('SELECT count(*) FROM "Integration"', dbname=aside) == 100
    # the app role owns the restored database, like the live one
    owner = live_db.scalar(f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{live_db.name}'")
    assert owner == app_role(live_db)
    # an emergency backup of the damaged state was taken first
    backups = run_cli("db", "backups", "--json").json()["backups"]
    assert [b["kind"] for b in backups].count("emergency") == 1
    assert password_of not in result.out + result.err + live_db.journal_text()
    for path in live_db.backups_dir.glob("*.manifest.json"):
        assert password_of not in path.read_text()

    # verify against the backup: all green
    verified = run_cli("db", "verify", "--baseline", backup["name"], "--json")
    assert verified.code == 0, verified.out
    assert verified.json()["ok"] is True

    # prune removes the set-aside copy, with confirmation
    refused = run_cli("db", "prune")
    one_line_error(refused, 4, "without confirmation")
    assert aside in live_db.databases()
    pruned = run_cli("db", "prune", "--yes")
    assert pruned.code == 0, pruned.err
    assert live_db.databases() == [live_db.name]


def test_restore_without_swap_leaves_the_copy_beside(run_cli: RunCli, live_db: LiveDb) -> None:
    backup = take_backup(run_cli)
    live_db.sql('DELETE FROM "UserStats"')
    result = run_cli("db", "restore", backup["name"])
    assert result.code == 0, result.err
    assert "rollback db swap" in result.out
    beside = [d for d in live_db.databases() if "_restore_" in d]
    assert len(beside) == 1
    assert live_db.scalar('SELECT count(*) FROM "UserStats"') == 0  # live untouched
    assert live_db.scalar('SELECT count(*) FROM "UserStats"', dbname=beside[0]) == 200
    swapped = run_cli("db", "swap", beside[0], "--yes", "--json")
    assert swapped.code == 0, swapped.err
    assert live_db.scalar('SELECT count(*) FROM "UserStats"') == 200


def test_dry_run_changes_nothing(run_cli: RunCli, live_db: LiveDb) -> None:
    backup = take_backup(run_cli)
    before = live_db.databases()
    result = run_cli("db", "restore", backup["name"], "--swap", "--dry-run")
    assert result.code == 0, result.err
    assert "would" in result.out
    assert live_db.databases() == before
    assert len(list(live_db.backups_dir.glob("*.manifest.json"))) == 1


@pytest.mark.parametrize("how", ["flip-byte", "truncate", "delete-file", "toc"])
def test_a_damaged_backup_is_refused_before_anything_is_touched(run_cli: RunCli, live_db: LiveDb,
                                                                how: str) -> None:
    backup = take_backup(run_cli)
    dump_dir = Path(backup["path"])
    data_file = next(p for p in sorted(dump_dir.iterdir()) if p.suffix == ".gz")
    if how == "flip-byte":
        raw = bytearray(data_file.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        data_file.write_bytes(bytes(raw))
    elif how == "truncate":
        data_file.write_bytes(data_file.read_bytes()[:10])
    elif how == "delete-file":
        data_file.unlink()
    else:
        toc = dump_dir / "toc.dat"
        raw = bytearray(toc.read_bytes())
        raw[5:40] = b"\0" * 35
        toc.write_bytes(bytes(raw))
    before = live_db.databases()
    result = run_cli("db", "restore", backup["name"], "--swap", "--yes")
    one_line_error(result, 4, "is damaged", "nothing was touched")
    assert live_db.databases() == before
    assert len(list(live_db.backups_dir.glob("*.manifest.json"))) == 1  # no emergency backup either


def test_a_killed_pg_restore_leaves_the_live_database(live_db: LiveDb) -> None:
    from rollback.commands.db import handlers as commands
    from rollback.errors import DatabaseError

    config = live_db.config()
    backup = commands.backup(config, services=Services(config))
    live_db.sql('DELETE FROM "User" WHERE id > 10')
    plan = db_restore.plan_restore(config, backup["name"], swap=True, services=Services(config))
    handlers = commands.DbHandlers(Services(config), on_restore_start=lambda proc: os.kill(proc.pid, signal.SIGKILL))
    with pytest.raises(DatabaseError) as caught:
        commands.run(config, plan, handlers=handlers)
    assert "killed by signal 9" in caught.value.message
    assert "untouched" in caught.value.message
    assert live_db.scalar('SELECT count(*) FROM "User"') == 10
    assert not [d for d in live_db.databases() if "_restore_" in d or "_replaced_" in d]


class UndroppableDatabase(Database):
    """A real Database that cannot drop databases (injected through Services)."""

    def drop_database(self, name: str) -> None:
        raise DatabaseError(f"dropping database {name} failed: injected")


def _killed_restore_that_cannot_drop(live_db: LiveDb, planned: Callable[[Any, Services], Any]) -> DatabaseError:
    """Run ``planned(config, services)`` with pg_restore killed as it starts and a database that cannot be
    dropped: the error the half-made database's helper raises."""
    from rollback.commands.db import handlers as commands

    config = live_db.config()
    services = Services(config, database=UndroppableDatabase(Services(config).database_target()))
    handlers = commands.DbHandlers(services, on_restore_start=lambda proc: os.kill(proc.pid, signal.SIGKILL))
    with pytest.raises(DatabaseError) as caught:
        commands.run(config, planned(config, services), handlers=handlers)
    return caught.value


def test_a_partial_copy_that_cannot_be_dropped_is_named(live_db: LiveDb) -> None:
    from rollback.commands.db import handlers as commands

    config = live_db.config()
    backup = commands.backup(config, services=Services(config))
    error = _killed_restore_that_cannot_drop(
        live_db, lambda config, services: db_restore.plan_restore(config, backup["name"], skip_emergency_reason="test",
                                                                services=services))
    partial = [d for d in live_db.databases() if "_restore_" in d]
    assert len(partial) == 1
    assert f"the partial copy {partial[0]} could not be dropped; remove it with 'rollback db prune'" in \
        error.message
    assert "was dropped" not in error.message


def test_a_partial_standby_that_cannot_be_dropped_is_named(live_db: LiveDb) -> None:
    """Staging and restore share one "drop the half-made database" helper: a staged standby whose
    pg_restore is killed is dropped the same way, and when it cannot be, the error names it as the restore's
    does, and says the backup itself is complete."""

    error = _killed_restore_that_cannot_drop(
        live_db, lambda config, services: db_backup.plan_backup(config, stage=True, services=services))
    partial = [d for d in live_db.databases() if "_standby_" in d]
    assert len(partial) == 1
    assert f"the partial standby {partial[0]} could not be dropped; remove it with 'rollback db prune'" in \
        error.message
    assert "itself is complete" in error.message
    assert "was dropped" not in error.message
    assert len(list(live_db.backups_dir.glob("*.manifest.json"))) == 1  # the backup itself is kept


def test_a_failed_count_check_keeps_the_live_database(run_cli: RunCli, live_db: LiveDb) -> None:
    backup = take_backup(run_cli)
    overstate_user_rows(backup)
    result = run_cli("db", "restore", backup["name"], "--swap", "--yes")
    one_line_error(result, 3, "do not match", "User: 300 rows, backup had 301", "untouched")
    assert live_db.scalar(f"SELECT count(*) FROM pg_database WHERE datname = '{live_db.name}'") == 1
    assert not [d for d in live_db.databases() if "_replaced_" in d]


def test_missing_createdb_is_named(run_cli: RunCli, live_db: LiveDb, monkeypatch: pytest.MonkeyPatch) -> None:
    backup = take_backup(run_cli)
    role = f"nocreate{live_db.name[-6:]}"
    live_db.pg.create_role(role, createdb=False)
    try:
        live_db.pg.execute(f'ALTER DATABASE "{live_db.name}" OWNER TO "{role}"')
        monkeypatch.setenv("TEST_LIVE_DATABASE_URL", live_db.pg.url(live_db.name, role))
        before = live_db.databases()
        result = run_cli("db", "restore", backup["name"], "--swap", "--yes")
        one_line_error(result, 4, f"role {role} lacks CREATEDB", "--in-place")
        assert live_db.databases() == before
        assert len(list(live_db.backups_dir.glob("*.manifest.json"))) == 1
    finally:
        live_db.pg.execute(f'ALTER DATABASE "{live_db.name}" OWNER TO "{app_role(live_db)}"')
        live_db.pg.execute(f'DROP ROLE "{role}"')


def test_in_place_restore_takes_the_emergency_backup_first(run_cli: RunCli, live_db: LiveDb) -> None:
    backup = take_backup(run_cli)
    live_db.sql('DELETE FROM "Integration"; DROP TABLE "UserStats"')
    result = run_cli("db", "restore", backup["name"], "--in-place", "--yes", "--json")
    assert result.code == 0, result.err
    assert [s["id"] for s in result.json()["steps"]] == ["verify-backup", "check-rights", "emergency-backup",
                                                        "restore", "check-counts"]
    assert live_db.scalar('SELECT count(*) FROM "Integration"') == 150
    assert live_db.scalar('SELECT count(*) FROM "UserStats"') == 200
    kinds = [b["kind"] for b in run_cli("db", "backups", "--json").json()["backups"]]
    assert kinds.count("emergency") == 1
    assert live_db.databases() == [live_db.name]


def test_missing_ownership_is_named(run_cli: RunCli, live_db: LiveDb, monkeypatch: pytest.MonkeyPatch) -> None:
    backup = take_backup(run_cli)
    role = f"notowner{live_db.name[-6:]}"
    live_db.pg.create_role(role, createdb=True)
    try:
        live_db.sql(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"')
        monkeypatch.setenv("TEST_LIVE_DATABASE_URL", live_db.pg.url(live_db.name, role))
        before = live_db.databases()
        result = run_cli("db", "restore", backup["name"], "--swap", "--yes")
        one_line_error(result, 4, f"role {role} does not own database {live_db.name}")
        assert live_db.databases() == before
    finally:
        live_db.sql(f'DROP OWNED BY "{role}"')
        live_db.pg.execute(f'DROP ROLE "{role}"')


def test_skipping_the_emergency_backup_needs_a_journaled_reason(run_cli: RunCli, live_db: LiveDb) -> None:
    backup = take_backup(run_cli)
    no_reason = run_cli("db", "restore", backup["name"], "--skip-emergency-backup", "--yes")
    one_line_error(no_reason, 2, "--reason")
    result = run_cli("db", "restore", backup["name"], "--swap", "--yes", "--skip-emergency-backup",
                     "--reason", "disk full, backup taken 2 min ago")
    assert result.code == 0, result.err
    assert "disk full, backup taken 2 min ago" in live_db.journal_text()
    kinds = [b["kind"] for b in run_cli("db", "backups", "--json").json()["backups"]]
    assert "emergency" not in kinds


def test_swap_refuses_without_confirmation_and_ends_sessions(run_cli: RunCli, live_db: LiveDb) -> None:
    backup = take_backup(run_cli)
    refused = run_cli("db", "restore", backup["name"], "--swap")
    one_line_error(refused, 4, "without confirmation")
    assert not [d for d in live_db.databases() if "_restore_" in d]
    import psycopg

    idle = psycopg.connect(live_db.url, autocommit=True)  # an application session on the live database
    try:
        started = time.monotonic()
        result = run_cli("db", "restore", backup["name"], "--swap", "--yes", "--json")
        assert result.code == 0, result.err
        assert result.json()["swap"]["terminated_sessions"] >= 1
        assert time.monotonic() - started < 60
        with pytest.raises(psycopg.OperationalError):
            idle.execute("SELECT 1")
    finally:
        idle.close()


def test_missing_url_and_unknown_backup_are_one_line_errors(run_cli: RunCli, live_db: LiveDb,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    unknown = run_cli("db", "restore", "nope")
    one_line_error(unknown, 2, "no backup 'nope'")
    monkeypatch.delenv("TEST_LIVE_DATABASE_URL")
    missing = run_cli("db", "backup")
    one_line_error(missing, 2, "TEST_LIVE_DATABASE_URL is not set")


def test_unreachable_server_is_a_one_line_error_without_the_password(run_cli: RunCli, live_db: LiveDb,
                                                                      monkeypatch: pytest.MonkeyPatch,
                                                                      journal_redaction: bool) -> None:
    monkeypatch.setenv("TEST_LIVE_DATABASE_URL", "postgresql://app:sup3rs3cretpw@127.0.0.1:1/app")
    result = run_cli("db", "backup")
    one_line_error(result, 1, "connecting to app@127.0.0.1:1/app")
    assert "sup3rs3cretpw" not in result.out + result.err + live_db.journal_text()


def test_sessions_the_role_may_not_end_refuse_the_swap(run_cli: RunCli, live_db: LiveDb) -> None:
    import psycopg

    backup = take_backup(run_cli)
    other = psycopg.connect(live_db.pg.url(live_db.name, "postgres"), autocommit=True)  # a superuser's session
    try:
        result = run_cli("db", "restore", backup["name"], "--swap", "--yes")
        one_line_error(result, 4, "lacks pg_signal_backend", "nothing was changed")
        other.execute("SELECT 1")  # still connected: nothing was blocked or ended
        assert not [d for d in live_db.databases() if "_replaced_" in d]
        assert live_db.scalar(f"SELECT datallowconn FROM pg_database WHERE datname = '{live_db.name}'") is True
    finally:
        other.close()


def test_a_failed_pg_dump_leaves_no_backup_behind(run_cli: RunCli, live_db: LiveDb, password_of: str,
                                                  journal_redaction: bool) -> None:
    live_db.sql("CREATE TABLE secret_audit (id int)")  # owned by the superuser: the app role cannot read it
    result = run_cli("db", "backup")
    one_line_error(result, 1, "permission denied for table secret_audit", "grant it")
    assert password_of not in result.err
    assert not list(live_db.backups_dir.iterdir())
    # and a restore, whose safety dump (after the swap) could not read that table, refuses before touching
    # anything: the previous database must not end up as a copy nobody can dump
    live_db.sql("DROP TABLE secret_audit")
    backup = take_backup(run_cli)
    live_db.sql("CREATE TABLE secret_audit (id int)")
    refused = run_cli("db", "restore", backup["name"], "--swap", "--yes")
    one_line_error(refused, 4, "may not read public.secret_audit", "safety dump", "nothing was changed")
    assert live_db.databases() == [live_db.name]
    assert password_of not in refused.err + live_db.journal_text()
    live_db.sql("DROP TABLE secret_audit")


def test_a_pg_dump_dying_midway_leaves_no_partial_backup(run_cli: RunCli, live_db: LiveDb, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch, password_of: str) -> None:
    real = Path(str(live_db.pg.bin_dir)) if hasattr(live_db.pg, "bin_dir") else Path(
        f"/usr/lib/postgresql/{live_db.pg.major}/bin")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "pg_restore").symlink_to(real / "pg_restore")
    # writes part of a dump, echoes its environment's password, then dies like an OOM kill
    (fake / "pg_dump").write_text('#!/bin/sh\nfor a in "$@"; do case "$a" in --file=*) d="${a#--file=}";; esac; done\n'
                                  'mkdir -p "$d" && echo partial > "$d/toc.dat"\n'
                                  'echo "pg_dump: error: connection lost (password $PGPASSWORD)" >&2\nkill -9 $$\n')
    (fake / "pg_dump").chmod(0o755)
    monkeypatch.setenv("PG_BIN_DIR", str(fake))
    result = run_cli("db", "backup")
    one_line_error(result, 1, "pg_dump failed (killed by signal 9)")
    assert password_of not in result.err
    assert not list(live_db.backups_dir.iterdir())


WEIRD = r"""
CREATE TABLE "Weird" (
    id SERIAL PRIMARY KEY,
    gone TEXT,
    body TEXT,
    raw BYTEA,
    at TIMESTAMPTZ,
    span INTERVAL,
    doubled INTEGER GENERATED ALWAYS AS (id * 2) STORED,
    tags TEXT[]
);
ALTER TABLE "Weird" DROP COLUMN gone;
INSERT INTO "Weird"(body, raw, at, span, tags)
SELECT CASE g % 6
         WHEN 0 THEN E'line\none\ttab'
         WHEN 1 THEN E'\\.'
         WHEN 2 THEN E'back\\slash \\. end'
         WHEN 3 THEN 'ünïcødé ✓ ' || g
         WHEN 4 THEN NULL
         ELSE '' END,
       decode(md5(g::text), 'hex'), '2026-11-28 09:30:00+00'::timestamptz + g * interval '1 minute',
       g * interval '1 hour 3 seconds', ARRAY['a' || g, NULL, E'q"\\']
FROM generate_series(1, 5000) g;
"""


def test_big_tables_load_over_parallel_streams_byte_for_byte(live_db: LiveDb) -> None:
    from rollback.commands.db import handlers as commands

    live_db.sql(WEIRD, user="app")
    fingerprint = ("SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM \"Weird\" t")
    before = live_db.scalar(fingerprint)
    config = live_db.config()
    backup = commands.backup(config, services=Services(config))
    live_db.sql('DELETE FROM "Weird" WHERE id % 2 = 0; DELETE FROM "User" WHERE id > 100')
    plan = db_restore.plan_restore(config, backup["name"], swap=True, jobs=2, services=Services(config))
    outcome = commands.run(config, plan, handlers=commands.DbHandlers(Services(config), split_min_rows=250))
    restored = outcome.result_of("restore")
    assert set(restored["split_tables"]) == {"public.Weird", "public.User"}
    assert live_db.scalar(fingerprint) == before
    assert live_db.scalar('SELECT count(*) FROM "User"') == 300
    assert live_db.scalar("SELECT count(*) FROM \"Weird\" WHERE body = E'\\\\.'") == 834
    assert live_db.scalar('SELECT sum(doubled) - 2 * sum(id) FROM "Weird"') == 0
    import psycopg

    with pytest.raises(psycopg.errors.UniqueViolation):  # indexes and constraints came after the data
        live_db.sql("INSERT INTO \"User\"(email) VALUES ('user1@example.com')", user="app")


class BrokenCopyDatabase(Database):
    """A real Database whose parallel COPY streams are fed rows that are not rows (injected through Services)."""

    def copy_in(self, dbname: str, schema: str, table: str, blocks: Iterable[bytes], **kwargs: Any) -> Any:
        broken = iter([b"1\tnot-an-email\n", b"this is not a row\n"])
        return super().copy_in(dbname, schema, table, broken, **kwargs)


def test_a_failing_parallel_load_drops_the_copy_and_keeps_the_live_database(live_db: LiveDb) -> None:
    from rollback.commands.db import handlers as commands

    config = live_db.config()
    backup = commands.backup(config, services=Services(config))
    services = Services(config, database=BrokenCopyDatabase(Services(config).database_target()))
    plan = db_restore.plan_restore(config, backup["name"], swap=True, jobs=2, services=Services(config))
    with pytest.raises(DatabaseError, match="untouched"):
        commands.run(config, plan, handlers=commands.DbHandlers(services, split_min_rows=250))
    assert live_db.databases() == [live_db.name]
    assert live_db.scalar('SELECT count(*) FROM "User"') == 300


def test_a_failed_count_check_after_in_place_names_the_emergency_backup(run_cli: RunCli, live_db: LiveDb) -> None:
    backup = take_backup(run_cli)
    overstate_user_rows(backup)
    result = run_cli("db", "restore", backup["name"], "--in-place", "--yes")
    emergency = [b["name"] for b in run_cli("db", "backups", "--json").json()["backups"] if b["kind"] == "emergency"]
    assert len(emergency) == 1
    one_line_error(result, 3, "do not match", "WAS restored in place", emergency[0])
    assert "untouched" not in result.err


def test_swap_accepts_only_a_database_rollback_restored(run_cli: RunCli, live_db: LiveDb) -> None:
    other = f"{live_db.name}_other"
    live_db.pg.create_database(other, owner="app")
    result = run_cli("db", "swap", other, "--yes")
    one_line_error(result, 2, f"{other} was not restored by rollback")
    assert live_db.scalar(f"SELECT count(*) FROM pg_database WHERE datname = '{other}'") == 1
    assert not [d for d in live_db.databases() if "_replaced_" in d]


def test_a_backups_dir_that_cannot_be_written_is_one_line(run_cli: RunCli, live_db: LiveDb) -> None:
    live_db.backups_dir.parent.mkdir(parents=True, exist_ok=True)
    live_db.backups_dir.write_text("a file where the directory should be")
    result = run_cli("db", "backup")
    one_line_error(result, 1, f"writing the backup to {live_db.backups_dir} failed")


def test_a_short_password_does_not_corrupt_the_manifest(run_cli: RunCli, live_db: LiveDb, password_of: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from rollback import redact

    # Registered secrets are process-wide: keep "User" from masking later tests' output.
    monkeypatch.setattr(redact, "_registered", set(redact._registered))
    role = app_role(live_db)
    password = "User"  # also a table name: masking it in the manifest would lose the table
    live_db.pg.execute(f"ALTER ROLE \"{role}\" PASSWORD '{password}'")
    try:
        monkeypatch.setenv("TEST_LIVE_DATABASE_URL", live_db.url.replace(f":{password_of}@", f":{password}@", 1))
        backup = take_backup(run_cli)
        text = Path(backup["manifest_path"]).read_text()
        manifest = json.loads(text)
        assert {t["name"] for t in manifest["tables"]} == {"User", "Integration", "UserStats", "_prisma_migrations"}
        assert "password" not in manifest and f":{password}@" not in text
        assert password_of not in text
    finally:
        live_db.pg.execute(f"ALTER ROLE \"{role}\" PASSWORD '{password_of}'")


def test_swap_refuses_a_copy_whose_counts_failed_or_were_never_checked(run_cli: RunCli, live_db: LiveDb) -> None:
    unchecked = f"{live_db.name}_restore_20261128000000"
    live_db.pg.create_database(unchecked, owner="app")
    result = run_cli("db", "swap", unchecked, "--yes")
    one_line_error(result, 4, f"the row counts of {unchecked} were not checked", "nothing was changed")
    backup = take_backup(run_cli)
    overstate_user_rows(backup)
    failed = run_cli("db", "restore", backup["name"], "--yes", "--skip-emergency-backup", "--reason", "test")
    assert failed.code == 3, failed.err
    mismatched = [d for d in live_db.databases() if "_restore_" in d and d != unchecked]
    assert len(mismatched) == 1
    refused = run_cli("db", "swap", mismatched[0], "--yes")
    one_line_error(refused, 4, "were not checked against its backup, or did not match")
    assert not [d for d in live_db.databases() if "_replaced_" in d]
