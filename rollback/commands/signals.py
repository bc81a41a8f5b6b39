"""Live sources shared by ``decide`` and ``verify``: alarms, CloudFront metrics, health, migrations, Vercel,
and what changed recently in each layer.

Each reader takes the config, a timeout and the command's
:class:`~rollback.context.Services`, whose short-timeout profile
(``services.quick(timeout)``) gives it its clients (Vercel, CloudWatch,
CloudFront, S3, the database), and returns plain values; a source that is
not configured raises :class:`NotConfigured` with the reason, so the caller
reports it as *not measured*, never as fine.
:func:`gather` runs readers concurrently on daemon threads and returns within
its budget whatever happens: a reader still running then is reported as
timed out.

The recent-change readers (:func:`recent_deployments`, :func:`stack_changes`,
:func:`cdn_changes`, and the newest migration of :func:`migration_state`)
return :class:`~rollback.model.changes.Change` facts; ``decide`` judges them
against the detection time (:func:`rollback.model.changes.judge`).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rollback.adapters.aws import aws_errors
from rollback.adapters.cloudfront import parse_lambda_arn
from rollback.adapters.cloudwatch import cloudfront_dimensions
from rollback.adapters.health import HealthChecker, make_health_client
from rollback.adapters.postgres import db_errors
from rollback.adapters.prisma import Migration, PrismaMigrations
from rollback.context import Services
from rollback.errors import RollbackError
from rollback.model.changes import Change, Deployed
from rollback.model.changes import stack_changes as changes_of_update
from rollback.model.decide import RowLoss
from rollback.redact import redact_text

# What only some sources read is imported by the reader that needs it (the Pulumi backend, the
# backups' manifests, S3's adapter): 'decide --live' loads what its configured sources use, and
# nothing else (bench/decide.py).
if TYPE_CHECKING:
    from rollback.adapters.cloudwatch import AlarmState, MetricWindow
    from rollback.adapters.health import CheckResult
    from rollback.adapters.vercel import RollingRelease, VercelClient
    from rollback.config import Config

__all__ = [
    "CANARY_PROBES",
    "AlarmSet",
    "CanaryReading",
    "CdnChanges",
    "DistributionState",
    "MigrationState",
    "NotConfigured",
    "Outcome",
    "Production",
    "alarm_names",
    "canary",
    "cdn_changes",
    "cloudfront_metric",
    "cloudfront_metrics",
    "cloudfront_newest",
    "distribution_id",
    "distribution_state",
    "gather",
    "grow_only_losses",
    "migration_state",
    "probe_health",
    "production_deployment",
    "read_alarms",
    "recent_deployments",
    "served_by_vercel",
    "stack_changes",
    "vercel_client",
    "vercel_direct_note",
]

RECENT_DEPLOYMENTS = 3  # production deployments read for "what changed": the serving one and those before


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


def _stack_outputs(config: Config, services: Services) -> Mapping[str, Any]:
    if config.env.pulumi is None or not config.env.aws.from_stack_outputs:
        raise NotConfigured("no Pulumi stack configured to read its outputs from")
    # Imported here: infra_stack is the largest command module, and only this fallback needs it.
    from rollback.commands.infra.stack import stack_outputs

    try:
        return stack_outputs(config, services)
    except RollbackError as exc:
        raise NotConfigured(f"reading the stack outputs failed: {exc.message}") from exc


@dataclass(frozen=True)
class AlarmSet:
    names: tuple[str, ...]
    prefix: str | None
    origin: str  # "config" | "stack outputs"


def alarm_names(config: Config, services: Services) -> AlarmSet:
    """The rollback alarms: ``[env.<name>.alarms]`` names/prefix, else the stack outputs."""
    settings = config.env.alarms
    if settings.names or settings.prefix:
        return AlarmSet(tuple(settings.names), settings.prefix, "config")
    try:
        outputs = _stack_outputs(config, services)
    except NotConfigured as exc:
        raise NotConfigured(f"set [env.{config.env_name}.alarms] names or prefix ({exc})") from exc
    names = [str(n) for n in outputs.get("alarmNames") or [] if isinstance(n, str)]
    composite = outputs.get("compositeAlarmName")
    if isinstance(composite, str) and composite:
        names.append(composite)
    if not names:
        raise NotConfigured(f"the stack outputs name no alarms; set [env.{config.env_name}.alarms] names or prefix")
    return AlarmSet(tuple(names), None, "stack outputs")


def read_alarms(config: Config, *, timeout: float, services: Services
                ) -> tuple[AlarmSet, list[AlarmState]]:
    wanted = alarm_names(config, services)
    found = services.quick(timeout).cloudwatch().alarms(names=wanted.names, prefix=wanted.prefix)
    return wanted, found


def distribution_id(config: Config, services: Services) -> str:
    if config.env.aws.distribution_id:
        return config.env.aws.distribution_id
    try:
        outputs = _stack_outputs(config, services)
    except NotConfigured as exc:
        raise NotConfigured(f"set aws.distribution_id ({exc})") from exc
    value = outputs.get("distributionId")
    if not isinstance(value, str) or not value:
        raise NotConfigured("aws.distribution_id is not set and the stack outputs have no distributionId")
    return value


def vercel_direct_note(reason: str) -> str:
    """What ``decide`` and ``verify`` say when no CloudFront distribution is in front of the app."""
    return (f"the app is served by Vercel directly (no CloudFront distribution: {reason}): error rate and latency "
            "come from the health probe and the critical flows only ('rollback verify': health URLs, flows, API "
            "p95, page load), not from CloudFront metrics")


def served_by_vercel(config: Config, services: Services) -> str | None:
    """Why the app counts as served by Vercel directly (a Vercel project, no CloudFront distribution
    configured or in the stack outputs), or None when CloudFront is in front of it."""
    if config.env.vercel is None:
        return None
    try:
        distribution_id(config, services)
    except NotConfigured as exc:
        return str(exc)
    return None


def cloudfront_metric(config: Config, metric: str, stat: str, *, minutes: float, timeout: float,
                      distribution: str | None = None, since: dt.datetime | None = None,
                      services: Services) -> MetricWindow:
    return cloudfront_metrics(config, [(metric, stat)], minutes=minutes, timeout=timeout,
                              distribution=distribution, since=since, services=services)[0]


def cloudfront_metrics(config: Config, wanted: list[tuple[str, str]], *, minutes: float, timeout: float,
                       distribution: str | None = None, since: dt.datetime | None = None,
                       services: Services, now: dt.datetime | None = None) -> list[MetricWindow]:
    """Several CloudFront ``(metric, stat)`` of the distribution over the last ``minutes`` (or since
    ``since``, when that is later), in one call; ``now``: the window ends then (CloudWatch's history)."""
    chosen = distribution or distribution_id(config, services)
    return services.quick(timeout).cloudwatch().statistics("AWS/CloudFront", wanted, cloudfront_dimensions(chosen),
                                                           minutes=minutes, since=since, now=now)


def cloudfront_newest(config: Config, metric: str, stat: str, *, minutes: float, timeout: float,
                      distribution: str | None = None, services: Services) -> MetricWindow:
    """The newest one-minute datapoint of a CloudFront metric in the last ``minutes``."""
    chosen = distribution or distribution_id(config, services)
    return services.quick(timeout).cloudwatch().newest("AWS/CloudFront", metric, stat, cloudfront_dimensions(chosen),
                                                       minutes=minutes)


@dataclass
class CdnChanges:
    """What changed at the edge and in the served assets, and what could not be read."""

    changes: list[Change] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    prefix: str | None = None  # the served assets release (the S3 origin's path)
    state: DistributionState | None = None  # the distribution as read (``rollback status`` shows it)


def _utc(value: Any) -> dt.datetime | None:
    if not isinstance(value, dt.datetime):
        return None
    return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)


