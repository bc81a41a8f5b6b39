"""``rollback run --switch-database``: the app's URL for a restored RDS instance, against the moto server
(as strict as RDS: a restore has no managed secret until ModifyDBInstance turns it on), our Vercel
emulator (variables baked into each deployment, as Vercel documents: "changes to environment
variables are not applied to previous deployments") and a real PostgreSQL (the run's emergency backup).

- The credentials come from the restored instance's managed master secret, or with
  ``database.app_role`` stay the app role's (RDS restores roles with the data); never from the
  operator's own database URL.
- A variable that goes through a pooler (pgbouncer=true, port 6543, prisma://, an RDS Proxy) is
  refused before anything changes: the instance's endpoint there would bypass the pool.
- ``DATABASE_URL`` and ``DIRECT_URL`` switch together.
- ``rollback app rollback`` to a deployment built before the switch is refused without
  ``--yes-old-database``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from rollback.sandbox.vercel import VercelEmulator
from rollback.sandbox.vercel_state import DEMO
from tests.app.conftest import TOKEN, emulator_server  # noqa: F401  (fixture)
from tests.conftest import CliResult, render_config
from tests.db.conftest import LiveDb
from tests.db.test_backup_restore import one_line_error

RunCli = Callable[..., CliResult]
APP_URL = "postgresql://app_user:app-role-pw@demo-db.cluster.internal:5432/app?schema=public&sslmode=require"
DIRECT = "postgresql://app_user:app-role-pw@demo-db.cluster.internal:5432/app?sslmode=require"

pytestmark = pytest.mark.slow


@pytest.fixture
def vercel(emulator_server: VercelEmulator) -> VercelEmulator:  # noqa: F811
    return emulator_server


@pytest.fixture
def world(live_db: LiveDb, aws_env: str, vercel: VercelEmulator, monkeypatch: pytest.MonkeyPatch,
          tmp_path: Path) -> dict[str, Any]:
    import boto3

    vercel.state.reset("demo")
    vercel.state.create_env(DEMO.project_name, {"key": "DATABASE_URL", "value": APP_URL, "type": "encrypted",
                                                "target": ["production"]}, upsert=True)
    vercel.state.create_env(DEMO.project_name, {"key": "DIRECT_URL", "value": DIRECT, "type": "encrypted",
                                                "target": ["production"]}, upsert=True)
    client = boto3.client("rds", region_name="us-east-1")
    name = f"app-db-{secrets.token_hex(3)}"
    client.create_db_instance(DBInstanceIdentifier=name, DBInstanceClass="db.t3.micro", Engine="postgres",
                              MasterUsername="app_admin", ManageMasterUserPassword=True, AllocatedStorage=20,
                              BackupRetentionPeriod=7, DBName="app")
    monkeypatch.setenv("VERCEL_API_URL", vercel.url)
    monkeypatch.setenv("VERCEL_TOKEN", TOKEN)
    monkeypatch.setenv("ROLLBACK_RDS_WAIT_DELAY", "1")
    monkeypatch.delenv("DIRECT_URL", raising=False)
    # The local variable has the name of the app's (the switch changes the Vercel variable of that name).
    monkeypatch.setenv("DATABASE_URL", live_db.url)

    def configure(**database: Any) -> None:
        path = tmp_path / "rollback-switch.toml"
        path.write_text(render_config({"test": {
            "database": {"url_env": "DATABASE_URL", "backups_dir": "backups", **database},
            "aws": {"region": "us-east-1", "db_instance": name},
            "vercel": {"project": DEMO.project_name, "team": DEMO.team_id}}},
            default_env="test", journal_dir=str(tmp_path / "runs")))
        monkeypatch.setenv("ROLLBACK_CONFIG", str(path))

    configure()
    return {"name": name, "client": client, "configure": configure, "live": live_db}


def _variables(vercel: VercelEmulator) -> dict[str, str]:
    project = vercel.state.project(DEMO.project_name)
    return {env.key: env.value for env in project.envs if "production" in env.target}


def _switch(run_cli: RunCli, *extra: str) -> CliResult:
    return run_cli("run", "--layers", "db", "--to", "db=rds-latest", "--switch-database", "--no-verify", *extra)


def test_switch_takes_the_restored_instances_secret_and_switches_both_urls(
        run_cli: RunCli, world: dict[str, Any], vercel: VercelEmulator) -> None:
    import boto3

    result = _switch(run_cli, "--yes", "--json")
    assert result.code == 0, result.err
    steps = {s["id"]: s for s in result.json()["steps"]}
    restored = world["client"].describe_db_instances(
        DBInstanceIdentifier=steps["db.rds-restore"]["result"]["id"])["DBInstances"][0]
    endpoint = restored["Endpoint"]["Address"]
    secret = boto3.client("secretsmanager", region_name="us-east-1").get_secret_value(
        SecretId=restored["MasterUserSecret"]["SecretArn"])["SecretString"]
    import json

    master = json.loads(secret)
    values = _variables(vercel)
    for key, query in (("DATABASE_URL", "schema=public&sslmode=require"), ("DIRECT_URL", "sslmode=require")):
        parts = urlsplit(values[key])
        assert parts.hostname == endpoint and parts.path == "/app" and parts.query == query, key
        assert parts.username == "app_admin" and unquote(parts.password or "") == master["password"], key
    operator = urlsplit(world["live"].url)
    assert operator.password not in values["DATABASE_URL"]  # never the operator's credentials
    assert master["password"] not in result.out + result.err
    assert steps["db.switch-database"]["result"]["variables"] == ["DATABASE_URL", "DIRECT_URL"]

    # A rollback to a deployment built before the switch would connect to the old database.
    refused = run_cli("app", "rollback", "--to", DEMO.previous, "--dry-run")
    one_line_error(refused, 4, "built before the database switch", "demo-db.cluster.internal", "--yes-old-database")
    accepted = run_cli("app", "rollback", "--to", DEMO.previous, "--yes-old-database", "--dry-run")
    assert accepted.code == 0, accepted.err
    assert "built before the database switch" in accepted.err
    # Switched back by hand: the journaled switch is no longer in effect, nothing to refuse.
    vercel.state.create_env(DEMO.project_name, {"key": "DATABASE_URL", "value": APP_URL, "type": "encrypted",
                                                "target": ["production"]}, upsert=True)
    assert run_cli("app", "rollback", "--to", DEMO.previous, "--dry-run").code == 0


@pytest.mark.parametrize(("url", "why"), [
    ("postgresql://app_user:pw@pooler.example.com:6543/app", "port 6543"),
    ("postgresql://app_user:pw@db.example.com:5432/app?pgbouncer=true", "pgbouncer=true"),
    ("prisma://accelerate.prisma-data.net/?api_key=pw", "prisma://"),
    ("postgresql://app_user:pw@app.proxy-c1a2b3.us-east-1.rds.amazonaws.com:5432/app", "RDS Proxy"),
])
def test_switch_refuses_a_pooler_url(run_cli: RunCli, world: dict[str, Any], vercel: VercelEmulator, url: str,
                                     why: str) -> None:
    vercel.state.create_env(DEMO.project_name, {"key": "DATABASE_URL", "value": url, "type": "encrypted",
                                                "target": ["production"]}, upsert=True)
    before = {i["DBInstanceIdentifier"] for i in world["client"].describe_db_instances()["DBInstances"]}
    result = _switch(run_cli, "--yes")
    one_line_error(result, 4, "DATABASE_URL of Vercel project demo goes through a connection pooler", why,
                   "point the pooler at the restored instance")
    assert _variables(vercel)["DATABASE_URL"] == url
    assert {i["DBInstanceIdentifier"] for i in world["client"].describe_db_instances()["DBInstances"]} == before


def test_switch_keeps_the_app_roles_credentials(run_cli: RunCli, world: dict[str, Any],
                                                vercel: VercelEmulator) -> None:
    world["configure"](app_role="app_user")
    result = _switch(run_cli, "--yes", "--json")
    assert result.code == 0, result.err
    endpoint = next(s for s in result.json()["steps"] if s["id"] == "db.rds-restore")["result"]["endpoint"]
    for value in _variables(vercel).values():
        parts = urlsplit(value)
        assert (parts.hostname, parts.username, parts.password) == (endpoint, "app_user", "app-role-pw")
    world["configure"](app_role="someone_else")
    refused = _switch(run_cli, "--dry-run")
    one_line_error(refused, 4, "connects as app_user, not as the app role someone_else")


def test_switch_without_any_credentials_is_refused(run_cli: RunCli, world: dict[str, Any], aws_env: str) -> None:
    """No managed secret on the source, no app role: the operator's own URL is not a fallback."""
    client = world["client"]
    plain = f"app-db-{secrets.token_hex(3)}"
    client.create_db_instance(DBInstanceIdentifier=plain, DBInstanceClass="db.t3.micro", Engine="postgres",
                              MasterUsername="app_admin", MasterUserPassword="not-a-real-secret",
                              AllocatedStorage=20, BackupRetentionPeriod=7)
    path = Path(str(__import__("os").environ["ROLLBACK_CONFIG"]))
    path.write_text(path.read_text().replace(world["name"], plain))
    refused = _switch(run_cli, "--dry-run")
    one_line_error(refused, 2, "needs credentials for the app", "database.app_role")
