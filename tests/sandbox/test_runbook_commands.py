"""The runbook's own commands work against the sandbox unchanged, after
``eval "$(rollback sandbox status)"``: the aws CLI (awscli from PyPI, in the sandbox extra), psql, Vercel's
CLI (vercel@58.10.0 under .cache/vercel-cli, as tests/app/test_vercel_cli.py finds it) and curl.

Each test runs a bash script as a person would type it, in a throwaway HOME."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from rollback.sandbox.world import SandboxInfo
from tests.sandbox.conftest import tool_env


def bash(info: SandboxInfo, tmp_path: Path, script: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in tool_env(info, tmp_path / "home").items() if k not in info.exports()}
    prologue = f'set -euo pipefail\neval "$(rollback sandbox status --dir {shlex.quote(str(info.dir))})"\n'
    return subprocess.run(["bash", "-c", prologue + script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def test_aws_cloudfront_get_distribution_config(sandbox: SandboxInfo, tmp_path: Path) -> None:
    result = bash(sandbox, tmp_path, "aws cloudfront get-distribution-config --id $DISTRIBUTION_ID "
                                     "> current-config.json\ncat current-config.json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["ETag"]
    associations = document["DistributionConfig"]["DefaultCacheBehavior"]["LambdaFunctionAssociations"]["Items"]
    assert associations[0]["LambdaFunctionARN"].startswith(
        "arn:aws:lambda:us-east-1:123456789012:function:rollback-sandbox-security-headers:")


def test_aws_lambda_list_versions_by_function(sandbox: SandboxInfo, tmp_path: Path) -> None:
    result = bash(sandbox, tmp_path, "aws lambda list-versions-by-function --function-name $EDGE_FUNCTION "
                                     "--region us-east-1")
    assert result.returncode == 0, result.stderr
    assert [v["Version"] for v in json.loads(result.stdout)["Versions"]] == ["$LATEST", "1", "2", "3"]


def test_aws_s3api_list_object_versions(sandbox: SandboxInfo, tmp_path: Path) -> None:
    result = bash(sandbox, tmp_path, 'aws s3api list-object-versions --bucket $ASSETS_BUCKET '
                                     '--prefix "releases/r42/index.html"')
    assert result.returncode == 0, result.stderr
    versions = json.loads(result.stdout)["Versions"]
    assert len(versions) >= 2 and {v["Key"] for v in versions} == {"releases/r42/index.html"}


def test_aws_cloudwatch_describe_alarms(sandbox: SandboxInfo, tmp_path: Path) -> None:
    result = bash(sandbox, tmp_path, "aws cloudwatch describe-alarms --alarm-types MetricAlarm CompositeAlarm")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    names = {a["AlarmName"] for a in document["MetricAlarms"] + document["CompositeAlarms"]}
    assert {"rollback-sandbox-cdn-5xx-error-rate", "rollback-sandbox-edge-function-errors",
            "rollback-sandbox-rollback"} <= names


def test_psql_database_url(sandbox: SandboxInfo, tmp_path: Path) -> None:
    if shutil.which("psql") is None:
        pytest.fail("psql is not installed (apt-get install postgresql-client)")
    script = '''psql $DATABASE_URL -At << EOF
SELECT COUNT(*) FROM "User";
SELECT COUNT(*) FROM "Integration";
SELECT COUNT(*) FROM "UserStats";
SELECT migration_name FROM "_prisma_migrations" ORDER BY finished_at DESC LIMIT 5;
EOF'''
    result = bash(sandbox, tmp_path, script)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split()
    assert all(line.isdigit() for line in lines[:3])
    assert "20261101090000_init" in lines


def test_vercel_ls_with_the_api_url(sandbox: SandboxInfo, tmp_path: Path) -> None:
    from tests.app.test_vercel_cli import vercel_cli

    cli = vercel_cli()  # fails in CI when missing; skipped elsewhere with how to install it
    script = (f'vercel() {{ {shlex.quote(cli)} "$@"; }}\n'
              "vercel ls --api $VERCEL_API_URL\n"
              "echo ---\n"
              "vercel ls demo $VERCEL_ARGS\n")
    result = bash(sandbox, tmp_path, script)
    assert result.returncode == 0, result.stdout + result.stderr
    first, second = (result.stdout + result.stderr).split("---", 1)
    for output in (first, second):
        assert sandbox.world["vercel"]["bad_url"] in output
        assert sandbox.world["vercel"]["good_url"] in output


def test_curl_app_health(fresh_sandbox: SandboxInfo, tmp_path: Path) -> None:
    result = bash(fresh_sandbox, tmp_path, 'curl -s -o body.json -w "%{http_code}" $APP_URL/api/health; '
                                           "echo; cat body.json")
    assert result.returncode == 0, result.stderr
    status, body = result.stdout.split("\n", 1)
    assert status == "500"
    assert json.loads(body)["deploymentId"] == fresh_sandbox.world["vercel"]["bad_deployment"]
