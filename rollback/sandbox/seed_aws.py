"""The sandbox's AWS in moto: Lambda@Edge versions, the versioned assets bucket, the distribution, RDS, the
rollback alarms of ``infra/alarms.py`` with their history, and the timestamps only moto keeps moved back
(:func:`backdate_aws`). Also the smaller edge-only seed of the standalone moto server
(``python -m rollback.sandbox.aws --seed``: :func:`seed_edge`, :func:`write_workdir`)."""

from __future__ import annotations

import datetime as dt
import io
import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rollback.sandbox.seed import (
    ACCOUNT,
    ASSETS_BUCKET,
    BAD_EDGE_VERSION,
    CANARY_PERCENT,
    DB_ALLOCATED_GB,
    DB_INSTANCE,
    DB_MAX_CONNECTIONS,
    DB_SNAPSHOT,
    DISTRIBUTION_ID,
    EDGE_FUNCTION,
    GOOD_EDGE_VERSION,
    PREFIX,
    PROJECT,
    REGION,
    RELEASE,
    Timeline,
    iso,
    naive,
)
from rollback.sandbox.vercel_state import DEMO


def lambda_zip(source: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.js", source)
    return buffer.getvalue()


EDGE_SOURCES = {
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


EDGE_ERROR_METRICS = (("executionErrors", "LambdaExecutionError"), ("validationErrors", "LambdaValidationError"),
                      ("limitErrors", "LambdaLimitExceededErrors"))


def cache_behaviour(origin: str, arn: str | None, path: str | None = None) -> dict[str, Any]:
    """A distribution's cache behaviour towards ``origin``; with ``arn``, that Lambda@Edge version on
    viewer-response (the association ``rollback infra edge`` moves)."""
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


def alarm_definitions(distribution_id: str) -> list[dict[str, Any]]:
    """The rollback criterion alarms as ``infra/alarms.py`` creates them (default thresholds), and which
    monitor value each is judged on. tests/infra_program/test_sandbox_alarms.py holds the two equal."""
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
         "spec": {"AlarmDescription": "Rollback criterion: Lambda@Edge execution + validation + limit-exceeded "
                                      "errors > 0 per minute on this distribution",
                  "Metrics": [
                      *({"Id": query, "ReturnData": False, "MetricStat": {
                          "Metric": {"Namespace": "AWS/CloudFront", "MetricName": metric, "Dimensions": cdn},
                          "Period": 60, "Stat": "Sum"}} for query, metric in EDGE_ERROR_METRICS),
                      # A missing series (no error that minute) counts as 0, not as "no data".
                      {"Id": "edgeErrors", "Label": "Lambda@Edge errors", "ReturnData": True,
                       "Expression": " + ".join(f"FILL({query}, 0)" for query, _ in EDGE_ERROR_METRICS)}],
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
                                  Handler="index.handler", Code={"ZipFile": lambda_zip(EDGE_SOURCES["1"])},
                                  Description="security headers", Publish=True)
    first = str(created["Version"])
    versions = {first: str(lam.get_function(FunctionName=EDGE_FUNCTION, Qualifier=first)["Configuration"][
        "FunctionArn"])}
    for number in ("2", "3"):
        lam.update_function_code(FunctionName=EDGE_FUNCTION, ZipFile=lambda_zip(EDGE_SOURCES[number]))
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

    distribution = cloudfront.create_distribution(DistributionConfig={
        "CallerReference": f"{PREFIX}-cdn", "Comment": "cdn: assets bucket and app origin", "Enabled": True,
        "DefaultRootObject": "index.html",
        "Origins": {"Quantity": 2, "Items": [
            {"Id": "assets", "DomainName": f"{ASSETS_BUCKET}.s3.us-east-1.amazonaws.com",
             "OriginPath": f"/releases/{RELEASE}", "S3OriginConfig": {"OriginAccessIdentity": ""}},
            {"Id": "app", "DomainName": DEMO.domains[0], "OriginPath": "",
             "CustomOriginConfig": {"HTTPPort": 80, "HTTPSPort": 443, "OriginProtocolPolicy": "https-only"}}]},
        "DefaultCacheBehavior": cache_behaviour("assets", versions[BAD_EDGE_VERSION]),
        "CacheBehaviors": {"Quantity": 1, "Items": [cache_behaviour("app", None, "/api/*")]},
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
                                   StateReason=f"Threshold Crossed: datapoints since {iso(timeline.bad_deploy)} "
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
            version.last_modified = naive(when)

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
    instance.created = naive(timeline.created)
    instance.instance_create_time = naive(timeline.created)
    for snapshot_id, snapshot in list(rds.database_snapshots.items()):
        if snapshot.db_instance_identifier != aws["db_instance"]:
            continue
        when = timeline.good_release if snapshot.snapshot_type == "manual" else timeline.created
        snapshot.created = naive(when)
        snapshot.original_snapshot_create_time = naive(when)
        snapshot.instance_create_time = naive(timeline.created)
        if snapshot.snapshot_type == "automated":  # its name carries its time, as RDS names them
            renamed = f"rds:{aws['db_instance']}-{when.strftime('%Y-%m-%d-%H-%M')}"
            snapshot.db_snapshot_identifier = renamed
            rds.database_snapshots[renamed] = rds.database_snapshots.pop(snapshot_id)

    alarms = cloudwatch_backends[ACCOUNT][REGION].alarms
    for alarm in alarms.values():
        if alarm.name.startswith(PREFIX):
            alarm.state_updated_timestamp = naive(timeline.detected if alarm.state_value == "ALARM"
                                                   else timeline.created)
            alarm.configuration_updated_timestamp = naive(timeline.created)


# ----------------------------------- the standalone moto server's edge seed (python -m rollback.sandbox.aws --seed)


@dataclass
class SeededEdge:
    """What :func:`seed_edge` created."""

    function: str
    versions: dict[str, str]  # version -> qualified ARN
    live_version: str
    distribution_id: str
    etag: str
    bucket: str
    origin_path: str
    alarms: list[str] = field(default_factory=list)
    objects: dict[str, list[str]] = field(default_factory=dict)  # key -> version ids, oldest first

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))

    def checkpoint_resources(self) -> list[dict[str, Any]]:
        """Resources as a checkpoint taken right after seeding would hold them (for ``drift``)."""
        arn = self.versions[self.live_version]
        urn = "urn:pulumi:sandbox::rollback::"
        resources: list[dict[str, Any]] = [
            {"urn": f"{urn}pulumi:pulumi:Stack::rollback-sandbox", "type": "pulumi:pulumi:Stack", "custom": False,
             "outputs": {"distributionId": self.distribution_id, "edgeFunctionName": self.function,
                         "edgeFunctionVersion": self.live_version, "edgeFunctionVersionArn": arn,
                         "assetsBucket": self.bucket, "alarmNames": self.alarms}},
            {"urn": f"{urn}aws:cloudfront/distribution:Distribution::cdn", "custom": True,
             "type": "aws:cloudfront/distribution:Distribution", "id": self.distribution_id, "outputs": {
                 "id": self.distribution_id,
                 "defaultCacheBehavior": {"lambdaFunctionAssociations": [
                     {"eventType": "viewer-response", "lambdaArn": arn, "includeBody": False}]},
                 "orderedCacheBehaviors": [{"pathPattern": "/api/*", "lambdaFunctionAssociations": []}],
                 "origins": [{"originId": "assets", "originPath": self.origin_path,
                              "domainName": f"{self.bucket}.s3.amazonaws.com"},
                             {"originId": "app", "originPath": "", "domainName": "app.example.com"}]}},
            {"urn": f"{urn}aws:lambda/function:Function::edge", "custom": True,
             "type": "aws:lambda/function:Function", "id": self.function,
             "outputs": {"name": self.function, "version": self.live_version, "qualifiedArn": arn}},
            {"urn": f"{urn}aws:s3/bucket:Bucket::assets", "custom": True, "type": "aws:s3/bucket:Bucket",
             "id": self.bucket, "outputs": {"bucket": self.bucket}},
            {"urn": f"{urn}aws:s3/bucketVersioning:BucketVersioning::assets", "custom": True,
             "type": "aws:s3/bucketVersioning:BucketVersioning", "id": self.bucket,
             "outputs": {"bucket": self.bucket, "versioningConfiguration": {"status": "Enabled"}}},
        ]
        for alarm in self.alarms:
            resources.append({"urn": f"{urn}aws:cloudwatch/metricAlarm:MetricAlarm::{alarm}", "custom": True,
                              "type": "aws:cloudwatch/metricAlarm:MetricAlarm", "id": alarm,
                              "outputs": {"name": alarm, "metricName": "5xxErrorRate", "namespace": "AWS/CloudFront",
                                          "threshold": 5, "comparisonOperator": "GreaterThanThreshold",
                                          "actionsEnabled": True}})
        return resources


def seed_edge(*, name: str = "rollback-sandbox", versions: int = 3, region: str = "us-east-1") -> SeededEdge:
    """Create the edge stack the break-glass commands act on, through boto3 (pointed at moto by
    ``AWS_ENDPOINT_URL``). The newest version is live; ``index.html`` has a bad newest version and
    ``app.js`` has been deleted, ready for ``rollback infra assets``."""
    import boto3

    # Typed as Any: the stubs' TypedDicts add nothing to a fixture of literals.
    iam: Any = boto3.client("iam", region_name=region)
    lam: Any = boto3.client("lambda", region_name="us-east-1")  # Lambda@Edge lives in us-east-1
    s3: Any = boto3.client("s3", region_name=region)
    cloudfront: Any = boto3.client("cloudfront", region_name="us-east-1")
    cloudwatch: Any = boto3.client("cloudwatch", region_name="us-east-1")
    role = iam.create_role(RoleName=f"{name}-edge", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {
            "Service": ["lambda.amazonaws.com", "edgelambda.amazonaws.com"]}}]}))["Role"]["Arn"]
    function = f"{name}-security-headers"
    created = lam.create_function(FunctionName=function, Runtime="nodejs20.x", Role=role, Handler="index.handler",
                                  Code={"ZipFile": lambda_zip("// security headers v1")}, Publish=True)
    arns = {str(created["Version"]): str(lam.get_function(FunctionName=function, Qualifier=str(created["Version"]))[
        "Configuration"]["FunctionArn"])}
    for number in range(2, versions + 1):
        lam.update_function_code(FunctionName=function, ZipFile=lambda_zip(f"// security headers v{number}"))
        published = lam.publish_version(FunctionName=function, Description=f"v{number}")
        arns[str(published["Version"])] = str(published["FunctionArn"])
    live = str(versions)
    bucket = f"{name}-assets"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    objects: dict[str, list[str]] = {}
    for key, body, content_type in (("releases/r42/index.html", "<h1>release 42</h1>", "text/html"),
                                    ("releases/r42/index.html", "<h1>broken</h1>", "text/html"),
                                    ("releases/r42/app.js", "console.log(42)", "application/javascript")):
        put = s3.put_object(Bucket=bucket, Key=key, Body=body.encode(), ContentType=content_type,
                            CacheControl="max-age=60")
        objects.setdefault(key, []).append(str(put["VersionId"]))
    marker = s3.delete_object(Bucket=bucket, Key="releases/r42/app.js")
    objects["releases/r42/app.js"].append(str(marker.get("VersionId")))
    origin_path = "/releases/r42"

    distribution = cloudfront.create_distribution(DistributionConfig={
        "CallerReference": f"{name}-cdn", "Comment": f"{name}: assets release r42", "Enabled": True,
        "Origins": {"Quantity": 2, "Items": [
            {"Id": "assets", "DomainName": f"{bucket}.s3.amazonaws.com", "OriginPath": origin_path,
             "S3OriginConfig": {"OriginAccessIdentity": ""}},
            {"Id": "app", "DomainName": "app.example.com", "OriginPath": "",
             "CustomOriginConfig": {"HTTPPort": 80, "HTTPSPort": 443, "OriginProtocolPolicy": "https-only"}}]},
        "DefaultCacheBehavior": cache_behaviour("assets", arns[live]),
        "CacheBehaviors": {"Quantity": 1, "Items": [cache_behaviour("app", None, "/api/*")]},
    })
    alarm = f"{name}-cdn-5xx-error-rate"
    cloudwatch.put_metric_alarm(AlarmName=alarm, MetricName="5xxErrorRate", Namespace="AWS/CloudFront",
                                Statistic="Average", Period=60, EvaluationPeriods=1, Threshold=5.0,
                                ComparisonOperator="GreaterThanThreshold")
    return SeededEdge(function, arns, live, str(distribution["Distribution"]["Id"]), str(distribution["ETag"]),
                      bucket, origin_path, [alarm], objects)


