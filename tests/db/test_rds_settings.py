"""A restore copies what the app depends on, against a moto server made as strict as RDS
(:mod:`rollback.sandbox.rds`).

RDS gives a restored instance its defaults for everything its restore call does not name: IAM
database authentication off ("By default, mapping is disabled", RestoreDBInstanceFromDBSnapshot),
no CloudWatch log exports, the region's default CA, no storage autoscaling; and the restore calls
have no parameter at all for Performance Insights or enhanced monitoring, which only
ModifyDBInstance sets. The port defaults to the source's ("Default: The same port as the original DB
instance").

Not part of the operator role's check (tests/infra_program/test_operator_role_vs_cli.py): copying enhanced
monitoring passes the source's monitoring role (iam:PassRole), and the stack declares no enhanced
monitoring, so its operator role does not grant that.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CliResult

RunCli = Callable[..., CliResult]
MONITORING_ROLE = "arn:aws:iam::123456789012:role/rds-monitoring-role"


@pytest.fixture
def tuned(aws_env: str, write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch,
          tmp_path: Path) -> dict[str, Any]:
    """An instance with every setting a restore does not carry over by itself."""
    import boto3

    client = boto3.client("rds", region_name="us-east-1")
    name = f"app-db-{secrets.token_hex(3)}"
    client.create_db_instance(
        DBInstanceIdentifier=name, DBInstanceClass="db.t3.micro", Engine="postgres", MasterUsername="app_admin",
        ManageMasterUserPassword=True, AllocatedStorage=20, BackupRetentionPeriod=7, Port=6432,
        EnableIAMDatabaseAuthentication=True, MaxAllocatedStorage=200, EnableCloudwatchLogsExports=["postgresql"],
        CACertificateIdentifier="rds-ca-ecc384-g1", MonitoringInterval=15, MonitoringRoleArn=MONITORING_ROLE,
        EnablePerformanceInsights=True, PerformanceInsightsRetentionPeriod=93)
    path = write_config({"test": {"aws": {"region": "us-east-1", "db_instance": name}}}, default_env="test",
                        journal_dir=str(tmp_path / "runs"))
    monkeypatch.setenv("ROLLBACK_CONFIG", str(path))
    monkeypatch.setenv("ROLLBACK_RDS_WAIT_DELAY", "1")
    return {"name": name, "client": client}


def _settings(instance: dict[str, Any]) -> dict[str, Any]:
    return {"iam": instance.get("IAMDatabaseAuthenticationEnabled"), "max": instance.get("MaxAllocatedStorage"),
            "pi": instance.get("PerformanceInsightsEnabled"),
            "pi_days": instance.get("PerformanceInsightsRetentionPeriod"),
            "interval": instance.get("MonitoringInterval"), "role": instance.get("MonitoringRoleArn"),
            "logs": instance.get("EnabledCloudwatchLogsExports"), "ca": instance.get("CACertificateIdentifier"),
            "port": instance["Endpoint"]["Port"],
            "secret": bool((instance.get("MasterUserSecret") or {}).get("SecretArn"))}


EXPECTED = {"iam": True, "max": 200, "pi": True, "pi_days": 93, "interval": 15, "role": MONITORING_ROLE,
            "logs": ["postgresql"], "ca": "rds-ca-ecc384-g1", "port": 6432, "secret": True}


def test_the_stand_in_gives_a_plain_restore_the_defaults(tuned: dict[str, Any]) -> None:
    """What a bare restore call gets on RDS: none of the source's settings above but the port."""
    client, name = tuned["client"], tuned["name"]
    assert _settings(client.describe_db_instances(DBInstanceIdentifier=name)["DBInstances"][0]) == EXPECTED
    bare = client.restore_db_instance_to_point_in_time(SourceDBInstanceIdentifier=name, UseLatestRestorableTime=True,
                                                       TargetDBInstanceIdentifier=f"{name}-bare")["DBInstance"]
    assert _settings(bare) == {"iam": False, "max": None, "pi": False, "pi_days": None, "interval": 0, "role": None,
                               "logs": [], "ca": "rds-ca-rsa2048-g1", "port": 6432, "secret": False}


@pytest.mark.parametrize("how", ["latest", "snapshot"])
def test_a_restore_copies_what_the_app_depends_on(run_cli: RunCli, tuned: dict[str, Any], how: str) -> None:
    client, name = tuned["client"], tuned["name"]
    target = f"{name}-r-{how}"
    if how == "snapshot":
        assert run_cli("db", "snapshot", "create", "--id", f"{name}-snap", "--wait", "--yes").code == 0
        args = ["--snapshot", f"{name}-snap"]
    else:
        args = ["--latest"]
    dry = run_cli("db", "rds-restore", *args, "--target", target, "--dry-run")
    assert dry.code == 0, dry.err
    for shown in ("IAM database authentication on", "CloudWatch log exports postgresql",
                  "CA certificate rds-ca-ecc384-g1", "port 6432", "storage autoscaling up to (GiB) 200",
                  "managed master password on", "Performance Insights (days) 93", "enhanced monitoring (s) 15"):
        assert shown in dry.err, (shown, dry.err)
    result = run_cli("db", "rds-restore", *args, "--target", target, "--wait", "--yes")
    assert result.code == 0, result.err
    restored = client.describe_db_instances(DBInstanceIdentifier=target)["DBInstances"][0]
    assert _settings(restored) == EXPECTED


def test_a_restore_without_wait_still_waits_for_what_it_must_turn_on(run_cli: RunCli,
                                                                    tuned: dict[str, Any]) -> None:
    """ModifyDBInstance is refused until the new instance is available: the settings step waits for it
    even without --wait, and says so."""
    client, name = tuned["client"], tuned["name"]
    result = run_cli("db", "rds-restore", "--latest", "--target", f"{name}-nowait", "--yes")
    assert result.code == 0, result.err
    assert f"waiting for {name}-nowait to become available before turning on" in result.err
    restored = client.describe_db_instances(DBInstanceIdentifier=f"{name}-nowait")["DBInstances"][0]
    assert restored["MasterUserSecret"]["SecretArn"] and restored["PerformanceInsightsEnabled"]
