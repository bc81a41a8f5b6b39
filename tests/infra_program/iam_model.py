"""The IAM permissions an AWS API call needs, and a small evaluator of identity policies.

``needs(call)`` maps one recorded botocore call (service, operation, parameters)
to the (action, resource ARN, condition keys) pairs IAM checks for it, from the
AWS Service Authorization Reference: e.g. ``CopyObject`` of a version with
``TaggingDirective=COPY`` needs ``s3:GetObjectVersion`` and
``s3:GetObjectVersionTagging`` on the source object and ``s3:PutObject`` and
``s3:PutObjectTagging`` on the destination; ``DeleteObject`` with a
``VersionId`` is ``s3:DeleteObjectVersion``; ``ListObjectVersions`` is
``s3:ListBucketVersions`` on the bucket; ``UpdateDistribution`` associating a
Lambda@Edge version also needs ``lambda:GetFunction`` and
``lambda:EnableReplication*`` on that version; ``ModifyDBInstance`` turning on the
managed master password (``ManageMasterUserPassword``) also needs
``secretsmanager:CreateSecret`` and ``secretsmanager:TagResource`` on the secret RDS
creates (``rds!db-<uuid>``) and ``kms:DescribeKey``/``kms:GenerateDataKey`` on the
key it names (RDS User Guide, "Password management with Amazon RDS and AWS Secrets
Manager", required permissions); ``GetSecretValue`` also needs ``kms:Decrypt`` on the
secret's key (``_KmsKeyId``: the caller of this model says which key that is).

``allowed(policy, need)`` evaluates an identity policy the way IAM does for the
parts our policies use: Allow/Deny, ``Action`` and ``Resource`` with ``*``/``?``
wildcards, ``NotAction`` absent, ``StringLike``/``StringEquals`` conditions on
request keys; an explicit Deny wins, no Allow means denied.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

ACCOUNT = "123456789012"
REGION = "us-east-1"

# botocore service name -> IAM service prefix
_PREFIX = {"cloudwatch": "cloudwatch", "s3": "s3", "cloudfront": "cloudfront", "lambda": "lambda", "rds": "rds",
           "sts": "sts", "secretsmanager": "secretsmanager"}
# The secret RDS creates for a managed master password: its name is RDS's choice, rds!db-<uuid>.
RDS_SECRET = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:rds!db-00000000-0000-4000-8000-000000000000-AbCdEf"
DEFAULT_SECRETS_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:alias/aws/secretsmanager"


@dataclass(frozen=True)
class Need:
    action: str
    resource: str
    conditions: Mapping[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        extra = f" ({', '.join(f'{k}={v}' for k, v in self.conditions.items())})" if self.conditions else ""
        return f"{self.action} on {self.resource}{extra}"


class UnknownOperation(Exception):
    """An operation this model does not know: add it (the test must not guess)."""


def _distribution(identifier: str) -> str:
    return f"arn:aws:cloudfront::{ACCOUNT}:distribution/{identifier}"


def _function(name_or_arn: str, qualifier: str | None = None) -> str:
    if name_or_arn.startswith("arn:"):
        base, _, rest = name_or_arn.partition(":function:")
        name, _, embedded = rest.partition(":")
        arn = f"{base}:function:{name}"
        qualifier = qualifier or embedded or None
    else:
        arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name_or_arn}"
    return f"{arn}:{qualifier}" if qualifier else arn


def _rds(kind: str, identifier: str) -> str:
    return f"arn:aws:rds:{REGION}:{ACCOUNT}:{kind}:{identifier}"


def _alarm(name: str) -> str:
    return f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{name}"


def _copy_source(value: Any) -> tuple[str, str, str | None]:
    if isinstance(value, Mapping):
        return str(value["Bucket"]), str(value["Key"]), value.get("VersionId")
    from urllib.parse import unquote

    text = str(value).lstrip("/")
    path, _, query = text.partition("?versionId=")
    bucket, _, key = path.partition("/")
    return bucket, unquote(key), query or None


def _lambda_arns(config: Mapping[str, Any]) -> list[str]:
    behaviours = [config.get("DefaultCacheBehavior") or {}, *((config.get("CacheBehaviors") or {}).get("Items") or [])]
    return [str(item["LambdaFunctionARN"]) for b in behaviours
            for item in (b.get("LambdaFunctionAssociations") or {}).get("Items") or []]


def needs(service: str, operation: str, params: Mapping[str, Any]) -> list[Need]:
    """What IAM checks for this call (raises UnknownOperation for one the model does not know)."""
    prefix = _PREFIX.get(service)
    if prefix is None:
        raise UnknownOperation(f"{service}:{operation}")
    p = params
    if service == "cloudfront":
        identifier = p.get("Id") or p.get("DistributionId")
        if operation in ("GetDistribution", "GetDistributionConfig", "UpdateDistribution", "CreateInvalidation",
                         "GetInvalidation", "ListInvalidations"):
            found = [Need(f"cloudfront:{operation}", _distribution(str(identifier)))]
            if operation == "UpdateDistribution":
                for arn in _lambda_arns(p.get("DistributionConfig") or {}):
                    found += [Need("lambda:GetFunction", _function(arn)),
                              Need("lambda:EnableReplication", _function(arn))]
            return found
    if service == "lambda":
        function = str(p.get("FunctionName"))
        if operation in ("GetFunction", "GetFunctionConfiguration"):
            return [Need(f"lambda:{operation}", _function(function, p.get("Qualifier")))]
        if operation == "ListVersionsByFunction":
            return [Need("lambda:ListVersionsByFunction", _function(function))]
    if service == "s3":
        bucket = str(p.get("Bucket"))
        key = p.get("Key")
        version = p.get("VersionId")
        obj = f"arn:aws:s3:::{bucket}/{key}"
        bucket_arn = f"arn:aws:s3:::{bucket}"
        if operation in ("ListObjectVersions", "ListObjectsV2", "ListObjects"):
            action = "s3:ListBucketVersions" if operation == "ListObjectVersions" else "s3:ListBucket"
            return [Need(action, bucket_arn, {"s3:prefix": str(p.get("Prefix") or "")})]
        if operation == "GetBucketVersioning":
            return [Need("s3:GetBucketVersioning", bucket_arn)]
        if operation in ("GetObject", "HeadObject"):
            return [Need("s3:GetObjectVersion" if version else "s3:GetObject", obj)]
        if operation == "GetObjectTagging":
            return [Need("s3:GetObjectVersionTagging" if version else "s3:GetObjectTagging", obj)]
        if operation == "PutObject":
            return [Need("s3:PutObject", obj)] + ([Need("s3:PutObjectTagging", obj)] if p.get("Tagging") else [])
        if operation == "DeleteObject":
            return [Need("s3:DeleteObjectVersion" if version else "s3:DeleteObject", obj)]
        if operation == "CopyObject":
            source_bucket, source_key, source_version = _copy_source(p["CopySource"])
            source = f"arn:aws:s3:::{source_bucket}/{source_key}"
            found = [Need("s3:PutObject", obj),
                     Need("s3:GetObjectVersion" if source_version else "s3:GetObject", source)]
            if p.get("TaggingDirective", "COPY") == "COPY":  # COPY is S3's default
                found += [Need("s3:GetObjectVersionTagging" if source_version else "s3:GetObjectTagging", source),
                          Need("s3:PutObjectTagging", obj)]
            elif p.get("Tagging"):
                found.append(Need("s3:PutObjectTagging", obj))
            return found
    if service == "rds":
        if operation == "DescribeDBInstances":
            ident = p.get("DBInstanceIdentifier")
            return [Need("rds:DescribeDBInstances", _rds("db", str(ident)) if ident else "*")]
        if operation == "DescribeDBSnapshots":
            if p.get("DBSnapshotIdentifier"):
                return [Need("rds:DescribeDBSnapshots", _rds("snapshot", str(p["DBSnapshotIdentifier"])))]
            return [Need("rds:DescribeDBSnapshots", _rds("db", str(p.get("DBInstanceIdentifier"))))]
        if operation == "DescribeDBInstanceAutomatedBackups":
            # Resource-level: the automated backup, named by the instance's resource id (ab-...).
            return [Need("rds:DescribeDBInstanceAutomatedBackups", _rds("auto-backup", "ab-unknown"))]
        if operation == "CreateDBSnapshot":
            snapshot = _rds("snapshot", str(p["DBSnapshotIdentifier"]))
            found = [Need("rds:CreateDBSnapshot", _rds("db", str(p["DBInstanceIdentifier"]))),
                     Need("rds:CreateDBSnapshot", snapshot)]
            return found + ([Need("rds:AddTagsToResource", snapshot)] if p.get("Tags") else [])
        if operation in ("RestoreDBInstanceFromDBSnapshot", "RestoreDBInstanceToPointInTime"):
            if operation == "RestoreDBInstanceFromDBSnapshot":
                target = str(p["DBInstanceIdentifier"])
                sources = [_rds("snapshot", str(p["DBSnapshotIdentifier"]).rsplit(":", 1)[-1])]
            else:
                target = str(p["TargetDBInstanceIdentifier"])
                sources = [_rds("db", str(p["SourceDBInstanceIdentifier"]))]
            resources = [_rds("db", target), *sources]
            if p.get("DBSubnetGroupName"):
                resources.append(_rds("subgrp", str(p["DBSubnetGroupName"])))
            if p.get("DBParameterGroupName"):
                resources.append(_rds("pg", str(p["DBParameterGroupName"])))
            if p.get("OptionGroupName"):
                resources.append(_rds("og", str(p["OptionGroupName"])))
            found = [Need(f"rds:{operation}", r) for r in resources]
            return found + ([Need("rds:AddTagsToResource", _rds("db", target))] if p.get("Tags") else [])
        if operation == "ListTagsForResource":
            return [Need("rds:ListTagsForResource", str(p["ResourceName"]))]
        if operation == "ModifyDBInstance":
            found = [Need("rds:ModifyDBInstance", _rds("db", str(p["DBInstanceIdentifier"])))]
            if p.get("DBParameterGroupName"):
                found.append(Need("rds:ModifyDBInstance", _rds("pg", str(p["DBParameterGroupName"]))))
            if p.get("ManageMasterUserPassword"):
                key = str(p.get("MasterUserSecretKmsKeyId") or DEFAULT_SECRETS_KEY)
                found += [Need("secretsmanager:CreateSecret", RDS_SECRET),
                          Need("secretsmanager:TagResource", RDS_SECRET),
                          Need("kms:DescribeKey", key), Need("kms:GenerateDataKey", key)]
            if p.get("MonitoringRoleArn"):
                found.append(Need("iam:PassRole", str(p["MonitoringRoleArn"]),
                                  {"iam:PassedToService": "monitoring.rds.amazonaws.com"}))
            return found
    if service == "secretsmanager" and operation == "GetSecretValue":
        secret = str(p["SecretId"])
        if not secret.startswith("arn:"):
            secret = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{secret}"
        return [Need("secretsmanager:GetSecretValue", secret),
                Need("kms:Decrypt", str(p.get("_KmsKeyId") or DEFAULT_SECRETS_KEY))]
    if service == "cloudwatch":
        if operation == "DescribeAlarms":
            names = p.get("AlarmNames") or []
            return [Need("cloudwatch:DescribeAlarms", _alarm(str(n))) for n in names] or [
                Need("cloudwatch:DescribeAlarms", "*")]
        if operation == "DescribeAlarmHistory":
            return [Need("cloudwatch:DescribeAlarmHistory", _alarm(str(p.get("AlarmName"))))]
        if operation in ("GetMetricData", "GetMetricStatistics", "ListMetrics"):
            return [Need(f"cloudwatch:{operation}", "*")]
    if service == "sts" and operation == "GetCallerIdentity":
        return []  # needs no permission
    raise UnknownOperation(f"{service}:{operation}")


def _like(pattern: str, value: str) -> bool:
    # IAM wildcards: * any run, ? one character; case-sensitive (fnmatchcase).
    return fnmatch.fnmatchcase(value, pattern)


def _as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


def _conditions_hold(condition: Mapping[str, Mapping[str, Any]] | None, context: Mapping[str, str]) -> bool:
    for operator, tests in (condition or {}).items():
        for key, expected in tests.items():
            if key not in context:
                return False
            value = context[key]
            if operator == "StringLike":
                if not any(_like(e, value) for e in _as_list(expected)):
                    return False
            elif operator == "StringEquals":
                if value not in _as_list(expected):
                    return False
            else:
                raise ValueError(f"the evaluator does not know condition operator {operator}")
    return True


def _matches(statement: Mapping[str, Any], need: Need) -> bool:
    if not any(_like(a.lower(), need.action.lower()) for a in _as_list(statement.get("Action"))):
        return False
    resources = _as_list(statement.get("Resource"))
    resource_ok = "*" in resources if need.resource == "*" else any(_like(r, need.resource) for r in resources)
    return resource_ok and _conditions_hold(statement.get("Condition"), need.conditions)


def allowed(policy: Mapping[str, Any], need: Need) -> bool:
    statements = policy.get("Statement") or []
    if any(s.get("Effect") == "Deny" and _matches(s, need) for s in statements):
        return False
    return any(s.get("Effect") == "Allow" and _matches(s, need) for s in statements)


def without_action(policy: Mapping[str, Any], sid: str, action: str) -> dict[str, Any]:
    """A copy of ``policy`` with ``action`` removed from statement ``sid``."""
    statements = []
    for statement in policy["Statement"]:
        statement = dict(statement)
        if statement.get("Sid") == sid:
            statement["Action"] = [a for a in _as_list(statement["Action"]) if a != action]
        statements.append(statement)
    return {**policy, "Statement": statements}


def granted_actions(policy: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
    for statement in policy["Statement"]:
        if statement.get("Effect") == "Allow":
            for action in _as_list(statement["Action"]):
                yield str(statement.get("Sid")), action

