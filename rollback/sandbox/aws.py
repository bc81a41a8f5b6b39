"""The moto server: real HTTP, real boto3 calls, on loopback.

``start_moto()`` serves moto in a thread and returns its URL; point boto3 at it
with ``AWS_ENDPOINT_URL`` (see :func:`moto_environment`). Before serving, it
adds the CloudFront semantics moto lacks (ETags that change, ``IfMatch``,
Lambda@Edge associations, deploy and invalidation status; see
:mod:`rollback.sandbox.cloudfront`), CloudWatch's percentiles and composite
alarms (:mod:`rollback.sandbox.cloudwatch`), and RDS's restores as RDS does them
(no managed master password or monitoring carried over, ``creating`` before
``available``, a lagging latest restorable time; :mod:`rollback.sandbox.rds`).

Standalone, for the sandbox drill::

    python -m rollback.sandbox.aws --port 5000 --seed --workdir /tmp/drill
    # then, in another shell:
    eval "$(python -m rollback.sandbox.aws --print-env --port 5000)"
    cd /tmp/drill && rollback infra drift --checkpoint stack-export.json

``--seed`` (:func:`seed_edge`) creates what the break-glass commands act on: a
Lambda@Edge function with published versions, a versioned assets bucket with a
bad deploy in it, a distribution whose default behaviour uses the newest
version, and an alarm; ``--workdir`` writes a matching rollback.toml, Pulumi
project and stack config, and a ``pulumi stack export``-shaped checkpoint.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import socket
import sys
import threading
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rollback.sandbox.serving import quiet_disconnects

__all__ = ["MotoServer", "SeededEdge", "main", "moto_environment", "seed_edge", "start_moto", "write_workdir"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class MotoServer:
    url: str
    stop: Callable[[], None]


def start_moto(port: int | None = None, *, deploy_after_reads: int = 2,
               deploy_after_seconds: float | None = None) -> MotoServer:
    """Start moto's threaded server on 127.0.0.1 and return its URL and a stop function.

    A distribution reports ``InProgress`` after an update until it has been read
    ``deploy_after_reads`` times (or for ``deploy_after_seconds``), then ``Deployed``.
    """
    from moto.server import ThreadedMotoServer

    from rollback.sandbox import cloudwatch, rds
    from rollback.sandbox.cloudfront import install

    memoize_region_lists()
    install(deploy_after_reads=deploy_after_reads, deploy_after_seconds=deploy_after_seconds)
    cloudwatch.install()
    rds.install()
    # One access-log line per request on stderr drowns test output and the drill's progress.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    chosen = port or _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=chosen, verbose=False)
    server.start()
    quiet_disconnects(server._server)
    return MotoServer(url=f"http://127.0.0.1:{chosen}", stop=server.stop)


_REGIONS_LOCK = threading.Lock()


def memoize_region_lists() -> None:
    """Make botocore parse each service model once per process, not once per session.

    moto asks a *new* ``boto3.Session()`` for a service's regions whenever it creates a
    backend (and EC2's module does so three times at import); each new session parses the
    service's whole model again to find its endpoint prefix (EC2's is 4 MB of JSON), which
    made the first RDS request of a moto server take 5-10 s on a loaded 2-core machine.
    ``Session.get_service_data`` is therefore remembered process-wide (the data is read-only
    for its callers, and the ``service-data-loaded`` handlers ran on the first load).
    """
    import botocore.session

    session_class: Any = botocore.session.Session
    if getattr(session_class, "_rollback_service_data_shared", False):
        return
    with _REGIONS_LOCK:
        if getattr(session_class, "_rollback_service_data_shared", False):
            return
        original = session_class.get_service_data
        loaded: dict[tuple[str, str | None], Any] = {}

        def get_service_data(self: Any, service_name: str, api_version: str | None = None) -> Any:
            key = (service_name, api_version)
            if key not in loaded:
                loaded[key] = original(self, service_name, api_version)
            return loaded[key]

        session_class.get_service_data = get_service_data
        session_class._rollback_service_data_shared = True

        # Listing EC2's regions (moto's RDS backend imports EC2's) needs only its endpoint prefix,
        # which is its name: no need to parse its 4 MB model at all.
        list_regions = session_class.get_available_regions
        known_prefixes = {"ec2": "ec2"}

        def get_available_regions(self: Any, service_name: str, partition_name: str = "aws",
                                  allow_non_regional: bool = False) -> Any:
            prefix = known_prefixes.get(service_name)
            if prefix is None:
                return list_regions(self, service_name, partition_name, allow_non_regional)
            resolver = self._get_internal_component("endpoint_resolver")
            return resolver.get_available_endpoints(prefix, partition_name, allow_non_regional)

        session_class.get_available_regions = get_available_regions

        # Each new session's endpoint resolver parses endpoints.json (1.2 MB) again, too.
        import botocore.loaders

        loader_class: Any = botocore.loaders.Loader
        load_data_with_path = loader_class.load_data_with_path
        shared: dict[str, Any] = {}

        def load_data_with_path_shared(self: Any, name: str) -> Any:
            if name not in ("endpoints", "partitions"):
                return load_data_with_path(self, name)
            if name not in shared:
                shared[name] = load_data_with_path(self, name)
            return shared[name]

        loader_class.load_data_with_path = load_data_with_path_shared


def moto_environment(url: str, region: str = "us-east-1") -> dict[str, str]:
    """Environment variables that point boto3 (and our CLI) at the moto server."""
    return {
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
    }


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


def _zip(source: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.js", source)
    return buffer.getvalue()


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
                                  Code={"ZipFile": _zip("// security headers v1")}, Publish=True)
    arns = {str(created["Version"]): str(lam.get_function(FunctionName=function, Qualifier=str(created["Version"]))[
        "Configuration"]["FunctionArn"])}
    for number in range(2, versions + 1):
        lam.update_function_code(FunctionName=function, ZipFile=_zip(f"// security headers v{number}"))
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
        "CallerReference": f"{name}-cdn", "Comment": f"{name}: assets release r42", "Enabled": True,
        "Origins": {"Quantity": 2, "Items": [
            {"Id": "assets", "DomainName": f"{bucket}.s3.amazonaws.com", "OriginPath": origin_path,
             "S3OriginConfig": {"OriginAccessIdentity": ""}},
            {"Id": "app", "DomainName": "app.example.com", "OriginPath": "",
             "CustomOriginConfig": {"HTTPPort": 80, "HTTPSPort": 443, "OriginProtocolPolicy": "https-only"}}]},
        "DefaultCacheBehavior": behaviour("assets", arns[live]),
        "CacheBehaviors": {"Quantity": 1, "Items": [behaviour("app", None, "/api/*")]},
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


def main(argv: Sequence[str] | None = None) -> int:
    """Serve moto (with our CloudFront semantics) until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m rollback.sandbox.aws", description=main.__doc__)
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--deploy-seconds", type=float, default=5.0,
                        help="seconds an updated distribution stays InProgress (default 5)")
    parser.add_argument("--print-env", action="store_true",
                        help="print the shell exports for a server on --port and exit")
    parser.add_argument("--seed", action="store_true",
                        help="create the edge stack (function versions, distribution, bucket, alarm)")
    parser.add_argument("--workdir", type=Path,
                        help="with --seed: write rollback.toml, the Pulumi project and a checkpoint here")
    args = parser.parse_args(argv)
    url = f"http://127.0.0.1:{args.port}"
    if args.print_env:
        for key, value in moto_environment(url).items():
            print(f"export {key}={value}")
        return 0
    server = start_moto(args.port, deploy_after_seconds=args.deploy_seconds)
    print(f"moto (with CloudFront semantics) serving on {server.url}; Ctrl-C to stop", file=sys.stderr)
    if args.seed:
        import os

        os.environ.update(moto_environment(server.url))
        seeded = seed_edge()
        print(json.dumps(seeded.to_dict(), indent=2), flush=True)
        if args.workdir:
            files = write_workdir(args.workdir, seeded)
            print(f"drill directory: {args.workdir} ({', '.join(p.name for p in files.values())})", file=sys.stderr)
    import signal
    import threading

    stopping = threading.Event()
    # SIGTERM (kill, CI teardown) stops as cleanly as Ctrl-C; background jobs of a shell ignore SIGINT.
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        while not stopping.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
