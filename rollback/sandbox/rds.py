"""RDS semantics moto (pinned at 5.2.5) lacks, or gets kinder than RDS, that the rollback commands rely on.

moto copies *everything* of the source onto an instance restored from a snapshot or to a point
in time, accepts any flag, and makes every instance ``available`` at once. RDS does not:

- **The managed master password is not restored.** The API reference of
  ``RestoreDBInstanceFromDBSnapshot`` and ``RestoreDBInstanceToPointInTime`` says of
  ``ManageMasterUserPassword``: "Applies to RDS for Oracle only" (and terraform-provider-aws
  #31509 reports the flag has no effect on a PostgreSQL restore). So a restore that sends it for
  another engine is refused here (``InvalidParameterCombination``), and the new instance has the
  source's master password but no ``MasterUserSecret``: ``ModifyDBInstance(ManageMasterUserPassword=
  True)`` turns it on once the instance is ``available``.
- **A restore takes the defaults for what its request does not name**: IAM database
  authentication off, no CloudWatch log exports, the region's default CA
  (``rds-ca-rsa2048-g1``), no storage autoscaling (``MaxAllocatedStorage``), and no Performance
  Insights or enhanced monitoring (the restore calls have no parameter for those two: only
  ``ModifyDBInstance`` sets them). The port is the source's ("Default: The same port as the original
  DB instance"), as moto already does.
- **A new instance is not available at once.** It reports ``creating`` (and a modified one
  ``modifying``) until it has been described once more, then ``available``; ``ModifyDBInstance`` of
  an instance that is not ``available`` is refused (``InvalidDBInstanceState``), as RDS refuses it.
- **A managed secret holds the instance's master user** and a generated password (moto: always
  ``admin`` / ``P@55w0rd!``): ``{"username": <MasterUsername>, "password": <random>}``.
- **Performance Insights** (``EnablePerformanceInsights``, ``PerformanceInsightsRetentionPeriod``,
  ``PerformanceInsightsKMSKeyId``) is kept and reported, on create and modify (default retention
  7 days).
- **``LatestRestorableTime`` lags.** RDS uploads the transaction logs every five minutes, so the
  latest restorable time is the last five-minute upload, up to 5 minutes ago ("typically within
  the last five minutes", Amazon RDS User Guide, *Restoring a DB instance to a specified time*),
  and never before the instance was created; moto reports "now". A test may pin it per instance
  (``_rollback_latest_restorable``).

:func:`install` patches once per process, like :mod:`rollback.sandbox.cloudfront`.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Mapping
from typing import Any

__all__ = ["DEFAULT_CA", "LOG_UPLOAD_MINUTES", "install"]

_MARK = "_rollback_rds_installed"
_LOCK = threading.Lock()
DEFAULT_CA = "rds-ca-rsa2048-g1"
LOG_UPLOAD_MINUTES = 5
# Attributes a restore does not carry over unless its request names them: (override key, attribute, default).
_NOT_RESTORED: tuple[tuple[str | None, str, Any], ...] = (
    ("enable_iam_database_authentication", "enable_iam_database_authentication", False),
    ("enable_cloudwatch_logs_exports", "enabled_cloudwatch_logs_exports", []),
    ("ca_certificate_identifier", "ca_certificate_identifier", DEFAULT_CA),
    (None, "monitoring_interval", 0),
    (None, "monitoring_role_arn", None),
    (None, "enable_performance_insights", False),
    (None, "performance_insights_retention_period", None),
    (None, "performance_insights_kms_key_id", None),
)
_PI_KEYS = ("enable_performance_insights", "performance_insights_retention_period", "performance_insights_kms_key_id")


def _refuse_managed_password(operation: str, engine: str | None, overrides: Mapping[str, Any]) -> None:
    from moto.rds.exceptions import InvalidParameterCombination

    if overrides.get("manage_master_user_password") and not str(engine or "").startswith("oracle"):
        raise InvalidParameterCombination(
            f"ManageMasterUserPassword isn't supported by {operation} for engine {engine}: it applies to RDS for "
            "Oracle only. Turn it on with ModifyDBInstance once the restored instance is available.")


def _as_restored(instance: Any, overrides: Mapping[str, Any]) -> Any:
    """What RDS gives a restored instance: no managed secret, defaults for what the request left out."""
    secret = getattr(instance, "master_user_secret", None)
    if secret is not None:
        secret.delete_secret()
        del instance.master_user_secret
    instance.manage_master_user_password = False
    for key, attribute, default in _NOT_RESTORED:
        if key is not None and key in overrides:
            value = overrides[key]
            setattr(instance, attribute, list(value) if isinstance(value, list) else value)
        else:
            setattr(instance, attribute, list(default) if isinstance(default, list) else default)
    _pending(instance, "creating")
    return instance


def _pending(instance: Any, status: str) -> None:
    instance.status = status
    instance._rollback_reads_left = 1


def _tick(instance: Any) -> None:
    """One DescribeDBInstances of ``instance``: a pending status shows once more, then ``available``."""
    left = getattr(instance, "_rollback_reads_left", None)
    if left is None:
        return
    if left > 0:
        instance._rollback_reads_left = left - 1
        return
    instance.status = "available"
    instance._rollback_reads_left = None


def _latest_restorable(instance: Any) -> dt.datetime:
    pinned = getattr(instance, "_rollback_latest_restorable", None)
    if pinned is not None:
        return pinned  # type: ignore[no-any-return]
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)  # moto keeps naive UTC
    uploaded = now.replace(minute=now.minute - now.minute % LOG_UPLOAD_MINUTES, second=0, microsecond=0)
    created = getattr(instance, "instance_create_time", None)  # never before the instance existed
    return max(uploaded, created) if isinstance(created, dt.datetime) and created.tzinfo is None else uploaded


def install() -> None:
    """Patch moto's RDS (once per process)."""
    from moto.rds import models, responses
    from moto.rds.exceptions import RDSClientError

    with _LOCK:
        if getattr(models.RDSBackend, _MARK, False):
            return
        backend = models.RDSBackend
        instance_class: Any = models.DBInstance

        base_from_snapshot = backend.restore_db_instance_from_db_snapshot

        def restore_db_instance_from_db_snapshot(self: Any, from_snapshot_id: str,
                                                 overrides: dict[str, Any]) -> Any:
            name = from_snapshot_id.rsplit(":", 1)[-1] if from_snapshot_id.startswith("arn:") else from_snapshot_id
            snapshot = self.describe_db_snapshots(db_instance_identifier=None, db_snapshot_identifier=name)[0]
            _refuse_managed_password("RestoreDBInstanceFromDBSnapshot",
                                     overrides.get("engine") or snapshot.database.engine, overrides)
            return _as_restored(base_from_snapshot(self, from_snapshot_id, overrides), overrides)

        base_to_time = backend.restore_db_instance_to_point_in_time

        def restore_db_instance_to_point_in_time(self: Any, source: str, target: str,
                                                 overrides: dict[str, Any]) -> Any:
            found = self.describe_db_instances(db_instance_identifier=source)[0]
            _refuse_managed_password("RestoreDBInstanceToPointInTime", overrides.get("engine") or found.engine,
                                     overrides)
            return _as_restored(base_to_time(self, source, target, overrides), overrides)

        base_create = backend.create_db_instance

        def create_db_instance(self: Any, db_kwargs: dict[str, Any]) -> Any:
            created: Any = base_create(self, db_kwargs)
            if db_kwargs.get("enable_performance_insights"):
                created.enable_performance_insights = True
                created.performance_insights_retention_period = int(
                    db_kwargs.get("performance_insights_retention_period") or 7)
                created.performance_insights_kms_key_id = db_kwargs.get("performance_insights_kms_key_id")
            return created

        base_modify = backend.modify_db_instance

        def modify_db_instance(self: Any, db_instance_identifier: str, db_kwargs: dict[str, Any]) -> Any:
            found = self.describe_db_instances(db_instance_identifier)[0]
            if found.status != "available":
                raise RDSClientError("InvalidDBInstanceState", "Database instance is not in available state.")
            modified: Any = base_modify(self, db_instance_identifier, db_kwargs)
            if db_kwargs.get("enable_performance_insights") and not db_kwargs.get(
                    "performance_insights_retention_period"):
                modified.performance_insights_retention_period = (
                    getattr(modified, "performance_insights_retention_period", None) or 7)
            if db_kwargs.get("enable_performance_insights") is False:
                for key in _PI_KEYS:
                    setattr(modified, key, False if key == "enable_performance_insights" else None)
            _pending(modified, "modifying")
            return modified

        patched: Any = backend
        patched.restore_db_instance_from_db_snapshot = restore_db_instance_from_db_snapshot
        patched.restore_db_instance_to_point_in_time = restore_db_instance_to_point_in_time
        patched.create_db_instance = create_db_instance
        patched.modify_db_instance = modify_db_instance

        def _generate_secret_string(self: Any) -> str:
            import json
            import secrets

            return json.dumps({"username": self.resource.master_username or "admin",
                               "password": secrets.token_urlsafe(24)})

        secret_class: Any = models.MasterUserSecret
        secret_class._generate_secret_string = _generate_secret_string
        instance_class.performance_insights_enabled = property(
            lambda self: bool(getattr(self, "enable_performance_insights", False)))
        instance_class.latest_restorable_time = property(_latest_restorable)

        response = responses.RDSResponse
        base_describe = response.describe_db_instances

        def describe_db_instances(self: Any) -> Any:
            wanted = self.params.get("DBInstanceIdentifier")
            for name, instance in list(self.backend.databases.items()):
                if wanted is None or name == str(wanted).lower():
                    _tick(instance)
            return base_describe(self)

        response.describe_db_instances = describe_db_instances  # type: ignore[method-assign]
        setattr(backend, _MARK, True)
