"""The operator role and the CLI cannot drift apart: every AWS call the CLI makes is allowed by the role.

``tests/aws_calls.py`` records, with botocore's event hooks, every AWS operation
the ``rollback`` package makes during the test suite (its adapters and commands;
not the tests' own seeding, not the sandbox seeders). These tests render the
operator role's policy document by running the Pulumi program under mocks, and
check each successful call against it, action AND resource
(``tests/infra_program/iam_model.py`` says what IAM checks for each call). They also
check the converse: every action the role grants is needed by some call, so
removing any one of them fails here (least privilege, and proof that the check
bites).

The calls of the test suite's AWS tests are used when they ran in the same
process (one process, the whole suite: they run first, these tests being marked
``after_aws_tests``). ``bash tests/run.sh`` runs the suite on pytest-xdist workers,
each of which sees only its own calls: it leaves these tests out of the workers'
phase, has every worker write its calls to one directory, and then runs these
tests alone with ``ROLLBACK_AWS_CALLS_FROM=<that directory>``: the calls of all
workers together. Otherwise (e.g. ``pytest tests/infra_program``, or these tests on an
xdist worker) the AWS tests are run in a subprocess first, with the recorder
writing the calls to a file (``ROLLBACK_AWS_CALLS_FROM=<file or directory>``
reuses such a file instead, to iterate on the role quickly).

The tests' worlds use their own names (random bucket and distribution names,
``app-db-<hex>``); before checking, each call's names are mapped onto the
stack's: the one distribution, edge function and assets bucket of the stack;
the test's base DB instance (the shortest instance identifier it used) onto the
stack's base identifier, keeping suffixes (``<base>-restored`` stays
``<base>-restored``, a snapshot not named from the base stays as it is, so a
name outside the role's namespace is still caught); alarms under the stack's
alarm prefix; an ``s3://`` Pulumi backend onto ``operatorBackendUrl``, the team lease's bucket onto
``operatorLockUrl``, the shared distribution snapshots (wherever a test put them: ``[cdn] snapshots_url``
or under the lease) onto ``operatorCdnSnapshotsUrl``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rollback.adapters.pulumi_mocks import MockRun, run_program
from tests import aws_calls
from tests.aws_calls import Call
from tests.infra_program.conftest import BASE_CONFIG, PROGRAM_DIR, REPO_ROOT
from tests.infra_program.iam_model import Need, allowed, granted_actions, needs, without_action

# Slow: it needs the calls of every AWS test, so `tests/run.sh --fast` (which leaves some out) leaves it out.
pytestmark = [pytest.mark.after_aws_tests, pytest.mark.slow]

# Where the CLI's AWS calls are exercised.
SOURCES = [
    "tests/aws",
    "tests/db/test_rds.py",
    "tests/db/test_rds_settings.py",
    "tests/db/test_rds_switch.py",
    "tests/incident/test_lock.py",
    "tests/incident/test_resume_overtaken.py",
    "tests/report/test_report_impact.py",
    "tests/stack/test_backend_reader.py::test_s3_backend_through_moto",
    "tests/stack/test_stack_cli.py::test_history_and_diff_from_an_s3_backend",
]
STATE_BACKEND = ("rollback-state", "pulumi")
TEAM_LEASE = ("rollback-locks", "team")
CDN_SNAPSHOTS = ("rollback-cdn-snapshots", "shared")

# Granted, but no recorded call can show the need; each with the reason it stays.
NOT_OBSERVABLE = {
    ("EdgeFunctionReplicationOnAssociate", "lambda:DisableReplication*"):
        "AWS requires it on the version an UpdateDistribution stops using; the call shows only the new config",
}


@dataclass(frozen=True)
class StackNames:
    distribution_id: str
    function: str
    bucket: str
    db_base: str
    alarm_prefix: str
    subnet_group: str
    parameter_group: str
    db_secret_key: str
    db_monitoring_role: str


@pytest.fixture(scope="module")
def rendered() -> MockRun:
    config = {**BASE_CONFIG, "rollback:operatorBackendUrl": f"s3://{STATE_BACKEND[0]}/{STATE_BACKEND[1]}",
              "rollback:operatorLockUrl": f"s3://{TEAM_LEASE[0]}/{TEAM_LEASE[1]}",
              "rollback:operatorCdnSnapshotsUrl": f"s3://{CDN_SNAPSHOTS[0]}/{CDN_SNAPSHOTS[1]}"}
    return run_program(PROGRAM_DIR, config)


@pytest.fixture(scope="module")
def policy(rendered: MockRun) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(rendered.resources["operator-policy"]["inputs"]["policy"])
    return document


@pytest.fixture(scope="module")
def names(rendered: MockRun) -> StackNames:
    db = rendered.resources
    return StackNames(
        distribution_id=rendered.outputs["distributionId"],
        function=rendered.outputs["edgeFunctionName"],
        bucket=rendered.outputs["assetsBucket"],
        db_base=rendered.outputs["dbInstanceId"],
        alarm_prefix=rendered.outputs["compositeAlarmName"].rsplit("-", 1)[0] + "-",
        subnet_group=db["db-subnets"]["inputs"]["name"],
        parameter_group=db["db-parameters"]["inputs"]["name"],
        db_secret_key=rendered.outputs["dbMasterSecretKmsKeyId"],
        db_monitoring_role=rendered.outputs["dbMonitoringRoleArn"],
    )


def _whole_suite_ran_here(session: pytest.Session) -> bool:
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return False  # a worker has recorded only the calls of the tests it ran
    option = session.config.option
    if option.keyword or option.markexpr or getattr(option, "deselect", None):
        return False
    roots = {(REPO_ROOT / a.split("::", 1)[0]).resolve() for a in session.config.args}
    return bool(roots & {REPO_ROOT.resolve(), (REPO_ROOT / "tests").resolve()})


@pytest.fixture(scope="module")
def recorded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> list[Call]:
    if _whole_suite_ran_here(request.session):
        calls = list(aws_calls.CALLS)
    elif os.environ.get("ROLLBACK_AWS_CALLS_FROM"):
        calls = aws_calls.load(Path(os.environ["ROLLBACK_AWS_CALLS_FROM"]))
    else:
        target = tmp_path_factory.mktemp("aws-calls") / "calls.jsonl"
        env = {key: value for key, value in os.environ.items()
               if not key.startswith("PYTEST_XDIST") and key not in (aws_calls.ENV_DIR, "PYTEST_CURRENT_TEST")}
        env[aws_calls.ENV_FILE] = str(target)
        result = subprocess.run([sys.executable, "-m", "pytest", *SOURCES, "-q", "-p", "no:cacheprovider",
                                 "-p", "no:xdist"],
                                cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=1800)
        assert result.returncode == 0, f"the AWS tests failed:\n{result.stdout[-3000:]}{result.stderr[-2000:]}"
        calls = aws_calls.load(target)
    return [call for call in calls if call.succeeded]


def _db_bases(calls: list[Call]) -> dict[str, str]:
    """Per test, its base DB instance: the shortest instance identifier it used."""
    found: dict[str, list[str]] = {}
    for call in calls:
        if call.service != "rds":
            continue
        for key in ("DBInstanceIdentifier", "SourceDBInstanceIdentifier"):
            if isinstance(call.params.get(key), str):
                found.setdefault(call.test, []).append(call.params[key])
    return {test: min(idents, key=len) for test, idents in found.items()}


def _rebase(value: str, base: str | None, stack_base: str) -> str:
    if base is None:
        return value
    for prefix in ("", "rds:"):
        if value == prefix + base or value.startswith(f"{prefix}{base}-"):
            return prefix + stack_base + value[len(prefix + base):]
    return value


def _function_arn(value: str, names: StackNames) -> str:
    if value.startswith("arn:"):
        head, _, rest = value.partition(":function:")
        _, _, qualifier = rest.partition(":")
        return f"{head}:function:{names.function}" + (f":{qualifier}" if qualifier else "")
    return names.function


def canonical(call: Call, names: StackNames, db_base: str | None) -> dict[str, Any]:
    """The call's parameters with the test's names replaced by the stack's."""
    p = json.loads(json.dumps(call.params))
    if call.service == "cloudfront":
        for key in ("Id", "DistributionId"):
            if key in p:
                p[key] = names.distribution_id
        config = p.get("DistributionConfig") or {}
        behaviours = [config.get("DefaultCacheBehavior") or {},
                      *((config.get("CacheBehaviors") or {}).get("Items") or [])]
        for behaviour in behaviours:
            for item in (behaviour.get("LambdaFunctionAssociations") or {}).get("Items") or []:
                item["LambdaFunctionARN"] = _function_arn(item["LambdaFunctionARN"], names)
    elif call.service == "lambda":
        p["FunctionName"] = _function_arn(str(p["FunctionName"]), names)
    elif call.service == "s3":
        if call.caller == "rollback.adapters.pulumi_backend":
            p["Bucket"] = STATE_BACKEND[0]
            for key in ("Key", "Prefix"):
                if isinstance(p.get(key), str) and ".pulumi" in p[key]:
                    p[key] = f"{STATE_BACKEND[1]}/.pulumi" + p[key].split(".pulumi", 1)[1]
        elif call.caller == "rollback.adapters.s3_snapshots":
            # <prefix>/<distribution>/<id>.distribution.json: the test's prefix and distribution become the stack's.
            p["Bucket"] = CDN_SNAPSHOTS[0]
            if isinstance(p.get("Key"), str):
                p["Key"] = f"{CDN_SNAPSHOTS[1]}/{names.distribution_id}/{str(p['Key']).rsplit('/', 1)[-1]}"
            if isinstance(p.get("Prefix"), str):
                p["Prefix"] = f"{CDN_SNAPSHOTS[1]}/{names.distribution_id}/"
        elif call.caller == "rollback.adapters.s3_lease":
            # <prefix>/locks/<env>.json and <prefix>/<kind>/<file>: the test's prefix becomes the stack's.
            p["Bucket"] = TEAM_LEASE[0]
            if isinstance(p.get("Key"), str):
                p["Key"] = f"{TEAM_LEASE[1]}/" + "/".join(str(p["Key"]).split("/")[-2:])
            # the resume guard lists <prefix>/runs/ after a run's key (ListObjectsV2 Prefix, StartAfter)
            if isinstance(p.get("Prefix"), str):
                p["Prefix"] = f"{TEAM_LEASE[1]}/{str(p['Prefix']).rstrip('/').split('/')[-1]}/"
            if isinstance(p.get("StartAfter"), str):
                p["StartAfter"] = f"{TEAM_LEASE[1]}/" + "/".join(str(p["StartAfter"]).split("/")[-2:])
        else:
            p["Bucket"] = names.bucket
            source = p.get("CopySource")
            if isinstance(source, dict):
                source["Bucket"] = names.bucket
            elif isinstance(source, str):  # boto3 has already turned it into "bucket/key?versionId=..."
                p["CopySource"] = names.bucket + "/" + source.lstrip("/").split("/", 1)[1]
    elif call.service == "rds":
        for key in ("DBInstanceIdentifier", "SourceDBInstanceIdentifier", "TargetDBInstanceIdentifier",
                    "DBSnapshotIdentifier", "OptionGroupName"):
            if isinstance(p.get(key), str):
                p[key] = _rebase(p[key], db_base, names.db_base)
        # The source instance's secret key is the stack's (moto's is its aws/secretsmanager key).
        if p.get("MasterUserSecretKmsKeyId"):
            p["MasterUserSecretKmsKeyId"] = names.db_secret_key
        # The source instance's groups are the stack's declared ones (moto's are its defaults).
        if p.get("DBSubnetGroupName"):
            p["DBSubnetGroupName"] = names.subnet_group
        if p.get("DBParameterGroupName"):
            p["DBParameterGroupName"] = names.parameter_group
        # The source instance's enhanced-monitoring role is the stack's (the tests' instances name their own).
        if p.get("MonitoringRoleArn"):
            p["MonitoringRoleArn"] = names.db_monitoring_role
    elif call.service == "secretsmanager":
        # RDS's managed secrets (rds!db-<uuid>) are encrypted with the key of the stack's secret.
        if "rds!" in str(p.get("SecretId", "")):
            p["_KmsKeyId"] = names.db_secret_key
    elif call.service == "cloudwatch":
        if p.get("AlarmNames"):
            p["AlarmNames"] = [n if n.startswith(names.alarm_prefix) else names.alarm_prefix + n
                               for n in p["AlarmNames"]]
        if isinstance(p.get("AlarmName"), str) and not p["AlarmName"].startswith(names.alarm_prefix):
            p["AlarmName"] = names.alarm_prefix + p["AlarmName"]
    return p


