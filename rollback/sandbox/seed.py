"""The sandbox's world: a bad deploy across every layer, seeded into the local stand-ins.

What it seeds (names follow the Pulumi program in ``infra/`` for project
``rollback``, stack ``sandbox``, so the name prefix is ``rollback-sandbox``):

- **Vercel** (the emulator): project ``demo`` of team ``demo-team``; production
  serves the bad deployment "Add new feature" (3 minutes old, 500 on
  ``/api/health``, slow ``/api/*``); the good one, "Add stats cache" (2 hours
  old), is the instant-rollback candidate. With ``rolling`` (``sandbox up
  --rolling``) the bad deployment is instead the canary of a Vercel rolling
  release at 10 % (manual approval; it crashes: 500 on every request), and the
  good one, its base, serves the other 90 %: a 10 % error rate.
- **Edge**: Lambda@Edge ``rollback-sandbox-security-headers`` versions 1, 2
  (good) and 3 (bad, published with the bad deploy); the distribution's
  viewer-response association names version 3.
- **Assets**: versioned bucket ``rollback-sandbox-assets``; the distribution
  serves ``releases/r42/`` (origin path ``/releases/r42``). The good release
  was uploaded 2 hours ago; the bad deploy overwrote ``index.html`` and
  ``app.js`` and deleted ``app.css`` 4 minutes ago, so
  ``rollback infra assets --prefix releases/r42/ --before "30m ago"`` restores it.
- **Database** (the throwaway PostgreSQL): database ``app`` managed by Prisma
  Migrate (``User``, ``Integration``, ``UserStats``; relationMode "prisma",
  so no foreign keys); a verified backup taken with ``rollback db backup``
  *before* the damage; then a failed migration and the damage it did (users
  deleted, integrations lost, stats zeroed, orphans), so a restore of that
  backup repairs it. ``prisma/migrations/`` holds the local migration files.
- **RDS** (moto, made as strict as RDS by :mod:`rollback.sandbox.rds`):
  instance ``rollback-sandbox-db`` created 3 days ago with 7 days of automated
  backups (so ``--to-time "15m ago"`` is inside its window), its master
  password managed by RDS in Secrets Manager (as ``infra/database.py``
  declares it), and a manual snapshot taken before the release.
- **Alarms**: the six rollback criterion alarms and the composite alarm of
  ``infra/alarms.py``; the 5xx, edge-errors, cache-hit and composite alarms in
  ALARM since 1 minute ago, with 15 minutes of datapoints that turn bad at
  the deploy. The app server's monitor keeps publishing and re-evaluating.
- **Pulumi**: a self-managed ``file://`` backend with four updates of stack
  ``sandbox``; the last one (4 minutes ago) moved the edge pin to the bad
  version 3. Its outputs name the resources above. ``pulumi/`` is the project:
  a git repository of this repository's own ``Pulumi.yaml`` and ``infra/``
  program at three versions (:data:`PROGRAM_VERSIONS`: HTTP/2 only; then HTTP/3;
  then IPv6 for viewers, today's program), each update's ``git.head`` the commit
  it ran from, and the stack config (every required key;
  ``rollback:edgeFunctionVersion: "3"``), so ``rollback infra preview --to 3
  --offline`` checks out version 3's program and shows what the program change
  does beside the config's.

Timestamps that only moto keeps (object versions, function versions, alarm
state changes, the RDS instance's creation) are moved back in the moto process
itself (:func:`backdate_aws`), which is why moto runs inside the supervisor.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import secrets
import shutil
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rollback.sandbox.pulumi_backend import BackendUpdate, build_backend, checkpoint_document, encrypt, secret_property
from rollback.sandbox.vercel_state import DEMO

__all__ = [
    "ACCOUNT",
    "DEMO",
    "ENV",
    "PREFIX",
    "Timeline",
    "backdate_aws",
    "carry_over",
    "seed_aws",
    "seed_database",
    "seed_git",
    "seed_program",
    "seed_vercel",
    "write_config",
    "write_pulumi",
]

ENV = "sandbox"
WEBHOOK_ENV = "SANDBOX_WEBHOOK_URL"  # the variable holding the sandbox incident channel's URL (a secret)
PROJECT = "rollback"
STACK = "sandbox"
PREFIX = f"{PROJECT}-{STACK}"
ACCOUNT = "123456789012"
REGION = "us-east-1"
EDGE_FUNCTION = f"{PREFIX}-security-headers"
ASSETS_BUCKET = f"{PREFIX}-assets"
RELEASE = "r42"
DB_INSTANCE = f"{PREFIX}-db"
DB_SNAPSHOT = f"{DB_INSTANCE}-pre-{RELEASE}"
DISTRIBUTION_ID = "E2SANDBOXR42CF"
GOOD_EDGE_VERSION = "2"
BAD_EDGE_VERSION = "3"
VERCEL_JOB_SECONDS = 0.5
CLOUDFRONT_DEPLOY_SECONDS = 1.0
# The stack's one secret (the X-Origin-Verify value CloudFront sends to the app). The database
# password is not in stack config: RDS manages it in Secrets Manager (infra/database.py).
ORIGIN_SECRET_KEY = f"{PROJECT}:originVerifySecret"

# The runbook's thresholds, as infra/settings.py AlarmThresholds defaults them.
DB_MAX_CONNECTIONS = 429  # db.t4g.medium, as infra/settings.py computes it
DB_ALLOCATED_GB = 20


@dataclass(frozen=True)
class Timeline:
    """When things happened in the sandbox's story (UTC)."""

    now: dt.datetime

    @property
    def created(self) -> dt.datetime:  # the stack, the RDS instance, edge v1
        return self.now - dt.timedelta(days=3)

    @property
    def edge_v2(self) -> dt.datetime:
        return self.now - dt.timedelta(hours=26)

    @property
    def good_release(self) -> dt.datetime:
        return self.now - dt.timedelta(hours=2)

    @property
    def bad_deploy(self) -> dt.datetime:  # stack update, edge v3, bad assets
        return self.now - dt.timedelta(minutes=4)

    @property
    def bad_app(self) -> dt.datetime:  # the Vercel deployment (the emulator's seed: 0.05 h ago) and the migration
        return self.now - dt.timedelta(minutes=3)

    @property
    def detected(self) -> dt.datetime:  # the alarms went to ALARM, after the bad app went live (3 min ago + 60 s)
        return self.now - dt.timedelta(minutes=1)

    def to_dict(self) -> dict[str, str]:
        return {name: _iso(getattr(self, name)) for name in
                ("created", "edge_v2", "good_release", "bad_deploy", "bad_app", "detected", "now")}


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _naive(value: dt.datetime) -> dt.datetime:
    """moto keeps naive UTC datetimes."""
    return value.astimezone(dt.UTC).replace(tzinfo=None)


