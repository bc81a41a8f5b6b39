"""One place that builds adapters from config: the environment a command acts on.

Modelled on alembic's ``EnvironmentContext``: a command (``rollback.commands.*``) receives a
:class:`Services` and asks it for what it talks to (``services.vercel()``, ``services.edge()``,
``services.database()`` ...). Each adapter is built on first use from the environment's config and
the process environment, and then shared by every step of the command, so one run opens one
Vercel client, one boto3 session, one database target.

Tests and library callers inject adapters instead of patching module functions::

    services = Services(config, vercel=client, edge=EdgeAdapter(cloudfront, lambda_))
    app_commands.rollback(config, services, ...)

The short-timeout profile (:meth:`Services.quick`) serves the readers that must answer within seconds
(the live signals of ``decide``, ``status`` and ``watch``, the report, the standby listing): the same
accessors, each building a client that gives up quickly. Building is thread-safe: those readers run
concurrently, and the first to ask builds the adapter every other one then shares.

Nothing heavy is imported here: every adapter imports its library (httpx, boto3, psycopg, pulumi)
when it is built, so ``rollback --help`` stays fast.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rollback.errors import ConfigError

if TYPE_CHECKING:
    from rollback.adapters.aws import AwsClients
    from rollback.adapters.cloudfront import EdgeAdapter
    from rollback.adapters.cloudwatch import CloudWatch
    from rollback.adapters.git import GitRepo
    from rollback.adapters.pg_tools import PgTools
    from rollback.adapters.postgres import Database, Target
    from rollback.adapters.pulumi import PulumiStack
    from rollback.adapters.rds import RdsAdapter
    from rollback.adapters.s3_snapshots import S3SnapshotStore
    from rollback.adapters.s3_versions import S3Versions
    from rollback.adapters.secrets import SecretsAdapter
    from rollback.adapters.stack_history import BackendSource, HistorySource
    from rollback.adapters.vercel import VercelClient
    from rollback.config import Config

__all__ = ["EDGE_REGION", "QUICK_TIMEOUT", "RunSettings", "Services"]

# Lambda@Edge functions and CloudFront's API live in us-east-1, whatever the environment's region.
EDGE_REGION = "us-east-1"


def _pause(seconds: float) -> None:
    from rollback.lock import pause  # imported on use: the lock module is not needed to build Services

    pause(seconds)


@dataclass(frozen=True)
class RunSettings:
    """What the handlers read besides adapters: how long and how often they wait, and whom they tell.

    ``sleep``: between two polls (default :func:`rollback.lock.pause`, which stops a wait whose team lease
    was lost); ``clock``: the app layer's watches; ``edge_interval`` / ``invalidate_interval``: seconds
    between CloudFront polls; ``poll_ramp``: poll CloudFront often at first, then every interval (``run``);
    ``on_retry``: told about Vercel retries."""

    sleep: Callable[[float], None] = _pause
    clock: Callable[[], float] = time.monotonic
    edge_interval: float = 15.0
    invalidate_interval: float = 10.0
    poll_ramp: bool = False
    on_retry: Callable[[str], None] | None = None


# The short-timeout profile (:meth:`Services.quick`): readers that must answer in seconds (signals, the
# report's data-loss count, the standby listing) get clients that give up quickly instead of waiting for a
# down server.
QUICK_TIMEOUT = 3.0
QUICK_ATTEMPTS = 2  # the profile's Vercel calls (its boto3 clients': cloudwatch.make_client's)

# Guards the per-adapter build locks of every Services (taken only to find or make one).
_LOCKS_GUARD = threading.Lock()


class _BuiltOnFirstCall:
    """A boto3 client built when first used. The short-timeout profile's :class:`EdgeAdapter` is read for its
    CloudFront client (the live signals): building its Lambda client up front would load botocore's Lambda
    model for nothing, in a process (``decide --live``) whose start-up is measured (bench/decide.py)."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build = build
        self._client: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._client is None:
            self._client = self._build()  # make_client keeps one per key: a racing second build returns it
        return getattr(self._client, name)

_ADAPTERS = ("vercel", "git", "aws", "edge", "cdn_snapshots", "s3", "rds", "secrets", "database", "pg_tools",
             "cloudwatch", "stack_source", "stack_backend", "pulumi_stack")


