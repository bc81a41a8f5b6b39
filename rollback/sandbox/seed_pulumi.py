"""The sandbox's Pulumi: the self-managed ``file://`` backend with the stack's updates, and the program's
git history (:data:`PROGRAM_VERSIONS`) they ran from."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rollback.sandbox.pulumi_backend import BackendUpdate, build_backend, checkpoint_document, encrypt, secret_property
from rollback.sandbox.seed import (
    ACCOUNT,
    BAD_EDGE_VERSION,
    ORIGIN_SECRET_KEY,
    PROJECT,
    REGION,
    RELEASE,
    STACK,
    Timeline,
)
from rollback.sandbox.seed_aws import EDGE_SOURCES, lambda_zip
from rollback.sandbox.seed_git import run_git
from rollback.sandbox.vercel_state import DEMO


def _source_hash(edge_version: str) -> str:
    import base64

    return base64.b64encode(hashlib.sha256(lambda_zip(EDGE_SOURCES[edge_version])).digest()).decode()


def _aws_provider_version() -> str:
    """The pulumi-aws version the program pins (``infra/requirements.txt``): what wrote the checkpoint."""
    import re

    root = repository_root()
    text = (root / "infra" / "requirements.txt").read_text(encoding="utf-8") if root is not None else ""
    found = re.search(r"^pulumi-aws==(\S+)", text, re.MULTILINE)
    return found.group(1) if found else "7.51.1"


def _stack_resources(aws: Mapping[str, Any], edge_version: str, origin_secret: str) -> list[dict[str, Any]]:
    urn = f"urn:pulumi:{STACK}::{PROJECT}::"
    stack_urn = f"{urn}pulumi:pulumi:Stack::{PROJECT}-{STACK}"
    arn = aws["edge_versions"][edge_version]
    function_arn = arn.rsplit(":", 1)[0]
    alarm_names = [a["name"] for a in aws["alarms"]]
    outputs = {
        "distributionId": aws["distribution_id"], "distributionDomain": "d2sandboxr42cf.cloudfront.net",
        "edgeFunctionName": aws["edge_function"], "edgeFunctionVersionArn": arn, "edgeFunctionVersion": edge_version,
        "assetsBucket": aws["assets_bucket"], "assetsRelease": aws["assets_release"],
        "dbInstanceId": aws["db_instance"], "alarmNames": alarm_names,
        "compositeAlarmName": aws["composite_alarm"], "alertTopicArn": aws["alert_topic"],
        "operatorRoleArn": aws["operator_role"],
    }
    distribution = {
        "enabled": True, "defaultRootObject": "index.html", "comment": "cdn: assets bucket and app origin",
        "defaultCacheBehavior": {"targetOriginId": "assets", "viewerProtocolPolicy": "redirect-to-https",
                                 "lambdaFunctionAssociations": [
                                     {"eventType": "viewer-response", "lambdaArn": arn, "includeBody": False}]},
        "orderedCacheBehaviors": [{"pathPattern": "/api/*", "targetOriginId": "app",
                                   "viewerProtocolPolicy": "redirect-to-https", "lambdaFunctionAssociations": []}],
        "origins": [{"originId": "assets", "originPath": f"/releases/{aws['assets_release']}",
                     "domainName": f"{aws['assets_bucket']}.s3.us-east-1.amazonaws.com"},
                    {"originId": "app", "originPath": "", "domainName": DEMO.domains[0],
                     "customHeaders": [{"name": "X-Origin-Verify", "value": secret_property(origin_secret)}]}],
    }
    provider = _aws_provider_version()
    resources: list[dict[str, Any]] = [
        {"urn": stack_urn, "custom": False, "type": "pulumi:pulumi:Stack", "outputs": outputs},
        {"urn": f"{urn}pulumi:providers:aws::default_{provider.replace('.', '_')}", "custom": True,
         "type": "pulumi:providers:aws", "id": "c0ffee00-0000-4000-8000-000000000001",
         "inputs": {"region": REGION, "version": provider}, "outputs": {"region": REGION, "version": provider}},
        {"urn": f"{urn}aws:lambda/function:Function::edge-function", "custom": True, "type":
            "aws:lambda/function:Function", "id": aws["edge_function"], "parent": stack_urn,
         "inputs": {"name": aws["edge_function"], "publish": True, "runtime": "nodejs20.x",
                    "handler": "index.handler", "sourceCodeHash": _source_hash(edge_version)},
         "outputs": {"name": aws["edge_function"], "arn": function_arn, "version": edge_version,
                     "qualifiedArn": arn, "sourceCodeHash": _source_hash(edge_version)}},
        {"urn": f"{urn}aws:cloudfront/distribution:Distribution::cdn-distribution", "custom": True,
         "type": "aws:cloudfront/distribution:Distribution", "id": aws["distribution_id"], "parent": stack_urn,
         "inputs": distribution,
         "outputs": {**distribution, "id": aws["distribution_id"], "status": "Deployed",
                     "arn": f"arn:aws:cloudfront::{ACCOUNT}:distribution/{aws['distribution_id']}",
                     "domainName": "d2sandboxr42cf.cloudfront.net"}},
        {"urn": f"{urn}aws:s3/bucket:Bucket::assets-bucket", "custom": True, "type": "aws:s3/bucket:Bucket",
         "id": aws["assets_bucket"], "parent": stack_urn, "outputs": {"bucket": aws["assets_bucket"]}},
        {"urn": f"{urn}aws:s3/bucketVersioning:BucketVersioning::assets-versioning", "custom": True,
         "type": "aws:s3/bucketVersioning:BucketVersioning", "id": aws["assets_bucket"], "parent": stack_urn,
         "outputs": {"bucket": aws["assets_bucket"], "versioningConfiguration": {"status": "Enabled"}}},
        {"urn": f"{urn}aws:rds/instance:Instance::db-instance", "custom": True, "type": "aws:rds/instance:Instance",
         "id": aws["db_instance"], "parent": stack_urn,
         "inputs": {"identifier": aws["db_instance"], "engine": "postgres", "engineVersion": "16",
                    "instanceClass": "db.t4g.medium", "backupRetentionPeriod": 7,
                    "manageMasterUserPassword": True},
         "outputs": {"identifier": aws["db_instance"]}},
    ]
    for alarm in aws["alarms"]:
        resources.append({"urn": f"{urn}aws:cloudwatch/metricAlarm:MetricAlarm::{alarm['name']}", "custom": True,
                          "type": "aws:cloudwatch/metricAlarm:MetricAlarm", "id": alarm["name"], "parent": stack_urn,
                          "outputs": {"name": alarm["name"], "threshold": alarm["threshold"],
                                      "comparisonOperator": alarm["comparison"], "actionsEnabled": True}})
    return resources


# The sandbox's program history: this repository's own infra/ at three versions, oldest first. Each is
# today's program with these (text, replacement) edits of infra/cdn.py; the last is today's as it is.
PROGRAM_VERSIONS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("infra: the rollback stack (HTTP/2 only)",
     (('http_version="http2and3"', 'http_version="http2"'), ("is_ipv6_enabled=True", "is_ipv6_enabled=False"))),
    ("cdn: serve HTTP/3 too", (("is_ipv6_enabled=True", "is_ipv6_enabled=False"),)),
    ("cdn: IPv6 for viewers", ()),
)
# The sandbox's VPC, as dbNetwork declares it (a required key of the program: infra/settings.py).
DB_NETWORK = {"access": "public", "vpcId": "vpc-05a9d0b1c2e3f4a50",
              "subnetIds": ["subnet-0a1b2c3d4e5f60718", "subnet-0b2c3d4e5f6071829"], "allowedCidrs": ["0.0.0.0/0"]}


def repository_root() -> Path | None:
    """The repository this package was installed from (``pip install -e .``): where ``Pulumi.yaml`` and
    ``infra/`` are; ``None`` for an installed copy without them."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "Pulumi.yaml").is_file() and (root / "infra" / "__main__.py").is_file() else None


