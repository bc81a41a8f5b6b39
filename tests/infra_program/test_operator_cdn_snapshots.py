"""The operator role's access to the shared distribution snapshots (``infra cdn``), from the policy document
alone: the snapshot prefix and nothing else, under ``operatorCdnSnapshotsUrl`` or, without it, under the team
lease's prefix (``<operatorLockUrl>/cdn-snapshots/``), where the lease statement already reads and writes.
The whole-suite check of every recorded call is tests/infra_program/test_operator_role_vs_cli.py."""

from __future__ import annotations

from typing import Any

from infra.operator_role import operator_policy
from tests.infra_program.iam_model import allowed, needs

STACK = {"distribution_arn": "arn:aws:cloudfront::123456789012:distribution/E2QWRUHAPOMQZL",
         "function_arn": "arn:aws:lambda:us-east-1:123456789012:function:sec-headers",
         "bucket_arn": "arn:aws:s3:::assets", "db_instance_arn": "arn:aws:rds:us-east-1:123456789012:db:app-db",
         "db_identifier_base": "app-db", "db_subnet_group_name": "app-db-subnets",
         "db_parameter_group_name": "app-db-pg16", "alarm_name_prefix": "rollback-prod"}
KEY = "E2QWRUHAPOMQZL/E2QWRUHAPOMQZL-20261128T093000123456Z.distribution.json"


def calls(bucket: str, prefix: str) -> list[tuple[str, dict[str, Any]]]:
    return [("PutObject", {"Bucket": bucket, "Key": f"{prefix}/{KEY}", "ServerSideEncryption": "AES256"}),
            ("GetObject", {"Bucket": bucket, "Key": f"{prefix}/{KEY}"}),
            ("ListObjectsV2", {"Bucket": bucket, "Prefix": f"{prefix}/E2QWRUHAPOMQZL/"}),
            ("ListObjectsV2", {"Bucket": bucket, "Prefix": f"{prefix}/"})]


def test_a_snapshots_url_grants_that_prefix_only() -> None:
    policy = operator_policy(**STACK, cdn_snapshots_url="s3://acme-snapshots/cdn")
    for operation, params in calls("acme-snapshots", "cdn"):
        assert all(allowed(policy, need) for need in needs("s3", operation, params)), operation
    for operation, params in calls("acme-snapshots", "other"):
        assert not any(allowed(policy, need) for need in needs("s3", operation, params)), operation


def test_without_it_the_snapshots_live_under_the_team_lease() -> None:
    policy = operator_policy(**STACK, lock_url="s3://acme-locks/team")
    for operation, params in calls("acme-locks", "team/cdn-snapshots"):
        assert all(allowed(policy, need) for need in needs("s3", operation, params)), operation
    listing = needs("s3", "ListObjectsV2", {"Bucket": "acme-locks", "Prefix": "team/locks/"})
    assert not any(allowed(policy, need) for need in listing)  # listing stops at the snapshot prefix
    assert "CdnSnapshotsList" not in {s["Sid"] for s in operator_policy(**STACK)["Statement"]}
