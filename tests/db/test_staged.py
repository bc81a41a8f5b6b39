"""Staged standbys: ``db backup --stage`` restores ahead of time; a restore of that backup is a file copy."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rollback.backups import load_manifest
from rollback.setaside import Mark
from tests.conftest import CliResult, next_wall_second
from tests.db.conftest import LiveDb

RunCli = Callable[..., CliResult]


def stage(run_cli: RunCli) -> dict[str, Any]:
    result = run_cli("db", "backup", "--stage", "--json")
    assert result.code == 0, result.err
    return dict(result.json()["backup"])


def catalog(live_db: LiveDb, name: str) -> tuple[bool, Mark | None] | None:
    rows = live_db.sql(f"SELECT datallowconn, shobj_description(oid, 'pg_database') FROM pg_database "
                       f"WHERE datname = '{name}'", dbname="postgres")
    return (bool(rows[0][0]), Mark.from_comment(rows[0][1])) if rows else None


def test_a_staged_backup_restores_by_cloning_its_standby(run_cli: RunCli, live_db: LiveDb) -> None:
    backup = stage(run_cli)
    standby = backup["standby"]
    assert standby.startswith(f"{live_db.name}_standby_")
    allows, mark = catalog(live_db, standby) or (None, None)
    assert allows is False and mark is not None and mark.role == "standby"
    assert mark.get("backup") == backup["name"] and mark.get("counts") == "match"
    listed = {b["name"]: b for b in run_cli("db", "backups", "--json").json()["backups"]}
    assert listed[backup["name"]]["staged"] == standby

    live_db.sql('DELETE FROM "Integration"; DROP TABLE "UserStats"')
    result = run_cli("db", "restore", backup["name"], "--swap", "--yes", "--json")
    assert result.code == 0, result.err
    steps = {s["id"]: s for s in result.json()["steps"]}
    # service first: the emergency backup is the safety dump of the copy the swap kept, after the swap
    assert list(steps) == ["check-standby", "check-rights", "restore", "check-counts", "swap", "emergency-backup"]
    assert steps["restore"]["result"]["standby"] == standby
    dump = load_manifest(Path(steps["emergency-backup"]["result"]["manifest_path"]))
    assert dump["dumped_from"] == steps["swap"]["result"]["set_aside"] and dump["kind"] == "emergency"
    assert {t["name"]: t["rows"] for t in dump["tables"]}.get("Integration") == 0  # the data before the restore
    assert "UserStats" not in {t["name"] for t in dump["tables"]}
    assert any("is staged" in n for n in result.json()["plan"]["notes"])
    assert live_db.scalar('SELECT count(*) FROM "Integration"') == 150
    assert live_db.scalar('SELECT count(*) FROM "UserStats"') == 200
    import psycopg

    with psycopg.connect(live_db.url) as conn:  # constraints and indexes came with the copy
        try:
            conn.execute("INSERT INTO \"User\"(email) VALUES ('user1@example.com')")
            raise AssertionError("the unique index is missing")
        except psycopg.errors.UniqueViolation:
            pass
    # the standby is kept for a second attempt, still closed
    assert (catalog(live_db, standby) or (None,))[0] is False
    owner = live_db.scalar(f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{live_db.name}'")
    assert owner == str(getattr(live_db.pg, "app_role", "app"))
    again = run_cli("db", "restore", backup["name"], "--dry-run", "--json")
    assert again.code == 0 and again.json()["steps"][0]["id"] == "check-standby"


def test_a_stale_standby_falls_back_to_the_dump(run_cli: RunCli, live_db: LiveDb) -> None:
    backup = stage(run_cli)
    standby = backup["standby"]
    live_db.sql(f'ALTER DATABASE "{standby}" ALLOW_CONNECTIONS true', dbname="postgres")
    planned = run_cli("db", "restore", backup["name"], "--swap", "--dry-run", "--json")
    assert planned.code == 0, planned.err
    doc = planned.json()
    assert doc["steps"][0]["id"] == "verify-backup"
    assert any(f"standby {standby} is stale: it takes connections" in n and "from the dump" in n
               for n in doc["plan"]["notes"])
    listed = {b["name"]: b for b in run_cli("db", "backups", "--json").json()["backups"]}
    assert listed[backup["name"]]["staged"] is None and "stale" in listed[backup["name"]]["standby_problem"]
    live_db.sql('DELETE FROM "UserStats"')
    done = run_cli("db", "restore", backup["name"], "--swap", "--yes", "--json")
    assert done.code == 0, done.err
    assert live_db.scalar('SELECT count(*) FROM "UserStats"') == 200


def test_a_standby_whose_counts_differ_from_the_manifest_is_not_used(run_cli: RunCli, live_db: LiveDb) -> None:
    backup = stage(run_cli)
    path = Path(backup["manifest_path"])
    manifest = json.loads(path.read_text())
    for table in manifest["tables"]:
        if table["name"] == "User":
            table["rows"] = 301
    path.write_text(json.dumps(manifest))
    result = run_cli("db", "restore", backup["name"], "--swap", "--yes")
    assert result.code == 3, result.err  # restored from the dump, whose counts then do not match either
    assert "counts differ from the backup's manifest" in result.err + result.out
    assert not [d for d in live_db.databases() if "_replaced_" in d]


def test_standbys_are_bounded_by_keep_standbys_and_pruned(run_cli: RunCli, live_db: LiveDb) -> None:
    first = stage(run_cli)["standby"]
    next_wall_second()  # standby names carry the second
    second = stage(run_cli)
    assert second["dropped_standbys"] == [first]  # keep_standbys = 1 by default
    assert [d for d in live_db.databases() if "_standby_" in d] == [second["standby"]]
    planned = run_cli("db", "prune", "--dry-run", "--json")
    assert planned.code == 0 and "plan" not in planned.json()  # the newest standby is kept
    pruned = run_cli("db", "prune", "--keep-standbys", "0", "--yes", "--json")
    assert pruned.code == 0, pruned.err
    assert live_db.databases() == [live_db.name]
    listed = run_cli("db", "backups", "--json").json()["backups"]
    assert all(b["staged"] is None for b in listed)


def test_a_standby_that_went_away_after_planning_stops_the_restore_before_anything(run_cli: RunCli,
                                                                                     live_db: LiveDb) -> None:
    """The standby is chosen when the restore is planned and checked again when it runs (``db.check_standby``):
    one dropped (or gone stale) in between stops the run before any database is made or swapped, saying to plan
    again; a clone of a database that is not the fresh standby of this backup is never made."""
    import pytest

    from rollback.commands.db import restore as db_restore
    from rollback.commands.db.handlers import DbHandlers, run
    from rollback.context import Services
    from rollback.errors import UnsafePrecondition

    backup = stage(run_cli)
    config = live_db.config()
    services = Services(config)
    plan = db_restore.plan_restore(config, backup["name"], swap=True, services=services)
    assert plan.steps[0].action == "db.check_standby"
    live_db.sql('DELETE FROM "Integration"')
    live_db.sql(f'DROP DATABASE "{backup["standby"]}"', dbname="postgres")
    with pytest.raises(UnsafePrecondition, match="the standby chosen when planning is no longer usable"):
        run(config, plan, handlers=DbHandlers(services))
    made = live_db.sql(f"SELECT datname FROM pg_database WHERE datname LIKE '{live_db.name}\\_restore\\_%' "
                       f"OR datname LIKE '{live_db.name}\\_replaced\\_%'", dbname="postgres")
    assert made == []
    assert live_db.scalar('SELECT count(*) FROM "Integration"') == 0  # live untouched
