"""Live sources shared by ``decide`` and ``verify``: alarms, CloudFront metrics, health, migrations, Vercel.

Each reader takes the config (and a timeout) and returns plain values; a
source that is not configured raises :class:`NotConfigured` with the reason,
so the caller reports it as *not measured*, never as fine. :func:`gather`
runs readers concurrently on daemon threads and returns within its budget
whatever happens: a reader still running then is reported as timed out.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rollback.errors import RollbackError
from rollback.redact import redact_text

if TYPE_CHECKING:
    from rollback.adapters.cloudwatch import AlarmState, CloudWatch, MetricWindow
    from rollback.adapters.health import CheckResult
    from rollback.config import Config

__all__ = [
    "AlarmSet",
    "NotConfigured",
    "Outcome",
    "alarm_names",
    "cloudfront_metric",
    "cloudfront_metrics",
    "cloudfront_newest",
    "cloudwatch",
    "distribution_id",
    "failed_migrations",
    "gather",
    "grow_only_losses",
    "probe_health",
    "production_deployment",
    "read_alarms",
]

CLOUDWATCH_REGION = "us-east-1"  # CloudFront metrics and the rollback alarms live there (infra/alarms.py)


class NotConfigured(Exception):
    """A source has nothing to read: ``str(exc)`` says what to configure."""


@dataclass
class Outcome:
    """What one reader gave: a value, or why there is none."""

    value: Any = None
    problem: str | None = None  # "not configured: ..." / "timed out ..." / the error
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.problem is None


def gather(readers: Mapping[str, Callable[[], Any]], *, budget: float) -> dict[str, Outcome]:
    """Run ``readers`` concurrently; return after all finished or ``budget`` seconds, whichever first.

    Daemon threads: a reader stuck past the budget (a black-holed endpoint) is
    abandoned, and never keeps the process alive.
    """
    results: dict[str, Outcome] = {name: Outcome(problem=f"timed out after {budget:g} s")
                                        for name in readers}
    done = threading.Event()
    remaining = [len(readers)]
    mutex = threading.Lock()

    def run(name: str, reader: Callable[[], Any]) -> None:
        started = time.monotonic()
        try:
            outcome: Outcome = Outcome(value=reader())
        except NotConfigured as exc:
            outcome = Outcome(problem=f"not configured: {exc}")
        except RollbackError as exc:
            outcome = Outcome(problem=redact_text(exc.message))
        except Exception as exc:  # a library error we did not map: still a reason, not a crash
            outcome = Outcome(problem=redact_text(f"{type(exc).__name__}: {' '.join(str(exc).split())}")[:300])
        outcome.seconds = time.monotonic() - started
        with mutex:
            results[name] = outcome
            remaining[0] -= 1
            if remaining[0] == 0:
                done.set()

    if not readers:
        return results
    for name, reader in readers.items():
        threading.Thread(target=run, args=(name, reader), name=f"rollback-signal-{name}", daemon=True).start()
    done.wait(budget)
    with mutex:
        return dict(results)


# ------------------------------------------------------------------------------------------ AWS


_CLIENTS: dict[tuple[str | None, float], Any] = {}
_CLIENTS_LOCK = threading.Lock()


def cloudwatch(config: Config, *, timeout: float) -> CloudWatch:
    """A CloudWatch adapter on a client shared by every reader of this process (clients are thread-safe,
    and building one costs more than the calls it makes)."""
    from rollback.adapters.cloudwatch import CloudWatch

    key = (config.aws_endpoint_url, round(timeout, 1))
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(key)
        if client is None:
            import boto3
            from botocore.config import Config as BotoConfig

            client = boto3.Session(region_name=CLOUDWATCH_REGION).client(
                "cloudwatch", config=BotoConfig(retries={"max_attempts": 2, "mode": "standard"},
                                                connect_timeout=timeout, read_timeout=timeout))
            _CLIENTS[key] = client
    return CloudWatch(client)


def _stack_outputs(config: Config) -> Mapping[str, Any]:
    if config.env.pulumi is None or not config.env.aws.from_stack_outputs:
        raise NotConfigured("no Pulumi stack configured to read its outputs from")
    from rollback.commands.infra_stack import stack_outputs

    try:
        return stack_outputs(config)
    except RollbackError as exc:
        raise NotConfigured(f"reading the stack outputs failed: {exc.message}") from exc


@dataclass(frozen=True)
class AlarmSet:
    names: tuple[str, ...]
    prefix: str | None
    origin: str  # "config" | "stack outputs"


def alarm_names(config: Config) -> AlarmSet:
    """The rollback alarms: ``[env.<name>.alarms]`` names/prefix, else the stack outputs."""
    settings = config.env.alarms
    if settings.names or settings.prefix:
        return AlarmSet(tuple(settings.names), settings.prefix, "config")
    try:
        outputs = _stack_outputs(config)
    except NotConfigured as exc:
        raise NotConfigured(f"set [env.{config.env_name}.alarms] names or prefix ({exc})") from exc
    names = [str(n) for n in outputs.get("alarmNames") or [] if isinstance(n, str)]
    composite = outputs.get("compositeAlarmName")
    if isinstance(composite, str) and composite:
        names.append(composite)
    if not names:
        raise NotConfigured(f"the stack outputs name no alarms; set [env.{config.env_name}.alarms] names or prefix")
    return AlarmSet(tuple(names), None, "stack outputs")


def read_alarms(config: Config, *, timeout: float) -> tuple[AlarmSet, list[AlarmState]]:
    wanted = alarm_names(config)
    found = cloudwatch(config, timeout=timeout).alarms(names=wanted.names, prefix=wanted.prefix)
    return wanted, found


def distribution_id(config: Config) -> str:
    if config.env.aws.distribution_id:
        return config.env.aws.distribution_id
    try:
        outputs = _stack_outputs(config)
    except NotConfigured as exc:
        raise NotConfigured(f"set aws.distribution_id ({exc})") from exc
    value = outputs.get("distributionId")
    if not isinstance(value, str) or not value:
        raise NotConfigured("aws.distribution_id is not set and the stack outputs have no distributionId")
    return value


def cloudfront_metric(config: Config, metric: str, stat: str, *, minutes: float, timeout: float,
                      distribution: str | None = None, since: dt.datetime | None = None) -> MetricWindow:
    return cloudfront_metrics(config, [(metric, stat)], minutes=minutes, timeout=timeout,
                              distribution=distribution, since=since)[0]


def cloudfront_metrics(config: Config, wanted: list[tuple[str, str]], *, minutes: float, timeout: float,
                       distribution: str | None = None, since: dt.datetime | None = None) -> list[MetricWindow]:
    """Several CloudFront ``(metric, stat)`` of the distribution over the last ``minutes`` (or since
    ``since``, when that is later), in one call."""
    from rollback.adapters.cloudwatch import cloudfront_dimensions

    chosen = distribution or distribution_id(config)
    return cloudwatch(config, timeout=timeout).statistics("AWS/CloudFront", wanted, cloudfront_dimensions(chosen),
                                                          minutes=minutes, since=since)


def cloudfront_newest(config: Config, metric: str, stat: str, *, minutes: float, timeout: float,
                      distribution: str | None = None) -> MetricWindow:
    """The newest one-minute datapoint of a CloudFront metric in the last ``minutes``."""
    from rollback.adapters.cloudwatch import cloudfront_dimensions

    chosen = distribution or distribution_id(config)
    return cloudwatch(config, timeout=timeout).newest("AWS/CloudFront", metric, stat, cloudfront_dimensions(chosen),
                                                      minutes=minutes)


# ------------------------------------------------------------------------------------------ HTTP


def probe_health(config: Config, *, timeout: float) -> list[CheckResult]:
    """Every configured health path (not the version: that needs an expected value)."""
    from rollback.adapters.health import HealthChecker, make_health_client

    settings = config.env.health
    if not settings.base_url:
        raise NotConfigured(f"[env.{config.env_name}.health] base_url is not set")
    quick = settings.model_copy(update={"timeout": min(settings.timeout, timeout)})
    with make_health_client(quick) as http:
        checker = HealthChecker(http, quick)
        return [checker.check_path(path) for path in quick.paths]


# ------------------------------------------------------------------------------------------ database


def failed_migrations(config: Config, *, timeout: float) -> list[str] | None:
    """Names of failed ``_prisma_migrations`` rows; ``None`` when the database is not managed by Prisma."""
    from rollback.adapters.postgres import Database, Target, db_errors
    from rollback.adapters.prisma import PrismaMigrations

    url = config.database_url()
    if not url:
        raise NotConfigured(f"{config.env.database.url_env} is not set")
    db = Database(Target.from_url(url), connect_timeout=max(1, round(timeout)))
    with db.connect() as conn, db_errors("reading _prisma_migrations"):
        prisma = PrismaMigrations(conn)
        if not prisma.is_managed():
            return None
        return [m.name for m in prisma.all() if m.status == "failed"]


@dataclass(frozen=True)
class Shrunk:
    """A grow-only table with fewer rows than in the newest backup: rows were deleted (data loss)."""

    table: str
    rows: int
    backup_rows: int
    backup: str


def grow_only_losses(config: Config, *, timeout: float) -> list[Shrunk] | None:
    """The ``database.grow_only`` tables (rows are never deleted there) that now hold fewer rows than in
    the newest backup that is not an emergency one; ``None`` when no table is declared grow-only."""
    settings = config.env.database
    if not settings.grow_only:
        return None
    url = config.database_url()
    if not url:
        raise NotConfigured(f"{settings.url_env} is not set")
    from rollback.adapters.postgres import Database, Target, db_errors
    from rollback.commands.db import list_backups

    backups = [b for b in list_backups(config.backups_dir) if "error" not in b and b.get("kind") != "emergency"]
    if not backups:
        raise NotConfigured(f"no backup in {config.backups_dir} to compare the grow-only tables with")
    newest = backups[0]
    counted = {str(t["name"]) if t.get("schema") in (None, "public") else f"{t['schema']}.{t['name']}": int(t["rows"])
               for t in newest.get("tables", []) if isinstance(t, dict)}
    db = Database(Target.from_url(url), connect_timeout=max(1, round(timeout)))
    found: list[Shrunk] = []
    with db.connect() as conn, db_errors("counting the grow-only tables"):
        for table in settings.grow_only:
            if table not in counted:
                continue
            schema, _, name = table.rpartition(".")
            rows = db.table_counts(conn=conn, tables=[(schema or "public", name)])[0].rows
            if rows < counted[table]:
                found.append(Shrunk(table, rows, counted[table], str(newest.get("name"))))
    return found


# ------------------------------------------------------------------------------------------ Vercel


@dataclass(frozen=True)
class Production:
    deployment: dict[str, Any] | None
    created: dt.datetime | None
    rollback_active: bool
    expected_version: str | None  # the commit sha (else the deployment id) production serves


def production_deployment(config: Config, *, timeout: float) -> Production:
    """What production serves according to Vercel, and whether an instant rollback is in effect."""
    if config.env.vercel is None:
        raise NotConfigured(f"[env.{config.env_name}.vercel] is not set")
    if not config.vercel_token():
        raise NotConfigured("VERCEL_TOKEN is not set")
    from rollback.adapters.vercel import VercelClient, make_http_client

    with make_http_client(config.vercel_api_url, config.vercel_token(), timeout=timeout) as http:
        client = VercelClient(http, team=config.env.vercel.team, deadline=timeout, max_attempts=2)
        project = client.get_project(config.env.vercel.project)
    current = project.production
    created = (dt.datetime.fromtimestamp(current.created_at / 1000, dt.UTC)
               if current is not None and current.created_at else None)
    expected = (current.commit_sha or current.id) if current is not None else None
    return Production(current.to_dict() if current else None, created, project.rollback_active, expected)
