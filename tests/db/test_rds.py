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

from rollback.commands.db import rds as db_rds
from rollback.context import Services
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


# Names follow the stack's convention, <instance>-...: the operator role may only create and restore
# snapshots and instances named from the base instance (tests/infra_program/test_operator_role_vs_cli.py).


def test_snapshots_lists_manual_and_automated_with_the_window(run_cli: RunCli, rds_instance: dict[str, Any]) -> None:
    snapshot = f"{rds_instance['name']}-before-migration"
    unconfirmed = run_cli("db", "snapshot", "create", "--id", snapshot)
    one_line_error(unconfirmed, 4, "without confirmation")
    created = run_cli("db", "snapshot", "create", "--id", snapshot, "--wait", "--json", "--yes")
    assert created.code == 0, created.err
    assert created.json()["steps"][0]["result"]["status"] == "available"
    result = run_cli("db", "snapshots", "--json")
    assert result.code == 0, result.err
    doc = result.json()
    types = {s["type"] for s in doc["snapshots"]}
    assert types == {"manual", "automated"}
    assert snapshot in {s["id"] for s in doc["snapshots"]}
    assert doc["instance"]["latest_restorable_time"] is not None
    assert doc["instance"]["earliest_restorable_time"] <= doc["instance"]["latest_restorable_time"]
    again = run_cli("db", "snapshot", "create", "--id", snapshot, "--yes")
    one_line_error(again, 4, "already exists")
    human = run_cli("db", "snapshots")
    assert human.code == 0 and snapshot in human.out


def test_restore_from_a_snapshot_into_a_new_instance(run_cli: RunCli, rds_instance: dict[str, Any]) -> None:
    snapshot = f"{rds_instance['name']}-snap1"
    run_cli("db", "snapshot", "create", "--id", snapshot, "--yes")
    target = f"{rds_instance['name']}-restored"
    result = run_cli("db", "rds-restore", "--snapshot", snapshot, "--target", target, "--wait", "--yes")
    assert result.code == 0, result.err
    assert f"{target}." in result.out  # the endpoint
    assert target in instances(rds_instance["client"])
    source = rds_instance["client"].describe_db_instances(DBInstanceIdentifier=rds_instance["name"])
    assert source["DBInstances"][0]["DBInstanceStatus"] == "available"  # untouched
    exists = run_cli("db", "rds-restore", "--snapshot", snapshot, "--target", target, "--yes")
    one_line_error(exists, 4, f"{target} already exists")
    missing = run_cli("db", "rds-restore", "--snapshot", "nope", "--target", target + "2", "--yes")
    one_line_error(missing, 2, "no DB snapshot nope")


def test_point_in_time_restore_is_validated_before_aws(run_cli: RunCli, rds_instance: dict[str, Any]) -> None:
    client = rds_instance["client"]
    name = rds_instance["name"]
    before = instances(client)
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)).isoformat().replace("+00:00", "Z")
    too_late = run_cli("db", "rds-restore", "--to-time", future, "--target", f"{name}-pitr-future", "--yes")
    one_line_error(too_late, 2, "outside", "restorable window")
    too_early = run_cli("db", "rds-restore", "--to-time", "30d ago", "--target", f"{name}-pitr-early", "--yes")
    one_line_error(too_early, 2, "outside")
    assert instances(client) == before
    both = run_cli("db", "rds-restore", "--latest", "--snapshot", "x", "--target", "t", "--yes")
    one_line_error(both, 2, "exactly one")
    latest = run_cli("db", "rds-restore", "--latest", "--target", f"{name}-pitr-latest", "--wait", "--json", "--yes")
    assert latest.code == 0, latest.err
    assert latest.json()["instance"]["endpoint"]
    window = client.describe_db_instances(DBInstanceIdentifier=rds_instance["name"])["DBInstances"][0]
    inside = window["LatestRestorableTime"].astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    at_time = run_cli("db", "rds-restore", "--to-time", inside, "--target", f"{name}-pitr-time", "--yes")
    assert at_time.code == 0, at_time.err
    assert {f"{name}-pitr-latest", f"{name}-pitr-time"} <= instances(client)
    dry = run_cli("db", "rds-restore", "--latest", "--target", f"{name}-pitr-dry", "--dry-run")
    assert dry.code == 0 and f"{name}-pitr-dry" not in instances(client)


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
    from rollback.config import load_config
    from rollback.errors import UnsafePrecondition

    config = load_config(write_config({"test": {"aws": {"db_instance": "app-db"}}}))
    with pytest.raises(UnsafePrecondition, match="is creating, not available"):
        db_rds.plan_rds_restore(config, snapshot="s1", target="new",
                                  services=Services(config, rds=FakeRds()))  # type: ignore[arg-type]


