"""A whole world for the incident verbs: the Vercel emulator, the moto server and a throwaway
PostgreSQL, with one rollback.toml (env ``production``) pointing at all three.

``world`` breaks and fixes it the way an incident does: the production deployment answers 500,
the rollback alarm fires, CloudFront's 5xx rate climbs, a migration fails; and back.
"""

from __future__ import annotations

import datetime as dt
import secrets
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.app.conftest import TOKEN, emulator, emulator_server  # noqa: F401  (fixtures)
from tests.conftest import render_config
from tests.db.conftest import pg, seeded_database  # noqa: F401  (fixture)

FAILED_MIGRATION = "20261128000000_add_stats_cache"


@pytest.fixture(autouse=True)
def _private_lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's local locks in its own directory (the real default is ~/.cache/rollback/locks)."""
    monkeypatch.setenv("ROLLBACK_LOCK_DIR", str(tmp_path / "locks"))


@dataclass
class World:
    root: Path
    config_path: Path
    journal_dir: Path
    emulator: Any
    pg: Any
    db_name: str
    db_url: str
    distribution: str
    alarms: list[str]
    env: dict[str, str] = field(default_factory=dict)

    @property
    def incidents_dir(self) -> Path:
        return self.root / "incidents"

    def cloudwatch(self) -> Any:
        import boto3

        return boto3.client("cloudwatch", region_name="us-east-1")

    def put_metric(self, metric: str, value: float, *, count: int = 1, ago: float = 30.0) -> None:
        when = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=ago)
        unit = "Milliseconds" if metric == "OriginLatency" else "None"
        dimensions = [{"Name": "DistributionId", "Value": self.distribution}, {"Name": "Region", "Value": "Global"}]
        self.cloudwatch().put_metric_data(Namespace="AWS/CloudFront", MetricData=[
            {"MetricName": metric, "Value": value, "Timestamp": when, "Unit": unit, "Dimensions": dimensions}
            for _ in range(count)])

    def set_alarm(self, state: str, name: str | None = None) -> None:
        self.cloudwatch().set_alarm_state(AlarmName=name or self.alarms[0], StateValue=state,
                                          StateReason=f"test set {state}")

    def sql(self, query: str) -> list[tuple[Any, ...]]:
        return list(self.pg.execute(query, dbname=self.db_name, user="app"))

    def break_it(self) -> None:
        """What a bad deploy does: production answers 500, the alarm fires, 5xx climbs, a migration failed."""
        from rollback.sandbox.vercel_state import DEMO

        self.emulator.state.configure(unhealthy=[DEMO.current])
        self.set_alarm("ALARM")
        self.put_metric("5xxErrorRate", 20.0, count=3)
        self.put_metric("OriginLatency", 6500.0, count=5)
        self.put_metric("CacheHitRate", 85.0)
        self.put_metric("Requests", 120.0)
        self.sql(f"""INSERT INTO "_prisma_migrations" VALUES ('00000000-0000-0000-0000-0000000000ff', repeat('c', 64),
                     NULL, '{FAILED_MIGRATION}', 'boom', NULL, now(), 0)""")

    def heal_monitoring(self) -> None:
        """After a rollback: good traffic dilutes the error rate and the alarm clears."""
        self.put_metric("5xxErrorRate", 0.0, count=120)
        self.put_metric("OriginLatency", 80.0, count=200)
        self.put_metric("Requests", 500.0)
        self.set_alarm("OK")


def world_config(url: str, db_env: str, distribution: str, alarms: list[str], smoke: str,
                 **extra: dict[str, Any]) -> dict[str, Any]:
    from rollback.sandbox.vercel_state import DEMO

    env: dict[str, Any] = {
        "vercel": {"project": DEMO.project_name, "team": DEMO.team_id},
        "health": {"base_url": f"{url}/_app/{DEMO.project_name}", "paths": ["/", "/api/health"],
                   "version_path": "/api/version", "timeout": 2.0},
        "database": {"url_env": db_env, "tables": ["User", "Integration", "UserStats"],
                     "relations": [{"child": "UserStats.userId", "parent": "User.id"}]},
        "aws": {"region": "us-east-1", "distribution_id": distribution, "from_stack_outputs": False},
        "alarms": {"names": alarms},
        "verify": {"requests": 12, "concurrency": 4, "smoke": smoke,
                   "flows": [{"name": "home", "method": "GET", "path": "/", "status": 200,
                              "body_contains": "deploymentId"},
                             {"name": "health-api", "method": "GET", "path": "/api/health", "status": 200,
                              "body_contains": '"ok"'}]},
    }
    for section, values in extra.items():
        env[section] = {**env.get(section, {}), **values}
    return {"production": env}


@pytest.fixture
def world(emulator: Any, pg: Any, aws_env: str, tmp_path: Path,  # noqa: F811
          monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    import boto3

    db_name = f"inc{secrets.token_hex(4)}"
    seeded_database(pg, db_name)
    db_url = pg.url(db_name, "app")
    distribution = f"E{secrets.token_hex(6).upper()}"
    alarm = f"{distribution.lower()}-cdn-5xx-error-rate"
    boto3.client("cloudwatch", region_name="us-east-1").put_metric_alarm(
        AlarmName=alarm, MetricName="5xxErrorRate", Namespace="AWS/CloudFront", Statistic="Average", Period=60,
        EvaluationPeriods=5, Threshold=5.0, ComparisonOperator="GreaterThanThreshold",
        Dimensions=[{"Name": "DistributionId", "Value": distribution}, {"Name": "Region", "Value": "Global"}])
    url = emulator.url
    health = f"{url}/_app/demo/api/health"
    smoke = (f"{sys.executable} -c \"import sys, urllib.request; "
             f"sys.exit(0 if urllib.request.urlopen('{health}').status == 200 else 1)\"")
    journal_dir = tmp_path / "runs"
    config_path = tmp_path / "rollback.toml"
    config_path.write_text(render_config(world_config(url, "INC_DATABASE_URL", distribution, [alarm], smoke),
                                         default_env="production", journal_dir=str(journal_dir)), encoding="utf-8")
    env = {"ROLLBACK_CONFIG": str(config_path), "VERCEL_API_URL": url, "VERCEL_TOKEN": TOKEN,
           "INC_DATABASE_URL": db_url}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("ROLLBACK_ENV", raising=False)
    monkeypatch.delenv("ROLLBACK_JOURNAL_DIR", raising=False)
    try:
        yield World(tmp_path, config_path, journal_dir, emulator, pg, db_name, db_url, distribution, [alarm], env)
    finally:
        pg.drop_database(db_name)


Rewrite = Callable[..., Path]
