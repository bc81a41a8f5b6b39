"""``db guard -- COMMAND``: a backup before a real migration script, the pair recorded, the exit passed through.

The migration script (tests/db/fixtures/migrate.py) applies migrations and records them in
_prisma_migrations the way ``prisma migrate deploy`` does, including a failed one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import CliResult
from tests.db.conftest import LiveDb

RunCli = Callable[..., CliResult]
MIGRATE = [sys.executable, str(Path(__file__).parent / "fixtures" / "migrate.py")]


@pytest.fixture
def migrations(live_db: LiveDb, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MIGRATIONS_DIR", str(live_db.migrations_dir))
    live_db.migrations_dir.mkdir(parents=True)
    return live_db.migrations_dir


def add_migration(directory: Path, name: str, sql: str) -> None:
    (directory / name).mkdir()
    (directory / name / "migration.sql").write_text(sql)


def columns(live_db: LiveDb) -> set[str]:
    return {r[0] for r in live_db.sql("SELECT column_name FROM information_schema.columns WHERE table_name = 'User'")}


def test_a_successful_migration_is_paired_with_its_backup(run_cli: RunCli, live_db: LiveDb,
                                                          migrations: Path) -> None:
    add_migration(migrations, "20261201000000_add_plan", 'ALTER TABLE "User" ADD COLUMN plan text;')
    add_migration(migrations, "20261201000001_backfill_plan", "UPDATE \"User\" SET plan = 'free';")
    done = subprocess.run([sys.executable, "-m", "rollback", "db", "guard", "--json", "--", *MIGRATE],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)  # stdout holds our JSON only: the script's output went to stderr
    assert "Applying migration `20261201000000_add_plan`" in done.stderr
    assert doc["exit_code"] == 0
    record = doc["record"]
    assert record["applied"] == ["20261201000000_add_plan", "20261201000001_backfill_plan"]
    manifest = json.loads(Path(record["manifest_path"]).read_text())
    assert manifest["guard"]["applied"] == record["applied"] and manifest["guard"]["run"] == doc["run"]
    assert "plan" not in {t["name"] for t in manifest["tables"]} and "plan" in columns(live_db)
    assert "20261201000000_add_plan" in live_db.journal_text()

    # later: go back to exactly before that migration
    restored = run_cli("db", "restore", "--before-migration", "20261201000001_backfill_plan", "--swap", "--yes",
                       "--json")
    assert restored.code == 0, restored.err
    assert restored.json()["plan"]["title"] == f"db restore {manifest['name']} --swap"
    assert "plan" not in columns(live_db)
    unknown = run_cli("db", "restore", "--before-migration", "20990101000000_nope")
    assert unknown.code == 2 and "before migration 20990101000000_nope" in unknown.err
    both = run_cli("db", "restore", "latest", "--before-migration", "20261201000000_add_plan")
    assert both.code == 2


def test_a_failing_migration_passes_its_exit_status_and_names_the_backup(run_cli: RunCli, live_db: LiveDb,
                                                                         migrations: Path) -> None:
    add_migration(migrations, "20261201000000_add_plan", 'ALTER TABLE "User" ADD COLUMN plan text;')
    add_migration(migrations, "20261201000001_broken", 'ALTER TABLE "Nope" ADD COLUMN x int;')
    result = run_cli("db", "guard", "--", *MIGRATE)
    assert result.code == 1, result.err
    backups = [b for b in run_cli("db", "backups", "--json").json()["backups"] if b.get("guard")]
    assert len(backups) == 1
    name = backups[0]["name"]
    assert backups[0]["guard"]["applied"] == ["20261201000000_add_plan"]
    assert backups[0]["guard"]["failed"] == ["20261201000001_broken"]
    assert backups[0]["guard"]["exit_code"] == 1
    errors = [line for line in result.err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in result.err, result.err
    assert f"the guarded command failed (exit 1); the backup {name} was taken just before it" in errors[0]
    assert f"to go back to before it: rollback db restore {name} --swap" in errors[0]
    journal = [json.loads(line) for line in live_db.journal_text().splitlines()]
    finished = [e for e in journal if e["event"] == "run_finished"]
    assert finished[-1]["status"] == "failed" and finished[-1]["exit_code"] == 1
    # the failed migration is paired with the backup too
    planned = run_cli("db", "restore", "--before-migration", "20261201000001_broken", "--dry-run", "--json")
    assert planned.code == 0 and planned.json()["plan"]["title"] == f"db restore {name}"


def test_an_unknown_command_does_nothing(run_cli: RunCli, live_db: LiveDb) -> None:
    result = run_cli("db", "guard", "--", "no-such-migrate-tool", "deploy")
    assert result.code == 2 and "cannot run 'no-such-migrate-tool'" in result.err
    assert not live_db.backups_dir.exists() or not list(live_db.backups_dir.iterdir())
    staged = run_cli("db", "guard", "--snapshot", "--stage", "--", *MIGRATE)
    assert staged.code == 2


def test_guard_can_stage_its_backup(run_cli: RunCli, live_db: LiveDb, migrations: Path) -> None:
    add_migration(migrations, "20261201000000_add_plan", 'ALTER TABLE "User" ADD COLUMN plan text;')
    result = run_cli("db", "guard", "--stage", "--json", "--", *MIGRATE)
    assert result.code == 0, result.err
    standby = next(s for s in result.json()["steps"] if s["id"] == "stage")["result"]["database"]
    planned = run_cli("db", "restore", "--before-migration", "20261201000000_add_plan", "--swap", "--dry-run",
                      "--json")
    assert planned.json()["steps"][0]["id"] == "check-standby"
    assert planned.json()["plan"]["steps"][0]["params"]["standby"] == standby