# ------------------------------------------------------------------------------------------ Vercel


CANARY_PERCENT = 10.0  # the --rolling world's canary share


def seed_vercel(url: str, rolling: bool = False) -> dict[str, Any]:
    """Reset the emulator to the demo seed with the newest production deployment unhealthy; with
    ``rolling``, to the demo-rolling seed with that deployment the crashing canary of a release at 10 %."""
    import httpx

    bad_id = DEMO.current
    config: dict[str, Any] = {"job_seconds": VERCEL_JOB_SECONDS, "unhealthy": [bad_id], "fail_aliases": [],
                              "crashing": [bad_id] if rolling else []}
    with httpx.Client(base_url=url, timeout=10) as http:
        http.post("/_admin/reset", json={"seed": "demo-rolling" if rolling else "demo"}).raise_for_status()
        http.post("/_admin/config", json=config).raise_for_status()
        state = http.get("/_admin/state").raise_for_status().json()
    deployments = {d["id"]: d for d in state["deployments"]}
    good, bad = deployments[DEMO.previous], deployments[bad_id]
    seeded = {
        "team_id": DEMO.team_id, "team_slug": DEMO.team_slug, "project_id": DEMO.project_id,
        "project_name": DEMO.project_name, "domains": list(DEMO.domains),
        "bad_deployment": bad["id"], "bad_url": bad["url"], "bad_sha": bad["sha"],
        "good_deployment": good["id"], "good_url": good["url"], "good_sha": good["sha"],
        "bad_created_at": _iso(dt.datetime.fromtimestamp(bad["createdAt"] / 1000, dt.UTC)),
        "job_seconds": VERCEL_JOB_SECONDS,
        "rolling": None,
    }
    if rolling:
        release = state["rollingReleases"][DEMO.project_id]
        seeded["rolling"] = {"canary": release["canary"], "base": release["base"], "state": release["state"],
                             "percentage": round(release["share"] * 100, 3)}
    return seeded


# ------------------------------------------------------------------------------------------- AWS