@dataclass(frozen=True)
class Checked:
    call: Call
    need: Need


def all_needs(recorded: list[Call], names: StackNames) -> list[Checked]:
    bases = _db_bases(recorded)
    return [Checked(call, need) for call in recorded
            for need in needs(call.service, call.operation, canonical(call, names, bases.get(call.test)))]


def denied(policy: Mapping[str, Any], checked: list[Checked]) -> list[str]:
    return sorted({f"{c.call.operation} ({c.call.caller}, {c.call.test}) needs {c.need.describe()}"
                   for c in checked if not allowed(policy, c.need)})


def test_the_suite_exercised_every_part_of_the_cli(recorded: list[Call]) -> None:
    services = {call.service for call in recorded}
    assert services >= {"cloudfront", "lambda", "s3", "rds", "cloudwatch"}, services
    callers = {call.caller for call in recorded}
    assert {"rollback.adapters.cloudfront", "rollback.adapters.s3_versions", "rollback.adapters.rds",
            "rollback.adapters.pulumi_backend"} <= callers, callers


def test_every_aws_call_of_the_cli_is_allowed_by_the_operator_role(
        recorded: list[Call], names: StackNames, policy: dict[str, Any]) -> None:
    problems = denied(policy, all_needs(recorded, names))
    assert not problems, "the operator role denies calls the CLI makes:\n  " + "\n  ".join(problems)


