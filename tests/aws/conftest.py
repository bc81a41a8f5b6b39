"""Fixtures for the break-glass tests: real boto3 calls against the session's moto server
(with the CloudFront semantics from ``rollback.sandbox.cloudfront``)."""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

ACCOUNT = "123456789012"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def aws(aws_env: str) -> Callable[[str], Any]:
    """``aws("cloudfront")``: a boto3 client for the moto server (us-east-1)."""
    import boto3

    clients: dict[str, Any] = {}

    def client(service: str) -> Any:
        if service not in clients:
            clients[service] = boto3.client(service, region_name="us-east-1")  # type: ignore[call-overload]
        return clients[service]

    return client


def _zip(body: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.js", body)
    return buffer.getvalue()


def behaviour(origin: str, arn: str | None, *, path: str | None = None,
              event: str = "viewer-response") -> dict[str, Any]:
    item: dict[str, Any] = {
        "TargetOriginId": origin,
        "ViewerProtocolPolicy": "redirect-to-https",
        "ForwardedValues": {"QueryString": False, "Cookies": {"Forward": "none"}},
        "MinTTL": 0,
        "LambdaFunctionAssociations": (
            {"Quantity": 1, "Items": [{"LambdaFunctionARN": arn, "EventType": event, "IncludeBody": False}]}
            if arn else {"Quantity": 0}
        ),
    }
    if path is not None:
        item["PathPattern"] = path
    return item


@dataclass
class EdgeStack:
    """A Lambda@Edge function with published versions 1..n, and a distribution using one of them."""

    function: str
    versions: dict[str, str]  # version -> ARN
    distribution_id: str
    etag: str
    bucket: str
    origin_path: str
    alarms: list[str] = field(default_factory=list)

    def arn(self, version: int | str) -> str:
        return self.versions[str(version)]


@pytest.fixture
def edge_stack(aws: Callable[[str], Any]) -> Callable[..., EdgeStack]:
    """Build a function with ``versions`` published versions and a distribution whose default
    behaviour and ``/api/*`` use version ``live``; ``/static/*`` has no association."""

    def build(versions: int = 3, live: int = 3, with_alarm: bool = True) -> EdgeStack:
        iam, lam, cf, s3 = aws("iam"), aws("lambda"), aws("cloudfront"), aws("s3")
        name = unique("sec-headers")
        role = iam.create_role(RoleName=unique("edge-role"), AssumeRolePolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                    "Principal": {"Service": "lambda.amazonaws.com"}}]}))
        lam.create_function(FunctionName=name, Runtime="nodejs18.x", Role=role["Role"]["Arn"],
                            Handler="index.handler", Code={"ZipFile": _zip("// v1")}, Publish=True)
        arns = {"1": f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{name}:1"}
        for number in range(2, versions + 1):
            lam.update_function_code(FunctionName=name, ZipFile=_zip(f"// v{number}"))
            published = lam.publish_version(FunctionName=name)
            arns[published["Version"]] = published["FunctionArn"]
        bucket = unique("assets")
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        for release in ("r41", "r42"):  # the release served and the one before it
            s3.put_object(Bucket=bucket, Key=f"releases/{release}/index.html", Body=b"<html></html>")
        origin_path = "/releases/r42"
        live_arn = arns[str(live)]
        created = cf.create_distribution(DistributionConfig={
            "CallerReference": unique("ref"),
            "Comment": "rollback test",
            "Enabled": True,
            "Origins": {"Quantity": 1, "Items": [{
                "Id": "assets", "DomainName": f"{bucket}.s3.amazonaws.com", "OriginPath": origin_path,
                "S3OriginConfig": {"OriginAccessIdentity": ""}}]},
            "DefaultCacheBehavior": behaviour("assets", live_arn),
            "CacheBehaviors": {"Quantity": 2, "Items": [
                behaviour("assets", live_arn, path="/api/*", event="origin-request"),
                behaviour("assets", None, path="/static/*"),
            ]},
        })
        alarms = []
        if with_alarm:
            alarm = unique("edge-5xx")
            aws("cloudwatch").put_metric_alarm(
                AlarmName=alarm, MetricName="5xxErrorRate", Namespace="AWS/CloudFront", Statistic="Average",
                Period=60, EvaluationPeriods=1, Threshold=5.0, ComparisonOperator="GreaterThanThreshold")
            alarms.append(alarm)
        return EdgeStack(function=name, versions=arns, distribution_id=created["Distribution"]["Id"],
                         etag=created["ETag"], bucket=bucket, origin_path=origin_path, alarms=alarms)

    return build


STACK_FILE = """\
# Production stack (test copy).
config:
  aws:region: us-east-1
  # Edge: pinned to the version verified in staging.
  rollback:edgeFunctionVersion: "3"
  rollback:assetsRelease: r42 # the release CloudFront serves
"""


@dataclass
class Project:
    """A rollback.toml plus a Pulumi project dir (Pulumi.yaml with stackConfigDir: stacks)."""

    config: Any  # Path of rollback.toml
    root: Any
    stack_file: Any
    journal_dir: Any


@pytest.fixture
def project(tmp_path: Any, write_config: Callable[..., Any]) -> Callable[..., Project]:
    def make(stack: EdgeStack | None = None, *, aws_settings: dict[str, Any] | None = None,
             pulumi: bool = True, pulumi_settings: dict[str, Any] | None = None) -> Project:
        (tmp_path / "Pulumi.yaml").write_text("name: rollback\nruntime: python\nstackConfigDir: stacks\n",
                                              encoding="utf-8")
        (tmp_path / "stacks").mkdir(exist_ok=True)
        stack_file = tmp_path / "stacks" / "Pulumi.prod.yaml"
        stack_file.write_text(STACK_FILE, encoding="utf-8")
        settings: dict[str, Any] = {"region": "us-east-1", "from_stack_outputs": False}
        if stack is not None:
            settings.update(distribution_id=stack.distribution_id, edge_function=stack.function,
                            assets_bucket=stack.bucket)
        settings.update(aws_settings or {})
        env: dict[str, Any] = {"aws": settings}
        if pulumi:
            env["pulumi"] = {"stack": "prod", "project_dir": ".", **(pulumi_settings or {})}
        journal = tmp_path / "journal"
        path = write_config({"prod": env}, default_env="prod", journal_dir=str(journal))
        return Project(path, tmp_path, stack_file, journal)

    return make


def associations(client: Any, distribution_id: str) -> dict[str, list[str]]:
    config = client.get_distribution_config(Id=distribution_id)["DistributionConfig"]
    found = {"default": [a["LambdaFunctionARN"] for a in
                         config["DefaultCacheBehavior"]["LambdaFunctionAssociations"].get("Items", [])]}
    for item in config["CacheBehaviors"].get("Items", []):
        found[item["PathPattern"]] = [a["LambdaFunctionARN"] for a in
                                      item["LambdaFunctionAssociations"].get("Items", [])]
    return found


def journal_events(directory: Any) -> list[dict[str, Any]]:
    files = sorted(directory.glob("*.jsonl"))
    assert len(files) == 1, files
    return [json.loads(line) for line in files[0].read_text(encoding="utf-8").splitlines()]