def _zip(source: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.js", source)
    return buffer.getvalue()


_EDGE_SOURCES = {
    "1": "exports.handler = async (e) => { const r = e.Records[0].cf.response; "
         "r.headers['x-frame-options'] = [{key: 'X-Frame-Options', value: 'DENY'}]; return r; }; // v1",
    "2": "exports.handler = async (e) => { const r = e.Records[0].cf.response; "
         "r.headers['x-frame-options'] = [{key: 'X-Frame-Options', value: 'DENY'}]; "
         "r.headers['strict-transport-security'] = [{key: 'Strict-Transport-Security', "
         "value: 'max-age=63072000'}]; return r; }; // v2",
    "3": "exports.handler = async (e) => { const r = e.Records[0].cf.response; "
         "r.headers['content-security-policy'] = [{key: 'Content-Security-Policy', value: policy}]; "
         "return r; }; // v3: ReferenceError: policy is not defined",
}

GOOD_ASSETS = {
    "index.html": ("<!doctype html><html><head><link rel=stylesheet href=app.css></head>"
                   "<body><div id=app></div><script src=app.js></script></body></html>", "text/html"),
    "app.js": ("document.getElementById('app').textContent = 'demo, release r42';", "application/javascript"),
    "app.css": ("#app { font-family: sans-serif; }", "text/css"),
}
BAD_ASSETS = {
    "index.html": ("<!doctype html><html><head><link rel=stylesheet href=app.3f9c.css></head>"
                   "<body><div id=root></div><script src=app.3f9c.js></script></body></html>", "text/html"),
    "app.js": ("throw new Error('chunk app.3f9c.js failed to load');", "application/javascript"),
}
DELETED_ASSETS = ("app.css",)


def alarm_definitions(distribution_id: str) -> list[dict[str, Any]]:
    """The rollback criterion alarms as ``infra/alarms.py`` creates them (default thresholds), and which
    monitor value each is judged on."""
    cdn = [{"Name": "DistributionId", "Value": distribution_id}, {"Name": "Region", "Value": "Global"}]
    rds = [{"Name": "DBInstanceIdentifier", "Value": DB_INSTANCE}]
    per_minute = {"Period": 60, "EvaluationPeriods": 5, "DatapointsToAlarm": 3}
    connections = round(DB_MAX_CONNECTIONS * 90 / 100)
    free_bytes = round(DB_ALLOCATED_GB * 1024**3 * 10 / 100)
    return [
        {"name": f"{PREFIX}-cdn-5xx-error-rate", "value": "5xxErrorRate", "layer": "app",
         "comparison": "GreaterThanThreshold", "threshold": 5.0,
         "spec": {"AlarmDescription": "Rollback criterion: CloudFront 5xx error rate > 5%",
                  "Namespace": "AWS/CloudFront", "MetricName": "5xxErrorRate", "Dimensions": cdn,
                  "Statistic": "Average", "TreatMissingData": "notBreaching", **per_minute}},
        {"name": f"{PREFIX}-cdn-origin-latency-p95", "value": "OriginLatency", "layer": "app",
         "comparison": "GreaterThanThreshold", "threshold": 5000.0,
         "spec": {"AlarmDescription": "Rollback criterion: p95 origin latency > 5 s (additional CloudFront metric)",
                  "Namespace": "AWS/CloudFront", "MetricName": "OriginLatency", "Dimensions": cdn,
                  "ExtendedStatistic": "p95", "TreatMissingData": "notBreaching", **per_minute}},
        {"name": f"{PREFIX}-cdn-cache-hit-rate", "value": "CacheHitRate", "layer": "assets",
         "comparison": "LessThanThreshold", "threshold": 70.0,
         "spec": {"AlarmDescription": "Rollback criterion: cache hit rate < 70% (additional CloudFront metric)",
                  "Namespace": "AWS/CloudFront", "MetricName": "CacheHitRate", "Dimensions": cdn,
                  "Statistic": "Average", "Period": 300, "EvaluationPeriods": 3, "DatapointsToAlarm": 3,
                  "TreatMissingData": "notBreaching"}},
        {"name": f"{PREFIX}-edge-function-errors", "value": "edgeErrors", "layer": "edge",
         "comparison": "GreaterThanThreshold", "threshold": 0.0,
         "spec": {"AlarmDescription": "Rollback criterion: Lambda@Edge execution + validation errors > 0 per "
                                      "minute on this distribution",
                  "Metrics": [
                      {"Id": "executionErrors", "ReturnData": False, "MetricStat": {
                          "Metric": {"Namespace": "AWS/CloudFront", "MetricName": "LambdaExecutionError",
                                     "Dimensions": cdn}, "Period": 60, "Stat": "Sum"}},
                      {"Id": "validationErrors", "ReturnData": False, "MetricStat": {
                          "Metric": {"Namespace": "AWS/CloudFront", "MetricName": "LambdaValidationError",
                                     "Dimensions": cdn}, "Period": 60, "Stat": "Sum"}},
                      {"Id": "edgeErrors", "Expression": "executionErrors + validationErrors",
                       "Label": "Lambda@Edge errors", "ReturnData": True}],
                  "EvaluationPeriods": 5, "DatapointsToAlarm": 3, "TreatMissingData": "notBreaching"}},
        {"name": f"{PREFIX}-db-connections", "value": "DatabaseConnections", "layer": "db",
         "comparison": "GreaterThanThreshold", "threshold": float(connections),
         "spec": {"AlarmDescription": f"Rollback criterion: connection pool exhaustion, > 90% of max_connections "
                                      f"({connections} of {DB_MAX_CONNECTIONS})",
                  "Namespace": "AWS/RDS", "MetricName": "DatabaseConnections", "Dimensions": rds,
                  "Statistic": "Maximum", "TreatMissingData": "breaching", **per_minute}},
        {"name": f"{PREFIX}-db-free-storage", "value": "FreeStorageSpace", "layer": "db",
         "comparison": "LessThanThreshold", "threshold": float(free_bytes),
         "spec": {"AlarmDescription": f"Rollback criterion: RDS free storage < 10% of {DB_ALLOCATED_GB} GiB",
                  "Namespace": "AWS/RDS", "MetricName": "FreeStorageSpace", "Dimensions": rds,
                  "Statistic": "Minimum", "TreatMissingData": "breaching", **per_minute}},
    ]


def pin_distribution_id(created: str) -> str:
    """Give the new distribution the sandbox's fixed id (:data:`DISTRIBUTION_ID`), so that it is the same
    after every ``up`` and ``reset`` (a shell's ``$DISTRIBUTION_ID`` stays right). Only possible when moto
    runs in this process; otherwise the id moto chose is kept."""
    from moto.cloudfront.models import cloudfront_backends

    backend = cloudfront_backends[ACCOUNT]["global"]
    dist = backend.distributions.get(created)
    if dist is None or DISTRIBUTION_ID in backend.distributions:
        return created
    dist.distribution_id = dist.id = DISTRIBUTION_ID
    dist.arn = dist.arn.replace(created, DISTRIBUTION_ID)
    dist.domain_name = "d2sandboxr42cf.cloudfront.net"
    backend.distributions[DISTRIBUTION_ID] = backend.distributions.pop(created)
    return DISTRIBUTION_ID


def seed_aws(session: Any, timeline: Timeline, rolling: bool = False) -> dict[str, Any]:
    """Create the AWS side of the world through ``session`` (pointed at moto). Returns the ids."""
    from botocore.config import Config

    config = Config(retries={"max_attempts": 3, "mode": "standard"})

    def client(name: str) -> Any:
        return session.client(name, region_name=REGION, config=config)

    iam, lam, s3, cloudfront, cloudwatch, rds, sns = (client(n) for n in
                                                      ("iam", "lambda", "s3", "cloudfront", "cloudwatch", "rds",
                                                       "sns"))
    role = iam.create_role(RoleName=f"{PREFIX}-edge", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {
            "Service": ["lambda.amazonaws.com", "edgelambda.amazonaws.com"]}}]}))["Role"]["Arn"]
    operator = iam.create_role(RoleName=f"{PREFIX}-rollback-operator", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}}]}))["Role"]["Arn"]
    created = lam.create_function(FunctionName=EDGE_FUNCTION, Runtime="nodejs20.x", Role=role,
                                  Handler="index.handler", Code={"ZipFile": _zip(_EDGE_SOURCES["1"])},
                                  Description="security headers", Publish=True)
    first = str(created["Version"])
    versions = {first: str(lam.get_function(FunctionName=EDGE_FUNCTION, Qualifier=first)["Configuration"][
        "FunctionArn"])}
    for number in ("2", "3"):
        lam.update_function_code(FunctionName=EDGE_FUNCTION, ZipFile=_zip(_EDGE_SOURCES[number]))
        published = lam.publish_version(FunctionName=EDGE_FUNCTION, Description=f"security headers v{number}")
        versions[str(published["Version"])] = str(published["FunctionArn"])

    s3.create_bucket(Bucket=ASSETS_BUCKET)
    s3.put_bucket_versioning(Bucket=ASSETS_BUCKET, VersioningConfiguration={"Status": "Enabled"})
    prefix = f"releases/{RELEASE}/"
    good_etags: dict[str, str] = {}
    good_versions: dict[str, str] = {}
    for name, (body, kind) in GOOD_ASSETS.items():
        put = s3.put_object(Bucket=ASSETS_BUCKET, Key=prefix + name, Body=body.encode(), ContentType=kind,
                            CacheControl="max-age=300")
        good_etags[prefix + name] = str(put["ETag"])
        good_versions[prefix + name] = str(put["VersionId"])
    bad_versions: dict[str, str] = {}
    for name, (body, kind) in BAD_ASSETS.items():
        put = s3.put_object(Bucket=ASSETS_BUCKET, Key=prefix + name, Body=body.encode(), ContentType=kind,
                            CacheControl="max-age=300")
        bad_versions[prefix + name] = str(put["VersionId"])
    for name in DELETED_ASSETS:
        marker = s3.delete_object(Bucket=ASSETS_BUCKET, Key=prefix + name)
        bad_versions[prefix + name] = str(marker.get("VersionId"))

    def behaviour(origin: str, arn: str | None, path: str | None = None) -> dict[str, Any]:
        item: dict[str, Any] = {
            "TargetOriginId": origin, "ViewerProtocolPolicy": "redirect-to-https", "MinTTL": 0,
            "ForwardedValues": {"QueryString": False, "Cookies": {"Forward": "none"}},
            "LambdaFunctionAssociations": ({"Quantity": 1, "Items": [
                {"LambdaFunctionARN": arn, "EventType": "viewer-response", "IncludeBody": False}]}
                if arn else {"Quantity": 0}),
        }
        if path:
            item["PathPattern"] = path
        return item

    distribution = cloudfront.create_distribution(DistributionConfig={
        "CallerReference": f"{PREFIX}-cdn", "Comment": "cdn: assets bucket and app origin", "Enabled": True,
        "DefaultRootObject": "index.html",
        "Origins": {"Quantity": 2, "Items": [
            {"Id": "assets", "DomainName": f"{ASSETS_BUCKET}.s3.us-east-1.amazonaws.com",
             "OriginPath": f"/releases/{RELEASE}", "S3OriginConfig": {"OriginAccessIdentity": ""}},
            {"Id": "app", "DomainName": DEMO.domains[0], "OriginPath": "",
             "CustomOriginConfig": {"HTTPPort": 80, "HTTPSPort": 443, "OriginProtocolPolicy": "https-only"}}]},
        "DefaultCacheBehavior": behaviour("assets", versions[BAD_EDGE_VERSION]),
        "CacheBehaviors": {"Quantity": 1, "Items": [behaviour("app", None, "/api/*")]},
    })
    distribution_id = pin_distribution_id(str(distribution["Distribution"]["Id"]))

    # As infra/database.py declares it: RDS manages the master password in Secrets Manager.
    rds.create_db_instance(DBInstanceIdentifier=DB_INSTANCE, DBInstanceClass="db.t4g.medium", Engine="postgres",
                           EngineVersion="16.4", AllocatedStorage=DB_ALLOCATED_GB, DBName="app",
                           MasterUsername="app_admin", ManageMasterUserPassword=True, Port=5432,
                           BackupRetentionPeriod=7, Tags=[{"Key": "project", "Value": PROJECT}])
    rds.create_db_snapshot(DBSnapshotIdentifier=DB_SNAPSHOT, DBInstanceIdentifier=DB_INSTANCE)

    topic = sns.create_topic(Name=f"{PREFIX}-rollback-alerts")["TopicArn"]
    alarms = alarm_definitions(distribution_id)
    for alarm in alarms:
        cloudwatch.put_metric_alarm(AlarmName=alarm["name"], ComparisonOperator=alarm["comparison"],
                                    Threshold=alarm["threshold"], AlarmActions=[topic], OKActions=[topic],
                                    **alarm["spec"])
    composite = f"{PREFIX}-rollback"
    cloudwatch.put_composite_alarm(
        AlarmName=composite, AlarmDescription="In ALARM when any rollback criterion alarm is: consider rolling back",
        AlarmRule=" OR ".join(f'ALARM("{a["name"]}")' for a in alarms), AlarmActions=[topic], OKActions=[topic])
    _backfill_metrics(cloudwatch, distribution_id, timeline, rolling=rolling)
    bad_layers = {"app", "assets", "edge"}
    for alarm in alarms:
        state = "ALARM" if alarm["layer"] in bad_layers and alarm["value"] != "OriginLatency" else "OK"
        cloudwatch.set_alarm_state(AlarmName=alarm["name"], StateValue=state,
                                   StateReason=f"Threshold Crossed: datapoints since {_iso(timeline.bad_deploy)} "
                                               f"{'crossed' if state == 'ALARM' else 'within'} the threshold "
                                               f"({alarm['threshold']:g}).")
    cloudwatch.set_alarm_state(AlarmName=composite, StateValue="ALARM",
                               StateReason="rollback criterion alarms in ALARM")
    return {
        "region": REGION, "account": ACCOUNT, "distribution_id": distribution_id,
        "edge_function": EDGE_FUNCTION, "edge_versions": versions, "edge_good_version": GOOD_EDGE_VERSION,
        "edge_bad_versions": [BAD_EDGE_VERSION],
        "assets_bucket": ASSETS_BUCKET, "assets_release": RELEASE, "assets_prefix": prefix,
        "assets_good_etags": good_etags, "assets_good_versions": good_versions, "assets_bad_versions": bad_versions,
        "db_instance": DB_INSTANCE, "db_snapshot": DB_SNAPSHOT, "alert_topic": topic, "operator_role": operator,
        "alarms": [{k: v for k, v in a.items() if k != "spec"} for a in alarms], "composite_alarm": composite,
    }


