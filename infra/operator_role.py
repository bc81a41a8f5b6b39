"""Rollback operator: the IAM role the ``rollback`` CLI assumes, and nothing more.

Every statement names this stack's resources by ARN. The only ``"*"``
resource is the CloudWatch metric read (GetMetricData), which AWS does not
scope to resources at all.

What the CLI does with each grant (``tests/infra_program/test_operator_role_vs_cli.py``
records every AWS call the CLI's adapters make during the test suite and
checks each against this document, action and resource):

* CloudFront: read the distribution and its config, update it under
  ``IfMatch`` (edge associations, ``infra cdn restore|release``), invalidate.
  Associating a Lambda@Edge version needs ``lambda:GetFunction`` and
  ``lambda:EnableReplication*`` on that version (``DisableReplication*`` on
  the one it replaces).
* S3 (assets bucket): list versions, copy a version back (``CopyObject`` of a
  version with ``TaggingDirective=COPY`` reads the version and its tags and
  writes the key and its tags), remove delete markers (``DeleteObjectVersion``)
  and write delete markers (``DeleteObject``). Nothing unversioned is read.
* RDS: the base instance ``db:<base>`` *and* every instance restored from it
  (``db:<base>-*``: the program's ``<base>-from-...``/``<base>-pitr...`` and
  the CLI's ``--target``), their snapshots (``<base>-*``, automated
  ``rds:<base>-*``) and automated backups; restores name the declared subnet
  and parameter groups and add tags. A restore cannot turn on the managed
  master password (``ManageMasterUserPassword`` on a restore "applies to RDS
  for Oracle only"), so the CLI turns it on afterwards with
  ``rds:ModifyDBInstance`` of the *restored* instance only (``db:<base>-*``,
  never the base one): RDS then creates and tags the secret as the caller
  (``secretsmanager:CreateSecret``/``TagResource`` on ``rds!*``, the names RDS
  gives its secrets) and encrypts it with the key of the stack's secret
  (``kms:DescribeKey``/``GenerateDataKey`` on that key alone). ``run
  --switch-database`` reads the restored instance's secret for the app's new
  URL (``secretsmanager:GetSecretValue`` on ``rds!*``, ``kms:Decrypt`` on the
  same key).
* CloudWatch: the stack's alarms (``<prefix>-*``) and metric reads.
* Optionally (``operatorBackendUrl``) read-only access to an ``s3://`` Pulumi
  backend, which the CLI reads directly for ``infra history|diff``, and
  (``operatorLockUrl``) the team lease every state-changing command takes
  (``[env.X.lock] url``: read, conditional writes, release; journals copied there).
* Distribution snapshots shared for the team (``infra cdn``): written, listed
  and read under ``operatorCdnSnapshotsUrl`` (``[cdn] snapshots_url``), else
  under ``<operatorLockUrl>/cdn-snapshots/`` (listing that prefix only; the
  lease statement already reads and writes there).

Not granted: ``iam:CreateServiceLinkedRole``. CloudFront needs the Lambda@Edge
service-linked role the first time a function is associated; ``pulumi up``
creates that association, so the role exists before the CLI ever re-points it.
Nor anything ``pulumi up`` needs: ``infra preview``/``restore`` through the
Pulumi CLI run with the *deployer's* credentials (see README, "Deployer role").
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

# Actions AWS cannot scope to a resource ARN (rollback report reads the distribution's metrics).
UNSCOPABLE_ACTIONS = ("cloudwatch:GetMetricData",)


@dataclass
class OperatorRoleArgs:
    """Inputs of :class:`OperatorRole`."""

    role_name: str
    trusted_principals: pulumi.Input[Sequence[pulumi.Input[str]]]
    """IAM principal ARNs allowed to assume the role."""
    distribution_arn: pulumi.Input[str]
    edge_function_arn: pulumi.Input[str]
    """Unqualified function ARN; its versions are ``<arn>:<n>``."""
    assets_bucket_arn: pulumi.Input[str]
    db_instance_arn: pulumi.Input[str]
    """ARN of the instance in use (its region and account name the others)."""
    db_identifier_base: str
    """Base RDS identifier: restored instances, snapshots and the network groups are named from it."""
    alarm_name_prefix: str
    """Every rollback alarm is named ``<prefix>-...``."""
    db_subnet_group_name: pulumi.Input[str]
    db_parameter_group_name: pulumi.Input[str]
    db_master_secret_kms_key_id: pulumi.Input[str | None] = None
    """ARN of the KMS key that encrypts the instance's managed master secret (RDS reports it)."""
    db_monitoring_role_arn: pulumi.Input[str | None] = None
    """The database's enhanced-monitoring role, which a restore passes on to the new instance."""
    backend_url: str | None = None
    """``s3://bucket/prefix`` of a self-managed Pulumi backend to read."""
    lock_url: str | None = None
    """``s3://bucket/prefix`` of the CLI's team lease (and the journals it copies there)."""
    cdn_snapshots_url: str | None = None
    """``s3://bucket/prefix`` where the CLI shares distribution snapshots (else under ``lock_url``)."""
    tags: dict[str, str] = field(default_factory=dict)