@pytest.mark.parametrize("args", [("db", "snapshots"), ("db", "snapshot", "create", "--id", "x"),
                                  ("db", "rds-restore", "--latest", "--target", "copy")])
def test_an_unreachable_endpoint_is_one_line(run_cli: RunCli, rds_instance: dict[str, Any],
                                             monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...]) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    result = run_cli(*args)
    one_line_error(result, 1, "describing")
    assert "Could not connect to the endpoint URL" in result.err


@pytest.mark.parametrize("how", ["snapshot", "latest"])
def test_a_restore_copies_the_sources_settings_and_names_the_alarm_pin(
        run_cli: RunCli, aws_env: str, write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path, how: str) -> None:
    """Without them RDS gives a restore the account's defaults: no deletion protection, one AZ,
    default groups, one day of backups (so no point-in-time restore of the copy for a week)."""
    import boto3

    client = boto3.client("rds", region_name="us-east-1")
    name = f"app-db-{secrets.token_hex(3)}"
    client.create_db_parameter_group(DBParameterGroupName=f"{name}-pg13", DBParameterGroupFamily="postgres13",
                                     Description="TLS required")
    # moto knows option groups up to PostgreSQL 13 only.
    client.create_option_group(OptionGroupName=f"{name}-og", EngineName="postgres", MajorEngineVersion="13",
                               OptionGroupDescription="options")
    client.create_db_instance(DBInstanceIdentifier=name, DBInstanceClass="db.t3.micro", Engine="postgres",
                              EngineVersion="13.7", MasterUsername="app", MasterUserPassword="not-a-real-secret",
                              AllocatedStorage=20, BackupRetentionPeriod=14, MultiAZ=True, DeletionProtection=True,
                              DBParameterGroupName=f"{name}-pg13", OptionGroupName=f"{name}-og",
                              Tags=[{"Key": "team", "Value": "payments"}, {"Key": "stack", "Value": "production"}])
    path = write_config({"test": {"aws": {"region": "us-east-1", "db_instance": name},
                                  "pulumi": {"stack": "production"}}},
                        default_env="test", journal_dir=str(tmp_path / "runs"))
    monkeypatch.setenv("ROLLBACK_CONFIG", str(path))
    monkeypatch.setenv("ROLLBACK_RDS_WAIT_DELAY", "1")
    target = f"{name}-restored"
    if how == "snapshot":
        assert run_cli("db", "snapshot", "create", "--id", f"{name}-snap", "--wait", "--yes").code == 0
        result = run_cli("db", "rds-restore", "--snapshot", f"{name}-snap", "--target", target, "--wait", "--yes")
    else:
        result = run_cli("db", "rds-restore", "--latest", "--target", target, "--wait", "--yes")
    assert result.code == 0, result.err
    restored = client.describe_db_instances(DBInstanceIdentifier=target)["DBInstances"][0]
    assert restored["MultiAZ"] is True and restored["DeletionProtection"] is True
    assert restored["BackupRetentionPeriod"] == 14
    assert [g["DBParameterGroupName"] for g in restored["DBParameterGroups"]] == [f"{name}-pg13"]
    assert [g["OptionGroupName"] for g in restored["OptionGroupMemberships"]] == [f"{name}-og"]
    listed = client.list_tags_for_resource(ResourceName=restored["DBInstanceArn"])["TagList"]
    tags = {t["Key"]: t["Value"] for t in listed}
    assert tags == {"team": "payments", "stack": "production", "rollback:restored-from": name}
    # The plan said what it copies and how to point the rollback alarms at the new instance.
    assert f"copied from {name}: parameter group {name}-pg13, option group {name}-og, Multi-AZ True" in result.err
    assert (f"pulumi config set rollback:dbAlarmInstanceId {target} --stack production; "
            "pulumi up --stack production") in result.err


def _managed_instance(client: Any, name: str, **extra: Any) -> dict[str, Any]:
    client.create_db_instance(DBInstanceIdentifier=name, DBInstanceClass="db.t3.micro", Engine="postgres",
                              MasterUsername="app_admin", ManageMasterUserPassword=True, AllocatedStorage=20,
                              BackupRetentionPeriod=7, **extra)
    found: dict[str, Any] = client.describe_db_instances(DBInstanceIdentifier=name)["DBInstances"][0]
    return found