def _backfill_metrics(cloudwatch: Any, distribution_id: str, timeline: Timeline, *, rolling: bool = False) -> None:
    """15 minutes of per-minute datapoints: good before the bad deploy, bad after (with ``rolling``: the
    crashing canary's 10 % of the requests fail, fast)."""
    cdn = [{"Name": "DistributionId", "Value": distribution_id}, {"Name": "Region", "Value": "Global"}]
    rds = [{"Name": "DBInstanceIdentifier", "Value": DB_INSTANCE}]
    cdn_data: list[dict[str, Any]] = []
    rds_data: list[dict[str, Any]] = []
    for minutes_ago in range(15, 0, -1):
        at = timeline.now - dt.timedelta(minutes=minutes_ago)
        app_bad = at >= timeline.bad_app
        infra_bad = at >= timeline.bad_deploy
        slow = app_bad and not rolling
        latencies = [1500.0 + 40 * i for i in range(10)] if slow else [80.0 + 12 * i for i in range(10)]
        errors = (CANARY_PERCENT if rolling else 40.0) if app_bad else 0.2
        cdn_data += [
            {"MetricName": "Requests", "Dimensions": cdn, "Timestamp": at, "Value": 600.0},
            {"MetricName": "5xxErrorRate", "Dimensions": cdn, "Timestamp": at, "Value": errors,
             "Unit": "Percent"},
            {"MetricName": "4xxErrorRate", "Dimensions": cdn, "Timestamp": at, "Value": 0.5, "Unit": "Percent"},
            {"MetricName": "OriginLatency", "Dimensions": cdn, "Timestamp": at, "Values": latencies,
             "Unit": "Milliseconds"},
            {"MetricName": "CacheHitRate", "Dimensions": cdn, "Timestamp": at, "Value": 38.0 if infra_bad else 92.0,
             "Unit": "Percent"},
            {"MetricName": "LambdaExecutionError", "Dimensions": cdn, "Timestamp": at,
             "Value": 12.0 if infra_bad else 0.0},
            {"MetricName": "LambdaValidationError", "Dimensions": cdn, "Timestamp": at, "Value": 0.0},
        ]
        rds_data += [
            {"MetricName": "DatabaseConnections", "Dimensions": rds, "Timestamp": at, "Value": 7.0, "Unit": "Count"},
            {"MetricName": "FreeStorageSpace", "Dimensions": rds, "Timestamp": at, "Value": 18.0 * 1024**3,
             "Unit": "Bytes"},
        ]
    cloudwatch.put_metric_data(Namespace="AWS/CloudFront", MetricData=cdn_data)
    cloudwatch.put_metric_data(Namespace="AWS/RDS", MetricData=rds_data)