def test_every_action_the_role_grants_is_needed_by_the_cli(
        recorded: list[Call], names: StackNames, policy: dict[str, Any]) -> None:
    checked = all_needs(recorded, names)
    unused = []
    for sid, action in granted_actions(policy):
        if (sid, action) in NOT_OBSERVABLE:
            continue
        if not denied(without_action(policy, sid, action), checked):
            unused.append(f"{sid}: {action}")
    assert not unused, "granted but no call of the CLI needs it (remove it, or say why):\n  " + "\n  ".join(unused)


@pytest.mark.parametrize(
    ("sid", "action", "operation"),
    [
        ("AssetsObjectsRestore", "s3:DeleteObjectVersion", "DeleteObject"),  # --undelete
        ("AssetsObjectsRestore", "s3:PutObjectTagging", "CopyObject"),  # TaggingDirective=COPY
        ("DatabaseRestore", "rds:RestoreDBInstanceFromDBSnapshot", "RestoreDBInstanceFromDBSnapshot"),
        ("DatabaseRestoredSettings", "rds:ModifyDBInstance", "ModifyDBInstance"),  # the managed password
        ("DatabaseManagedPasswordSecret", "secretsmanager:CreateSecret", "ModifyDBInstance"),
        ("DatabaseManagedPasswordKey", "kms:GenerateDataKey", "ModifyDBInstance"),
        ("CloudFrontConfigAndInvalidations", "cloudfront:UpdateDistribution", "UpdateDistribution"),
    ],
)
def test_removing_an_action_from_the_role_fails_the_check(
        recorded: list[Call], names: StackNames, policy: dict[str, Any], sid: str, action: str,
        operation: str) -> None:
    checked = all_needs(recorded, names)
    assert not denied(policy, checked)
    problems = denied(without_action(policy, sid, action), checked)
    assert problems and all(action.split(":")[1].rstrip("*") in p for p in problems), problems
    assert any(p.startswith(f"{operation} ") for p in problems), problems