@dataclass(frozen=True)
class DistributionState:
    """What the distribution serves now: its deploy status, the Lambda@Edge versions per behaviour
    (``"default"`` and each path pattern), and the assets release (the assets bucket origin's path)."""

    id: str
    status: str  # Deployed | InProgress
    modified: dt.datetime | None
    edge: tuple[tuple[str, tuple[str, ...]], ...]  # (behaviour, ("<function>:<version> (<event>)", ...))
    assets_bucket: str | None
    assets_prefix: str | None  # "releases/r42/" (None: no origin of the assets bucket)

    @property
    def served(self) -> tuple[str, ...]:
        """Each ``<function>:<version>`` served by some behaviour, once."""
        return tuple(dict.fromkeys(item.split(" (")[0] for _, items in self.edge for item in items))


def _read_distribution(config: Config, services: Services, cloudfront: Any) -> DistributionState:
    distribution = distribution_id(config, services)
    with aws_errors(f"reading distribution {distribution}"):
        found = cloudfront.get_distribution(Id=distribution)["Distribution"]
    settings = found.get("DistributionConfig") or {}
    behaviours = [("default", settings.get("DefaultCacheBehavior") or {}),
                  *((str(b.get("PathPattern")), b) for b in (settings.get("CacheBehaviors") or {}).get("Items") or [])]
    edge = []
    for name, behaviour in behaviours:
        items = []
        for item in (behaviour.get("LambdaFunctionAssociations") or {}).get("Items") or []:
            parsed = parse_lambda_arn(str(item.get("LambdaFunctionARN", "")))
            if parsed is not None and parsed.version is not None:
                items.append(f"{parsed.name}:{parsed.version} ({item.get('EventType')})")
        edge.append((name, tuple(items)))
    bucket = config.env.aws.assets_bucket
    origins = (settings.get("Origins") or {}).get("Items") or []
    path = next((str(o.get("OriginPath") or "") for o in origins
                 if bucket and str(o.get("DomainName", "")).startswith(f"{bucket}.")), None)
    prefix = None if path is None else (f"{path.strip('/')}/" if path.strip("/") else "")
    return DistributionState(distribution, str(found.get("Status") or "?"), _utc(found.get("LastModifiedTime")),
                             tuple(edge), bucket, prefix)