def backdate_aws(aws: Mapping[str, Any], timeline: Timeline) -> None:
    """Move moto's own timestamps back to the story's times. Must run in the moto process.

    Only what no API can set: object and function version times, the distribution's last modification, the RDS
    instance's creation (its restorable window) and its snapshots, alarm
    state-change times.
    """
    from moto.awslambda.models import lambda_backends
    from moto.cloudwatch.models import cloudwatch_backends
    from moto.rds.models import rds_backends
    from moto.s3.models import s3_backends

    bucket = s3_backends[ACCOUNT]["aws"].buckets[aws["assets_bucket"]]
    good = set(aws["assets_good_versions"].values())
    for key in list(bucket.keys.keys()):
        for version in bucket.keys.getlist(key):
            when = timeline.good_release if version.version_id in good else timeline.bad_deploy
            version.last_modified = _naive(when)

    from moto.cloudfront.models import cloudfront_backends

    distribution = cloudfront_backends[ACCOUNT]["global"].distributions.get(aws["distribution_id"])
    if distribution is not None:  # the bad deploy's stack update left it serving edge version 3
        distribution.last_modified_time = timeline.bad_deploy.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")

    functions = lambda_backends[ACCOUNT][REGION]._lambdas._functions[aws["edge_function"]]
    times = {"1": timeline.created, "2": timeline.edge_v2, "3": timeline.bad_deploy}
    for function in functions["versions"]:
        stamp = times.get(str(function.version))
        if stamp is not None:
            function.last_modified = stamp.strftime("%Y-%m-%dT%H:%M:%S.000+0000")
    functions["latest"].last_modified = timeline.bad_deploy.strftime("%Y-%m-%dT%H:%M:%S.000+0000")

    rds = rds_backends[ACCOUNT][REGION]
    instance = rds.databases[aws["db_instance"]]
    instance.created = _naive(timeline.created)
    instance.instance_create_time = _naive(timeline.created)
    for snapshot_id, snapshot in list(rds.database_snapshots.items()):
        if snapshot.db_instance_identifier != aws["db_instance"]:
            continue
        when = timeline.good_release if snapshot.snapshot_type == "manual" else timeline.created
        snapshot.created = _naive(when)
        snapshot.original_snapshot_create_time = _naive(when)
        snapshot.instance_create_time = _naive(timeline.created)
        if snapshot.snapshot_type == "automated":  # its name carries its time, as RDS names them
            renamed = f"rds:{aws['db_instance']}-{when.strftime('%Y-%m-%d-%H-%M')}"
            snapshot.db_snapshot_identifier = renamed
            rds.database_snapshots[renamed] = rds.database_snapshots.pop(snapshot_id)

    alarms = cloudwatch_backends[ACCOUNT][REGION].alarms
    for alarm in alarms.values():
        if alarm.name.startswith(PREFIX):
            alarm.state_updated_timestamp = _naive(timeline.detected if alarm.state_value == "ALARM"
                                                   else timeline.created)
            alarm.configuration_updated_timestamp = _naive(timeline.created)


# -------------------------------------------------------------------------------------- database

