"""A backup belongs to its database: two environments sharing one backups directory.

staging and production are two databases on the same server; their configs share
``backups_dir``. A backup records where it came from (server system identifier,
database name, host, port); ``latest`` means the newest backup of THIS database, and
another database's backup is refused unless ``--from-other-database`` is given.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CliResult, render_config
from tests.db.conftest import LiveDb, seeded_database

RunCli = Callable[..., CliResult]


@pytest.fixture
def staging(live_db: LiveDb, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A second database (staging) beside the live one (production), in one config, one backups dir."""
    name = f"stg{secrets.token_hex(4)}"
    seeded_database(live_db.pg, name)
    live_db.pg.execute('DELETE FROM "UserStats"', dbname=name, user="app")  # staging's data differs
    live_db.config_path.write_text(render_config({
        "production": {"database": {"url_env": "TEST_LIVE_DATABASE_URL", "backups_dir": "backups"}},
        "staging": {"database": {"url_env": "TEST_STAGING_DATABASE_URL", "backups_dir": "backups"}},
    }, default_env="production", journal_dir=str(live_db.journal_dir)))
    monkeypatch.setenv("TEST_STAGING_DATABASE_URL", live_db.pg.url(name, "app"))
    try:
        yield name
    finally:
        for database in live_db.pg.databases():  # staging and what rollback set aside beside it
            if database == name or database.startswith(name + "_"):
                live_db.pg.drop_database(database)


def one_line_error(result: CliResult, code: int, *needles: str) -> str:
    assert result.code == code, (result.code, result.out, result.err)
    lines = [line for line in result.err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in result.err, result.err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def backup(run_cli: RunCli, env: str) -> dict[str, Any]:
    result = run_cli("--env", env, "db", "backup", "--json")
    assert result.code == 0, result.err
    return dict(result.json()["backup"])


def test_production_restore_latest_refuses_a_staging_backup(run_cli: RunCli, live_db: LiveDb, staging: str) -> None:
    taken = backup(run_cli, "staging")
    assert taken["source"]["database"] == staging and taken["source"]["system_identifier"]
    before = live_db.databases()

    result = run_cli("--env", "production", "db", "restore", "latest", "--swap", "--yes")
    one_line_error(result, 4, f"no backups of this environment's database {live_db.name}", taken["name"],
                   f"is of database {staging}")
    named = run_cli("--env", "production", "db", "restore", taken["name"], "--swap", "--yes")
    one_line_error(named, 4, f"backup {taken['name']} was taken from database {staging}", "--from-other-database")
    assert live_db.databases() == before
    assert live_db.scalar('SELECT count(*) FROM "UserStats"') == 200  # production's data, untouched
    assert not list(live_db.backups_dir.glob(f"{live_db.name}-*"))  # not even an emergency backup

    # Asked for explicitly, it is allowed, and the plan says where the backup came from.
    allowed = run_cli("--env", "production", "db", "restore", taken["name"], "--from-other-database", "--dry-run",
                      "--json")
    assert allowed.code == 0, allowed.err
    notes = " ".join(allowed.json()["plan"]["notes"])
    assert f"from database {staging}" in notes and "ANOTHER database" in notes


def test_latest_is_the_newest_backup_of_this_database(run_cli: RunCli, live_db: LiveDb, staging: str) -> None:
    mine = backup(run_cli, "production")
    theirs = backup(run_cli, "staging")  # newer, but of another database
    planned = run_cli("--env", "production", "db", "restore", "latest", "--swap", "--dry-run", "--json")
    assert planned.code == 0, planned.err
    plan = planned.json()["plan"]
    assert plan["title"] == f"db restore {mine['name']} --swap"
    assert f"of database {live_db.name} on " in plan["steps"][0]["summary"]
    listed = {b["name"]: b for b in run_cli("--env", "production", "db", "backups", "--json").json()["backups"]}
    assert listed[mine["name"]]["this_database"] is True
    assert listed[theirs["name"]]["this_database"] is False


@pytest.mark.slow
def test_a_backup_of_a_same_named_database_on_another_server_is_refused(run_cli: RunCli, live_db: LiveDb,
                                                                         staging: str) -> None:
    taken = backup(run_cli, "production")
    path = Path(taken["manifest_path"])
    manifest = json.loads(path.read_text())
    manifest["source"]["system_identifier"] = "1234567890123456789"  # another cluster's, same database name
    path.write_text(json.dumps(manifest))
    result = run_cli("--env", "production", "db", "restore", "latest", "--dry-run")
    one_line_error(result, 4, "system 1234567890123456789")
    named = run_cli("--env", "production", "db", "restore", taken["name"], "--swap", "--yes")
    one_line_error(named, 4, "not from this environment's database")


def test_a_standby_of_another_database_is_never_cloned(run_cli: RunCli, live_db: LiveDb, staging: str) -> None:
    """Staging's standby holds staging's backup; production restoring that backup (--from-other-database) must
    load the dump, never clone a database rollback staged beside another live database."""
    staged = run_cli("--env", "staging", "db", "backup", "--stage", "--json")
    assert staged.code == 0, staged.err
    taken, standby = staged.json()["backup"]["name"], staged.json()["backup"]["standby"]
    assert standby.startswith(f"{staging}_standby_")

    planned = run_cli("--env", "production", "db", "restore", taken, "--from-other-database", "--swap", "--dry-run",
                      "--json")
    assert planned.code == 0, planned.err
    actions = [s["action"] for s in planned.json()["plan"]["steps"]]
    assert "db.clone_standby" not in actions and "db.restore_beside" in actions, actions
    assert standby not in planned.out

    restored = run_cli("--env", "production", "db", "restore", taken, "--from-other-database", "--swap", "--yes",
                       "--skip-emergency-backup", "--reason", "staging data into production")
    assert restored.code == 0, restored.err
    assert live_db.scalar('SELECT count(*) FROM "UserStats"') == 0  # staging's data, from its dump
    assert standby in live_db.pg.databases()  # staging's standby untouched
