"""RDS snapshots and restores against the moto server (real HTTP, real boto3 waiters).

moto does not check point-in-time bounds, so these tests prove that ours do,
before any call that changes state.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CliResult
from tests.db.test_backup_restore import one_line_error

RunCli = Callable[..., CliResult]


@pytest.fixture
def rds_instance(aws_env: str, write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch,
                 tmp_path: Path) -> dict[str, Any]:
    import boto3

    name = f"app-db-{secrets.token_hex(3)}"
    client = boto3.client("rds", region_name="us-east-1")
    client.create_db_instance(DBInstanceIdentifier=name, DBInstanceClass="db.t3.micro", Engine="postgres",
                              MasterUsername="app", MasterUserPassword="not-a-real-secret", AllocatedStorage=20,
                              BackupRetentionPeriod=7)
    path = write_config({"test": {"aws": {"region": "us-east-1", "db_instance": name}}}, default_env="test",
                        journal_dir=str(tmp_path / "runs"))
    monkeypatch.setenv("ROLLBACK_CONFIG", str(path))
    monkeypatch.setenv("ROLLBACK_RDS_WAIT_DELAY", "1")
    monkeypatch.delenv("ROLLBACK_JOURNAL_DIR", raising=False)
    return {"name": name, "client": client}


def instances(client: Any) -> set[str]:
    return {i["DBInstanceIdentifier"] for i in client.describe_db_instances()["DBInstances"]}


def test_snapshots_lists_manual_and_automated_with_the_window(run_cli: RunCli, rds_instance: dict[str, Any]) -> None:
    unconfirmed = run_cli("db", "snapshot", "create", "--id", "before-migration")
    one_line_error(unconfirmed, 4, "without confirmation")
    created = run_cli("db", "snapshot", "create", "--id", "before-migration", "--wait", "--json", "--yes")
    assert created.code == 0, created.err
    assert created.json()["steps"][0]["result"]["status"] == "available"
    result = run_cli("db", "snapshots", "--json")
    assert result.code == 0, result.err
    doc = result.json()
    types = {s["type"] for s in doc["snapshots"]}
    assert types == {"manual", "automated"}
    assert "before-migration" in {s["id"] for s in doc["snapshots"]}
    assert doc["instance"]["latest_restorable_time"] is not None
    assert doc["instance"]["earliest_restorable_time"] <= doc["instance"]["latest_restorable_time"]
    again = run_cli("db", "snapshot", "create", "--id", "before-migration", "--yes")
    one_line_error(again, 4, "already exists")
    human = run_cli("db", "snapshots")
    assert human.code == 0 and "before-migration" in human.out


def test_restore_from_a_snapshot_into_a_new_instance(run_cli: RunCli, rds_instance: dict[str, Any]) -> None:
    run_cli("db", "snapshot", "create", "--id", "snap1", "--yes")
    target = f"{rds_instance['name']}-restored"
    result = run_cli("db", "rds-restore", "--snapshot", "snap1", "--target", target, "--wait", "--yes")
    assert result.code == 0, result.err
    assert f"{target}." in result.out  # the endpoint
    assert target in instances(rds_instance["client"])
    source = rds_instance["client"].describe_db_instances(DBInstanceIdentifier=rds_instance["name"])
    assert source["DBInstances"][0]["DBInstanceStatus"] == "available"  # untouched
    exists = run_cli("db", "rds-restore", "--snapshot", "snap1", "--target", target, "--yes")
    one_line_error(exists, 4, f"{target} already exists")
    missing = run_cli("db", "rds-restore", "--snapshot", "nope", "--target", target + "2", "--yes")
    one_line_error(missing, 2, "no DB snapshot nope")


def test_point_in_time_restore_is_validated_before_aws(run_cli: RunCli, rds_instance: dict[str, Any]) -> None:
    client = rds_instance["client"]
    before = instances(client)
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)).isoformat().replace("+00:00", "Z")
    too_late = run_cli("db", "rds-restore", "--to-time", future, "--target", "pitr-future", "--yes")
    one_line_error(too_late, 2, "outside", "restorable window")
    too_early = run_cli("db", "rds-restore", "--to-time", "30d ago", "--target", "pitr-early", "--yes")
    one_line_error(too_early, 2, "outside")
    assert instances(client) == before
    both = run_cli("db", "rds-restore", "--latest", "--snapshot", "x", "--target", "t", "--yes")
    one_line_error(both, 2, "exactly one")
    latest = run_cli("db", "rds-restore", "--latest", "--target", "pitr-latest", "--wait", "--json", "--yes")
    assert latest.code == 0, latest.err
    assert latest.json()["instance"]["endpoint"]
    window = client.describe_db_instances(DBInstanceIdentifier=rds_instance["name"])["DBInstances"][0]
    inside = window["LatestRestorableTime"].astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    at_time = run_cli("db", "rds-restore", "--to-time", inside, "--target", "pitr-time", "--yes")
    assert at_time.code == 0, at_time.err
    assert {"pitr-latest", "pitr-time"} <= instances(client)
    dry = run_cli("db", "rds-restore", "--latest", "--target", "pitr-dry", "--dry-run")
    assert dry.code == 0 and "pitr-dry" not in instances(client)


def test_unknown_instance_is_bad_input(run_cli: RunCli, rds_instance: dict[str, Any]) -> None:
    one_line_error(run_cli("db", "snapshots", "--instance", "nope"), 2, "no DB instance nope")


class FakeRds:
    """Only for states moto cannot produce (a snapshot still being created)."""

    def instance_exists(self, name: str) -> bool:
        return False

    def snapshot(self, snapshot_id: str) -> Any:
        from rollback.adapters.rds import DbSnapshot

        return DbSnapshot(snapshot_id, "app-db", "manual", "creating", None, "postgres", 20)


def test_a_snapshot_not_yet_available_is_refused(tmp_path: Path, write_config: Callable[..., Path]) -> None:
    from rollback.commands import db as commands
    from rollback.config import load_config
    from rollback.errors import UnsafePrecondition

    config = load_config(write_config({"test": {"aws": {"db_instance": "app-db"}}}))
    with pytest.raises(UnsafePrecondition, match="is creating, not available"):
        commands.plan_rds_restore(config, snapshot="s1", target="new", rds=FakeRds())  # type: ignore[arg-type]


@pytest.mark.parametrize("args", [("db", "snapshots"), ("db", "snapshot", "create", "--id", "x"),
                                  ("db", "rds-restore", "--latest", "--target", "copy")])
def test_an_unreachable_endpoint_is_one_line(run_cli: RunCli, rds_instance: dict[str, Any],
                                             monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...]) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    result = run_cli(*args)
    one_line_error(result, 1, "describing")
    assert "Could not connect to the endpoint URL" in result.err