MIGRATIONS: tuple[tuple[str, str], ...] = (
    ("20261101090000_init", """-- CreateTable
CREATE TABLE "User" (
    "id" TEXT NOT NULL,
    "email" TEXT NOT NULL,
    "name" TEXT,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "User_pkey" PRIMARY KEY ("id")
);
CREATE UNIQUE INDEX "User_email_key" ON "User"("email");
"""),
    ("20261115090000_integrations_and_stats", """-- CreateTable
CREATE TABLE "Integration" (
    "id" TEXT NOT NULL,
    "userId" TEXT NOT NULL,
    "provider" TEXT NOT NULL,
    "status" TEXT NOT NULL DEFAULT 'connected',
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "Integration_pkey" PRIMARY KEY ("id")
);
CREATE INDEX "Integration_userId_idx" ON "Integration"("userId");
CREATE TABLE "UserStats" (
    "id" TEXT NOT NULL,
    "userId" TEXT NOT NULL,
    "visits" INTEGER NOT NULL DEFAULT 0,
    "lastSeenAt" TIMESTAMP(3),
    CONSTRAINT "UserStats_pkey" PRIMARY KEY ("id")
);
CREATE UNIQUE INDEX "UserStats_userId_key" ON "UserStats"("userId");
"""),
    ("20261130090000_merge_user_stats", """-- Merge duplicate accounts, recompute their stats (the bad release)
DELETE FROM "User" WHERE "email" LIKE '%+old@example.com';
DELETE FROM "Integration" WHERE "provider" = 'legacy';
UPDATE "UserStats" SET "visits" = 0;
ALTER TABLE "UserStats" ADD COLUMN "score" INTEGER NOT NULL;
"""),
)
FAILED_MIGRATION = MIGRATIONS[-1][0]
USERS = 120
LOG_OF_FAILED = ("Database error code: 23502\n\nDatabase error:\nERROR: column \"score\" of relation \"UserStats\" "
                 "contains null values\n\nMigration name: 20261130090000_merge_user_stats\n")


def _checksum(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def write_migrations(directory: Path) -> None:
    """The local ``prisma/migrations`` directory, as ``prisma migrate dev`` leaves it."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    for name, sql in MIGRATIONS:
        (directory / name).mkdir()
        (directory / name / "migration.sql").write_text(sql, encoding="utf-8")
    (directory / "migration_lock.toml").write_text(
        '# Please do not edit this file manually\nprovider = "postgresql"\n', encoding="utf-8")


def _uuid(n: int) -> str:
    return str(uuid.UUID(int=n))


def database_settings() -> dict[str, Any]:
    """``[env.sandbox.database]`` of the sandbox's rollback.toml."""
    return {"url_env": "DATABASE_URL", "tables": ["User", "Integration", "UserStats"], "grow_only": ["User"],
            "backups_dir": "backups", "migrations_dir": "prisma/migrations",
            "relations": [{"child": "Integration.userId", "parent": "User.id"},
                          {"child": "UserStats.userId", "parent": "User.id"}]}


def seed_database(cluster: Any, directory: Path, timeline: Timeline) -> dict[str, Any]:
    """(Re)create database ``app``: Prisma's schema and rows, a verified backup, then the failed migration
    and its damage. Databases left beside it by earlier restores are dropped."""
    import psycopg

    for name in cluster.databases():
        if name == "app" or name.startswith("app_"):
            cluster.drop_database(name)
    cluster.create_database("app", owner="app")
    write_migrations(directory / "prisma" / "migrations")
    with psycopg.connect(cluster.url("app", "app"), autocommit=False) as conn:
        conn.execute("""CREATE TABLE "_prisma_migrations" (
            "id" VARCHAR(36) PRIMARY KEY NOT NULL, "checksum" VARCHAR(64) NOT NULL, "finished_at" TIMESTAMPTZ,
            "migration_name" VARCHAR(255) NOT NULL, "logs" TEXT, "rolled_back_at" TIMESTAMPTZ,
            "started_at" TIMESTAMPTZ NOT NULL DEFAULT now(), "applied_steps_count" INTEGER NOT NULL DEFAULT 0)""")
        for number, (name, sql) in enumerate(MIGRATIONS[:-1], start=1):
            conn.execute(sql.encode())
            started = timeline.created if number == 1 else timeline.edge_v2
            conn.execute('INSERT INTO "_prisma_migrations" (id, checksum, finished_at, migration_name, started_at, '
                         'applied_steps_count) VALUES (%s, %s, %s, %s, %s, 1)',
                         (_uuid(number), _checksum(sql), started + dt.timedelta(seconds=2), name, started))
        conn.execute("""INSERT INTO "User" (id, email, name, "createdAt")
            SELECT 'usr_' || lpad(g::text, 4, '0'), 'user' || g || CASE WHEN g %% 12 = 0 THEN '+old' ELSE '' END
                   || '@example.com', 'User ' || g, now() - (g || ' hours')::interval
            FROM generate_series(1, %s) g""", (USERS,))
        conn.execute("""INSERT INTO "Integration" (id, "userId", provider, status)
            SELECT 'int_' || lpad(g::text, 4, '0'), 'usr_' || lpad(((g - 1) %% %s + 1)::text, 4, '0'),
                   (ARRAY['github', 'google', 'slack', 'legacy'])[g %% 4 + 1], 'connected'
            FROM generate_series(1, 180) g""", (USERS,))
        conn.execute("""INSERT INTO "UserStats" (id, "userId", visits, "lastSeenAt")
            SELECT 'sts_' || lpad(g::text, 4, '0'), 'usr_' || lpad(g::text, 4, '0'), g * 7, now()
            FROM generate_series(1, %s) g""", (USERS,))
        conn.commit()
    good = _counts(cluster)

    from rollback.commands import db as db_commands
    from rollback.config import Config, Settings

    # Only the database section matters to the backup; the full rollback.toml needs ids the AWS seed
    # (running meanwhile) has not made yet.
    settings = Settings.model_validate({"env": {ENV: {"database": database_settings()}}})
    config = Config(path=directory / "rollback.toml", env_name=ENV, settings=settings, env=settings.env[ENV],
                    environ={"DATABASE_URL": cluster.url("app", "app")})
    from rollback.context import Services

    backup = db_commands.backup(config, jobs=1, services=Services(config))
    manifest = backup.get("manifest", backup)

    # The bad release's migration: Prisma recorded it as started, it ran its statements outside a
    # transaction (as a migration with non-transactional steps does), then failed on the last one.
    name, sql = MIGRATIONS[-1]
    with psycopg.connect(cluster.url("app", "app"), autocommit=True) as conn:
        conn.execute('INSERT INTO "_prisma_migrations" (id, checksum, finished_at, migration_name, logs, started_at, '
                     'applied_steps_count) VALUES (%s, %s, NULL, %s, %s, %s, 0)',
                     (_uuid(len(MIGRATIONS)), _checksum(sql), name, LOG_OF_FAILED, timeline.bad_app))
        for statement in sql.split(";\n")[:-1]:
            if statement.strip() and not statement.strip().startswith("ALTER"):
                conn.execute(statement.encode())
    damaged = _counts(cluster)
    return {
        "name": "app", "owner": "app", "tables": ["User", "Integration", "UserStats"],
        "good_counts": good, "damaged_counts": damaged, "failed_migration": FAILED_MIGRATION,
        "good_backup": str(manifest.get("name", "")), "good_backup_path": str(backup.get("path", "")),
        "migrations": [n for n, _ in MIGRATIONS],
    }


def _counts(cluster: Any) -> dict[str, int]:
    rows = cluster.execute('SELECT (SELECT count(*) FROM "User"), (SELECT count(*) FROM "Integration"), '
                           '(SELECT count(*) FROM "UserStats")', dbname="app")
    users, integrations, stats = rows[0]
    return {"User": int(users), "Integration": int(integrations), "UserStats": int(stats)}


# ---------------------------------------------------------------------------------------- Pulumi


def _source_hash(edge_version: str) -> str:
    import base64

    return base64.b64encode(hashlib.sha256(_zip(_EDGE_SOURCES[edge_version])).digest()).decode()


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
    _git(project, "init", "-q", "-b", "main")
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
        _git(project, "add", "-A", "Pulumi.yaml", "infra", ".gitignore")
        _git(project, "commit", "-q", "-m", message, when=when)
        commits.append(_git(project, "rev-parse", "HEAD"))
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


# ---------------------------------------------------------------------------------------- config


# ------------------------------------------------------------------------------------------ git

# The app's repository: a bare "origin" whose post-receive hook tells the Vercel emulator about every push
# to main, as Vercel's Git integration does (a production deployment that builds, then goes live unless a
# rollback paused that), and a clone to work in. `rollback app revert HEAD --push --wait` runs against it.
GIT_FILES = (
    ("Initial commit", {"README.md": "# demo\n", "app/page.tsx": "export default () => <h1>demo</h1>;\n"}),
    ("Add integrations page", {"app/integrations/page.tsx": "export default () => <h1>integrations</h1>;\n"}),
    ("Add new feature", {"app/api/health/route.ts": "export const GET = () => feature.enabled.check();\n"}),
)
HOOK = """#!{python}
# Written by `rollback sandbox up`: what Vercel's Git integration does on a push to main.
import json, subprocess, sys, urllib.request

for line in sys.stdin:
    old, new, ref = line.split()
    if ref != "refs/heads/main" or set(new) == {{"0"}}:
        continue
    subject = subprocess.run(["git", "log", "-1", "--format=%s", new], capture_output=True, text=True).stdout
    body = json.dumps({{"project": {project!r}, "sha": new, "ref": "main", "ready_after": {ready_after},
                       "message": subject.strip()}}).encode()
    request = urllib.request.Request({url!r} + "/_admin/deployments", data=body, method="POST",
                                     headers={{"Content-Type": "application/json"}})
    with urllib.request.urlopen(request, timeout=10) as answer:
        created = json.loads(answer.read())
    print(f"vercel: deployment {{created['url']}} ({{created['id']}}) building for {{new[:12]}}", flush=True)
"""
GIT_READY_AFTER = 1.0  # seconds a pushed commit takes to build in the emulator


_GIT_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0",
            "GIT_AUTHOR_NAME": "Sandbox Developer", "GIT_AUTHOR_EMAIL": "dev@demo.example.com",
            "GIT_COMMITTER_NAME": "Sandbox Developer", "GIT_COMMITTER_EMAIL": "dev@demo.example.com"}


