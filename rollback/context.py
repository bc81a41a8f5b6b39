"""One place that builds adapters from config: the environment a command acts on.

Modelled on alembic's ``EnvironmentContext``: a command (``rollback.commands.*``) receives a
:class:`Services` and asks it for what it talks to (``services.vercel()``, ``services.edge()``,
``services.database()`` ...). Each adapter is built on first use from the environment's config and
the process environment, and then shared by every step of the command, so one run opens one
Vercel client, one boto3 session, one database target.

Tests and library callers inject adapters instead of patching module functions::

    services = Services(config, vercel=client, edge=EdgeAdapter(cloudfront, lambda_))
    app_commands.rollback(config, services, ...)

Nothing heavy is imported here: every adapter imports its library (httpx, boto3, psycopg, pulumi)
when it is built, so ``rollback --help`` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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

__all__ = ["EDGE_REGION", "Services"]

# Lambda@Edge functions and CloudFront's API live in us-east-1, whatever the environment's region.
EDGE_REGION = "us-east-1"


class Services:
    """The adapters of one environment, built on first use or injected by name.

    Injected names (all optional): ``vercel``, ``git``, ``aws``, ``edge``, ``s3``, ``rds``, ``secrets``,
    ``database``, ``pg_tools``, ``cloudwatch``, ``stack_source``; plus settings the handlers read
    (``on_retry``, ``edge_interval``, ``invalidate_interval``, ``poll_ramp``, ``sleep``, ``clock``).
    """

    def __init__(self, config: Config, given: Mapping[str, Any] | None = None, **overrides: Any) -> None:
        self.config = config
        self.given: dict[str, Any] = {**dict(given or {}), **overrides}
        self._built: dict[str, Any] = {}

    # -------------------------------------------------------------------------------- plumbing
    def _get(self, name: str, build: Callable[[], Any]) -> Any:
        if self.given.get(name) is not None:
            return self.given[name]
        if name not in self._built:
            self._built[name] = build()
        return self._built[name]

    def setting(self, name: str, default: Any = None) -> Any:
        """A non-adapter value handed in by the caller (poll intervals, a test clock)."""
        value = self.given.get(name)
        return default if value is None else value

    def built(self) -> dict[str, Any]:
        """Everything injected or built so far (what a later phase of the same run reuses)."""
        return {**self.given, **self._built}

    # -------------------------------------------------------------------------------- Vercel
    def vercel(self) -> VercelClient:
        """A :class:`VercelClient` for ``VERCEL_API_URL`` with ``$VERCEL_TOKEN`` and the team."""

        def build() -> VercelClient:
            from rollback.adapters.vercel import VercelClient, make_http_client
            from rollback.lock import pause

            settings = self.config.require_vercel()
            http = make_http_client(self.config.vercel_api_url, self.config.vercel_token())
            # pause: a rollback or promote re-sent after a 429/5xx (inside the step's act, up to 30 s later)
            # is not sent once the team lease is lost meanwhile
            client = VercelClient(http, team=settings.team, max_body=self.config.max_body, sleep=pause)
            on_retry = self.given.get("on_retry")
            if on_retry is not None:
                client.on_retry = on_retry
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

    def edge(self) -> EdgeAdapter:
        """CloudFront and Lambda (both in us-east-1, where Lambda@Edge lives)."""

        def build() -> EdgeAdapter:
            from rollback.adapters.cloudfront import EdgeAdapter
            from rollback.lock import pause

            clients = self.aws()
            # pause: a CloudFront wait (up to 20 min) stops at its next poll when the team lease is lost
            return EdgeAdapter(clients.client("cloudfront", EDGE_REGION), clients.client("lambda", EDGE_REGION),
                               sleep=pause)

        adapter: EdgeAdapter = self._get("edge", build)
        return adapter

    def cdn_snapshots(self) -> S3SnapshotStore | None:
        """Where distribution snapshots are shared (``config.cdn_snapshots_url``); ``None``: nowhere."""
        url = self.config.cdn_snapshots_url
        if url is None and self.given.get("cdn_snapshots") is None:
            return None

        def build() -> S3SnapshotStore:
            from rollback.adapters.s3_snapshots import open_snapshot_store

            assert url is not None
            return open_snapshot_store(url, self.aws().client("s3"))

        store: S3SnapshotStore = self._get("cdn_snapshots", build)
        return store

    def s3(self) -> S3Versions:
        """Object versions of the assets bucket."""

        def build() -> S3Versions:
            from rollback.adapters.s3_versions import S3Versions

            return S3Versions(self.aws().client("s3"))

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
            return RdsAdapter(self.aws().client("rds"), waiter_delay=delay)

        adapter: RdsAdapter = self._get("rds", build)
        return adapter

    def secrets(self) -> SecretsAdapter:
        """Secrets Manager (a restored instance's managed master secret)."""

        def build() -> SecretsAdapter:
            from rollback.adapters.secrets import SecretsAdapter

            return SecretsAdapter(self.aws().client("secretsmanager"))

        adapter: SecretsAdapter = self._get("secrets", build)
        return adapter

    def cloudwatch(self, *, timeout: float = 5.0) -> CloudWatch:
        """CloudWatch alarms and metrics, on a client with short timeouts (signals must not stall)."""

        def build() -> CloudWatch:
            from rollback.adapters.cloudwatch import CloudWatch, make_client

            return CloudWatch(make_client(timeout=timeout))

        adapter: CloudWatch = self._get("cloudwatch", build)
        return adapter

    # -------------------------------------------------------------------------------- PostgreSQL
    def database_target(self) -> Target:
        """Where ``$<database.direct_url_env>`` (else ``$<database.url_env>``) points (the URL's password is
        registered as a secret). A URL through a connection pooler is refused: a dump, ``CREATE DATABASE``
        or a rename through a transaction-mode pooler misbehaves (:func:`rollback.dburl.pooler_reason`)."""
        from rollback.adapters.postgres import Target
        from rollback.dburl import pooler_reason

        url = self.config.database_url()
        env = self.config.database_url_variable()
        if not url:
            raise ConfigError(f"{env} is not set", f"export {env}=postgresql://USER:PASSWORD@HOST:PORT/DB",
                              key="database.url_env")
        pooled = pooler_reason(url)
        if pooled:
            direct = self.config.env.database.direct_url_env
            raise ConfigError(f"{env} goes through a connection pooler ({pooled}): dumps, CREATE DATABASE and "
                              "renames need a direct connection to the database",
                              f"export {direct} with the database's own URL (or name its variable in "
                              "database.direct_url_env)", key="database.direct_url_env")
        return Target.from_url(url, env)

    def database(self) -> Database:
        """The environment's PostgreSQL database."""

        def build() -> Database:
            from rollback.adapters.postgres import Database

            return Database(self.database_target())

        db: Database = self._get("database", build)
        return db

    def pg_tools(self) -> PgTools:
        """``pg_dump``/``pg_restore``/``psql`` of the server's major version."""

        def build() -> PgTools:
            from rollback.adapters.pg_tools import PgTools

            _, number = self.database().server_version()
            return PgTools.for_major(number // 10000, self.config.environ)

        tools: PgTools = self._get("pg_tools", build)
        return tools

    # ---- stack (shape-infra)
    # Injected names here: ``stack_source`` (any HistorySource), ``stack_backend``, ``pulumi_stack``.
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

        if self.given.get("stack_source") is not None:
            given: HistorySource = self.given["stack_source"]
            return given
        source: HistorySource = self._get(f"stack_source.{via}", lambda: select_source(
            via, backend=self.stack_backend, stack=self.pulumi_stack))
        return source

    def stack_outputs(self) -> dict[str, Any]:
        """The stack's current outputs (the backend's checkpoint, else the Automation API)."""
        from rollback.adapters.stack_history import read_outputs

        return read_outputs(self.stack_backend(), self.pulumi_stack)
