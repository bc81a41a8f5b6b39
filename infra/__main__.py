"""The rollback stack: every piece a rollback touches, versioned as code.

The only place that reads config. Pins (``assetsRelease``,
``edgeFunctionVersion``, ``dbRestoreFromSnapshot``, ``dbRestoreToTime``, ...)
are parsed and validated by ``infra.settings`` and handed to the components
as typed args. Rolling infrastructure back is selecting earlier pins and
running ``pulumi preview --diff`` then ``pulumi up``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

# The Pulumi CLI runs this directory with infra/ as the working directory and on
# sys.path; the components are imported as the ``infra`` package (as the tests
# do), so the repository root must be importable too.
_REPO_ROOT = str(Path(__file__).resolve().parent.parent)
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

import pulumi  # noqa: E402
import pulumi_aws as aws  # noqa: E402

from infra.alarms import AlarmsArgs, RollbackAlarms  # noqa: E402
from infra.assets_bucket import AssetsBucket, AssetsBucketArgs  # noqa: E402
from infra.cdn import Cdn, CdnArgs  # noqa: E402
from infra.database import Database, DatabaseArgs  # noqa: E402
from infra.edge_function import EdgeFunction, EdgeFunctionArgs  # noqa: E402
from infra.invalidation import AwsSettings  # noqa: E402
from infra.operator_role import OperatorRole, OperatorRoleArgs  # noqa: E402
from infra.settings import ConfigError, Settings, check_live_database, parse_settings  # noqa: E402


def load_settings() -> Settings:
    """Read the stack config (the only config read in the program) into validated settings."""
    config = pulumi.Config()
    try:
        settings = parse_settings(
            config.get,
            project=pulumi.get_project(),
            stack=pulumi.get_stack(),
            region=pulumi.Config("aws").get("region"),
        )
        check_live_database(settings, **live_database(settings.db_instance_identifier))
    except ConfigError as exc:
        # RunError: the CLI prints the one-line message without a Python traceback.
        raise pulumi.RunError(str(exc)) from exc
    for warning in settings.warnings:
        pulumi.log.warn(warning)
    return settings


def live_database(identifier: str) -> dict[str, Any]:
    """Engine version and storage of the instance the config targets, read from AWS (None before it exists).

    A read at preview time: RDS rejects an engine downgrade or a storage shrink only in the
    middle of ``pulumi up``, so the program refuses such a config before anything changes.
    """
    found = aws.rds.get_instances(filters=[{"name": "db-instance-id", "values": [identifier]}])
    if identifier not in (found.instance_identifiers or []):
        return {"engine_version": None, "allocated_storage_gb": None}
    live = aws.rds.get_instance(db_instance_identifier=identifier)
    return {"engine_version": live.engine_version, "allocated_storage_gb": live.allocated_storage}


def main() -> None:
    settings = load_settings()
    prefix = settings.name_prefix
    tags = {"project": pulumi.get_project(), "stack": pulumi.get_stack(), "managed-by": "pulumi"}

    # Lambda@Edge and the CloudFront metrics exist only in us-east-1: the stack's region must be
    # us-east-1 (infra.settings), and the edge function and alarms name that region themselves.
    # Everything uses the default provider, so every aws:* setting (profile, assumed role,
    # default tags...) applies to all of it.

    assets = AssetsBucket(
        "assets",
        AssetsBucketArgs(
            noncurrent_version_days=settings.assets_noncurrent_days,
            noncurrent_versions_kept=settings.assets_noncurrent_versions_kept,
            bucket_name=settings.assets_bucket_name,
            tags=tags,
        ),
    )

    edge = EdgeFunction(
        "edge",
        EdgeFunctionArgs(
            function_name=f"{prefix}-security-headers",
            pinned_version=settings.edge_function_version,
            tags=tags,
        ),
    )

    cdn = Cdn(
        "cdn",
        CdnArgs(
            name_prefix=prefix,
            assets_bucket_id=assets.bucket.id,
            assets_bucket_arn=assets.bucket_arn,
            assets_bucket_domain=assets.regional_domain_name,
            assets_release=settings.assets_release,
            app_origin_domain=settings.app_origin_domain,
            edge_function_version_arn=edge.version_arn,
            app_path_patterns=settings.app_path_patterns,
            origin_verify_secret=(
                pulumi.Output.secret(settings.origin_verify_secret) if settings.origin_verify_secret else None
            ),
            aliases=settings.cdn_aliases,
            certificate_arn=settings.cdn_certificate_arn,
            price_class=settings.cdn_price_class,
            # The release invalidation is a dynamic provider: it gets the aws provider's settings as an input.
            aws=AwsSettings.from_config(pulumi.Config("aws").get, pulumi.Config("aws").get_object),
            tags=tags,
        ),
    )

    db = Database(
        "db",
        DatabaseArgs(
            identifier=settings.db_instance_identifier,
            identifier_base=settings.db_identifier,
            backup_retention_days=settings.db_backup_retention_days,
            network=settings.db_network,
            instance_class=settings.db_instance_class,
            engine_major=settings.db_engine_major,
            allocated_storage_gb=settings.db_allocated_storage_gb,
            db_name=settings.db_name,
            username=settings.db_username,
            multi_az=settings.db_multi_az,
            apply_immediately=settings.db_apply_immediately,
            restore_from_snapshot=settings.db_restore_from_snapshot,
            restore_to_time=settings.db_restore_to_time,
            release_snapshots=settings.db_release_snapshots,
            monitoring_interval=settings.db_monitoring_interval,
            tags=tags,
        ),
    )

    alarms = RollbackAlarms(
        "alarms",
        AlarmsArgs(
            name_prefix=prefix,
            distribution_id=cdn.distribution_id,
            # After a CLI restore (`rollback db rds-restore`) the alarms can watch that instance.
            db_instance_id=settings.db_alarm_instance_id or db.instance_id,
            db_max_connections=settings.db_max_connections,
            db_allocated_storage_gb=settings.db_allocated_storage_gb,
            thresholds=settings.alarms,
            alert_email=settings.alert_email,
            tags=tags,
        ),
    )

    trusted: pulumi.Input[list[str]]
    if settings.operator_trusted_principals:
        trusted = list(settings.operator_trusted_principals)
    else:
        account_id = aws.get_caller_identity_output().account_id
        trusted = pulumi.Output.concat("arn:aws:iam::", account_id, ":root").apply(lambda arn: [arn])

    operator = OperatorRole(
        "operator",
        OperatorRoleArgs(
            role_name=f"{prefix}-rollback-operator",
            trusted_principals=trusted,
            distribution_arn=cdn.distribution_arn,
            edge_function_arn=edge.function_arn,
            assets_bucket_arn=assets.bucket_arn,
            db_instance_arn=db.instance_arn,
            db_identifier_base=settings.db_identifier,
            alarm_name_prefix=prefix,
            db_subnet_group_name=db.subnet_group.name,
            db_parameter_group_name=db.parameter_group.name,
            db_master_secret_kms_key_id=db.master_secret_kms_key_id,
            db_monitoring_role_arn=db.monitoring_role_arn,
            backend_url=settings.operator_backend_url,
            lock_url=settings.operator_lock_url,
            cdn_snapshots_url=settings.operator_cdn_snapshots_url,
            tags=tags,
        ),
    )

    # Read by the rollback CLI; names are a contract (see README).
    pulumi.export("distributionId", cdn.distribution_id)
    pulumi.export("distributionDomain", cdn.domain_name)
    pulumi.export("edgeFunctionName", edge.function_name)
    pulumi.export("edgeFunctionVersionArn", edge.version_arn)
    pulumi.export("edgeFunctionVersion", edge.version)
    pulumi.export("assetsBucket", assets.bucket_name)
    pulumi.export("assetsRelease", settings.assets_release)
    pulumi.export("dbInstanceId", db.instance_id)
    pulumi.export("dbAddress", db.address)
    pulumi.export("dbMasterSecretArn", db.master_secret_arn)
    pulumi.export("dbMasterSecretKmsKeyId", db.master_secret_kms_key_id)
    pulumi.export("dbMonitoringRoleArn", db.monitoring_role_arn)
    pulumi.export("alarmNames", alarms.alarm_names)
    pulumi.export("compositeAlarmName", alarms.composite_name)
    pulumi.export("alertTopicArn", alarms.topic_arn)
    pulumi.export("operatorRoleArn", operator.role_arn)


main()