def distribution_state(config: Config, *, timeout: float, services: Services) -> DistributionState:
    """The distribution as it serves now (for ``rollback status``)."""
    return _read_distribution(config, services, services.quick(timeout).edge().cloudfront)


def cdn_changes(config: Config, *, timeout: float, services: Services) -> CdnChanges:
    """When the distribution was last modified (and which Lambda@Edge versions it serves), and the newest
    object written (or deleted) under the assets release it serves.

    The short-timeout profile's clients (the Services' own would wait 30 s a request, retried five times, past the
    decision's budget); its S3 client is built only here, at the first read of an assets release: a
    distribution that cannot be read, or an environment without an assets bucket, never builds one."""
    quick = services.quick(timeout)
    state = _read_distribution(config, services, quick.edge().cloudfront)
    distribution = state.id
    result = CdnChanges(state=state)
    served = state.served
    modified = state.modified
    if modified is not None:
        serves = f" (serves {', '.join(served)})" if served else ""
        result.changes.append(Change("edge", "cloudfront", f"distribution {distribution}{serves} modified",
                                     modified))
    bucket = config.env.aws.assets_bucket
    if not bucket:
        result.problems.append("assets: aws.assets_bucket is not set")
        return result
    result.prefix = state.assets_prefix or ""
    try:
        versions = quick.s3().list_versions(bucket, prefix=result.prefix)
    except RollbackError as exc:
        result.problems.append(redact_text(exc.message))
        return result
    if versions:
        newest = max(versions, key=lambda v: v.last_modified)
        verb = "deleted" if newest.is_delete_marker else "written"
        result.changes.append(Change("assets", "s3", f"s3://{bucket}/{newest.key} {verb} (newest of "
                                                     f"{len(versions)} object version(s) under the served "
                                                     f"release)", newest.last_modified))
    return result


# ------------------------------------------------------------------------------------------ HTTP


def probe_health(config: Config, *, timeout: float) -> list[CheckResult]:
    """Every configured health path (not the version: that needs an expected value).

    Its client is built here, not taken from the Services: it is no adapter of the environment but a
    client of the app's public URL, whose timeout is each read's (:func:`canary` gives it what is left of
    the budget), closed after the read so that every probe opens its own connections."""
    settings = config.env.health
    if not settings.base_url:
        raise NotConfigured(f"[env.{config.env_name}.health] base_url is not set")
    quick = settings.model_copy(update={"timeout": min(settings.timeout, timeout)})
    with make_health_client(quick) as http:
        checker = HealthChecker(http, quick, max_body=config.max_body)
        return [checker.check_path(path) for path in quick.paths]


# ------------------------------------------------------------------------------------------ database