def _git(cwd: Path, *args: str, when: dt.datetime | None = None) -> str:
    """``git ARGS`` in ``cwd`` as the sandbox's developer (no system or user config read), at ``when``."""
    extra = {"GIT_AUTHOR_DATE": when.isoformat(), "GIT_COMMITTER_DATE": when.isoformat()} if when else {}
    done = subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **_GIT_ENV, "HOME": str(cwd), **extra},
                          capture_output=True, text=True, check=True)
    return done.stdout.strip()


def seed_git(directory: Path, vercel_url: str, timeline: Timeline) -> dict[str, Any]:
    """``DIR/app.git`` (bare, with the deploy hook) and ``DIR/app`` (a clone whose HEAD is the bad commit)."""
    origin, work = directory / "app.git", directory / "app"
    for path in (origin, work):
        shutil.rmtree(path, ignore_errors=True)
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0", "HOME": str(directory),
           "GIT_AUTHOR_NAME": "Sandbox Developer", "GIT_AUTHOR_EMAIL": "dev@demo.example.com",
           "GIT_COMMITTER_NAME": "Sandbox Developer", "GIT_COMMITTER_EMAIL": "dev@demo.example.com"}

    def git(*args: str, cwd: Path = work, when: dt.datetime | None = None) -> str:
        extra = {"GIT_AUTHOR_DATE": when.isoformat(), "GIT_COMMITTER_DATE": when.isoformat()} if when else {}
        done = subprocess.run(["git", *args], cwd=cwd, env={**env, **extra}, capture_output=True, text=True,
                              check=True)
        return done.stdout.strip()

    git("init", "-q", "--bare", "-b", "main", str(origin), cwd=directory)
    hook = origin / "hooks" / "post-receive"
    hook.write_text(HOOK.format(python=sys.executable, project=DEMO.project_name, url=vercel_url.rstrip("/"),
                                ready_after=GIT_READY_AFTER), encoding="utf-8")
    hook.chmod(0o755)
    git("init", "-q", "-b", "main", str(work), cwd=directory)
    # The operator's identity lives in the clone, so that `git revert` works from any HOME.
    git("config", "user.name", "Sandbox Operator")
    git("config", "user.email", "oncall@demo.example.com")
    git("remote", "add", "origin", str(origin))
    shas = []
    for (message, files), when in zip(GIT_FILES, (timeline.created, timeline.good_release, timeline.bad_app),
                                      strict=True):
        for name, text in files.items():
            path = work / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        git("add", "-A")
        git("commit", "-q", "-m", message, when=when)
        shas.append(git("rev-parse", "HEAD"))
    # Pushed before the hook could deploy it: the emulator's seeded deployments stand for these pushes.
    hook.rename(hook.with_suffix(".off"))
    git("push", "-q", "origin", "main")
    hook.with_suffix(".off").rename(hook)
    git("branch", "-q", "--set-upstream-to=origin/main", "main")
    return {"origin": str(origin), "repo": str(work), "bad_commit": shas[-1], "good_commit": shas[-2],
            "commits": shas}


