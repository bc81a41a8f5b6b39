"""``db rpo``: the newest recovery point of each kind and its age, against the moto server's RDS and
local backups of different ages."""

from __future__ import annotations

import datetime as dt
import json
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import CliResult, render_config
from tests.db.conftest import LiveDb

RunCli = Callable[..., CliResult]


def configure(live_db: LiveDb, *, instance: str | None, rpo: float = 5) -> None:
    sections: dict[str, Any] = {"database": {"url_env": "TEST_LIVE_DATABASE_URL", "backups_dir": "backups"},
                                "targets": {"rpo": rpo}}
    if instance:
        sections["aws"] = {"region": "us-east-1", "db_instance": instance}
    live_db.config_path.write_text(render_config({"test": sections}, default_env="test",
                                                 journal_dir=str(live_db.journal_dir)))


def aged_backup(run_cli: RunCli, age: dt.timedelta) -> str:
    result = run_cli("db", "backup", "--json")
    assert result.code == 0, result.err
    path = Path(result.json()["backup"]["manifest_path"])
    manifest = json.loads(path.read_text())
    manifest["created_at"] = (dt.datetime.now(dt.UTC) - age).isoformat(timespec="seconds").replace("+00:00", "Z")
    path.write_text(json.dumps(manifest))
    return str(manifest["name"])


def points(result: CliResult) -> dict[str, dict[str, Any]]:
    return {p["kind"]: p for p in result.json()["points"]}


def test_rpo_names_the_newest_point_of_each_kind_with_its_age(run_cli: RunCli, live_db: LiveDb,
                                                              aws_env: str) -> None:
    import boto3

    instance = f"app-db-{secrets.token_hex(3)}"
    client = boto3.client("rds", region_name="us-east-1")
    client.create_db_instance(DBInstanceIdentifier=instance, DBInstanceClass="db.t3.micro", Engine="postgres",
                              MasterUsername="app", MasterUserPassword="not-a-real-secret", AllocatedStorage=20,
                              BackupRetentionPeriod=7)
    client.create_db_snapshot(DBSnapshotIdentifier=f"{instance}-older", DBInstanceIdentifier=instance)
    client.create_db_snapshot(DBSnapshotIdentifier=f"{instance}-newer", DBInstanceIdentifier=instance)
    configure(live_db, instance=instance)
    aged_backup(run_cli, dt.timedelta(hours=3))
    newer = aged_backup(run_cli, dt.timedelta(minutes=40))

    result = run_cli("db", "rpo", "--json")
    found = points(result)
    assert set(found) == {"logical backup", "RDS manual snapshot", "RDS automated snapshot",
                          "RDS point-in-time restore"}
    assert found["logical backup"]["name"] == newer
    assert 40 * 60 - 5 <= found["logical backup"]["age_seconds"] <= 40 * 60 + 120
    assert found["logical backup"]["within_target"] is False
    assert found["RDS manual snapshot"]["name"] == f"{instance}-newer"
    assert found["RDS automated snapshot"]["name"] is not None
    assert found["RDS point-in-time restore"]["name"] == instance and found["RDS point-in-time restore"]["at"]
    assert result.json()["target_seconds"] == 300
    within = [p for p in found.values() if p["within_target"]]
    assert result.code == (0 if within else 3) and result.json()["ok"] is bool(within)
    human = run_cli("db", "rpo")
    assert f"{instance}-newer" in human.out and "40 min" in human.out


def test_rpo_exits_3_when_no_point_is_within_the_target(run_cli: RunCli, live_db: LiveDb) -> None:
    configure(live_db, instance=None, rpo=10)
    empty = run_cli("db", "rpo", "--json")
    assert empty.code == 3 and "no verified backup" in points(empty)["logical backup"]["detail"]
    assert points(empty)["RDS manual snapshot"]["detail"] == "aws.db_instance is not set"
    aged_backup(run_cli, dt.timedelta(hours=2))
    stale = run_cli("db", "rpo")
    assert stale.code == 3 and "no recovery point is within the RPO target of 10 min 00 s" in stale.err
    assert "2 h 00 min" in stale.out
    fresh = run_cli("db", "backup")
    assert fresh.code == 0
    ok = run_cli("db", "rpo", "--json")
    assert ok.code == 0, ok.out
    assert points(ok)["logical backup"]["within_target"] is True
    assert ok.json()["newest"]["kind"] == "logical backup"


def test_rpo_counts_only_backups_of_this_database(run_cli: RunCli, live_db: LiveDb) -> None:
    configure(live_db, instance=None)
    name = aged_backup(run_cli, dt.timedelta(minutes=1))
    path = live_db.backups_dir / f"{name}.manifest.json"
    manifest = json.loads(path.read_text())
    manifest["source"]["database"] = manifest["database"] = "staging"
    path.write_text(json.dumps(manifest))
    result = run_cli("db", "rpo", "--json")
    assert result.code == 3 and points(result)["logical backup"]["name"] is None


def test_rpo_allows_for_the_lag_of_the_latest_restorable_time(run_cli: RunCli, live_db: LiveDb,
                                                              aws_env: str) -> None:
    """RDS ships transaction logs every five minutes: LatestRestorableTime is "typically within the last five
    minutes" (RDS User Guide), as the moto stand-in reports it (rollback.sandbox.rds). With a 5-minute RPO,
    a 7-minute-old point is normal operation; an 11-minute-old one means the log uploads fell behind."""
    import boto3
    from moto.rds.models import rds_backends

    instance = f"app-db-{secrets.token_hex(3)}"
    boto3.client("rds", region_name="us-east-1").create_db_instance(
        DBInstanceIdentifier=instance, DBInstanceClass="db.t3.micro", Engine="postgres", MasterUsername="app",
        MasterUserPassword="not-a-real-secret", AllocatedStorage=20, BackupRetentionPeriod=7)
    configure(live_db, instance=instance, rpo=5)
    moto_instance = rds_backends["123456789012"]["us-east-1"].databases[instance]
    for minutes, within in ((7, True), (11, False)):
        at = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(minutes=minutes)
        moto_instance._rollback_latest_restorable = at
        result = run_cli("db", "rpo", "--json")
        point = points(result)["RDS point-in-time restore"]
        assert point["within_target"] is within, point  # (moto's automated snapshot is new: exit 0 either way)
        assert "lag" in point["detail"]