@dataclass(frozen=True)
class MigrationState:
    """``_prisma_migrations``: the failed rows, and the newest migration started (what changed last)."""

    managed: bool
    failed: list[str]
    newest: Migration | None
    head: str | None = None  # the newest migration applied (finished, not rolled back)

    def change(self) -> Change | None:
        if self.newest is None or self.newest.started_at is None:
            return None
        started = _utc(self.newest.started_at)
        assert started is not None
        return Change("db", "prisma", f"migration {self.newest.name} started ({self.newest.status})", started)


def migration_state(config: Config, *, timeout: float, services: Services) -> MigrationState:
    """The failed ``_prisma_migrations`` rows and the newest one; ``managed`` False without that table."""
    if not config.database_url():
        raise NotConfigured(f"{config.env.database.url_env} is not set")
    db = services.quick(timeout).read_database()
    with db.connect() as conn, db_errors("reading _prisma_migrations"):
        prisma = PrismaMigrations(conn)
        if not prisma.is_managed():
            return MigrationState(False, [], None)
        rows = prisma.all()
    started = [m for m in rows if m.started_at is not None]
    newest = max(started, key=lambda m: m.started_at or dt.datetime.min) if started else None
    applied = [m.name for m in rows if m.status == "applied"]
    return MigrationState(True, [m.name for m in rows if m.status == "failed"], newest,
                          max(applied) if applied else None)


def grow_only_losses(config: Config, *, timeout: float, services: Services) -> list[RowLoss] | None:
    """The ``database.grow_only`` tables (rows are never deleted there) that now hold fewer rows than in
    the newest backup that is not an emergency one, each with its data-loss threshold (whether that is
    data loss is :func:`rollback.model.decide.data_loss_signals`'s to judge); ``None`` when no table is declared
    grow-only."""
    settings = config.env.database
    if not settings.grow_only:
        return None
    from rollback.backups import list_backups

    if not config.database_url():
        raise NotConfigured(f"{settings.url_env} is not set")
    backups = [b for b in list_backups(config.backups_dir) if "error" not in b and b.get("kind") != "emergency"]
    if not backups:
        raise NotConfigured(f"no backup in {config.backups_dir} to compare the grow-only tables with")
    newest = backups[0]
    counted = {str(t["name"]) if t.get("schema") in (None, "public") else f"{t['schema']}.{t['name']}": int(t["rows"])
               for t in newest.get("tables", []) if isinstance(t, dict)}
    db = services.quick(timeout).read_database()
    found: list[RowLoss] = []
    with db.connect() as conn, db_errors("counting the grow-only tables"):
        for table in settings.grow_only:
            if table not in counted:
                continue
            schema, _, name = table.rpartition(".")
            rows = db.table_counts(conn=conn, tables=[(schema or "public", name)])[0].rows
            if rows < counted[table]:
                threshold = settings.loss_threshold(table)
                found.append(RowLoss(table, rows, counted[table], str(newest.get("name")), threshold.percent,
                                     threshold.rows))
    return found


# ------------------------------------------------------------------------------------------ Pulumi


def stack_changes(config: Config, *, timeout: float, services: Services) -> list[Change]:
    """What the stack's latest update changed, read from its self-managed backend (``file://``, ``s3://``):
    the layers its config keys name (:func:`rollback.model.changes.stack_changes`), and when."""
    settings = config.env.pulumi
    if settings is None:
        raise NotConfigured(f"[env.{config.env_name}.pulumi] is not set")
    from rollback.adapters.pulumi_backend import is_diy_url, open_backend
    from rollback.adapters.pulumi_project import resolve_stack
    from rollback.model.stackdiff import changed_config_keys

    url = settings.backend_url or config.environ.get("PULUMI_BACKEND_URL")
    if not url or not is_diy_url(url):
        raise NotConfigured("the stack's history is read only from a self-managed backend (pulumi.backend_url "
                            "file:// or s3://) within the decision's budget")
    ref = resolve_stack(settings.stack, config.resolve_path(settings.project_dir), project=settings.project)
    s3_client = services.quick(timeout).aws_client("s3") if url.startswith("s3://") else None
    backend = open_backend(url, base_dir=config.root, s3_client=s3_client, region=config.env.aws.region)
    versions = backend.history(ref.project, ref.name, newest=RECENT_DEPLOYMENTS)
    updates = [i for i, v in enumerate(versions) if v.kind in ("update", "destroy", "import")]
    if not updates:
        return []
    index = updates[-1]
    latest = versions[index]
    stamp = latest.end_time or latest.start_time
    if stamp is None:
        return []
    previous = versions[index - 1] if index > 0 else None
    keys = changed_config_keys(previous.config, latest.config) if previous is not None else None
    at = dt.datetime.fromtimestamp(stamp, dt.UTC)
    return changes_of_update(latest.version, latest.message, at, keys, latest.resource_changes)