def journal_dir_for(directory: Path) -> Path:
    """Where the sandbox's journals go: beside DIR in ``.rollback/runs`` when DIR is inside a
    ``.rollback`` directory (the default), so ``rollback journal``/``report`` find them from the
    working directory without a config; else inside DIR."""
    return directory.parent / "runs" if directory.parent.name == ".rollback" else directory / "runs"


def write_config(directory: Path, *, app_url: str, aws: Mapping[str, Any], pulumi: Mapping[str, Any]) -> Path:
    """``DIR/rollback.toml`` for environment ``sandbox``: every layer configured."""
    journal = journal_dir_for(directory)
    journal_value = "../runs" if journal == directory.parent / "runs" else "runs"
    text = f"""# Written by `rollback sandbox up`: the sandbox's environment. Secrets are not here:
# `eval "$(rollback sandbox status)"` exports VERCEL_TOKEN, DATABASE_URL and the AWS test credentials.
default_env = "{ENV}"

[journal]
dir = "{journal_value}"

[env.{ENV}]
sandbox = true  # a practice world: `rollback drill --env {ENV}` needs no --i-know-this-is-production

[env.{ENV}.vercel]
project = "{DEMO.project_name}"
team = "{DEMO.team_id}"

[env.{ENV}.health]
base_url = "{app_url}"
paths = ["/", "/api/health"]
version_path = "/api/version"
timeout = 5

[env.{ENV}.database]
url_env = "DATABASE_URL"
tables = ["User", "Integration", "UserStats"]
grow_only = ["User"]            # rows are never deleted: fewer than in the backup = data loss
backups_dir = "backups"
migrations_dir = "prisma/migrations"
# relationMode = "prisma": no foreign keys, so the relations to check for orphans are named here
relations = [
  {{ child = "Integration.userId", parent = "User.id" }},
  {{ child = "UserStats.userId", parent = "User.id" }},
]

[env.{ENV}.aws]
region = "{REGION}"
distribution_id = "{aws['distribution_id']}"
edge_function = "{aws['edge_function']}"
assets_bucket = "{aws['assets_bucket']}"
db_instance = "{aws['db_instance']}"

[env.{ENV}.pulumi]
stack = "{pulumi['stack']}"
project = "{pulumi['project']}"
backend_url = "{pulumi['backend_url']}"
project_dir = "pulumi"

[env.{ENV}.verify]
api_paths = ["/api/health", "/api/version", "/api/integrations"]
page_paths = ["/"]
# The sandbox's monitor measures every second where CloudWatch aggregates per minute: its CloudFront
# rates are judged over the last 12 s (0.2 min), as production's are over the last 5 min.
metrics_minutes = 0.2
# The sandbox app is a Python server sharing this machine's cores with everything else on it (a CI
# runner, a test suite): a healthy release answers in milliseconds on an idle laptop and in up to a
# second on a loaded one. The bad release's API takes 1.5 s more than that, so 1.25 s still fails it.
api_p95_ms = 1250

# The sandbox's own incident channel: a Slack-compatible webhook served by the app server
# (`curl $APP_URL/_sandbox/channel` lists the posts). Its URL is a secret, exported by `status`.
[env.{ENV}.notify]
webhook_env = "{WEBHOOK_ENV}"

[[env.{ENV}.verify.flows]]
name = "login"
method = "POST"
path = "/api/auth/login"
body = '{{"email": "user1@example.com", "password": "sandbox"}}'
status = 200
body_contains = '"ok": true'

[[env.{ENV}.verify.flows]]
name = "registration"
method = "POST"
path = "/api/auth/register"
body = '{{"email": "new@example.com", "password": "sandbox"}}'
status = 201

[[env.{ENV}.verify.flows]]
name = "integrations"
path = "/api/integrations"
body_contains = "github"

[env.{ENV}.targets]
detect = 5
decide = 2
rollback = 10
verify = 5
total = 15
"""
    path = directory / "rollback.toml"
    last = directory / GENERATED_CONFIG
    if path.is_file() and last.is_file():
        current, before = path.read_text(encoding="utf-8"), last.read_text(encoding="utf-8")
        if current != before:  # edited since the sandbox wrote it: keep the edits
            text, generated = carry_over(current, before, text), text
            last.write_text(generated, encoding="utf-8")
            path.write_text(text, encoding="utf-8")
            return path
    last.write_text(text, encoding="utf-8")
    path.write_text(text, encoding="utf-8")
    return path


# What the sandbox last wrote to DIR/rollback.toml, to tell the user's edits from its own lines.
GENERATED_CONFIG = ".rollback.toml.generated"


def carry_over(current: str, before: str, after: str) -> str:
    """The user's ``current`` config with the sandbox's own changes from ``before`` to ``after`` applied
    (a new port of the app after ``up``): a line the sandbox changed is replaced where it still reads as
    the sandbox wrote it; every line the user changed or added stays."""
    import difflib

    old_lines, new_lines = before.splitlines(keepends=True), after.splitlines(keepends=True)
    changes: dict[str, str] = {}
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old_lines, b=new_lines, autojunk=False).get_opcodes():
        if tag == "replace" and i2 - i1 == j2 - j1:
            changes.update(zip(old_lines[i1:i2], new_lines[j1:j2], strict=True))
    return "".join(changes.get(line, line) for line in current.splitlines(keepends=True))
