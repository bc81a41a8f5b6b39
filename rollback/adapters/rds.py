"""Amazon RDS: snapshots, point-in-time windows and restores into NEW instances.

Nothing here deletes or modifies a source instance or snapshot: the only
mutating calls are ``create_db_snapshot``, the two ``restore_*`` calls, which
create a new instance, and ``modify_db_instance`` of that new instance (what no
restore call can set: see :class:`RestoreSettings`). Waiting uses boto3's
waiters. boto3 is imported lazily (through :mod:`rollback.adapters.aws`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rollback.adapters.aws import aws_errors
from rollback.errors import AwsError, BadInput
from rollback.lock import pause

if TYPE_CHECKING:
    from rollback.config import Config

__all__ = ["RESTORED_FROM_TAG", "DbInstance", "DbSnapshot", "RdsAdapter", "RestoreSettings", "alarm_pin_lines",
           "resolve_instance", "settings_in_effect"]

RESTORED_FROM_TAG = "rollback:restored-from"


def _iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z") if value else None


def _utc(value: Any) -> dt.datetime | None:
    if not isinstance(value, dt.datetime):
        return None
    return value.astimezone(dt.UTC) if value.tzinfo else value.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class DbSnapshot:
    id: str
    instance: str
    type: str
    status: str
    created: dt.datetime | None
    engine: str | None
    allocated_gb: int | None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "instance": self.instance, "type": self.type, "status": self.status,
                "created": _iso(self.created), "engine": self.engine, "allocated_gb": self.allocated_gb}


@dataclass(frozen=True)
class DbInstance:
    id: str
    status: str
    engine: str | None
    instance_class: str | None
    endpoint: str | None
    port: int | None
    retention_days: int
    earliest_restorable: dt.datetime | None
    latest_restorable: dt.datetime | None
    master_secret_arn: str | None = None  # the master password RDS manages in Secrets Manager
    master_username: str | None = None
    db_name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, "engine": self.engine, "instance_class": self.instance_class,
                "endpoint": self.endpoint, "port": self.port, "backup_retention_days": self.retention_days,
                "earliest_restorable_time": _iso(self.earliest_restorable),
                "latest_restorable_time": _iso(self.latest_restorable), "master_secret_arn": self.master_secret_arn,
                "master_username": self.master_username, "db_name": self.db_name}


@dataclass(frozen=True)
class RestoreSettings:
    """What a new instance takes from its source so that the app finds it as it was.

    ``at_restore``: parameters of the restore call itself. ``after``: ``ModifyDBInstance``
    parameters for what no restore call can set, applied once the new instance is
    ``available``: the managed master password (``ManageMasterUserPassword`` "applies to RDS
    for Oracle only" on the restore calls), Performance Insights, enhanced monitoring, and for a
    snapshot restore storage autoscaling. ``copied``: what the plan lists (label -> value).
    """

    at_restore: dict[str, Any]
    after: dict[str, Any]
    copied: dict[str, str]

    def after_labels(self) -> list[str]:
        return after_labels(self.after)


def after_labels(after: dict[str, Any]) -> list[str]:
    """``ModifyDBInstance`` parameters (of :attr:`RestoreSettings.after`) as the plan shows them."""
    labels = []
    if after.get("ManageMasterUserPassword"):
        key = after.get("MasterUserSecretKmsKeyId")
        labels.append("managed master password (Secrets Manager" + (f", KMS key {key})" if key else ")"))
    if after.get("EnablePerformanceInsights"):
        labels.append(f"Performance Insights ({after.get('PerformanceInsightsRetentionPeriod') or 7} days)")
    if after.get("MonitoringInterval"):
        labels.append(f"enhanced monitoring every {after['MonitoringInterval']} s "
                      f"(role {after.get('MonitoringRoleArn')})")
    if after.get("MaxAllocatedStorage"):
        labels.append(f"storage autoscaling up to {after['MaxAllocatedStorage']} GiB")
    return labels


def settings_in_effect(raw: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """The labels of ``after`` (ModifyDBInstance parameters) not yet in effect on ``raw`` (a DBInstance)."""
    missing = []
    if after.get("ManageMasterUserPassword") and not (raw.get("MasterUserSecret") or {}).get("SecretArn"):
        missing.append("managed master password")
    if after.get("EnablePerformanceInsights") and not (
            raw.get("PerformanceInsightsEnabled")
            and raw.get("PerformanceInsightsRetentionPeriod") == after.get("PerformanceInsightsRetentionPeriod")):
        missing.append("Performance Insights")
    if after.get("MonitoringInterval") and not (
            raw.get("MonitoringInterval") == after["MonitoringInterval"]
            and raw.get("MonitoringRoleArn") == after.get("MonitoringRoleArn")):
        missing.append("enhanced monitoring")
    if after.get("MaxAllocatedStorage") and raw.get("MaxAllocatedStorage") != after["MaxAllocatedStorage"]:
        missing.append("storage autoscaling")
    return missing


class RdsAdapter:
    """RDS through one boto3 client."""

    def __init__(self, client: Any, *, waiter_delay: int = 15, waiter_max_attempts: int = 120,
                 sleep: Callable[[float], None] = pause) -> None:
        self.client = client
        self.waiter_delay = waiter_delay
        self.waiter_max_attempts = waiter_max_attempts
        # Between two polls of a wait (up to 30 min): the default stops it when the team lease is lost.
        self.sleep = sleep

    def _describe(self, instance: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        # Inside aws_errors: no credentials or an unreachable endpoint is one line, not a traceback.
        with aws_errors(f"describing DB instance {instance}"):
            try:
                found = self.client.describe_db_instances(DBInstanceIdentifier=instance)["DBInstances"]
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "DBInstanceNotFound":
                    return None
                raise
        return dict(found[0]) if found else None

    def instance_exists(self, instance: str) -> bool:
        return self._describe(instance) is not None

    def instance(self, instance: str) -> DbInstance:
        raw = self._describe(instance)
        if raw is None:
            raise BadInput(f"no DB instance {instance}", "check aws.db_instance in rollback.toml or --instance")
        return self._instance(raw)

    def _instance(self, raw: dict[str, Any]) -> DbInstance:
        name = str(raw["DBInstanceIdentifier"])
        retention = int(raw.get("BackupRetentionPeriod") or 0)
        latest = _utc(raw.get("LatestRestorableTime"))
        earliest = self._earliest_restorable(name, raw, retention) if retention and latest else None
        endpoint = raw.get("Endpoint") or {}
        secret = (raw.get("MasterUserSecret") or {}).get("SecretArn")
        return DbInstance(name, str(raw.get("DBInstanceStatus", "unknown")), raw.get("Engine"),
                          raw.get("DBInstanceClass"), endpoint.get("Address"),
                          int(endpoint["Port"]) if endpoint.get("Port") else None, retention, earliest, latest,
                          str(secret) if secret else None, raw.get("MasterUsername"), raw.get("DBName"))

    def _earliest_restorable(self, name: str, raw: dict[str, Any], retention: int) -> dt.datetime | None:
        """The automated backups' RestoreWindow when reported; else the retention period
        back from now, but not before the instance existed."""
        from botocore.exceptions import ClientError

        with aws_errors(f"describing the automated backups of {name}"):
            try:
                backups = self.client.describe_db_instance_automated_backups(DBInstanceIdentifier=name)
            except ClientError:  # not every endpoint implements it; fall back to the retention period
                backups = {}
        for item in backups.get("DBInstanceAutomatedBackups", []):
            window = item.get("RestoreWindow") or {}
            if window.get("EarliestTime"):
                return _utc(window["EarliestTime"])
        floor = dt.datetime.now(dt.UTC) - dt.timedelta(days=retention)
        created = _utc(raw.get("InstanceCreateTime"))
        return max(floor, created) if created else floor

    def _snapshot(self, raw: dict[str, Any]) -> DbSnapshot:
        return DbSnapshot(str(raw["DBSnapshotIdentifier"]), str(raw.get("DBInstanceIdentifier", "")),
                          str(raw.get("SnapshotType", "")), str(raw.get("Status", "")),
                          _utc(raw.get("SnapshotCreateTime")), raw.get("Engine"), raw.get("AllocatedStorage"))

    def snapshots(self, instance: str) -> list[DbSnapshot]:
        """Manual and automated snapshots of ``instance``, newest first."""
        out: list[DbSnapshot] = []
        with aws_errors(f"listing snapshots of {instance}"):
            paginator = self.client.get_paginator("describe_db_snapshots")
            for page in paginator.paginate(DBInstanceIdentifier=instance):
                out += [self._snapshot(s) for s in page.get("DBSnapshots", [])]
        out.sort(key=lambda s: s.created or dt.datetime.min.replace(tzinfo=dt.UTC), reverse=True)
        return out

    def snapshot(self, snapshot_id: str) -> DbSnapshot | None:
        from botocore.exceptions import ClientError

        with aws_errors(f"describing snapshot {snapshot_id}"):
            try:
                found = self.client.describe_db_snapshots(DBSnapshotIdentifier=snapshot_id)["DBSnapshots"]
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "DBSnapshotNotFound":
                    return None
                raise
        return self._snapshot(found[0]) if found else None

    def create_snapshot(self, instance: str, snapshot_id: str) -> DbSnapshot:
        with aws_errors(f"creating snapshot {snapshot_id} of {instance}"):
            raw = self.client.create_db_snapshot(DBSnapshotIdentifier=snapshot_id, DBInstanceIdentifier=instance)
        return self._snapshot(raw["DBSnapshot"])

    def _wait(self, name: str, **kwargs: Any) -> None:
        from botocore.exceptions import WaiterError

        # One poll per waiter call (botocore's acceptors judge it), our own pause between polls: a wait
        # of many minutes stops at its next poll when the team lease is lost (rollback.lock.pause).
        waiter = self.client.get_waiter(name)
        for attempt in range(1, max(1, self.waiter_max_attempts) + 1):
            with aws_errors(f"waiting ({name})", "check the AWS console; the operation may still finish"):
                try:
                    waiter.wait(**kwargs, WaiterConfig={"Delay": max(1, self.waiter_delay), "MaxAttempts": 1})
                    return
                except WaiterError as exc:
                    if "Max attempts exceeded" not in str(exc) or attempt >= self.waiter_max_attempts:
                        raise AwsError(f"waiting ({name}) failed: {' '.join(str(exc).split())}",
                                       "check the AWS console; the operation may still finish") from exc
            self.sleep(self.waiter_delay)

    def wait_snapshot(self, snapshot_id: str) -> DbSnapshot:
        self._wait("db_snapshot_available", DBSnapshotIdentifier=snapshot_id)
        found = self.snapshot(snapshot_id)
        assert found is not None
        return found

    def wait_instance(self, instance: str) -> DbInstance:
        self._wait("db_instance_available", DBInstanceIdentifier=instance)
        return self.instance(instance)

    def raw_instance(self, instance: str) -> dict[str, Any] | None:
        """DescribeDBInstances' record of ``instance`` (None when there is none)."""
        return self._describe(instance)

    def restore_settings(self, source: str | None, *, to_time: bool = False) -> RestoreSettings:
        """What a restore copies from ``source`` (``to_time``: a point-in-time restore, whose call takes
        ``MaxAllocatedStorage``; a snapshot restore's does not).

        At the restore: network and size, parameter and option groups, Multi-AZ, deletion
        protection, backup retention (so point-in-time restore keeps working on the copy), IAM
        database authentication, CloudWatch log exports, the CA certificate, the port, and tags
        (plus one naming the source). RDS would otherwise give a restore the account's defaults: no
        deletion protection, a single AZ, default groups, one day of backups, no IAM authentication
        (the app's IAM tokens fail), the region's default CA (a client pinning the old CA fails), no
        log exports. After it (:attr:`RestoreSettings.after`): the managed master password with the
        source's KMS key, Performance Insights and its retention, enhanced monitoring (interval and
        role), storage autoscaling for a snapshot restore.
        """
        raw = self._describe(source) if source else None
        if raw is None:
            return RestoreSettings({}, {}, {})
        out: dict[str, Any] = {}
        after: dict[str, Any] = {}
        copied: dict[str, str] = {}
        if raw.get("DBInstanceClass"):
            out["DBInstanceClass"] = raw["DBInstanceClass"]
        subnet = (raw.get("DBSubnetGroup") or {}).get("DBSubnetGroupName")
        if subnet:
            out["DBSubnetGroupName"] = subnet
        groups = [g["VpcSecurityGroupId"] for g in raw.get("VpcSecurityGroups", []) if g.get("VpcSecurityGroupId")]
        if groups:
            out["VpcSecurityGroupIds"] = groups
        if raw.get("PubliclyAccessible") is not None:
            out["PubliclyAccessible"] = bool(raw["PubliclyAccessible"])
        # A default group ("default.postgres16", "default:postgres-16") is what a restore gets anyway.
        parameter_groups = [str(g["DBParameterGroupName"]) for g in raw.get("DBParameterGroups") or []
                            if g.get("DBParameterGroupName")]
        parameter_groups = [g for g in parameter_groups if not g.startswith("default.")]
        if parameter_groups:
            out["DBParameterGroupName"] = copied["parameter group"] = parameter_groups[0]
        option_groups = [str(g["OptionGroupName"]) for g in raw.get("OptionGroupMemberships") or []
                         if g.get("OptionGroupName")]
        option_groups = [g for g in option_groups if not g.startswith("default:")]
        if option_groups:
            out["OptionGroupName"] = copied["option group"] = option_groups[0]
        for key, label in (("MultiAZ", "Multi-AZ"), ("DeletionProtection", "deletion protection"),
                           ("CopyTagsToSnapshot", None)):
            if raw.get(key) is not None:
                out[key] = bool(raw[key])
                if label:
                    copied[label] = str(out[key])
        if raw.get("BackupRetentionPeriod"):
            out["BackupRetentionPeriod"] = int(raw["BackupRetentionPeriod"])
            copied["backup retention (days)"] = str(out["BackupRetentionPeriod"])
        if subnet:
            copied["subnet group"] = str(subnet)
        if raw.get("DBInstanceClass"):
            copied["class"] = str(raw["DBInstanceClass"])
        if raw.get("IAMDatabaseAuthenticationEnabled"):
            out["EnableIAMDatabaseAuthentication"] = True
            copied["IAM database authentication"] = "on"
        exports = [str(e) for e in raw.get("EnabledCloudwatchLogsExports") or []]
        if exports:
            out["EnableCloudwatchLogsExports"] = exports
            copied["CloudWatch log exports"] = "+".join(exports)
        if raw.get("CACertificateIdentifier"):
            out["CACertificateIdentifier"] = copied["CA certificate"] = str(raw["CACertificateIdentifier"])
        port = (raw.get("Endpoint") or {}).get("Port") or raw.get("DbInstancePort")
        if port:
            out["Port"] = int(port)
            copied["port"] = str(port)
        if raw.get("MaxAllocatedStorage"):
            (out if to_time else after)["MaxAllocatedStorage"] = int(raw["MaxAllocatedStorage"])
            copied["storage autoscaling up to (GiB)"] = str(raw["MaxAllocatedStorage"])
        secret = raw.get("MasterUserSecret") or {}
        if secret.get("SecretArn"):
            after["ManageMasterUserPassword"] = True
            if secret.get("KmsKeyId"):
                # The source's key: the operator role may use that one (and RDS's default would be another).
                after["MasterUserSecretKmsKeyId"] = str(secret["KmsKeyId"])
            copied["managed master password"] = "on"
        if raw.get("PerformanceInsightsEnabled"):
            after["EnablePerformanceInsights"] = True
            after["PerformanceInsightsRetentionPeriod"] = int(raw.get("PerformanceInsightsRetentionPeriod") or 7)
            if raw.get("PerformanceInsightsKMSKeyId"):
                after["PerformanceInsightsKMSKeyId"] = str(raw["PerformanceInsightsKMSKeyId"])
            copied["Performance Insights (days)"] = str(after["PerformanceInsightsRetentionPeriod"])
        if raw.get("MonitoringInterval"):
            after["MonitoringInterval"] = int(raw["MonitoringInterval"])
            if raw.get("MonitoringRoleArn"):
                after["MonitoringRoleArn"] = str(raw["MonitoringRoleArn"])
            copied["enhanced monitoring (s)"] = str(after["MonitoringInterval"])
        # aws:* tags are reserved; the copy says where it came from.
        tags = [{"Key": t["Key"], "Value": t.get("Value", "")} for t in raw.get("TagList") or []
                if t.get("Key") and not str(t["Key"]).startswith("aws:") and t["Key"] != RESTORED_FROM_TAG]
        out["Tags"] = [*tags, {"Key": RESTORED_FROM_TAG, "Value": str(raw["DBInstanceIdentifier"])}]
        copied["tags"] = f"{len(tags)} tag(s) plus {RESTORED_FROM_TAG}={raw['DBInstanceIdentifier']}"
        return RestoreSettings(out, after, copied)

    def restore_from_snapshot(self, snapshot_id: str, target: str, *, like: str | None = None) -> DbInstance:
        settings = self.restore_settings(like)
        with aws_errors(f"restoring snapshot {snapshot_id} into {target}"):
            raw = self.client.restore_db_instance_from_db_snapshot(
                DBInstanceIdentifier=target, DBSnapshotIdentifier=snapshot_id, **settings.at_restore)
        return self._instance(raw["DBInstance"])

    def restore_to_time(self, source: str, target: str, when: dt.datetime | None) -> DbInstance:
        """Point-in-time restore of ``source`` into ``target``; ``None`` = latest restorable time."""
        kwargs: dict[str, Any] = {"SourceDBInstanceIdentifier": source, "TargetDBInstanceIdentifier": target}
        if when is None:
            kwargs["UseLatestRestorableTime"] = True
        else:
            kwargs["RestoreTime"] = when
        settings = self.restore_settings(source, to_time=True)
        with aws_errors(f"restoring {source} into {target}"):
            raw = self.client.restore_db_instance_to_point_in_time(**kwargs, **settings.at_restore)
        return self._instance(raw["DBInstance"])

    def apply_after_restore(self, target: str, after: dict[str, Any]) -> DbInstance:
        """``ModifyDBInstance`` of the (available) restored ``target`` with ``after``, applied immediately."""
        with aws_errors(f"turning on {', '.join(after_labels(after)) or 'settings'} on {target}"):
            raw = self.client.modify_db_instance(DBInstanceIdentifier=target, ApplyImmediately=True, **after)
        return self._instance(raw["DBInstance"])


def resolve_instance(config: Config, instance: str | None) -> str:
    name = instance or config.env.aws.db_instance
    if not name:
        raise BadInput("no RDS instance given", "pass --instance ID or set aws.db_instance in rollback.toml")
    return name


def alarm_pin_lines(target: str, *, stack: str | None, project: str = "rollback") -> list[str]:
    """The commands that point the stack's RDS rollback alarms at an instance restored by the CLI.

    The restored instance is not the stack's (Pulumi did not create it); until the stack adopts it
    (a ``dbRestoreFromSnapshot`` / ``dbRestoreToTime`` pin), ``dbAlarmInstanceId`` makes the
    connection and free-storage alarms watch it.
    """
    where = f" --stack {stack}" if stack else ""
    return [f"pulumi config set {project}:dbAlarmInstanceId {target}{where}", f"pulumi up{where}"]