# ------------------------------------------------------------------------------------------ Vercel


@dataclass(frozen=True)
class Production:
    deployment: dict[str, Any] | None
    created: dt.datetime | None
    rollback_active: bool
    expected_version: str | None  # the commit sha (else the deployment id) production serves
    serving: Deployed | None = None  # what production serves, and when it went live


def _deployed(deployment: Any) -> Deployed | None:
    moment = deployment.ready_at or deployment.created_at
    if not moment:
        return None
    message = f" {deployment.commit_message!r}" if deployment.commit_message else ""
    return Deployed(deployment.id, f"{deployment.id}{message}", dt.datetime.fromtimestamp(moment / 1000, dt.UTC))


def vercel_client(config: Config, *, timeout: float, services: Services) -> VercelClient:
    """The short-timeout profile's Vercel client (a ``timeout`` deadline per call, two attempts: the
    Services' own waits up to 15 s per call), shared by the readers; not closed by them."""
    if config.env.vercel is None:
        raise NotConfigured(f"[env.{config.env_name}.vercel] is not set")
    if not config.vercel_token():
        raise NotConfigured("VERCEL_TOKEN is not set")
    return services.quick(timeout).vercel()


def production_deployment(config: Config, *, timeout: float, services: Services) -> Production:
    """What production serves according to Vercel, and whether an instant rollback is in effect."""
    client = vercel_client(config, timeout=timeout, services=services)
    assert config.env.vercel is not None
    project = client.get_project(config.env.vercel.project)
    current = project.production
    created = (dt.datetime.fromtimestamp(current.created_at / 1000, dt.UTC)
               if current is not None and current.created_at else None)
    expected = (current.commit_sha or current.id) if current is not None else None
    return Production(current.to_dict() if current else None, created, project.rollback_active, expected,
                      _deployed(current) if current is not None else None)


@dataclass(frozen=True)
class CanaryReading:
    """The project's rolling release and, while it is active, what a burst of health probes saw: during a
    release each request is served by the canary or by the base, so the share that failed is the canary's
    doing in proportion to its share of the traffic."""

    release: RollingRelease | None
    probes: int = 0
    failed: int = 0
    problem: str | None = None  # why the probes did not run

    @property
    def error_rate(self) -> float | None:
        return 100.0 * self.failed / self.probes if self.probes else None


CANARY_PROBES = 20  # per health path: at a 10 % stage the canary answers about 2 of them


def canary(config: Config, *, timeout: float, services: Services, probes: int = CANARY_PROBES) -> CanaryReading:
    """The project's rolling release (any state); while it is active, ``probes`` concurrent GETs of each
    health path and how many failed."""
    client = vercel_client(config, timeout=timeout, services=services)
    assert config.env.vercel is not None
    started = time.monotonic()
    release = client.get_rolling_release(config.env.vercel.project)
    if release is None or not release.is_active:
        return CanaryReading(release)
    settings = config.env.health
    if not settings.base_url:
        return CanaryReading(release, problem=f"[env.{config.env_name}.health] base_url is not set")
    left = max(0.2, timeout - (time.monotonic() - started))
    quick = settings.model_copy(update={"timeout": min(settings.timeout, left)})
    paths = [path for path in quick.paths for _ in range(probes)]
    results: list[bool] = []
    from concurrent.futures import ThreadPoolExecutor

    with make_health_client(quick) as http, ThreadPoolExecutor(max_workers=8) as pool:
        checker = HealthChecker(http, quick)
        results = list(pool.map(lambda path: checker.check_path(path).ok, paths))
    return CanaryReading(release, probes=len(results), failed=sum(1 for ok in results if not ok))


def recent_deployments(config: Config, *, timeout: float, services: Services) -> list[Deployed]:
    """The newest READY production deployments (the one that went live last first)."""
    client = vercel_client(config, timeout=timeout, services=services)
    assert config.env.vercel is not None
    found = client.list_deployments(config.env.vercel.project, limit=RECENT_DEPLOYMENTS, states=("READY",))
    return [d for d in (_deployed(item) for item in found) if d is not None]