class Services:
    """The adapters of one environment, built on first use or injected by name.

    Injected adapters are keyword arguments (``vercel``, ``git``, ``aws``, ``edge``, ``cdn_snapshots``,
    ``s3``, ``rds``, ``secrets``, ``database``, ``pg_tools``, ``cloudwatch``, ``stack_source``,
    ``stack_backend``, ``pulumi_stack``): any other name is refused (a typo would otherwise build the real
    adapter). ``settings`` (:class:`RunSettings`) holds what is not an adapter. ``quick``: seconds, the
    short-timeout profile (:meth:`quick`).
    """

    def __init__(self, config: Config, *, vercel: VercelClient | None = None, git: GitRepo | None = None,
                 aws: AwsClients | None = None, edge: EdgeAdapter | None = None,
                 cdn_snapshots: S3SnapshotStore | None = None, s3: S3Versions | None = None,
                 rds: RdsAdapter | None = None, secrets: SecretsAdapter | None = None,
                 database: Database | None = None, pg_tools: PgTools | None = None,
                 cloudwatch: CloudWatch | None = None, stack_source: HistorySource | None = None,
                 stack_backend: BackendSource | None = None, pulumi_stack: PulumiStack | None = None,
                 settings: RunSettings | None = None, quick: float | None = None) -> None:
        self.config = config
        self.settings = settings or RunSettings()
        self.quick_timeout = quick
        given = {"vercel": vercel, "git": git, "aws": aws, "edge": edge, "cdn_snapshots": cdn_snapshots, "s3": s3,
                 "rds": rds, "secrets": secrets, "database": database, "pg_tools": pg_tools,
                 "cloudwatch": cloudwatch, "stack_source": stack_source, "stack_backend": stack_backend,
                 "pulumi_stack": pulumi_stack}
        self.given: dict[str, Any] = {name: value for name, value in given.items() if value is not None}
        self._built: dict[str, Any] = {}
        self._locks: dict[str, threading.RLock] = {}  # one per adapter name, shared with _built
        self._quick: dict[float, Services] = {}

    # -------------------------------------------------------------------------------- plumbing
    def _get(self, name: str, build: Callable[[], Any]) -> Any:
        """The adapter ``name``: injected, else built by ``build`` once. Readers on threads (the live
        signals) ask concurrently: one builds it while the others wait for it, per name, so that two
        adapters still build side by side (an adapter's build may ask for another: ``edge`` -> ``aws``)."""
        if self.given.get(name) is not None:
            return self.given[name]
        if name in self._built:
            return self._built[name]
        with _LOCKS_GUARD:
            lock = self._locks.setdefault(name, threading.RLock())
        with lock:
            if name not in self._built:
                self._built[name] = build()
            return self._built[name]

    def existing(self, name: str) -> Any:
        """The adapter injected as ``name`` or built so far (``None``: none yet)."""
        if name not in _ADAPTERS:
            raise TypeError(f"Services has no adapter {name!r} (one of {', '.join(_ADAPTERS)})")
        return self.given.get(name, self._built.get(name))

    def with_settings(self, settings: RunSettings) -> Services:
        """The same adapters (those injected and those built so far, shared) with other settings: a later
        phase of one run (its execution after its planning) reuses what the planning opened."""
        other = Services(self.config, settings=settings, quick=self.quick_timeout)
        other.given = self.given
        other._built = self._built
        other._locks = self._locks
        return other

    def quick(self, timeout: float = QUICK_TIMEOUT) -> Services:
        """The short-timeout profile of this environment, for readers that must not stall (signals, the
        report, the standby listing): the database opened with a ``timeout`` connect timeout; Vercel with a
        ``timeout`` deadline per call and two attempts; CloudWatch, CloudFront, Lambda, S3 (and any
        :meth:`aws_client`) on boto3 clients that give up after ``timeout`` seconds, two attempts, shared by
        the process (:func:`rollback.adapters.cloudwatch.make_client`). Injected adapters are shared; built
        ones are not (their timeouts differ). One profile per timeout, kept: a ``watch`` reads through the
        same clients at every poll."""
        if self.quick_timeout == timeout:
            return self
        with _LOCKS_GUARD:
            if timeout not in self._quick:
                other = Services(self.config, settings=self.settings, quick=timeout)
                other.given = self.given
                self._quick[timeout] = other
            return self._quick[timeout]

    # -------------------------------------------------------------------------------- Vercel
    def vercel(self) -> VercelClient:
        """A :class:`VercelClient` for ``VERCEL_API_URL`` with ``$VERCEL_TOKEN`` and the team; on the
        short-timeout profile, one whose calls (their retries included) end within the profile's timeout."""

        def build() -> VercelClient:
            from rollback.adapters.vercel import VercelClient, make_http_client
            from rollback.lock import pause

            settings = self.config.require_vercel()
            if self.quick_timeout is not None:
                # Reads only (the live signals): nothing to stop when the team lease is lost, and a retry of
                # a read is not news to the user, so neither pause nor on_retry.
                http = make_http_client(self.config.vercel_api_url, self.config.vercel_token(),
                                        timeout=self.quick_timeout)
                return VercelClient(http, team=settings.team, deadline=self.quick_timeout,
                                    max_attempts=QUICK_ATTEMPTS, max_body=self.config.max_body)
            http = make_http_client(self.config.vercel_api_url, self.config.vercel_token())
            # pause: a rollback or promote re-sent after a 429/5xx (inside the step's act, up to 30 s later)
            # is not sent once the team lease is lost meanwhile
            client = VercelClient(http, team=settings.team, max_body=self.config.max_body, sleep=pause)
            if self.settings.on_retry is not None:
                client.on_retry = self.settings.on_retry
            return client

        client: VercelClient = self._get("vercel", build)
        return client

    # -------------------------------------------------------------------------------- git
    def git(self, path: Path | None = None) -> GitRepo:
        """The app's git work tree (``path``, default: the current directory)."""
        from rollback.adapters.git import GitRepo

        repo: GitRepo = self._get("git", lambda: GitRepo((path or Path.cwd()).resolve()))
        return repo

    # -------------------------------------------------------------------------------- AWS
    def aws(self) -> AwsClients:
        """One boto3 session for the environment's region (``AWS_ENDPOINT_URL`` honoured)."""

        def build() -> AwsClients:
            from rollback.adapters.aws import AwsClients, make_session

            return AwsClients(make_session(self.config.env.aws.region))

        clients: AwsClients = self._get("aws", build)
        return clients

    def aws_client(self, service: str, region: str | None = None) -> Any:
        """A boto3 client for ``service`` in ``region`` (default: the environment's): the session's
        (:meth:`aws`), or on the short-timeout profile a client with the profile's timeouts and two attempts
        that the process shares (:func:`rollback.adapters.cloudwatch.make_client`; an injected ``aws``
        answers on every profile)."""
        if self.quick_timeout is None or "aws" in self.given:
            return self.aws().client(service, region)
        from rollback.adapters.cloudwatch import make_client

        return make_client(timeout=self.quick_timeout, service=service, region=region or self.config.env.aws.region)

    def edge(self) -> EdgeAdapter:
        """CloudFront and Lambda (both in us-east-1, where Lambda@Edge lives)."""

        def build() -> EdgeAdapter:
            from rollback.adapters.cloudfront import EdgeAdapter
            from rollback.lock import pause

            cloudfront = self.aws_client("cloudfront", EDGE_REGION)
            lambda_ = (self.aws_client("lambda", EDGE_REGION) if self.quick_timeout is None
                       else _BuiltOnFirstCall(lambda: self.aws_client("lambda", EDGE_REGION)))
            # pause: a CloudFront wait (up to 20 min) stops at its next poll when the team lease is lost
            return EdgeAdapter(cloudfront, lambda_, sleep=pause)

        adapter: EdgeAdapter = self._get("edge", build)
        return adapter

    def cdn_snapshots(self) -> S3SnapshotStore | None:
        """Where distribution snapshots are shared (``config.cdn_snapshots_url``); ``None``: nowhere."""
        url = self.config.cdn_snapshots_url
        if url is None and "cdn_snapshots" not in self.given:
            return None

        def build() -> S3SnapshotStore:
            from rollback.adapters.s3_snapshots import open_snapshot_store

            assert url is not None
            return open_snapshot_store(url, self.aws_client("s3"))

        store: S3SnapshotStore = self._get("cdn_snapshots", build)
        return store

    def s3(self) -> S3Versions:
        """Object versions of the assets bucket (its S3 client: :meth:`aws_client`)."""

        def build() -> S3Versions:
            from rollback.adapters.s3_versions import S3Versions

            return S3Versions(self.aws_client("s3"))

        store: S3Versions = self._get("s3", build)
        return store

    def rds(self) -> RdsAdapter:
        """RDS snapshots and restores; ``$ROLLBACK_RDS_WAIT_DELAY`` seconds between waiter polls."""

        def build() -> RdsAdapter:
            from rollback.adapters.rds import RdsAdapter

            raw = self.config.environ.get("ROLLBACK_RDS_WAIT_DELAY", "15")
            try:
                delay = int(raw)
            except ValueError:
                raise ConfigError(f"ROLLBACK_RDS_WAIT_DELAY={raw!r} is not a whole number of seconds",
                                  "unset it, or give seconds, e.g. ROLLBACK_RDS_WAIT_DELAY=15") from None
            return RdsAdapter(self.aws_client("rds"), waiter_delay=delay)

        adapter: RdsAdapter = self._get("rds", build)
        return adapter

    def secrets(self) -> SecretsAdapter:
        """Secrets Manager (a restored instance's managed master secret)."""

        def build() -> SecretsAdapter:
            from rollback.adapters.secrets import SecretsAdapter

            return SecretsAdapter(self.aws_client("secretsmanager"))

        adapter: SecretsAdapter = self._get("secrets", build)
        return adapter

    def cloudwatch(self) -> CloudWatch:
        """CloudWatch alarms and metrics, on a client with short timeouts (signals must not stall)."""

        def build() -> CloudWatch:
            from rollback.adapters.cloudwatch import CloudWatch, make_client

            return CloudWatch(make_client(timeout=self.quick_timeout or 5.0))

        adapter: CloudWatch = self._get("cloudwatch", build)
        return adapter

    # -------------------------------------------------------------------------------- PostgreSQL
    def database_target(self, *, allow_pooler: bool = False) -> Target:
        """Where ``$<database.direct_url_env>`` (else ``$<database.url_env>``) points (the URL's password is
        registered as a secret). A URL through a connection pooler is refused unless ``allow_pooler`` (reads
        only): a dump, ``CREATE DATABASE`` or a rename through a transaction-mode pooler misbehaves
        (:func:`rollback.dburl.pooler_reason`)."""
        from rollback.adapters.postgres import Target
        from rollback.dburl import pooler_reason

        url = self.config.database_url()
        env = self.config.database_url_variable()
        if not url:
            raise ConfigError(f"{env} is not set", f"export {env}=postgresql://USER:PASSWORD@HOST:PORT/DB",
                              key="database.url_env")
        pooled = None if allow_pooler else pooler_reason(url)
        if pooled:
            direct = self.config.env.database.direct_url_env
            raise ConfigError(f"{env} goes through a connection pooler ({pooled}): dumps, CREATE DATABASE and "
                              "renames need a direct connection to the database",
                              f"export {direct} with the database's own URL (or name its variable in "
                              "database.direct_url_env)", key="database.direct_url_env")
        return Target.from_url(url, env)

    def _open(self, target: Target) -> Database:
        from rollback.adapters.postgres import Database

        if self.quick_timeout is None:
            return Database(target)
        return Database(target, connect_timeout=max(1, round(self.quick_timeout)))

    def database(self) -> Database:
        """The environment's PostgreSQL database."""
        db: Database = self._get("database", lambda: self._open(self.database_target()))
        return db

    def read_database(self) -> Database:
        """The environment's database for reads (the live signals: ``_prisma_migrations``, row counts): the
        URL :meth:`database_target` reads, a connection pooler allowed, since a read needs no direct
        connection (``decide`` must not lose its migration signal to a pooled ``DATABASE_URL``). An
        injected ``database`` answers."""
        if self.given.get("database") is not None:
            injected: Database = self.given["database"]
            return injected

        db: Database = self._get("database.reads", lambda: self._open(self.database_target(allow_pooler=True)))
        return db

    def pg_tools(self) -> PgTools:
        """``pg_dump``/``pg_restore``/``psql`` of the server's major version."""

        def build() -> PgTools:
            from rollback.adapters.pg_tools import PgTools

            _, number = self.database().server_version()
            return PgTools.for_major(number // 10000, self.config.environ)

        tools: PgTools = self._get("pg_tools", build)
        return tools

    # -------------------------------------------------------------------------------- Pulumi stack
    def stack_backend(self) -> BackendSource | None:
        """The stack's self-managed backend (``file://``, ``s3://``) read directly, or ``None`` when
        ``pulumi.backend_url`` (or ``$PULUMI_BACKEND_URL``) is not one."""
        from rollback.adapters.stack_history import backend_source

        found: BackendSource | None = self._get("stack_backend", lambda: backend_source(self.config))
        return found

    def pulumi_stack(self) -> PulumiStack:
        """The configured stack through the Automation API (in the project directory)."""
        from rollback.adapters.stack_history import cli_stack

        stack: PulumiStack = self._get("pulumi_stack", lambda: cli_stack(self.config))
        return stack

    def stack_source(self, via: str = "auto") -> HistorySource:
        """Where the stack's history is read: ``backend``, ``cli`` or ``auto`` (the backend when it is
        self-managed, else the CLI); an injected ``stack_source`` answers every ``via``."""
        from rollback.adapters.stack_history import select_source

        if "stack_source" in self.given:
            given: HistorySource = self.given["stack_source"]
            return given
        source: HistorySource = self._get(f"stack_source.{via}", lambda: select_source(
            via, backend=self.stack_backend, stack=self.pulumi_stack))
        return source

    def stack_outputs(self) -> dict[str, Any]:
        """The stack's current outputs (the backend's checkpoint, else the Automation API)."""
        from rollback.adapters.stack_history import read_outputs

        return read_outputs(self.stack_backend(), self.pulumi_stack)
