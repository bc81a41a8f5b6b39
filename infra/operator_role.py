"""Rollback operator: the IAM role the ``rollback`` CLI assumes, and nothing more.

Every statement names this stack's resources by ARN. The only ``"*"``
resources are the CloudWatch metric reads, which AWS does not scope to
resources at all (GetMetricData, GetMetricStatistics, ListMetrics).

Not granted: ``iam:CreateServiceLinkedRole``. CloudFront needs the Lambda@Edge
service-linked role the first time a function is associated; ``pulumi up``
creates that association, so the role exists before the CLI ever re-points it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

# Actions AWS cannot scope to a resource ARN.
UNSCOPABLE_ACTIONS = ("cloudwatch:GetMetricData", "cloudwatch:GetMetricStatistics", "cloudwatch:ListMetrics")


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
    db_identifier_base: str
    """Base RDS identifier: restored instances and snapshots are named from it."""
    alarm_arns: Sequence[pulumi.Input[str]]
    db_subnet_group_name: str | None = None
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
                pulumi.Output.all(*args.alarm_arns),
            ).apply(
                lambda v: json.dumps(
                    operator_policy(
                        distribution_arn=v[0],
                        function_arn=v[1],
                        bucket_arn=v[2],
                        db_instance_arn=v[3],
                        alarm_arns=v[4],
                        db_identifier_base=args.db_identifier_base,
                        db_subnet_group_name=args.db_subnet_group_name,
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
    alarm_arns: Sequence[str],
    db_identifier_base: str,
    db_subnet_group_name: str | None,
) -> dict[str, Any]:
    """The operator's permissions, as a policy document (pure, for tests and review)."""
    # arn:aws:rds:<region>:<account>:db:<id> -> arn:aws:rds:<region>:<account>:
    rds_prefix = db_instance_arn.split(":db:", 1)[0] + ":"
    # Restores create new instances named <base>-from-... / <base>-pitr-...; snapshots
    # (release, final, automated "rds:<id>-...") are named from the same base.
    instances = [db_instance_arn, f"{rds_prefix}db:{db_identifier_base}-*"]
    snapshots = [f"{rds_prefix}snapshot:{db_identifier_base}-*", f"{rds_prefix}snapshot:rds:{db_identifier_base}-*"]
    # A restore also names the instance's subnet, parameter and option groups.
    restore_groups = [
        f"{rds_prefix}subgrp:{db_subnet_group_name or 'default'}",
        f"{rds_prefix}pg:default.postgres*",
        f"{rds_prefix}og:default:postgres-*",
    ]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "CloudFrontConfigAndInvalidations",
                "Effect": "Allow",
                "Action": [
                    "cloudfront:GetDistribution",
                    "cloudfront:GetDistributionConfig",
                    "cloudfront:UpdateDistribution",
                    "cloudfront:CreateInvalidation",
                    "cloudfront:GetInvalidation",
                    "cloudfront:ListInvalidations",
                ],
                "Resource": [distribution_arn],
            },
            {
                "Sid": "EdgeFunctionVersionsRead",
                "Effect": "Allow",
                "Action": ["lambda:GetFunction", "lambda:GetFunctionConfiguration", "lambda:ListVersionsByFunction"],
                "Resource": [function_arn, f"{function_arn}:*"],
            },
            {
                # CloudFront requires the caller of UpdateDistribution to be allowed to
                # replicate the Lambda@Edge version it associates.
                "Sid": "EdgeFunctionReplicationOnAssociate",
                "Effect": "Allow",
                "Action": ["lambda:EnableReplication*"],
                "Resource": [f"{function_arn}:*"],
            },
            {
                "Sid": "AssetsBucketVersionListing",
                "Effect": "Allow",
                "Action": ["s3:ListBucket", "s3:ListBucketVersions", "s3:GetBucketVersioning"],
                "Resource": [bucket_arn],
            },
            {
                "Sid": "AssetsObjectsGetPut",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject"],
                "Resource": [f"{bucket_arn}/*"],
            },
            {
                "Sid": "DatabaseDescribe",
                "Effect": "Allow",
                "Action": ["rds:DescribeDBInstances", "rds:DescribeDBSnapshots", "rds:ListTagsForResource"],
                "Resource": instances + snapshots,
            },
            {
                "Sid": "DatabaseSnapshot",
                "Effect": "Allow",
                "Action": ["rds:CreateDBSnapshot", "rds:AddTagsToResource"],
                "Resource": instances + snapshots,
            },
            {
                "Sid": "DatabaseRestore",
                "Effect": "Allow",
                "Action": ["rds:RestoreDBInstanceFromDBSnapshot", "rds:RestoreDBInstanceToPointInTime"],
                "Resource": instances + snapshots + restore_groups,
            },
            {
                "Sid": "AlarmsRead",
                "Effect": "Allow",
                "Action": ["cloudwatch:DescribeAlarms", "cloudwatch:DescribeAlarmHistory"],
                "Resource": sorted(alarm_arns),
            },
            {
                # AWS offers no resource-level permissions for metric reads.
                "Sid": "MetricsRead",
                "Effect": "Allow",
                "Action": list(UNSCOPABLE_ACTIONS),
                "Resource": "*",
            },
        ],
    }