def write_workdir(directory: Path, seeded: SeededEdge, *, env: str = "sandbox") -> dict[str, Path]:
    """A drill directory: rollback.toml, Pulumi.yaml, stacks/Pulumi.<env>.yaml and stack-export.json."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "stacks").mkdir(exist_ok=True)
    files = {
        "config": directory / "rollback.toml",
        "project": directory / "Pulumi.yaml",
        "stack": directory / "stacks" / f"Pulumi.{env}.yaml",
        "checkpoint": directory / "stack-export.json",
    }
    files["config"].write_text(
        f'default_env = "{env}"\n\n[env.{env}.aws]\nregion = "us-east-1"\n'
        f'distribution_id = "{seeded.distribution_id}"\nedge_function = "{seeded.function}"\n'
        f'assets_bucket = "{seeded.bucket}"\nfrom_stack_outputs = false\n\n'
        f'[env.{env}.pulumi]\nstack = "{env}"\nproject_dir = "."\n', encoding="utf-8")
    files["project"].write_text("name: rollback\nruntime: python\nstackConfigDir: stacks\n", encoding="utf-8")
    files["stack"].write_text(
        "# Sandbox stack config (written by python -m rollback.sandbox.aws --seed).\nconfig:\n"
        "  aws:region: us-east-1\n  # Edge pin: `rollback infra edge` rewrites it.\n"
        f'  rollback:edgeFunctionVersion: "{seeded.live_version}"\n  rollback:assetsRelease: r42\n',
        encoding="utf-8")
    files["checkpoint"].write_text(json.dumps({"version": 3, "deployment": {
        "manifest": {}, "resources": seeded.checkpoint_resources()}}, indent=2), encoding="utf-8")
    return files