def _rds_config(write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                name: str) -> None:
    path = write_config({"test": {"aws": {"region": "us-east-1", "db_instance": name}}}, default_env="test",
                        journal_dir=str(tmp_path / "runs"))
    monkeypatch.setenv("ROLLBACK_CONFIG", str(path))
    monkeypatch.setenv("ROLLBACK_RDS_WAIT_DELAY", "1")


def test_the_stand_in_refuses_a_managed_password_on_a_restore(aws_env: str) -> None:
    """As the API reference of RestoreDBInstanceFromDBSnapshot and RestoreDBInstanceToPointInTime says of
    ManageMasterUserPassword: "Applies to RDS for Oracle only" (and terraform-provider-aws #31509: no effect
    on a PostgreSQL restore). A restored instance has no managed secret, is 'creating' before it is
    'available', and refuses ModifyDBInstance until then (InvalidDBInstanceState)."""
    import boto3
    from botocore.exceptions import ClientError

    client = boto3.client("rds", region_name="us-east-1")
    name = f"app-db-{secrets.token_hex(3)}"
    source = _managed_instance(client, name)
    assert source["MasterUserSecret"]["SecretArn"]
    with pytest.raises(ClientError, match="Oracle only"):
        client.restore_db_instance_to_point_in_time(SourceDBInstanceIdentifier=name, UseLatestRestorableTime=True,
                                                    TargetDBInstanceIdentifier=f"{name}-r0",
                                                    ManageMasterUserPassword=True)
    restored = client.restore_db_instance_to_point_in_time(
        SourceDBInstanceIdentifier=name, TargetDBInstanceIdentifier=f"{name}-r1",
        UseLatestRestorableTime=True)["DBInstance"]
    assert restored["DBInstanceStatus"] == "creating" and "MasterUserSecret" not in restored
    with pytest.raises(ClientError, match="not in available state"):
        client.modify_db_instance(DBInstanceIdentifier=f"{name}-r1", ManageMasterUserPassword=True,
                                  ApplyImmediately=True)


@pytest.mark.slow
def test_restore_of_a_managed_password_instance_gets_its_own_secret(
        run_cli: RunCli, aws_env: str, write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    """The restore goes without ManageMasterUserPassword (RDS: "Applies to RDS for Oracle only"), waits until
    the new instance is available, then ModifyDBInstance(ManageMasterUserPassword=True, ApplyImmediately=True)
    with the source's KMS key: the new instance has a managed secret of its own."""
    import boto3

    client = boto3.client("rds", region_name="us-east-1")
    name = f"app-db-{secrets.token_hex(3)}"
    source = _managed_instance(client, name)
    _rds_config(write_config, monkeypatch, tmp_path, name)
    dry = run_cli("db", "rds-restore", "--latest", "--target", f"{name}-r1", "--dry-run", "--json")
    assert dry.code == 0, dry.err
    steps = [s["id"] for s in dry.json()["steps"]]
    assert steps == ["rds-restore", "rds-settings"]
    assert "managed master password" in dry.json()["plan"]["steps"][1]["summary"]
    result = run_cli("db", "rds-restore", "--latest", "--target", f"{name}-r1", "--wait", "--yes", "--json")
    assert result.code == 0, result.err
    restored = client.describe_db_instances(DBInstanceIdentifier=f"{name}-r1")["DBInstances"][0]
    secret = restored["MasterUserSecret"]
    assert secret["SecretArn"] and secret["SecretArn"] != source["MasterUserSecret"]["SecretArn"]
    assert secret["KmsKeyId"] == source["MasterUserSecret"]["KmsKeyId"]
    assert restored["DBInstanceStatus"] == "available"
    assert result.json()["instance"]["master_secret_arn"] == secret["SecretArn"]
    # from a snapshot too
    assert run_cli("db", "snapshot", "create", "--id", f"{name}-snap", "--wait", "--yes").code == 0
    snap = run_cli("db", "rds-restore", "--snapshot", f"{name}-snap", "--target", f"{name}-r2", "--wait", "--yes")
    assert snap.code == 0, snap.err
    assert client.describe_db_instances(DBInstanceIdentifier=f"{name}-r2")["DBInstances"][0]["MasterUserSecret"]
