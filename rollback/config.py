"""``rollback.toml`` plus the environment, validated into typed settings.

Resolution order:

- the file: ``--config PATH``, else ``$ROLLBACK_CONFIG``, else the first
  ``rollback.toml`` found walking up from the working directory;
- the environment: ``--env NAME``, else ``$ROLLBACK_ENV``, else the file's
  ``default_env`` (or its only environment).

Secrets never live in the file: the Vercel token comes from ``VERCEL_TOKEN``,
the database URL from the variable named by ``database.direct_url_env`` when it
is set (default ``DIRECT_URL``: the database itself), else ``database.url_env``, AWS
credentials from the usual chain. A secret written in the file is an error.
Endpoint overrides for local stand-ins come from ``VERCEL_API_URL`` and
``AWS_ENDPOINT_URL``.

This module is pure apart from reading the file and ``os.environ``; pydantic is
its only dependency.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rollback.errors import BadInput, ConfigError, UnknownEnvironment
from rollback.redact import MASK, is_secret_key, redact_text, register_secret

__all__ = [
    "CONFIG_FILENAME",
    "DEFAULT_VERCEL_API_URL",
    "AlarmSettings",
    "AwsSettings",
    "CdnSettings",
    "Config",
    "DatabaseSettings",
    "EnvSettings",
    "HealthSettings",
    "HttpSettings",
    "LockSettings",
    "LossThreshold",
    "NotifySettings",
    "PulumiSettings",
    "Relation",
    "Settings",
    "Targets",
    "VercelSettings",
    "VerifyFlow",
    "VerifySettings",
    "check_url_variable",
    "find_config_file",
    "load_config",
    "load_settings",
    "resolve_journal_dir",
]

CONFIG_FILENAME = "rollback.toml"
DEFAULT_VERCEL_API_URL = "https://api.vercel.com"
PROTECTED_PREFIXES = ("prod", "live")
# A config file is a few kB; anything this size is a mistake (or an attack on the parser).
MAX_CONFIG_BYTES = 1 << 20
# Deeper than any real config nests (arrays of inline tables of arrays...); tomllib and the
# validators recurse, so a 5,000-deep list would otherwise end in RecursionError.
MAX_CONFIG_DEPTH = 32


class _Model(BaseModel):
    # allow_inf_nan=False: a target of "inf" minutes or a NaN timeout is a typo, and would print as
    # Infinity/NaN (not JSON) in every --json document that shows it.
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True, allow_inf_nan=False)


class VercelSettings(_Model):
    project: str = Field(min_length=1, description="project id (prj_...) or name")
    team: str | None = Field(default=None, description="team id (team_...) or slug")


class HealthSettings(_Model):
    base_url: str | None = None
    paths: list[str] = Field(default_factory=lambda: ["/"])
    version_path: str | None = None
    timeout: float = Field(default=5.0, gt=0, description="seconds per request, the whole answer included")
    expect_status: int = Field(default=200, ge=100, le=599)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/") if value else value

    @field_validator("paths")
    @classmethod
    def _absolute_paths(cls, value: list[str]) -> list[str]:
        for path in value:
            if not path.startswith("/"):
                raise ValueError(f"path {path!r} must start with '/'")
        return value


class Relation(_Model):
    """A relation to check for orphans where the schema declares no foreign key
    (Prisma's ``relationMode = "prisma"``): ``child.column -> parent.column``."""

    child: str = Field(description='table.column, e.g. "Integration.userId"')
    parent: str = Field(description='table.column, e.g. "User.id"')

    @field_validator("child", "parent")
    @classmethod
    def _table_column(cls, value: str) -> str:
        if value.count(".") != 1 or not all(value.split(".")):
            raise ValueError(f"{value!r} must be written table.column")
        return value


class LossThreshold(_Model):
    """When fewer rows than in the newest backup count as data loss: at least ``percent`` % AND at least
    ``rows`` rows fewer (one account removal is neither)."""

    percent: float = Field(default=1.0, ge=0, le=100, allow_inf_nan=False)
    rows: int = Field(default=10, ge=1)


class DatabaseSettings(_Model):
    url_env: str = Field(default="DATABASE_URL", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    direct_url_env: str = Field(
        default="DIRECT_URL", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="the variable holding the database's direct URL (not through a pooler): used instead of url_env "
        "when it is set; 'run --switch-database' switches the Vercel variable of this name with url_env")
    app_role: str | None = Field(
        default=None, min_length=1, pattern=r"^[A-Za-z_][A-Za-z0-9_$-]*$",
        description="the app's own PostgreSQL role: 'run --switch-database' keeps the credentials the app's "
        "variables hold for it (RDS restores roles with the data), instead of the restored instance's master secret")
    tables: list[str] = Field(default_factory=list)
    grow_only: list[str] = Field(default_factory=list, description="tables that only ever grow")
    relations: list[Relation] = Field(default_factory=list)
    data_loss: LossThreshold = Field(default_factory=LossThreshold,
                                     description="the data-loss threshold of every grow-only table")
    data_loss_tables: dict[str, LossThreshold] = Field(default_factory=dict,
                                                       description="table -> its own data-loss threshold")
    backups_dir: str = "backups"
    migrations_dir: str = "prisma/migrations"
    keep_standbys: int = Field(default=1, ge=0, description="staged standby databases kept beside the live one")

    def loss_threshold(self, table: str) -> LossThreshold:
        """The data-loss threshold of ``table`` (its own, else the database's)."""
        return self.data_loss_tables.get(table, self.data_loss)


class AwsSettings(_Model):
    region: str = Field(default="us-east-1", pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    distribution_id: str | None = None
    edge_function: str | None = None
    assets_bucket: str | None = None
    db_instance: str | None = None
    assets_releases: dict[str, str] = Field(
        default_factory=dict, description="asset release (the last part of its prefix, e.g. r42) -> the app "
        "deployment id or commit it belongs to; 'rollback run' refuses a mismatch")
    from_stack_outputs: bool = Field(
        default=True, description="fill unset resources from the Pulumi stack's outputs"
    )


class PulumiSettings(_Model):
    stack: str = Field(min_length=1, description='"stack", "project/stack" or "org/project/stack", as Pulumi spells it')
    backend_url: str | None = None
    project_dir: str = "."
    project: str | None = Field(default=None, description="default: the name in Pulumi.yaml (in project_dir)")

    @field_validator("stack")
    @classmethod
    def _stack(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+){0,2}", value):
            raise ValueError('must be "stack", "project/stack" or "organization/project/stack"')
        return value

    @field_validator("backend_url")
    @classmethod
    def _backend(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^(file|s3|https?|gs|azblob)://", value):
            raise ValueError("must start with file://, s3://, https://, gs:// or azblob://")
        return value


class Targets(_Model):
    """Recovery-time targets in minutes (the runbook's defaults), and the recovery-point target
    (``rpo``: the newest recovery point may be at most that old)."""

    detect: float = Field(default=5, gt=0)
    decide: float = Field(default=2, gt=0)
    rollback: float = Field(default=10, gt=0)
    verify: float = Field(default=5, gt=0)
    total: float = Field(default=15, gt=0)
    rpo: float = Field(default=5, gt=0)


class NotifySettings(_Model):
    """Progress posts to a Slack-compatible incoming webhook. The URL is a secret: it is read
    from the environment variable named here, never from the file."""

    webhook_env: str = Field(default="SLACK_WEBHOOK_URL", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                             description="name of the environment variable holding the webhook URL")
    heartbeat_minutes: float = Field(default=5, gt=0, description="at most one progress post this often "
                                     "while a long step runs")
    timeout: float = Field(default=5.0, gt=0, le=60, description="seconds per post attempt")


class AlarmSettings(_Model):
    """The rollback alarms ``decide`` and ``verify`` read (else the stack outputs ``alarmNames``
    and ``compositeAlarmName``)."""

    names: list[str] = Field(default_factory=list, description="alarm names")
    prefix: str | None = Field(default=None, min_length=1, description="every alarm whose name starts with it")


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


class VerifyFlow(_Model):
    """A critical flow ``rollback verify`` exercises: a request and what the answer must be."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9 _.\-]*$")
    method: str = "GET"
    path: str
    status: int = Field(default=200, ge=100, le=599)
    body_contains: str | None = Field(default=None, description="a substring the answer's body must contain")
    body: str | None = Field(default=None, description="request body, sent as is")
    content_type: str = "application/json"

    @field_validator("method")
    @classmethod
    def _method(cls, value: str) -> str:
        if value.upper() not in _METHODS:
            raise ValueError(f"must be one of {', '.join(_METHODS)}")
        return value.upper()

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"path {value!r} must start with '/'")
        return value


class VerifySettings(_Model):
    """``rollback verify``: the post-rollback checklist's sources and thresholds."""

    api_paths: list[str] | None = Field(default=None, description="paths timed for the API p95 (else health.paths)")
    requests: int = Field(default=20, ge=1, le=1000, description="requests per API p95 measurement")
    concurrency: int = Field(default=10, ge=1, le=100)
    api_p95_ms: float = Field(default=500, gt=0, allow_inf_nan=False)
    page_paths: list[str] = Field(default_factory=lambda: ["/"])
    page_load_ms: float = Field(default=3000, gt=0, allow_inf_nan=False)
    flows: list[VerifyFlow] = Field(default_factory=list)
    smoke: str | None = Field(default=None, min_length=1, description="a smoke-test command, run without a shell")
    smoke_timeout: float = Field(default=600, gt=0, allow_inf_nan=False, description="seconds")
    error_rate_percent: float = Field(default=1.0, ge=0, allow_inf_nan=False)
    cache_hit_percent: float = Field(default=70.0, ge=0, le=100, allow_inf_nan=False)
    # A fraction of a minute is for stand-ins that measure every second (the sandbox: 0.25 = 15 s);
    # CloudWatch itself aggregates standard-resolution metrics per whole minute.
    metrics_minutes: float = Field(default=5, gt=0, le=60, allow_inf_nan=False,
                                   description="window for CloudFront rates")
    fresh_minutes: int = Field(default=10, ge=1, le=120, description="metrics count as arriving within this")

    @field_validator("api_paths", "page_paths")
    @classmethod
    def _absolute(cls, value: list[str] | None) -> list[str] | None:
        for path in value or []:
            if not path.startswith("/"):
                raise ValueError(f"path {path!r} must start with '/'")
        return value

    @field_validator("flows")
    @classmethod
    def _unique(cls, value: list[VerifyFlow]) -> list[VerifyFlow]:
        names = [flow.name for flow in value]
        if len(names) != len(set(names)):
            raise ValueError("flow names must be unique")
        return value


def _s3_url(value: str | None) -> str | None:
    """``s3://bucket`` or ``s3://bucket/prefix``, without a trailing slash."""
    if value is not None and not re.match(r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/[^\s]*)?$", value):
        raise ValueError('must be written s3://bucket or s3://bucket/prefix')
    return value.rstrip("/") if value else value


class LockSettings(_Model):
    """The team-wide lease (``url = "s3://bucket/prefix"``); without it, a local lock only."""

    url: str | None = None
    ttl: float = Field(default=60, ge=5, le=3600, allow_inf_nan=False, description="lease seconds")

    @field_validator("url")
    @classmethod
    def _s3(cls, value: str | None) -> str | None:
        return _s3_url(value)


class CdnSettings(_Model):
    """``infra cdn`` snapshots: also shared in S3 (``snapshots_url = "s3://bucket/prefix"``), so that another
    engineer can list and restore them; without it, under ``<[lock] url>/cdn-snapshots`` when a team lease
    is configured, else on this machine only."""

    snapshots_url: str | None = None

    @field_validator("snapshots_url")
    @classmethod
    def _s3(cls, value: str | None) -> str | None:
        return _s3_url(value)


class EnvSettings(_Model):
    # `rollback drill --env` refuses a protected environment without --i-know-this-is-production. Unset,
    # every environment is protected except one marked `sandbox = true` whose name does not start with
    # prod or live (see Config.protection): a name is not a safe guess of what an environment is.
    protected: bool | None = None
    sandbox: bool = Field(default=False, description="a practice environment (no real users)")
    production: bool = False  # the older spelling of protected = true
    vercel: VercelSettings | None = None
    health: HealthSettings = Field(default_factory=HealthSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    aws: AwsSettings = Field(default_factory=AwsSettings)
    pulumi: PulumiSettings | None = None
    targets: Targets = Field(default_factory=Targets)
    notify: NotifySettings | None = None
    alarms: AlarmSettings = Field(default_factory=AlarmSettings)
    verify: VerifySettings = Field(default_factory=VerifySettings)
    lock: LockSettings | None = None
    cdn: CdnSettings | None = None


class JournalSettings(_Model):
    dir: str = ".rollback/runs"


class HttpSettings(_Model):
    """How much of an HTTP answer rollback reads (health checks, flows, decide --live, webhooks, the
    Vercel API): more is a failed check (see :func:`rollback.adapters.http.fetch`)."""

    max_body_bytes: int = Field(default=1 << 20, ge=1024, le=1 << 30,
                                description="the longest answer read, in bytes (default 1 MiB)")


class Settings(_Model):
    default_env: str | None = None
    journal: JournalSettings = Field(default_factory=JournalSettings)
    templates_dir: str | None = Field(default=None, min_length=1,
                                      description="report, email and banner templates that override the defaults")
    lock: LockSettings = Field(default_factory=LockSettings)
    cdn: CdnSettings = Field(default_factory=CdnSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    env: dict[str, EnvSettings] = Field(default_factory=dict, validate_default=True)

    @field_validator("env")
    @classmethod
    def _some_env(cls, value: dict[str, EnvSettings]) -> dict[str, EnvSettings]:
        if not value:
            raise ValueError("define at least one environment, e.g. [env.production.vercel]")
        for name in value:
            if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$", name):
                raise ValueError(f"environment name {name!r} may use letters, digits, '-' and '_'")
        return value


@dataclass(frozen=True)
class Config:
    """The settings of one environment, resolved against the file and the process environment."""

    path: Path
    env_name: str
    settings: Settings
    env: EnvSettings
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ), repr=False)

    @property
    def protection(self) -> str | None:
        """Why the environment is protected (a drill refuses it without ``--i-know-this-is-production``),
        or ``None`` when it is not: ``protected`` when set; else protected when marked ``production =
        true``, when its name starts with ``prod`` or ``live`` (any case: ``prod-eu``, ``Live``), or when
        it is not marked ``sandbox = true``."""
        name = self.env_name
        if self.env.protected is not None:
            return f"[env.{name}] protected = true" if self.env.protected else None
        if self.env.production:
            return f"[env.{name}] production = true"
        if name.lower().startswith(PROTECTED_PREFIXES):
            return f"its name starts with {next(p for p in PROTECTED_PREFIXES if name.lower().startswith(p))}"
        if not self.env.sandbox:
            return f"[env.{name}] is not marked sandbox = true"
        return None

    @property
    def is_protected(self) -> bool:
        return self.protection is not None


    @property
    def max_body(self) -> int:
        """``[http] max_body_bytes``: the longest HTTP answer rollback reads."""
        return self.settings.http.max_body_bytes

    @property
    def root(self) -> Path:
        """The directory relative paths in the file are resolved against."""
        return self.path.parent

    def resolve_path(self, value: str) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else (self.root / path)

    @property
    def journal_dir(self) -> Path:
        return _journal_dir(self.path, self.settings, self.environ)

    @property
    def templates_dirs(self) -> list[Path]:
        """Where user templates are looked up, before the package's defaults: ``templates_dir``
        when set, then ``.rollback/templates/`` beside the config file."""
        dirs = [self.resolve_path(self.settings.templates_dir)] if self.settings.templates_dir else []
        return [*dirs, self.root / ".rollback" / "templates"]

    def webhook_url(self) -> str | None:
        """The notification webhook's URL from ``$<notify.webhook_env>``, registered as a secret
        (its path is the credential); ``None`` when notifications are off or the variable is unset."""
        if self.env.notify is None:
            return None
        raw = self.environ.get(self.env.notify.webhook_env) or ""
        register_secret(raw)
        url = raw.strip()
        register_secret(url)
        if url:
            match = re.match(r"^[a-zA-Z][a-zA-Z0-9+.\-]*://[^/]+(/.+)$", url)
            if match:
                register_secret(match.group(1).lstrip("/"))
        return url or None

    @property


    def lock_settings(self) -> LockSettings:
        """``[env.<name>.lock]``, else the global ``[lock]``."""
        return self.env.lock if self.env.lock is not None else self.settings.lock

    @property
    def cdn_snapshots_url(self) -> str | None:
        """Where distribution snapshots are shared: ``[env.<name>.cdn] snapshots_url``, else ``[cdn]``'s,
        else ``<lock url>/cdn-snapshots`` when a team lease is configured; ``None``: this machine only."""
        cdn = self.env.cdn if self.env.cdn is not None and self.env.cdn.snapshots_url else self.settings.cdn
        if cdn.snapshots_url:
            return cdn.snapshots_url
        lock = self.lock_settings.url
        return f"{lock}/cdn-snapshots" if lock else None

    @property
    def identity(self) -> str:
        """What the environment's run lock is keyed on: this config file and the environment's name."""
        return f"{self.path.resolve()}\0{self.env_name}"

    @property
    def backups_dir(self) -> Path:
        return self.resolve_path(self.env.database.backups_dir)

    @property
    def vercel_api_url(self) -> str:
        """``$VERCEL_API_URL`` (else Vercel's), checked: a bad value is exit 2 naming the variable."""
        value = self.environ.get("VERCEL_API_URL")
        return check_url_variable("VERCEL_API_URL", value).rstrip("/") if value else DEFAULT_VERCEL_API_URL

    @property
    def aws_endpoint_url(self) -> str | None:
        value = self.environ.get("AWS_ENDPOINT_URL")
        return check_url_variable("AWS_ENDPOINT_URL", value) if value else None

    def vercel_token(self) -> str | None:
        """``$VERCEL_TOKEN``, stripped (a CRLF ``.env`` file leaves a ``\r``) and checked.

        A token that is not printable ASCII cannot go into an HTTP header; it is
        refused here, before httpx would echo it back inside an error message.
        """
        raw = self.environ.get("VERCEL_TOKEN") or ""
        register_secret(raw)
        token = raw.strip()
        if not token:
            return None
        register_secret(token)
        if not (token.isascii() and token.isprintable()) or any(c.isspace() for c in token):
            raise BadInput("VERCEL_TOKEN holds characters a token cannot have (whitespace, control or "
                           "non-ASCII characters)", "set it again from vercel.com/account/tokens, without quotes "
                           "or line breaks")
        return token

    def database_url_variable(self) -> str:
        """The variable the database URL is read from: ``database.direct_url_env`` when it is set (the
        database itself, not a pooler), else ``database.url_env``."""
        direct = self.env.database.direct_url_env
        return direct if direct and self.environ.get(direct) else self.env.database.url_env

    def database_url(self) -> str | None:
        url = self.environ.get(self.database_url_variable()) or None
        if url:
            from rollback.dburl import register_conninfo_secrets

            # Register the password (every reading of it libpq or a person could make, see
            # rollback.dburl), not the whole URL: host and database name stay readable in
            # messages, the password never does.
            register_conninfo_secrets(url)
        return url

    def _missing_section(self, section: str, example: str) -> ConfigError:
        return ConfigError(
            f"environment {self.env_name!r} has no [env.{self.env_name}.{section}] section",
            f"add [env.{self.env_name}.{section}] with {example} to {self.path.name}",
            key=f"env.{self.env_name}.{section}",
            path=str(self.path),
        )

    def require_vercel(self) -> VercelSettings:
        """The ``vercel`` section, or a config error naming what to add."""
        if self.env.vercel is None:
            raise self._missing_section("vercel", 'project = "<id or name>"')
        return self.env.vercel

    def require_pulumi(self) -> PulumiSettings:
        """The ``pulumi`` section, or a config error naming what to add."""
        if self.env.pulumi is None:
            raise self._missing_section("pulumi", 'stack = "<stack name>"')
        return self.env.pulumi

    def describe(self) -> dict[str, Any]:
        """The resolved settings with every secret masked, for ``config check``.

        The database URL is read by libpq here (:mod:`rollback.dburl`), so that a URL
        libpq would misread is reported now (exit 2), not in the middle of an incident.
        """
        database_url = self.database_url()
        if database_url:
            from rollback.dburl import parse_database_url

            parse_database_url(database_url, self.database_url_variable())
        token = self.vercel_token()
        webhook = {self.env.notify.webhook_env: MASK if self.webhook_url() else None} if self.env.notify else {}
        return {
            "config_file": str(self.path),
            "env": self.env_name,
            "environments": sorted(self.settings.env),
            # lock: what applies, the environment's own [env.X.lock] or else the top-level [lock]
            "settings": {**self.env.model_dump(mode="json"), "lock": self.lock_settings.model_dump(mode="json")},
            "http": self.settings.http.model_dump(mode="json"),
            "journal_dir": str(self.journal_dir),
            "backups_dir": str(self.backups_dir),
            "templates_dirs": [str(d) for d in self.templates_dirs],
            "secrets": {
                "VERCEL_TOKEN": MASK if token else None,
                self.database_url_variable(): redact_text(database_url) if database_url else None,
                "AWS credentials": "from the AWS credential chain",
                **webhook,
            },
            "endpoints": {
                "vercel_api_url": self.vercel_api_url,
                "aws_endpoint_url": self.aws_endpoint_url,
            },
        }


def check_url_variable(name: str, value: str) -> str:
    """``value`` if it is an http(s) URL with a host; else :class:`BadInput` naming ``name``."""
    problem = None
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError as exc:
        problem = str(exc)
    else:
        if parts.scheme not in ("http", "https"):
            problem = "not an http:// or https:// URL"
        elif not parts.hostname:
            problem = "no host"
        elif any(ch.isspace() or not ch.isprintable() for ch in value):
            problem = "it holds spaces or control characters"
    if problem is None:
        return value
    shown = redact_text(repr(value[:200]))
    raise BadInput(f"{name}={shown} is not a usable URL ({problem})",
                   f"set {name} to a URL such as https://host:port, or unset it")


def find_config_file(start: Path | None = None) -> Path | None:
    """The first ``rollback.toml`` in ``start`` or one of its parents."""
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        candidate = directory / CONFIG_FILENAME
        if candidate.is_file():
            return candidate
    return None


def _locate(config_path: str | os.PathLike[str] | None, environ: Mapping[str, str], cwd: Path | None) -> Path:
    if config_path:
        path = Path(config_path).expanduser()
        origin = "--config"
    elif environ.get("ROLLBACK_CONFIG"):
        path = Path(environ["ROLLBACK_CONFIG"]).expanduser()
        origin = "ROLLBACK_CONFIG"
    else:
        found = find_config_file(cwd)
        if found is None:
            raise ConfigError(
                f"no {CONFIG_FILENAME} in {(cwd or Path.cwd()).resolve()} or its parents",
                "run 'rollback config init' to write one, or pass --config PATH",
            )
        return found
    if not path.is_file():
        raise ConfigError(
            f"config file {path} (from {origin}) does not exist",
            "check the path, or run 'rollback config init' to write one",
            path=str(path),
        )
    return path


_SECRET_HOME = {
    "vercel": "set VERCEL_TOKEN in the environment",
    "database": "put the URL in an environment variable and name it in database.url_env",
    "aws": "use the AWS credential chain (AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, SSO)",
    "pulumi": "set PULUMI_ACCESS_TOKEN or PULUMI_CONFIG_PASSPHRASE in the environment",
    "notify": "put the webhook URL in an environment variable and name it in notify.webhook_env",
}
_URL_WITH_PASSWORD = re.compile(r"[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s]*:[^@/\s]+@")


def _find_secrets(data: Any, path: tuple[str, ...] = ()) -> tuple[tuple[str, ...], str] | None:
    """The first place in the raw TOML where a secret was written, and where it belongs."""
    if isinstance(data, dict):
        for key, value in data.items():
            here = (*path, str(key))
            section = here[2] if len(here) > 2 and here[0] == "env" else ""
            home = _SECRET_HOME.get(section, "set it in the environment instead")
            if (is_secret_key(str(key)) and not str(key).endswith("_env") and value) or (
                str(key) in ("url", "database_url") and section == "database"
            ) or (str(key) in ("url", "webhook", "webhook_url") and section == "notify"):
                return here, home
            if isinstance(value, str) and _URL_WITH_PASSWORD.search(value):
                return here, home
            found = _find_secrets(value, here)
            if found:
                return found
    elif isinstance(data, list):
        for index, item in enumerate(data):
            found = _find_secrets(item, (*path[:-1], f"{path[-1]}[{index}]") if path else (f"[{index}]",))
            if found:
                return found
    return None


def _line_of(text: str, loc: tuple[str, ...]) -> int | None:
    """Best-effort line number of a dotted key in TOML source (for error messages)."""
    if not loc:
        return None
    leaf = re.escape(loc[-1].split("[")[0])
    table = ".".join(loc[:-1])
    in_table = not table
    current = ""
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        header = re.match(r"^\[\[?\s*([^\]]+?)\s*\]\]?", stripped)
        if header:
            current = header.group(1).replace('"', "").replace(" ", "")
            in_table = current == table
            if current == ".".join(loc).split("[")[0]:
                return number
            continue
        if re.match(rf'^"?{leaf}"?\s*=', stripped) and (in_table or not table):
            return number
        if re.match(rf"^{re.escape('.'.join(loc[len(current.split('.')) if current else 0:]))}\s*=", stripped):
            return number
    return None


def _format_validation(exc: ValidationError, text: str, path: Path) -> ConfigError:
    errors = exc.errors()
    first = errors[0]
    loc = tuple(str(part) for part in first["loc"])
    key = ".".join(loc) or "(top level)"
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    elif first["type"] == "missing":
        message = "required key is missing"
    else:
        value = first.get("input")
        if isinstance(value, (str, int, float, bool)) and not isinstance(value, dict):
            shown = repr(value)
            shown = shown if len(shown) <= 80 else shown[:77] + "..."
            message = f"{message} (got {redact_text(shown)})"
    line = _line_of(text, loc)
    where = f"{path}:{line}" if line else str(path)
    more = f"; {len(errors) - 1} more problem(s)" if len(errors) > 1 else ""
    return ConfigError(
        f"{where}: {key}: {message}{more}",
        "fix the key, then run 'rollback config check'",
        key=key,
        line=line,
        path=str(path),
    )


def _depth(data: Any) -> int:
    """How deeply tables and arrays nest in ``data`` (iterative: no recursion limit to hit)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, dict):
            items: Any = value.values()
        elif isinstance(value, list):
            items = value
        else:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_CONFIG_DEPTH:
            break
        stack.extend((item, level + 1) for item in items)
    return deepest


def _too_deep(path: Path) -> ConfigError:
    return ConfigError(f"{path}: tables and arrays nest more than {MAX_CONFIG_DEPTH} levels deep",
                       "a rollback.toml nests a few levels at most: fix the file", path=str(path))


def load_settings(path: Path) -> Settings:
    """Read and validate one ``rollback.toml``. Raises :class:`ConfigError`."""
    try:
        with path.open("rb") as handle:
            raw_bytes = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", "check the path and its permissions",
                          path=str(path)) from exc
    if len(raw_bytes) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path} is larger than {MAX_CONFIG_BYTES // 1024} KiB: not a rollback config",
                          "check the path; a rollback.toml is a few kB", path=str(path))
    try:
        text = raw_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text (byte {exc.start})", "save the file as UTF-8",
                          path=str(path)) from exc
    try:
        data = tomllib.loads(text)
    except RecursionError:
        raise _too_deep(path) from None
    except tomllib.TOMLDecodeError as exc:
        line_match = re.search(r"line (\d+)", str(exc))
        raise ConfigError(
            f"{path}: not valid TOML: {exc}",
            "fix the syntax at that line",
            path=str(path),
            line=int(line_match.group(1)) if line_match else None,
        ) from exc
    if _depth(data) > MAX_CONFIG_DEPTH:
        raise _too_deep(path)
    secret = _find_secrets(data)
    if secret is not None:
        loc, home = secret
        key = ".".join(loc)
        line = _line_of(text, loc)
        where = f"{path}:{line}" if line else str(path)
        raise ConfigError(
            f"{where}: {key}: secrets must not be written in the config file",
            f"remove it and {home}",
            key=key,
            line=line,
            path=str(path),
        )
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise _format_validation(exc, text, path) from None


def _journal_dir(config_file: Path, settings: Settings, environ: Mapping[str, str]) -> Path:
    override = environ.get("ROLLBACK_JOURNAL_DIR")
    if override:
        return Path(override)
    journal = Path(settings.journal.dir).expanduser()
    return journal if journal.is_absolute() else config_file.parent / journal


def resolve_journal_dir(
    config_path: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Path:
    """The journal directory without selecting an environment, so that the
    journal commands work with no config file at all (``./.rollback/runs``)."""
    environ = dict(os.environ) if environ is None else environ
    if environ.get("ROLLBACK_JOURNAL_DIR"):
        return Path(environ["ROLLBACK_JOURNAL_DIR"])
    if not (config_path or environ.get("ROLLBACK_CONFIG")):
        found = find_config_file(cwd)
        if found is None:
            return (cwd or Path.cwd()) / ".rollback" / "runs"
    path = _locate(config_path, environ, cwd).resolve()
    return _journal_dir(path, load_settings(path), environ)


def load_config(
    config_path: str | os.PathLike[str] | None = None,
    env_name: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Config:
    """Find, read and validate the config, then select one environment."""
    environ = dict(os.environ) if environ is None else dict(environ)
    path = _locate(config_path, environ, cwd).resolve()
    settings = load_settings(path)
    name = env_name or environ.get("ROLLBACK_ENV") or settings.default_env
    if not name:
        if len(settings.env) == 1:
            name = next(iter(settings.env))
        else:
            raise ConfigError(
                f"{path}: no environment selected and default_env is not set",
                f"pass --env, set ROLLBACK_ENV, or set default_env to one of: {', '.join(sorted(settings.env))}",
                key="default_env",
                path=str(path),
            )
    if name not in settings.env:
        raise UnknownEnvironment(name, sorted(settings.env))
    return Config(path=path, env_name=name, settings=settings, env=settings.env[name], environ=environ)
