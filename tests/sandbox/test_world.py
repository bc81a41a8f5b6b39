"""The seeded world, and the rollbacks that repair it, against the session's sandbox (real processes:
the supervisor with moto, the Vercel emulator, the app server, PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from rollback.context import Services
from rollback.sandbox.world import Sandbox, SandboxInfo
from tests.conftest import CliResult

RunCli = Callable[..., CliResult]


def aws(service: str) -> Any:
    import boto3

    return boto3.client(service, region_name="us-east-1")  # type: ignore[call-overload]


def alarm_states(info: SandboxInfo) -> dict[str, str]:
    found = aws("cloudwatch").describe_alarms(AlarmNamePrefix="rollback-sandbox-",
                                              AlarmTypes=["MetricAlarm", "CompositeAlarm"])
    return {a["AlarmName"]: a["StateValue"] for a in found["MetricAlarms"] + found["CompositeAlarms"]}


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout:g} s waiting for {what}"
        time.sleep(0.25)


def test_world_as_seeded(fresh_sandbox: SandboxInfo, run_cli: RunCli) -> None:
    info = fresh_sandbox
    world = info.world
    vercel, infra, database = world["vercel"], world["aws"], world["database"]

    # App: the bad deployment is live; health 500 and slow; the version endpoint names it.
    production = httpx.get(f"{info.env['VERCEL_API_URL']}/_admin/production/demo", timeout=5).json()
    assert production["deployment"]["id"] == vercel["bad_deployment"] != vercel["good_deployment"]
    assert httpx.get(f"{info.env['APP_URL']}/api/health", timeout=10).status_code == 500
    started = time.monotonic()
    assert httpx.get(f"{info.env['APP_URL']}/api/integrations", timeout=10).status_code == 200
    assert time.monotonic() - started >= 1.4  # the rest of its API is slow
    version = httpx.get(f"{info.env['APP_URL']}/api/version", timeout=10).json()
    assert version["deploymentId"] == vercel["bad_deployment"] and version["commit"] == vercel["bad_sha"]
    assert httpx.get(f"{info.env['APP_URL']}/", timeout=10).status_code == 200

    # Alarms: the app, edge and assets criteria and the composite in ALARM, the others OK.
    states = alarm_states(info)
    assert states == {
        "rollback-sandbox-cdn-5xx-error-rate": "ALARM", "rollback-sandbox-cdn-origin-latency-p95": "OK",
        "rollback-sandbox-cdn-cache-hit-rate": "ALARM", "rollback-sandbox-edge-function-errors": "ALARM",
        "rollback-sandbox-db-connections": "OK", "rollback-sandbox-db-free-storage": "OK",
        "rollback-sandbox-rollback": "ALARM",
    }
    alarm = aws("cloudwatch").describe_alarms(AlarmNames=["rollback-sandbox-cdn-5xx-error-rate"])["MetricAlarms"][0]
    detected = dt.datetime.fromisoformat(world["timeline"]["detected"].replace("Z", "+00:00"))
    assert abs((alarm["StateUpdatedTimestamp"] - detected).total_seconds()) < 2

    # Datapoints to match: 5xx rate and p95 origin latency over the last 5 minutes.
    now = dt.datetime.now(dt.UTC)
    dims = [{"Name": "DistributionId", "Value": infra["distribution_id"]}, {"Name": "Region", "Value": "Global"}]
    rate = aws("cloudwatch").get_metric_statistics(
        Namespace="AWS/CloudFront", MetricName="5xxErrorRate", Dimensions=dims, StartTime=now - dt.timedelta(minutes=5),
        EndTime=now + dt.timedelta(minutes=1), Period=360, Statistics=["Average"])["Datapoints"]
    assert rate and rate[0]["Average"] > 5
    latency = aws("cloudwatch").get_metric_data(
        MetricDataQueries=[{"Id": "p95", "MetricStat": {"Metric": {"Namespace": "AWS/CloudFront",
                                                                   "MetricName": "OriginLatency", "Dimensions": dims},
                                                        "Period": 300, "Stat": "p95"}}],
        StartTime=now - dt.timedelta(minutes=5), EndTime=now + dt.timedelta(minutes=1))["MetricDataResults"][0]
    assert latency["Values"] and max(latency["Values"]) > 1000

    # Edge: the association names the bad version 3; 1 and 2 exist before it.
    config = aws("cloudfront").get_distribution_config(Id=infra["distribution_id"])["DistributionConfig"]
    arn = config["DefaultCacheBehavior"]["LambdaFunctionAssociations"]["Items"][0]["LambdaFunctionARN"]
    assert arn.endswith(":3") and arn == infra["edge_versions"]["3"]
    versions = aws("lambda").list_versions_by_function(FunctionName=infra["edge_function"])["Versions"]
    assert [v["Version"] for v in versions] == ["$LATEST", "1", "2", "3"]
    assert config["Origins"]["Items"][0]["OriginPath"] == "/releases/r42"

    # Assets: the bad release overwrote index.html and app.js and deleted app.css, 4 minutes ago.
    s3 = aws("s3")
    body = s3.get_object(Bucket=infra["assets_bucket"], Key="releases/r42/index.html")["Body"].read()
    assert b"app.3f9c.js" in body
    listed = s3.list_object_versions(Bucket=infra["assets_bucket"], Prefix="releases/r42/")
    assert [m["Key"] for m in listed["DeleteMarkers"] if m["IsLatest"]] == ["releases/r42/app.css"]
    good = [v for v in listed["Versions"] if v["VersionId"] in infra["assets_good_versions"].values()]
    assert len(good) == 3 and all(now - v["LastModified"] > dt.timedelta(minutes=90) for v in good)

    # Database: failed migration, damaged rows; the good backup (taken before) has the good counts.
    assert database["damaged_counts"] != database["good_counts"]
    migrations = run_cli("db", "migrations", "--json")
    assert migrations.code == 0, migrations.err
    assert migrations.json()["failed"] == [database["failed_migration"]]
    backups = run_cli("db", "backups", "--json").json()["backups"]
    manifest = next(b for b in backups if b["name"] == database["good_backup"])
    assert {t["name"]: t["rows"] for t in manifest["tables"] if t["name"] in database["good_counts"]} \
        == database["good_counts"]
    verify = run_cli("db", "verify", "--baseline", database["good_backup"], "--json")
    assert verify.code == 3
    failed = {c["check"] for c in verify.json()["checks"] if not c["ok"]}
    assert {"migrations.failed", "rows.User", "rows.Integration"} <= failed

    # RDS: a restorable window reaching back past "15m ago", and a manual snapshot before the release.
    snapshots = run_cli("db", "snapshots", "--json").json()
    earliest = dt.datetime.fromisoformat(snapshots["instance"]["earliest_restorable_time"].replace("Z", "+00:00"))
    assert now - earliest > dt.timedelta(days=2)
    assert {s["type"] for s in snapshots["snapshots"]} == {"manual", "automated"}

    # Pulumi: four updates, the last one moved the edge pin to 3; outputs name the seeded resources.
    history = run_cli("infra", "history", "--json")
    assert history.code == 0, history.err
    updates = history.json()["versions"]
    assert len(updates) == 4 and "v3" in updates[-1]["message"]
    from rollback.commands.infra.stack import stack_outputs
    from rollback.config import load_config

    outputs = stack_outputs(load_config(), Services(load_config()))
    assert outputs["distributionId"] == infra["distribution_id"]
    assert outputs["edgeFunctionVersion"] == "3"
    assert sorted(outputs["alarmNames"]) == sorted(a["name"] for a in infra["alarms"])

    # The config it wrote is valid and every layer is configured.
    check = run_cli("config", "check", "--json")
    assert check.code == 0, check.err
    settings = check.json()["settings"]
    assert settings["vercel"]["project"] == "demo" and settings["pulumi"]["backend_url"].startswith("file://")
    assert settings["health"]["base_url"] == info.env["APP_URL"]


def test_app_rollback_restores_health_and_clears_its_alarm(fresh_sandbox: SandboxInfo, run_cli: RunCli) -> None:
    info = fresh_sandbox
    result = run_cli("app", "rollback", "--yes")
    assert result.code == 0, result.err
    health = httpx.get(f"{info.env['APP_URL']}/api/health", timeout=10)
    assert health.status_code == 200
    assert health.json()["deploymentId"] == info.world["vercel"]["good_deployment"]
    wait_for(lambda: alarm_states(info)["rollback-sandbox-cdn-5xx-error-rate"] == "OK", 30, "the 5xx alarm to clear")
    states = alarm_states(info)
    # The other layers are still broken: their alarms stay, and so does the composite.
    assert states["rollback-sandbox-edge-function-errors"] == "ALARM"
    assert states["rollback-sandbox-cdn-cache-hit-rate"] == "ALARM"
    assert states["rollback-sandbox-rollback"] == "ALARM"


def test_every_layer_restores_and_every_alarm_clears(fresh_sandbox: SandboxInfo, run_cli: RunCli) -> None:
    info = fresh_sandbox
    database = info.world["database"]
    steps = [
        ("app", "rollback", "--yes"),
        ("infra", "edge", "--to-version", "2", "--yes", "--poll-interval", "0.2s"),
        ("infra", "assets", "--prefix", "releases/r42/", "--before", "30m ago", "--yes"),
        ("db", "restore", database["good_backup"], "--swap", "--yes"),
    ]
    for args in steps:
        result = run_cli(*args)
        assert result.code == 0, f"{args}: {result.err}"
    verify = run_cli("db", "verify", "--baseline", database["good_backup"], "--json")
    assert verify.code == 0, verify.out
    wait_for(lambda: set(alarm_states(info).values()) == {"OK"}, 30, "every rollback alarm to clear")
    monitor = httpx.get(f"{info.env['APP_URL']}/_sandbox/monitor", timeout=5).json()
    assert monitor["layers"] == {"edge_versions": ["2"], "edge_bad": False, "assets_changed": [],
                                 "assets_bad": False}


def test_reset_breaks_the_world_again(fresh_sandbox: SandboxInfo, run_cli: RunCli) -> None:
    info = fresh_sandbox
    assert run_cli("app", "rollback", "--yes").code == 0
    assert httpx.get(f"{info.env['APP_URL']}/api/health", timeout=10).status_code == 200
    again = Sandbox.reset(info.dir)
    assert again.generation == info.generation + 1
    assert again.env == info.env  # same ports, same credentials: an exported shell stays right
    assert again.world["aws"]["distribution_id"] == info.world["aws"]["distribution_id"]
    assert httpx.get(f"{info.env['APP_URL']}/api/health", timeout=10).status_code == 500
    assert alarm_states(again)["rollback-sandbox-cdn-5xx-error-rate"] == "ALARM"
    # `up --reset` on the running sandbox: the same processes, the world seeded once more.
    assert run_cli("app", "rollback", "--yes").code == 0
    result = run_cli("sandbox", "up", "--reset", "--dir", str(info.dir), "--json")
    assert result.code == 0, result.err
    document = result.json()
    assert document["reused"] is True and document["generation"] == again.generation + 1
    assert document["pids"] == again.pids
    assert httpx.get(f"{info.env['APP_URL']}/api/health", timeout=10).status_code == 500
    # The app's repository was re-created too: HEAD is the bad commit again, and its remote deploys pushes.
    import subprocess

    repo = document["env"]["APP_REPO"]
    head = subprocess.run(["git", "-C", repo, "log", "-1", "--format=%s"], capture_output=True, text=True, check=True)
    assert head.stdout.strip() == "Add new feature"
    assert (Path(repo).parent / "app.git" / "hooks" / "post-receive").stat().st_mode & 0o111


def test_state_file_is_private_and_strict_json(sandbox_env: SandboxInfo) -> None:
    path = Path(sandbox_env.dir) / "sandbox.json"
    assert path.stat().st_mode & 0o077 == 0

    def refuse(value: str) -> None:
        raise ValueError(value)

    document = json.loads(path.read_text(), parse_constant=refuse)
    assert set(document) >= {"pids", "ports", "urls", "env", "processes", "world", "state"}
    assert document["state"] == "ready"


@pytest.mark.parametrize("status", ["--json", None])
def test_status_prints_exports(sandbox_env: SandboxInfo, run_cli: RunCli, status: str | None) -> None:
    args = ["sandbox", "status", "--dir", str(sandbox_env.dir)] + ([status] if status else [])
    result = run_cli(*args)
    assert result.code == 0, result.err
    if status:
        assert result.json()["env"]["APP_URL"] == sandbox_env.env["APP_URL"]
    else:
        lines = result.out.splitlines()
        assert lines[0].startswith("export ROLLBACK_CONFIG=")
        assert all(line.startswith("export ") for line in lines)
        names = {line.split("=", 1)[0][len("export "):] for line in lines}
        assert {"AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
                "DATABASE_URL", "VERCEL_API_URL", "VERCEL_TOKEN", "VERCEL_ORG_ID", "VERCEL_SCOPE", "VERCEL_ARGS",
                "APP_URL", "DISTRIBUTION_ID", "PULUMI_PROJECT_DIR"} <= names


def git(repo: Path, *args: str) -> str:
    import subprocess

    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()


def test_the_stack_history_ran_real_commits_of_the_programs_infra(fresh_sandbox: SandboxInfo,
                                                                   run_cli: RunCli) -> None:
    """The sandbox's Pulumi project is a git repository of this repository's own ``Pulumi.yaml`` and ``infra/``
    at three versions; each update's ``git.head`` is the commit it ran from, the newest the work tree; the stack
    config holds every key the program requires, so ``infra preview --to 3 --offline`` runs version 3's own
    program (checked out from its commit) under Pulumi's mocks and shows the program change beside the config's."""
    from rollback.sandbox.seed_pulumi import PROGRAM_VERSIONS, repository_root

    info = fresh_sandbox
    project = Path(info.exports()["PULUMI_PROJECT_DIR"])
    assert project == info.dir / "pulumi" and (project / "Pulumi.yaml").is_file()
    commits = git(project, "log", "--format=%H", "--reverse").splitlines()
    assert len(commits) == len(PROGRAM_VERSIONS) == 3 and commits == info.world["pulumi"]["commits"]
    assert git(project, "status", "--porcelain", "--", "infra", "Pulumi.yaml") == ""  # the work tree is HEAD's
    root = repository_root()
    assert root is not None and (project / "infra" / "settings.py").read_text() == \
        (root / "infra" / "settings.py").read_text()  # the project's own program
    history = run_cli("infra", "history", "--json").json()
    heads = [u["git_head"] for u in history["versions"]]
    assert heads == [commits[0], commits[0], commits[1], commits[2]]
    assert "isIpv6Enabled" not in git(project, "diff", commits[0], commits[1])  # v1 -> v2: HTTP/3
    assert "is_ipv6_enabled=False" in git(project, "show", f"{commits[1]}:infra/cdn.py")

    preview = run_cli("infra", "preview", "--to", "3", "--offline")
    assert preview.code == 0, preview.err
    assert f"program: version 3's own, from commit {commits[1][:12]} (differs from the work tree in infra/cdn.py)" \
        in preview.out
    assert "isIpv6Enabled: true -> false [program]" in preview.out
    assert "lambdaArn: arn:aws:lambda:us-east-1:123456789012:function:rollback-sandbox-security-headers:3 -> " \
           "arn:aws:lambda:us-east-1:123456789012:function:rollback-sandbox-security-headers:2" in preview.out
    assert "pulumi-aws: 7.51.1 in the stack's checkpoint" in preview.out
    assert 'rollback:edgeFunctionVersion: "2"' in (project / "stacks" / "Pulumi.sandbox.yaml").read_text()
    # today's program with version 3's config alone
    config_only = run_cli("infra", "preview", "--to", "3", "--offline", "--config-only")
    assert config_only.code == 0, config_only.err
    assert "[program]" not in config_only.out