def test_the_original_instance_is_in_the_role_after_a_restore(
        recorded: list[Call], names: StackNames, policy: dict[str, Any]) -> None:
    """The resource side bites too: db:<base>-* alone (the old role) misses the base instance."""
    checked = all_needs(recorded, names)
    narrowed = json.loads(json.dumps(policy))
    for statement in narrowed["Statement"]:
        if statement["Sid"].startswith("Database") and isinstance(statement["Resource"], list):
            statement["Resource"] = [r for r in statement["Resource"] if not r.endswith(f":db:{names.db_base}")]
    problems = denied(narrowed, checked)
    assert any(f":db:{names.db_base} " in f"{p} " for p in problems), problems


def test_the_role_modifies_restored_instances_only(names: StackNames, policy: dict[str, Any]) -> None:
    """Turning on what a restore cannot set is allowed on <base>-* only: never on the stack's own instance,
    and the secret's key is the stack's secret key alone."""
    from tests.infra_program.iam_model import ACCOUNT, REGION, Need

    base = f"arn:aws:rds:{REGION}:{ACCOUNT}:db:{names.db_base}"
    assert allowed(policy, Need("rds:ModifyDBInstance", f"{base}-r1"))
    assert not allowed(policy, Need("rds:ModifyDBInstance", base))
    assert allowed(policy, Need("kms:GenerateDataKey", names.db_secret_key))
    assert not allowed(policy, Need("kms:GenerateDataKey", f"arn:aws:kms:{REGION}:{ACCOUNT}:key/another"))