def seed_program(project: Path, timeline: Timeline) -> list[str]:
    """``project`` as a git repository of this repository's ``Pulumi.yaml`` and ``infra/`` at
    :data:`PROGRAM_VERSIONS` (the newest is HEAD, the work tree); returns the commits, oldest first.
    Raises :class:`RuntimeError` when today's program no longer has a text an older version edits."""
    source = repository_root()
    if source is None:
        raise RuntimeError("this installation has no infra/ program (install the repository with pip install -e)")
    shutil.rmtree(project, ignore_errors=True)
    project.mkdir(parents=True)
    shutil.copy2(source / "Pulumi.yaml", project / "Pulumi.yaml")
    shutil.copytree(source / "infra", project / "infra", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (project / ".gitignore").write_text(".venv/\n__pycache__/\n", encoding="utf-8")
    cdn = project / "infra" / "cdn.py"
    today = cdn.read_text(encoding="utf-8")
    run_git(project, "init", "-q", "-b", "main")
    commits = []
    moments = (timeline.created, timeline.good_release - dt.timedelta(minutes=5),
               timeline.bad_deploy - dt.timedelta(minutes=1))
    for (message, edits), when in zip(PROGRAM_VERSIONS, moments, strict=True):
        text = today
        for old, new in edits:
            if old not in text:
                raise RuntimeError(f"infra/cdn.py no longer has {old!r}: update PROGRAM_VERSIONS in {__file__}")
            text = text.replace(old, new)
        cdn.write_text(text, encoding="utf-8")
        run_git(project, "add", "-A", "Pulumi.yaml", "infra", ".gitignore")
        run_git(project, "commit", "-q", "-m", message, when=when)
        commits.append(run_git(project, "rev-parse", "HEAD"))
    return commits


def _stack_file(aws: Mapping[str, Any], origin_secret: str) -> str:
    """``Pulumi.sandbox.yaml``: the config of the last update, every key the program requires."""
    network = "".join(f"      - {item}\n" for item in DB_NETWORK["subnetIds"])
    cidrs = "".join(f"      - {item}\n" for item in DB_NETWORK["allowedCidrs"])
    return ("# The sandbox stack's config (written by rollback sandbox up): the pins of its last update.\n"
            "config:\n"
            f"  aws:region: {REGION}\n"
            f"  {PROJECT}:assetsBucketName: {aws['assets_bucket']}\n"
            f"  {PROJECT}:assetsRelease: {RELEASE}\n"
            "  # Edge pin: `rollback infra edge` rewrites it.\n"
            f"  {PROJECT}:edgeFunctionVersion: \"{BAD_EDGE_VERSION}\"\n"
            f"  {PROJECT}:appOriginDomain: {DEMO.domains[0]}\n"
            f"  {PROJECT}:dbInstanceIdentifier: {aws['db_instance']}\n"
            f"  {PROJECT}:dbInstanceClass: db.t4g.medium\n"
            f"  {PROJECT}:dbNetwork:\n"
            f"    access: {DB_NETWORK['access']}\n"
            f"    vpcId: {DB_NETWORK['vpcId']}\n"
            f"    subnetIds:\n{network}"
            f"    allowedCidrs:\n{cidrs}"
            f"  {ORIGIN_SECRET_KEY}:\n    secure: {encrypt(origin_secret)}\n")


def write_pulumi(directory: Path, aws: Mapping[str, Any], timeline: Timeline) -> dict[str, Any]:
    """The self-managed backend (``directory/pulumi-state``) with four updates, and the Pulumi project
    (``directory/pulumi``, a git repository of the program, :func:`seed_program`) whose stack config pins
    what the last update deployed."""
    state = directory / "pulumi-state"
    project = directory / "pulumi"
    shutil.rmtree(state, ignore_errors=True)
    origin_secret = secrets.token_urlsafe(18)
    base_config: dict[str, Any] = {
        "aws:region": REGION, f"{PROJECT}:assetsBucketName": aws["assets_bucket"],
        f"{PROJECT}:appOriginDomain": DEMO.domains[0], f"{PROJECT}:dbInstanceIdentifier": aws["db_instance"],
        f"{PROJECT}:dbInstanceClass": "db.t4g.medium", f"{PROJECT}:dbNetwork": DB_NETWORK,
        ORIGIN_SECRET_KEY: {"secure": encrypt(origin_secret)},
    }
    first, second, third = seed_program(project, timeline)
    story = (
        ("initial deploy", timeline.created, "1", {"create": 21}, first),
        ("edge function v2: HSTS header", timeline.edge_v2, "2", {"same": 20, "update": 1}, first),
        (f"release {RELEASE}", timeline.good_release, "2", {"same": 20, "update": 1}, second),
        ("edge function v3: content security policy", timeline.bad_deploy, "3", {"same": 19, "update": 2}, third),
    )
    updates = []
    for message, when, edge, changes, head in story:
        config = {**base_config, f"{PROJECT}:assetsRelease": RELEASE, f"{PROJECT}:edgeFunctionVersion": edge}
        updates.append(BackendUpdate(
            message=message, start_time=int(when.timestamp()), config=config, changes=changes, git_head=head,
            checkpoint=checkpoint_document(PROJECT, STACK, _stack_resources(aws, edge, origin_secret))))
    build_backend(state, project=PROJECT, stack=STACK, updates=updates)
    (project / "stacks").mkdir(parents=True, exist_ok=True)
    (project / "stacks" / f"Pulumi.{STACK}.yaml").write_text(_stack_file(aws, origin_secret), encoding="utf-8")
    return {"backend_url": f"file://{state}", "project": PROJECT, "stack": STACK, "project_dir": str(project),
            "updates": len(updates), "bad_version": len(updates), "good_version": len(updates) - 1,
            "commits": [first, second, third]}
