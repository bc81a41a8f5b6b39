"""rollback infra invalidate and rollback infra drift against moto."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.aws.conftest import EdgeStack, Project, journal_events

# --------------------------------------------------------------------------- invalidate


def test_invalidate_and_wait(aws: Callable[[str], Any], edge_stack: Callable[..., EdgeStack],
                             project: Callable[..., Project], run_cli: Any) -> None:
    stack = edge_stack(with_alarm=False)
    proj = project(stack)
    result = run_cli("infra", "invalidate", "--paths", "/*", "--wait", "--poll-interval", "0s", "--json",
                     "--config", str(proj.config))
    assert result.code == 0, result.err
    document = result.json()
    assert document["status"] == "Completed"
    invalidation = document["invalidation"]["id"]
    got = aws("cloudfront").get_invalidation(DistributionId=stack.distribution_id, Id=invalidation)
    assert got["Invalidation"]["InvalidationBatch"]["Paths"]["Items"] == ["/*"]
    assert [e["step"] for e in journal_events(proj.journal_dir) if e["event"] == "step_finished"] == [
        "invalidate", "wait"]


def test_invalidate_several_paths_without_wait(aws: Callable[[str], Any], edge_stack: Callable[..., EdgeStack],
                                               project: Callable[..., Project], run_cli: Any) -> None:
    stack = edge_stack(with_alarm=False)
    proj = project(stack)
    result = run_cli("infra", "invalidate", "--paths", "/index.html /app.js", "--paths", "/img/*",
                     "--config", str(proj.config))
    assert result.code == 0, result.err
    assert result.out.strip().endswith(f"of /index.html, /app.js, /img/* on distribution {stack.distribution_id}: "
                                       "InProgress")
    items = aws("cloudfront").list_invalidations(DistributionId=stack.distribution_id)["InvalidationList"]["Items"]
    assert len(items) == 1


def test_invalidate_dry_run_and_bad_path(aws: Callable[[str], Any], edge_stack: Callable[..., EdgeStack],
                                         project: Callable[..., Project], run_cli: Any) -> None:
    stack = edge_stack(with_alarm=False)
    proj = project(stack)
    dry = run_cli("infra", "invalidate", "--dry-run", "--wait", "--config", str(proj.config))
    assert dry.code == 0, dry.err
    assert dry.out.strip() == f"dry run: would invalidate /* on distribution {stack.distribution_id}"
    assert aws("cloudfront").list_invalidations(DistributionId=stack.distribution_id)["InvalidationList"][
        "Quantity"] == 0
    bad = run_cli("infra", "invalidate", "--paths", "index.html", "--config", str(proj.config))
    assert bad.code == 2
    assert bad.err.strip() == "error: invalidation paths must start with '/': index.html (see 'rollback --help')"


def test_invalidate_unknown_distribution(project: Callable[..., Project], run_cli: Any, aws_env: str) -> None:
    proj = project(None, aws_settings={"distribution_id": "ENOSUCHDIST"})
    result = run_cli("infra", "invalidate", "--config", str(proj.config))
    assert result.code == 1
    assert "NoSuchDistribution" in result.err and "check that distribution ENOSUCHDIST exists" in result.err


# --------------------------------------------------------------------------- drift


def checkpoint_of(stack: EdgeStack, version: int, *, origin_path: str | None = None) -> list[dict[str, Any]]:
    """The resources a checkpoint would hold for ``stack`` after a pulumi up pinning ``version``."""
    arn = stack.arn(version)
    resources: list[dict[str, Any]] = [
        {"urn": "urn:pulumi:prod::rollback::pulumi:pulumi:Stack::rollback-prod", "type": "pulumi:pulumi:Stack",
         "custom": False, "outputs": {"distributionId": stack.distribution_id}},
        {"urn": "urn:pulumi:prod::rollback::aws:cloudfront/distribution:Distribution::cdn", "custom": True,
         "type": "aws:cloudfront/distribution:Distribution", "id": stack.distribution_id,
         "inputs": {}, "outputs": {
             "id": stack.distribution_id,
             "defaultCacheBehavior": {"lambdaFunctionAssociations": [
                 {"eventType": "viewer-response", "lambdaArn": arn, "includeBody": False}]},
             "orderedCacheBehaviors": [
                 {"pathPattern": "/api/*", "lambdaFunctionAssociations": [
                     {"eventType": "origin-request", "lambdaArn": arn, "includeBody": False}]},
                 {"pathPattern": "/static/*", "lambdaFunctionAssociations": []}],
             "origins": [{"originId": "assets", "originPath": origin_path or stack.origin_path,
                          "domainName": f"{stack.bucket}.s3.amazonaws.com"}]}},
        {"urn": "urn:pulumi:prod::rollback::aws:lambda/function:Function::edge", "custom": True,
         "type": "aws:lambda/function:Function", "id": stack.function,
         "outputs": {"name": stack.function, "version": str(version), "qualifiedArn": arn}},
        {"urn": "urn:pulumi:prod::rollback::aws:s3/bucket:Bucket::assets", "custom": True,
         "type": "aws:s3/bucket:Bucket", "id": stack.bucket, "outputs": {"bucket": stack.bucket}},
        {"urn": "urn:pulumi:prod::rollback::aws:s3/bucketVersioning:BucketVersioning::assets", "custom": True,
         "type": "aws:s3/bucketVersioning:BucketVersioning", "id": stack.bucket,
         "outputs": {"bucket": stack.bucket, "versioningConfiguration": {"status": "Enabled"}}},
    ]
    for alarm in stack.alarms:
        resources.append({"urn": f"urn:pulumi:prod::rollback::aws:cloudwatch/metricAlarm:MetricAlarm::{alarm}",
                          "custom": True, "type": "aws:cloudwatch/metricAlarm:MetricAlarm", "id": alarm,
                          "outputs": {"name": alarm, "metricName": "5xxErrorRate", "namespace": "AWS/CloudFront",
                                      "threshold": 5, "comparisonOperator": "GreaterThanThreshold",
                                      "actionsEnabled": True}})
    return resources


def _export(tmp: Path, resources: list[dict[str, Any]]) -> Path:
    path = tmp / "stack-export.json"
    path.write_text(json.dumps({"version": 3, "deployment": {"manifest": {}, "resources": resources}}),
                    encoding="utf-8")
    return path


def test_no_drift(edge_stack: Callable[..., EdgeStack], project: Callable[..., Project], run_cli: Any) -> None:
    stack = edge_stack()
    proj = project(stack)
    export = _export(proj.root, checkpoint_of(stack, 3))
    result = run_cli("infra", "drift", "--checkpoint", str(export), "--config", str(proj.config))
    assert result.code == 0, result.err
    assert result.out.strip().splitlines() == [
        f"checked against {export}: 1 distribution(s), 1 function(s), 1 bucket(s), 1 alarm(s)", "no drift"]


def test_break_glass_rollback_shows_as_drift(aws: Callable[[str], Any], edge_stack: Callable[..., EdgeStack],
                                             project: Callable[..., Project], run_cli: Any) -> None:
    stack = edge_stack()
    proj = project(stack)
    export = _export(proj.root, checkpoint_of(stack, 3))
    assert run_cli("infra", "edge", "--to-version", "2", "--yes", "--poll-interval", "0s",
                   "--config", str(proj.config)).code == 0
    result = run_cli("infra", "drift", "--json", "--checkpoint", str(export), "--config", str(proj.config))
    assert result.code == 3
    document = result.json()  # exactly one JSON document on stdout
    assert document["ok"] is False and document["drift"] is True
    assert [(d["field"], d["expected"], d["live"]) for d in document["differences"]] == [
        ("edge association (/api/*, origin-request)", stack.arn(3), stack.arn(2)),
        ("edge association (default, viewer-response)", stack.arn(3), stack.arn(2)),
    ]
    assert "2 difference(s)" in result.err


def test_every_kind_of_drift_is_reported(aws: Callable[[str], Any], edge_stack: Callable[..., EdgeStack],
                                         project: Callable[..., Project], run_cli: Any) -> None:
    stack = edge_stack(versions=3, live=3)
    proj = project(stack)
    export = _export(proj.root, checkpoint_of(stack, 3))
    cf, s3, lam, cw = aws("cloudfront"), aws("s3"), aws("lambda"), aws("cloudwatch")
    current = cf.get_distribution_config(Id=stack.distribution_id)
    config = current["DistributionConfig"]
    config["Origins"]["Items"][0]["OriginPath"] = "/releases/r41"
    cf.update_distribution(Id=stack.distribution_id, IfMatch=current["ETag"], DistributionConfig=config)
    s3.put_bucket_versioning(Bucket=stack.bucket, VersioningConfiguration={"Status": "Suspended"})
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.js", "// hand-published")
    lam.update_function_code(FunctionName=stack.function, ZipFile=buffer.getvalue())
    lam.publish_version(FunctionName=stack.function)
    cw.delete_alarms(AlarmNames=stack.alarms)

    result = run_cli("infra", "drift", "--checkpoint", str(export), "--config", str(proj.config))
    assert result.code == 3
    lines = [line for line in result.out.splitlines() if line.startswith("drift: ")]
    assert lines == [
        f"drift: distribution {stack.distribution_id}: origin path (assets): expected {stack.origin_path}, "
        "live /releases/r41",
        f"drift: function {stack.function}: newest published version: expected 3, live 4",
        f"drift: bucket {stack.bucket}: versioning: expected Enabled, live Suspended",
        f"drift: alarm {stack.alarms[0]}: alarm: expected {stack.alarms[0]}, missing live",
    ]


def test_drift_reads_the_stacks_checkpoint_from_the_backend(edge_stack: Callable[..., EdgeStack],
                                                             project: Callable[..., Project], run_cli: Any,
                                                             write_config: Callable[..., Path]) -> None:
    stack = edge_stack()
    proj = project(stack)
    backend = proj.root / "state"
    (backend / ".pulumi" / "stacks" / "rollback").mkdir(parents=True)
    (backend / ".pulumi" / "meta.yaml").write_text("version: 1\n", encoding="utf-8")
    (backend / ".pulumi" / "stacks" / "rollback" / "prod.json").write_text(json.dumps({
        "version": 3, "checkpoint": {"stack": "organization/rollback/prod",
                                     "latest": {"manifest": {}, "resources": checkpoint_of(stack, 2)}}}),
        encoding="utf-8")
    config = write_config({"prod": {
        "aws": {"distribution_id": stack.distribution_id, "edge_function": stack.function,
                "assets_bucket": stack.bucket, "from_stack_outputs": False},
        "pulumi": {"stack": "prod", "project_dir": ".", "backend_url": f"file://{backend}"}}}, default_env="prod")
    result = run_cli("infra", "drift", "--json", "--config", str(config))
    assert result.code == 3, result.err
    document = result.json()
    assert document["checkpoint"] == f"file://{backend}"
    fields = {d["field"] for d in document["differences"]}
    assert "edge association (default, viewer-response)" in fields
    assert f"function {stack.function}" in {d["resource"] for d in document["differences"]}


def test_drift_bad_checkpoint_file(project: Callable[..., Project], run_cli: Any, aws_env: str) -> None:
    proj = project(None)
    bad = proj.root / "bad.json"
    bad.write_text("{}", encoding="utf-8")
    result = run_cli("infra", "drift", "--checkpoint", str(bad), "--config", str(proj.config))
    assert result.code == 2
    assert result.err.strip() == (f"error: {bad} has no resources (pass the output of 'pulumi stack export' "
                                  "or a checkpoint file)")