class OperatorRole(pulumi.ComponentResource):
    """IAM role plus inline policy granting exactly what the rollback CLI needs."""

    role: aws.iam.Role
    policy: aws.iam.RolePolicy

    def __init__(self, name: str, args: OperatorRoleArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("rollback:infra:OperatorRole", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        self.role = aws.iam.Role(
            f"{name}-role",
            name=args.role_name,
            description="Assumed by the rollback CLI",
            assume_role_policy=pulumi.Output.from_input(args.trusted_principals).apply(trust_policy),
            max_session_duration=3600,
            tags=args.tags,
            opts=child,
        )
        self.policy = aws.iam.RolePolicy(
            f"{name}-policy",
            role=self.role.id,
            policy=pulumi.Output.all(
                args.distribution_arn,
                args.edge_function_arn,
                args.assets_bucket_arn,
                args.db_instance_arn,
                args.db_subnet_group_name,
                args.db_parameter_group_name,
                args.db_master_secret_kms_key_id,
                args.db_monitoring_role_arn,
            ).apply(
                lambda v: json.dumps(
                    operator_policy(
                        distribution_arn=v[0],
                        function_arn=v[1],
                        bucket_arn=v[2],
                        db_instance_arn=v[3],
                        db_subnet_group_name=v[4],
                        db_parameter_group_name=v[5],
                        db_master_secret_kms_key_id=v[6],
                        db_monitoring_role_arn=v[7],
                        db_identifier_base=args.db_identifier_base,
                        alarm_name_prefix=args.alarm_name_prefix,
                        backend_url=args.backend_url,
                        lock_url=args.lock_url,
                        cdn_snapshots_url=args.cdn_snapshots_url,
                    ),
                    sort_keys=True,
                )
            ),
            opts=child,
        )

        self.role_arn = self.role.arn
        self.register_outputs({"roleArn": self.role_arn})


def trust_policy(principals: Sequence[str]) -> str:
    """Assume-role policy for the given IAM principals."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": sorted(principals)},
                    "Action": "sts:AssumeRole",
                }
            ],
        },
        sort_keys=True,
    )


def operator_policy(
    *,
    distribution_arn: str,
    function_arn: str,
    bucket_arn: str,
    db_instance_arn: str,
    db_identifier_base: str,
    db_subnet_group_name: str,
    db_parameter_group_name: str,
    alarm_name_prefix: str,
    db_master_secret_kms_key_id: str | None = None,
    db_monitoring_role_arn: str | None = None,
    backend_url: str | None = None,
    lock_url: str | None = None,
    cdn_snapshots_url: str | None = None,
) -> dict[str, Any]:
    """The operator's permissions, as a policy document (pure, for tests and review)."""
    # arn:aws:rds:<region>:<account>:db:<id> -> arn:aws:rds:<region>:<account>:
    rds_prefix = db_instance_arn.split(":db:", 1)[0] + ":"
    # The base instance and every instance restored from it (by the program or the CLI):
    # after a restore the instance in use is <base>-..., and the original stays <base>.
    instances = [f"{rds_prefix}db:{db_identifier_base}", f"{rds_prefix}db:{db_identifier_base}-*"]
    snapshots = [f"{rds_prefix}snapshot:{db_identifier_base}-*", f"{rds_prefix}snapshot:rds:{db_identifier_base}-*"]
    # A restore also names the instance's subnet, parameter and option groups.
    restore_groups = [
        f"{rds_prefix}subgrp:{db_subnet_group_name}",
        f"{rds_prefix}pg:{db_parameter_group_name}",
        f"{rds_prefix}og:default:postgres-*",
        f"{rds_prefix}og:{db_identifier_base}-*",
    ]
    # arn:aws:cloudwatch:<region>:<account>:alarm:<name>
    region_account = rds_prefix.split(":", 3)[3]  # "<region>:<account>:"
    alarms = f"arn:aws:cloudwatch:{region_account}alarm:{alarm_name_prefix}-*"
    statements: list[dict[str, Any]] = [
        {
            "Sid": "CloudFrontConfigAndInvalidations",
            "Effect": "Allow",
            "Action": [
                "cloudfront:GetDistribution",
                "cloudfront:GetDistributionConfig",
                "cloudfront:UpdateDistribution",
                "cloudfront:CreateInvalidation",
                "cloudfront:GetInvalidation",
            ],
            "Resource": [distribution_arn],
        },
        {
            "Sid": "EdgeFunctionVersionsRead",
            "Effect": "Allow",
            "Action": ["lambda:GetFunction", "lambda:ListVersionsByFunction"],
            "Resource": [function_arn, f"{function_arn}:*"],
        },
        {
            # CloudFront requires the caller of UpdateDistribution to be allowed to replicate the
            # Lambda@Edge version it associates, and to stop replicating the one it drops.
            "Sid": "EdgeFunctionReplicationOnAssociate",
            "Effect": "Allow",
            "Action": ["lambda:EnableReplication*", "lambda:DisableReplication*"],
            "Resource": [f"{function_arn}:*"],
        },
        {
            "Sid": "AssetsBucketVersionListing",
            "Effect": "Allow",
            "Action": ["s3:ListBucketVersions", "s3:GetBucketVersioning"],
            "Resource": [bucket_arn],
        },
        {
            # Restoring a version is CopyObject (read the version and its tags, write the key
            # and the tags); undeleting removes delete markers (DeleteObjectVersion); a
            # restore to a time before a key existed writes a delete marker (DeleteObject).
            "Sid": "AssetsObjectsRestore",
            "Effect": "Allow",
            "Action": [
                "s3:GetObjectVersion",
                "s3:GetObjectVersionTagging",
                "s3:PutObject",
                "s3:PutObjectTagging",
                "s3:DeleteObject",
                "s3:DeleteObjectVersion",
            ],
            "Resource": [f"{bucket_arn}/*"],
        },
        {
            "Sid": "DatabaseDescribe",
            "Effect": "Allow",
            "Action": ["rds:DescribeDBInstances", "rds:DescribeDBSnapshots"],
            "Resource": instances + snapshots,
        },
        {
            # Automated backups are named by the instance's resource id, which no config knows.
            "Sid": "DatabaseAutomatedBackups",
            "Effect": "Allow",
            "Action": ["rds:DescribeDBInstanceAutomatedBackups"],
            "Resource": [f"{rds_prefix}auto-backup:*"],
        },
        {
            "Sid": "DatabaseSnapshot",
            "Effect": "Allow",
            "Action": ["rds:CreateDBSnapshot"],
            "Resource": instances + snapshots,
        },
        {
            # A restore copies the source's tags onto the new instance (AddTagsToResource on it).
            "Sid": "DatabaseRestore",
            "Effect": "Allow",
            "Action": ["rds:RestoreDBInstanceFromDBSnapshot", "rds:RestoreDBInstanceToPointInTime",
                       "rds:AddTagsToResource"],
            "Resource": instances + snapshots + restore_groups,
        },
        {
            # What no restore call can set (the managed master password, Performance Insights, storage
            # autoscaling), turned on after the restore: on restored instances only, never the base one.
            "Sid": "DatabaseRestoredSettings",
            "Effect": "Allow",
            "Action": ["rds:ModifyDBInstance"],
            "Resource": [f"{rds_prefix}db:{db_identifier_base}-*"],
        },
        {
            # ModifyDBInstance(ManageMasterUserPassword) has RDS create and tag the secret (rds!db-<uuid>)
            # with the caller's rights; run --switch-database reads it for the app's new URL.
            "Sid": "DatabaseManagedPasswordSecret",
            "Effect": "Allow",
            "Action": ["secretsmanager:CreateSecret", "secretsmanager:TagResource",
                       "secretsmanager:GetSecretValue"],
            "Resource": [f"arn:aws:secretsmanager:{region_account}secret:rds!*"],
        },
        {
            "Sid": "AlarmsRead",
            "Effect": "Allow",
            "Action": ["cloudwatch:DescribeAlarms"],
            "Resource": [alarms],
        },
        {
            # AWS offers no resource-level permissions for metric reads.
            "Sid": "MetricsRead",
            "Effect": "Allow",
            "Action": list(UNSCOPABLE_ACTIONS),
            "Resource": "*",
        },
    ]
    if db_master_secret_kms_key_id:
        statements.insert(next(i for i, st in enumerate(statements) if st["Sid"] == "AlarmsRead"), {
            # The key of the stack's secret: the restored instance's secret is made with the same key.
            "Sid": "DatabaseManagedPasswordKey",
            "Effect": "Allow",
            "Action": ["kms:DescribeKey", "kms:GenerateDataKey", "kms:Decrypt"],
            "Resource": [db_master_secret_kms_key_id],
        })
    if db_monitoring_role_arn:
        statements.insert(next(i for i, st in enumerate(statements) if st["Sid"] == "AlarmsRead"), {
            # A restore turns enhanced monitoring on with the source's role: RDS must be handed exactly that
            # role, and only for monitoring.
            "Sid": "DatabaseMonitoringRolePass",
            "Effect": "Allow",
            "Action": ["iam:PassRole"],
            "Resource": [db_monitoring_role_arn],
            "Condition": {"StringEquals": {"iam:PassedToService": "monitoring.rds.amazonaws.com"}},
        })
    if backend_url:
        bucket, _, prefix = backend_url[len("s3://"):].partition("/")
        prefix = prefix.strip("/")
        state = f"{prefix}/.pulumi" if prefix else ".pulumi"
        statements += [
            {
                "Sid": "PulumiBackendList",
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": [f"arn:aws:s3:::{bucket}"],
                "Condition": {"StringLike": {"s3:prefix": [state, f"{state}/*"]}},
            },
            {
                "Sid": "PulumiBackendRead",
                "Effect": "Allow",
                "Action": ["s3:GetObject"],
                "Resource": [f"arn:aws:s3:::{bucket}/{state}/*"],
            },
        ]
    if lock_url:
        bucket, _, prefix = lock_url[len("s3://"):].partition("/")
        objects = f"arn:aws:s3:::{bucket}/{prefix.strip('/')}/*" if prefix.strip("/") else f"arn:aws:s3:::{bucket}/*"
        statements.append({
            # Every state-changing command takes the team lease (conditional writes) and copies its
            # journal and incident record next to it.
            "Sid": "TeamLease",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
            "Resource": [objects],
        })
        runs = "/".join(p for p in (prefix.strip("/"), "runs") if p)
        statements.append({
            # 'rollback resume' lists the journals other runs copied there since the run it resumes (a run
            # that took the lease over and acted refuses the resume).
            "Sid": "TeamLeaseRuns",
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": [f"arn:aws:s3:::{bucket}"],
            "Condition": {"StringLike": {"s3:prefix": [f"{runs}/", f"{runs}/*"]}},
        })
    if cdn_snapshots_url:
        bucket, _, prefix = cdn_snapshots_url[len("s3://"):].partition("/")
        statements += _snapshot_statements(bucket, prefix.strip("/"), with_objects=True)
    elif lock_url:
        # Under the lease's prefix: TeamLease already reads and writes the objects; listing is added.
        bucket, _, prefix = lock_url[len("s3://"):].partition("/")
        statements += _snapshot_statements(bucket, "/".join(p for p in (prefix.strip("/"), "cdn-snapshots") if p),
                                           with_objects=False)
    return {"Version": "2012-10-17", "Statement": statements}


def _snapshot_statements(bucket: str, prefix: str, *, with_objects: bool) -> list[dict[str, Any]]:
    """``infra cdn`` shares each distribution snapshot as ``<prefix>/<distribution>/<id>.distribution.json``
    (written, listed, read by another engineer): the prefix only."""
    folder = f"{prefix}/" if prefix else ""
    found: list[dict[str, Any]] = [{
        "Sid": "CdnSnapshotsList",
        "Effect": "Allow",
        "Action": ["s3:ListBucket"],
        "Resource": [f"arn:aws:s3:::{bucket}"],
        "Condition": {"StringLike": {"s3:prefix": [folder, f"{folder}*"]}},
    }]
    if with_objects:
        found.append({
            "Sid": "CdnSnapshotsReadWrite",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:PutObject"],
            "Resource": [f"arn:aws:s3:::{bucket}/{folder}*"],
        })
    return found
