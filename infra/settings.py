"""Stack config -> typed, validated settings for the infra/ program.

This module is pure: it imports no pulumi. ``infra/__main__.py`` is the only
place that reads Pulumi config; it hands this module a getter, so every pin
and its validation can be unit-tested without an engine.

Every rollback-relevant version is a config key here. Rolling back
infrastructure is selecting an earlier value of one of these keys (or an
earlier update's whole config from stack history) and running ``pulumi up``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# CloudFront publishes its metrics (and Lambda@Edge's per-distribution errors)
# only in us-east-1, and an alarm can only notify a topic and be part of a
# composite alarm in its own region.
MONITORING_REGION = "us-east-1"

MIN_BACKUP_RETENTION_DAYS = 7
MAX_BACKUP_RETENTION_DAYS = 35

# PostgreSQL on RDS: max_connections = LEAST(DBInstanceClassMemory / 9531392, 5000).
# Memory in GiB per class; DBInstanceClassMemory is a little lower than the
# nominal size, which the factor below approximates. Other classes: set
# dbMaxConnections explicitly.
_CLASS_MEMORY_GIB: dict[str, float] = {
    "db.t3.micro": 1,
    "db.t3.small": 2,
    "db.t3.medium": 4,
    "db.t3.large": 8,
    "db.t4g.micro": 1,
    "db.t4g.small": 2,
    "db.t4g.medium": 4,
    "db.t4g.large": 8,
    "db.t4g.xlarge": 16,
    "db.m6g.large": 8,
    "db.m6g.xlarge": 16,
    "db.m7g.large": 8,
    "db.m7g.xlarge": 16,
    "db.r6g.large": 16,
    "db.r6g.xlarge": 32,
    "db.r7g.large": 16,
    "db.r7g.xlarge": 32,
}
_USABLE_MEMORY_FACTOR = 0.9

_RELEASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SNAPSHOT_SUFFIX = re.compile(r"^[a-z0-9](?:-?[a-z0-9])*$")
_DB_IDENTIFIER = re.compile(r"^[a-z](?:-?[a-z0-9])*$")
_SNAPSHOT_REF = re.compile(r"^(arn:aws[a-z-]*:rds:[a-z0-9-]+:\d{12}:snapshot:)?[A-Za-z][A-Za-z0-9:-]*$")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$")
# The enhanced-monitoring intervals RDS accepts (CreateDBInstance MonitoringInterval), 0 being off.
_MONITORING_INTERVALS = (0, 1, 5, 10, 15, 30, 60)
_PRICE_CLASSES = ("PriceClass_100", "PriceClass_200", "PriceClass_All")
_ENGINE_MAJOR = re.compile(r"^\d{1,3}$")
_VPC_ID = re.compile(r"^vpc-[0-9a-f]{8,17}$")
_SUBNET_ID = re.compile(r"^subnet-[0-9a-f]{8,17}$")
_SECURITY_GROUP_ID = re.compile(r"^sg-[0-9a-f]{8,17}$")
_CIDR = re.compile(r"^(\d{1,3}\.){3}\d{1,3}/\d{1,2}$")
_BACKEND_URL = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?P<prefix>/[^?#]*)?$")
DEFAULT_ENGINE_MAJOR = "16"
POSTGRES_PORT = 5432

# Keys an earlier program read and this one does not: set, they are reported, not applied.
_RETIRED_KEYS = {
    "dbMasterPassword": "the master password is managed by RDS in Secrets Manager (manage_master_user_password); "
    "remove it with `pulumi config rm dbMasterPassword`",
}


class ConfigError(ValueError):
    """A stack config value is missing or invalid.

    Carries the offending key (without the project prefix), what was wrong and
    what to do, and prints as one line.
    """

    def __init__(self, key: str, problem: str, fix: str) -> None:
        self.key = key
        self.problem = problem
        self.fix = fix
        full_key = key if ":" in key else f"rollback:{key}"
        super().__init__(f"config {full_key}: {problem} ({fix})")


@dataclass(frozen=True)
class RestoreToTime:
    """Point-in-time restore: a source instance and a time, or its latest restorable time."""

    source_instance: str
    time: datetime | None = None

    @property
    def use_latest_restorable_time(self) -> bool:
        return self.time is None

    @property
    def restore_time(self) -> str | None:
        """The time in the RFC 3339 form RDS expects, or None for latest."""
        return None if self.time is None else self.time.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class DbNetwork:
    """How the app reaches the database, declared by the program (subnet group + security group).

    ``access`` is ``"public"`` (a public endpoint, TLS enforced by the parameter group, port 5432
    open to ``allowed_cidrs`` only: the app on Vercel reaches it over the internet) or
    ``"private"`` (no public endpoint; reachable from ``allowed_security_group_ids`` /
    ``allowed_cidrs`` inside the VPC, e.g. Vercel Secure Compute peered into it).
    """

    access: str
    vpc_id: str
    subnet_ids: tuple[str, ...]
    allowed_cidrs: tuple[str, ...] = ()
    allowed_security_group_ids: tuple[str, ...] = ()

    @property
    def publicly_accessible(self) -> bool:
        return self.access == "public"


@dataclass(frozen=True)
class AlarmThresholds:
    """Rollback criteria from the runbook; each can be overridden in stack config."""

    error_rate_5xx_percent: float = 5.0  # runbook: "error rates > 5%"
    origin_latency_p95_ms: float = 5000.0  # runbook: "response times > 5s"
    cache_hit_rate_min_percent: float = 70.0  # runbook checklist: "cache hit rate > 70%"
    edge_errors_max: float = 0.0  # any Lambda@Edge error serves a 5xx to viewers
    db_connections_percent: float = 90.0  # runbook: "connection pool exhaustion"
    db_free_storage_min_percent: float = 10.0


@dataclass(frozen=True)
class Settings:
    """Everything the program needs, validated. Built only by :func:`parse_settings`."""

    name_prefix: str
    region: str
    # Assets bucket
    assets_release: str
    assets_bucket_name: str | None = None
    assets_noncurrent_days: int = 30
    assets_noncurrent_versions_kept: int = 10
    # Edge function
    edge_function_version: str | None = None
    # CDN
    app_origin_domain: str = ""
    app_path_patterns: tuple[str, ...] = ("/api/*",)
    origin_verify_secret: str | None = field(default=None, repr=False)
    cdn_aliases: tuple[str, ...] = ()
    cdn_certificate_arn: str | None = None
    cdn_price_class: str = "PriceClass_100"
    # Database
    db_identifier: str = ""
    db_instance_class: str = "db.t4g.medium"
    db_engine_version: str = DEFAULT_ENGINE_MAJOR
    """The engine's major version; minor upgrades are automatic (see database.py)."""
    db_allocated_storage_gb: int = 20
    db_name: str = "app"
    db_username: str = "app_admin"
    db_backup_retention_days: int = MIN_BACKUP_RETENTION_DAYS
    db_multi_az: bool = False
    db_apply_immediately: bool = True
    db_network: DbNetwork | None = None
    db_max_connections: int = 0
    db_restore_from_snapshot: str | None = None
    db_restore_to_time: RestoreToTime | None = None
    db_restore_generation: int = 1
    db_release_snapshots: tuple[str, ...] = ()
    db_monitoring_interval: int = 60
    """Enhanced monitoring every N seconds (0: off), with a role of its own the operator may pass on."""
    db_alarm_instance_id: str | None = None
    """The instance the RDS alarms watch when it is not the stack's own (after `rollback db rds-restore`)."""
    # Alarms and operator
    alarms: AlarmThresholds = field(default_factory=AlarmThresholds)
    alert_email: str | None = None
    operator_trusted_principals: tuple[str, ...] = ()
    operator_backend_url: str | None = None
    """``s3://bucket/prefix`` of a self-managed Pulumi backend the operator may read."""
    operator_lock_url: str | None = None
    """``s3://bucket/prefix`` of the CLI's team lease (``[env.X.lock] url``), which the operator writes."""
    operator_cdn_snapshots_url: str | None = None
    """``s3://bucket/prefix`` where the CLI shares distribution snapshots (``[cdn] snapshots_url``)."""
    warnings: tuple[str, ...] = ()
    """Set keys this program no longer reads, with what to do; reported by the program, never fatal."""

    @property
    def db_instance_identifier(self) -> str:
        """The RDS identifier in use: the base one, or a new one when restoring.

        A restore creates a *new* instance (RDS cannot restore in place), so
        its identifier must differ from the protected instance it replaces.
        """
        generation = "" if self.db_restore_generation == 1 else str(self.db_restore_generation)
        if self.db_restore_from_snapshot is not None:
            snapshot = self.db_restore_from_snapshot.rsplit(":", 1)[-1]
            return _restored_id(self.db_identifier, f"from{generation}", snapshot)
        if self.db_restore_to_time is not None:
            # The source and the generation are part of the name: two restores of different
            # sources to the same time, or a second restore to "latest", never collide.
            when = self.db_restore_to_time.time
            stamp = "latest" if when is None else when.strftime("%Y%m%dt%H%M%S")
            source = self.db_restore_to_time.source_instance
            return _restored_id(self.db_identifier, f"pitr{generation or '1'}", f"{source}-{stamp}")
        return self.db_identifier

    @property
    def db_engine_major(self) -> str:
        return self.db_engine_version.split(".", 1)[0]


Getter = Callable[[str], str | None]


def parse_settings(
    get: Getter | Mapping[str, str],
    *,
    project: str,
    stack: str,
    region: str | None,
    now: datetime | None = None,
) -> Settings:
    """Parse and validate stack config.

    ``get`` returns the raw string value of a ``rollback:`` key (without the
    prefix) or None; a plain mapping works too. Lists and objects are JSON, as
    Pulumi hands structured config to programs. Raises :class:`ConfigError`.
    """
    getter: Getter = get.get if isinstance(get, Mapping) else get
    now = now or datetime.now(UTC)
    raw = _Raw(getter)

    if not region:
        raise ConfigError(
            "aws:region",
            "no AWS region is set",
            f"run `pulumi config set aws:region {MONITORING_REGION}`",
        )
    if region != MONITORING_REGION:
        raise ConfigError(
            "aws:region",
            f"region {region!r} is not supported",
            f"set aws:region to {MONITORING_REGION}: CloudFront metrics exist only there and the "
            "rollback alarms, their SNS topic and the composite alarm must share one region",
        )

    name_prefix = _db_id(f"{project}-{stack}")

    release = raw.required_str("assetsRelease", "e.g. `pulumi config set assetsRelease 2026-11-20.1`")
    if not _RELEASE_ID.match(release):
        raise ConfigError(
            "assetsRelease",
            f"{release!r} is not a release id",
            "use letters, digits, '.', '_' or '-', as in the folder releases/<release-id>/ of the bucket",
        )

    edge_version = raw.text("edgeFunctionVersion")
    if edge_version is not None and not (edge_version.isdigit() and int(edge_version) >= 1):
        raise ConfigError(
            "edgeFunctionVersion",
            f"{edge_version!r} is not a published version number",
            "pin a numeric version such as 7 (Lambda@Edge cannot use $LATEST or aliases), "
            "or remove the key to use the newest published version",
        )

    app_origin = raw.required_str("appOriginDomain", "e.g. `pulumi config set appOriginDomain app.vercel.app`")
    if not _HOSTNAME.match(app_origin):
        raise ConfigError("appOriginDomain", f"{app_origin!r} is not a host name", "give a bare host, no scheme")
    patterns = raw.str_list("appPathPatterns", ["/api/*"])
    for pattern in patterns:
        if not pattern.startswith("/") or pattern == "/*":
            raise ConfigError("appPathPatterns", f"{pattern!r} is not a path pattern", "use patterns like /api/*")

    aliases = raw.str_list("cdnAliases", [])
    cert = raw.text("cdnCertificateArn")
    if aliases and not cert:
        raise ConfigError(
            "cdnCertificateArn",
            "cdnAliases are set but no certificate is",
            "set the ARN of an ACM certificate in us-east-1 covering the aliases",
        )
    if cert and not cert.startswith("arn:aws:acm:us-east-1:"):
        raise ConfigError("cdnCertificateArn", f"{cert!r} is not an ACM ARN in us-east-1", "CloudFront needs one")
    price_class = raw.text("cdnPriceClass") or "PriceClass_100"
    if price_class not in _PRICE_CLASSES:
        raise ConfigError("cdnPriceClass", f"{price_class!r} is unknown", f"use one of {', '.join(_PRICE_CLASSES)}")

    noncurrent_days = raw.integer("assetsNoncurrentVersionDays", 30, minimum=1)
    kept = raw.integer("assetsNoncurrentVersionsToKeep", 10, minimum=1, maximum=100)

    retention = raw.integer("dbBackupRetentionDays", MIN_BACKUP_RETENTION_DAYS)
    if not MIN_BACKUP_RETENTION_DAYS <= retention <= MAX_BACKUP_RETENTION_DAYS:
        raise ConfigError(
            "dbBackupRetentionDays",
            f"{retention} days is outside {MIN_BACKUP_RETENTION_DAYS}-{MAX_BACKUP_RETENTION_DAYS}",
            f"keep at least {MIN_BACKUP_RETENTION_DAYS} days so point-in-time restore reaches back a week",
        )

    monitoring = raw.integer("dbMonitoringInterval", 60)
    if monitoring not in _MONITORING_INTERVALS:
        raise ConfigError("dbMonitoringInterval", f"{monitoring} is not an interval RDS offers",
                          f"use one of {', '.join(str(i) for i in _MONITORING_INTERVALS)} (0 turns it off)")

    db_identifier = raw.text("dbInstanceIdentifier") or f"{name_prefix}-db"
    if not _DB_IDENTIFIER.match(db_identifier) or len(db_identifier) > 40:
        raise ConfigError(
            "dbInstanceIdentifier",
            f"{db_identifier!r} is not a valid RDS identifier of at most 40 characters",
            "use lowercase letters, digits and single hyphens, starting with a letter "
            "(restores append a suffix, hence the shorter limit)",
        )
    instance_class = raw.text("dbInstanceClass") or "db.t4g.medium"
    max_connections = raw.integer("dbMaxConnections", 0, minimum=0)
    if max_connections == 0:
        memory = _CLASS_MEMORY_GIB.get(instance_class)
        if memory is None:
            raise ConfigError(
                "dbMaxConnections",
                f"the connection limit of {instance_class} is not known to the program",
                "set dbMaxConnections to the instance's max_connections",
            )
        max_connections = min(int(memory * 1024**3 * _USABLE_MEMORY_FACTOR / 9531392), 5000)

    warnings = tuple(f"config rollback:{key} is set but no longer used: {why}"
                     for key, why in _RETIRED_KEYS.items() if raw.text(key) is not None)
    for key in ("dbSubnetGroupName", "dbSecurityGroupIds"):
        if raw.text(key) is not None:
            raise ConfigError(key, "is replaced by dbNetwork, which the program now declares",
                              "describe the network in dbNetwork (see README) and remove this key")
    network = _parse_network(raw.obj("dbNetwork"))

    engine = raw.text("dbEngineVersion") or DEFAULT_ENGINE_MAJOR
    if not _ENGINE_MAJOR.match(engine):
        raise ConfigError(
            "dbEngineVersion",
            f"{engine!r} is not a major version",
            "pin the major version only (e.g. 16): minor versions are upgraded automatically in the maintenance "
            "window, and RDS cannot go back to an older minor version, so a minor pin could not be rolled back",
        )
    generation = raw.integer("dbRestoreGeneration", 1, minimum=1, maximum=99)

    from_snapshot = raw.text("dbRestoreFromSnapshot")
    if from_snapshot is not None and not _SNAPSHOT_REF.match(from_snapshot):
        raise ConfigError(
            "dbRestoreFromSnapshot",
            f"{from_snapshot!r} is not a snapshot identifier or ARN",
            "check the name",
        )
    to_time = _parse_restore_to_time(raw.obj("dbRestoreToTime"), now)
    if from_snapshot is not None and to_time is not None:
        raise ConfigError(
            "dbRestoreToTime",
            "both dbRestoreFromSnapshot and dbRestoreToTime are set",
            "choose one restore: remove one of the keys",
        )

    release_snapshots = raw.str_list("dbReleaseSnapshots", [])
    for suffix in release_snapshots:
        if not _SNAPSHOT_SUFFIX.match(suffix) or len(suffix) > 60:
            raise ConfigError(
                "dbReleaseSnapshots",
                f"{suffix!r} is not a snapshot name suffix",
                "use lowercase letters, digits and single hyphens, e.g. pre-2026-11-20-1",
            )
    if len(set(release_snapshots)) != len(release_snapshots):
        raise ConfigError("dbReleaseSnapshots", "the list has duplicates", "list each release once")

    thresholds = AlarmThresholds(
        error_rate_5xx_percent=raw.number("alarm5xxErrorRatePercent", 5.0, 0, 100),
        origin_latency_p95_ms=raw.number("alarmOriginLatencyP95Ms", 5000.0, 1, 60000),
        cache_hit_rate_min_percent=raw.number("alarmCacheHitRateMinPercent", 70.0, 0, 100),
        edge_errors_max=raw.number("alarmEdgeErrorsMax", 0.0, 0, 1e9),
        db_connections_percent=raw.number("alarmDbConnectionsPercent", 90.0, 1, 100),
        db_free_storage_min_percent=raw.number("alarmDbFreeStorageMinPercent", 10.0, 1, 99),
    )

    principals = raw.str_list("operatorTrustedPrincipals", [])
    for arn in principals:
        if not re.match(r"^arn:aws[a-z-]*:iam::\d{12}:(root|role/.+|user/.+)$", arn):
            raise ConfigError(
                "operatorTrustedPrincipals",
                f"{arn!r} is not an IAM principal ARN",
                "list role, user or root ARNs",
            )

    alarm_instance = raw.text("dbAlarmInstanceId")
    if alarm_instance is not None and not _DB_IDENTIFIER.match(alarm_instance):
        raise ConfigError("dbAlarmInstanceId", f"{alarm_instance!r} is not an RDS identifier",
                          "give the identifier `rollback db rds-restore` printed, or remove the key")

    backend_url = raw.text("operatorBackendUrl")
    if backend_url is not None and not _BACKEND_URL.match(backend_url):
        raise ConfigError("operatorBackendUrl", f"{backend_url!r} is not an s3:// backend URL",
                          "give the URL of `pulumi login s3://bucket/prefix`, or remove the key for other backends")

    lock_url = raw.text("operatorLockUrl")
    if lock_url is not None and not _BACKEND_URL.match(lock_url):
        raise ConfigError("operatorLockUrl", f"{lock_url!r} is not an s3:// URL",
                          "give the [env.<name>.lock] url of rollback.toml (s3://bucket/prefix), or remove the key")

    snapshots_url = raw.text("operatorCdnSnapshotsUrl")
    if snapshots_url is not None and not _BACKEND_URL.match(snapshots_url):
        raise ConfigError("operatorCdnSnapshotsUrl", f"{snapshots_url!r} is not an s3:// URL",
                          "give the [cdn] snapshots_url of rollback.toml (s3://bucket/prefix), or remove the key")

    return Settings(
        name_prefix=name_prefix,
        region=region,
        assets_release=release,
        assets_bucket_name=raw.text("assetsBucketName"),
        assets_noncurrent_days=noncurrent_days,
        assets_noncurrent_versions_kept=kept,
        edge_function_version=edge_version,
        app_origin_domain=app_origin,
        app_path_patterns=tuple(patterns),
        origin_verify_secret=raw.text("originVerifySecret"),
        cdn_aliases=tuple(aliases),
        cdn_certificate_arn=cert,
        cdn_price_class=price_class,
        db_identifier=db_identifier,
        db_instance_class=instance_class,
        db_engine_version=engine,
        db_allocated_storage_gb=raw.integer("dbAllocatedStorageGb", 20, minimum=20, maximum=65536),
        db_name=raw.text("dbName") or "app",
        db_username=raw.text("dbUsername") or "app_admin",
        db_backup_retention_days=retention,
        db_multi_az=raw.flag("dbMultiAz", False),
        db_apply_immediately=raw.flag("dbApplyImmediately", True),
        db_network=network,
        db_max_connections=max_connections,
        db_restore_from_snapshot=from_snapshot,
        db_restore_to_time=to_time,
        db_restore_generation=generation,
        db_release_snapshots=tuple(release_snapshots),
        db_monitoring_interval=monitoring,
        db_alarm_instance_id=alarm_instance,
        alarms=thresholds,
        alert_email=raw.text("alertEmail"),
        operator_trusted_principals=tuple(principals),
        operator_backend_url=backend_url,
        operator_lock_url=lock_url.rstrip("/") if lock_url else None,
        operator_cdn_snapshots_url=snapshots_url.rstrip("/") if snapshots_url else None,
        warnings=warnings,
    )


def _parse_restore_to_time(value: dict[str, Any] | None, now: datetime) -> RestoreToTime | None:
    key = "dbRestoreToTime"
    if value is None:
        return None
    shape = (
        '{"sourceInstance": "<db id>", "time": "2026-11-20T10:00:00Z"} '
        'or {"sourceInstance": "<db id>", "useLatestRestorableTime": true}'
    )
    unknown = set(value) - {"sourceInstance", "time", "useLatestRestorableTime"}
    if unknown:
        raise ConfigError(key, f"unknown field(s) {', '.join(sorted(unknown))}", f"use {shape}")
    source = value.get("sourceInstance")
    if not isinstance(source, str) or not _DB_IDENTIFIER.match(source):
        raise ConfigError(key, "sourceInstance is missing or not an RDS identifier", f"use {shape}")
    latest = value.get("useLatestRestorableTime", False)
    if isinstance(latest, str) and latest.lower() in ("true", "false"):
        latest = latest.lower() == "true"  # as `pulumi config set --path` may store it
    raw_time = value.get("time")
    if latest not in (True, False) or (latest is True) == (raw_time is not None):
        raise ConfigError(key, "give exactly one of time and useLatestRestorableTime: true", f"use {shape}")
    if latest:
        return RestoreToTime(source_instance=source)
    if not isinstance(raw_time, str):
        raise ConfigError(key, "time must be a string", f"use {shape}")
    try:
        when = datetime.fromisoformat(raw_time.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ConfigError(
            key, f"time {raw_time!r} is not an ISO 8601 time", "write it like 2026-11-20T10:00:00Z"
        ) from exc
    if when.tzinfo is None:
        raise ConfigError(key, f"time {raw_time!r} has no time zone", "write it in UTC with a trailing Z")
    when = when.astimezone(UTC)
    if when > now:
        raise ConfigError(
            key,
            f"time {raw_time} is in the future (now is {now.strftime('%Y-%m-%dT%H:%M:%SZ')})",
            "pick a time in the past, or useLatestRestorableTime: true",
        )
    return RestoreToTime(source_instance=source, time=when)


def _parse_network(value: dict[str, Any] | None) -> DbNetwork:
    key = "dbNetwork"
    shape = ('{access: public, vpcId: vpc-..., subnetIds: [subnet-..., subnet-...], allowedCidrs: [...]} '
             'or {access: private, vpcId: ..., subnetIds: [...], allowedSecurityGroupIds: [sg-...]}')
    if value is None:
        raise ConfigError(
            key, "is required: it says how the app reaches the database",
            f"set it as a YAML mapping in the stack file: {shape} (see README, 'The database network')")
    unknown = set(value) - {"access", "vpcId", "subnetIds", "allowedCidrs", "allowedSecurityGroupIds"}
    if unknown:
        raise ConfigError(key, f"unknown field(s) {', '.join(sorted(unknown))}", f"use {shape}")
    access = value.get("access")
    if access not in ("public", "private"):
        raise ConfigError(key, f"access {access!r} is neither public nor private", f"use {shape}")
    vpc = value.get("vpcId")
    if not isinstance(vpc, str) or not _VPC_ID.match(vpc):
        raise ConfigError(key, "vpcId is missing or not a VPC id", f"use {shape}")

    def strings(field_name: str, pattern: re.Pattern[str]) -> tuple[str, ...]:
        items = value.get(field_name) or []
        if not isinstance(items, list) or not all(isinstance(i, str) and pattern.match(i) for i in items):
            raise ConfigError(key, f"{field_name} must be a list of {pattern.pattern} values", f"use {shape}")
        return tuple(items)

    subnets = strings("subnetIds", _SUBNET_ID)
    if len(subnets) < 2:
        raise ConfigError(key, "subnetIds needs at least two subnets", "RDS requires subnets in two availability zones")
    cidrs = strings("allowedCidrs", _CIDR)
    groups = strings("allowedSecurityGroupIds", _SECURITY_GROUP_ID)
    if not cidrs and not groups:
        raise ConfigError(key, "nothing may connect: allowedCidrs and allowedSecurityGroupIds are both empty",
                          "list who may reach port 5432 (the app's egress CIDRs or security groups)")
    if access == "public" and groups and not cidrs:
        raise ConfigError(key, "a public endpoint reached only from security groups is not reachable from Vercel",
                          "use access: private, or list the app's egress in allowedCidrs")
    return DbNetwork(access=str(access), vpc_id=vpc, subnet_ids=subnets, allowed_cidrs=cidrs,
                     allowed_security_group_ids=groups)


def _version_tuple(version: str) -> tuple[int, ...]:
    parts: list[int] = []
    for part in version.split("."):
        digits = re.match(r"\d+", part)
        if digits is None:
            break
        parts.append(int(digits.group()))
    return tuple(parts)


def check_live_database(settings: Settings, *, engine_version: str | None, allocated_storage_gb: int | None) -> None:
    """Refuse a config the live instance cannot take: RDS neither downgrades an engine nor shrinks storage.

    ``engine_version`` and ``allocated_storage_gb`` are what the instance under
    ``settings.db_instance_identifier`` runs now (None when it does not exist yet).
    Rolling the config back across an engine upgrade or a storage increase would
    otherwise preview fine and fail in the middle of ``pulumi up``.
    """
    if engine_version:
        live = _version_tuple(engine_version)
        wanted = _version_tuple(settings.db_engine_version)
        if live and wanted and wanted < live[: len(wanted)]:
            raise ConfigError(
                "dbEngineVersion",
                f"{settings.db_engine_version} would downgrade {settings.db_instance_identifier}, which runs "
                f"PostgreSQL {engine_version}: RDS cannot downgrade an engine",
                f"keep dbEngineVersion at {live[0]}; to get the older engine back, restore a snapshot taken "
                "before the upgrade into a new instance (dbRestoreFromSnapshot)",
            )
    if allocated_storage_gb is not None and settings.db_allocated_storage_gb < allocated_storage_gb:
        raise ConfigError(
            "dbAllocatedStorageGb",
            f"{settings.db_allocated_storage_gb} GiB is less than the {allocated_storage_gb} GiB "
            f"{settings.db_instance_identifier} has now: RDS cannot shrink storage",
            f"keep dbAllocatedStorageGb at {allocated_storage_gb} or more (a whole-config rollback must not take "
            "it back); smaller storage means a new instance restored from a snapshot",
        )


def _restored_id(base: str, kind: str, source: str) -> str:
    """``<base>-<kind>-<source>``; a short hash of the source replaces it when that is too long for RDS."""
    readable = _db_id(f"{base}-{kind}-{source}")
    if len(f"{base}-{kind}-{source}") <= 63 and readable == f"{base}-{kind}-{source}".lower():
        return readable
    return f"{base}-{kind}-{hashlib.sha256(source.encode()).hexdigest()[:10]}"


def _db_id(text: str) -> str:
    """Lowercase, hyphen-safe RDS identifier (max 63 characters)."""
    ident = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    if not ident or not ident[0].isalpha():
        ident = f"db-{ident}"
    return ident[:63].rstrip("-")


class _Raw:
    """Typed reads of raw string config; empty strings count as unset."""

    def __init__(self, get: Getter) -> None:
        self._get = get

    def text(self, key: str) -> str | None:
        value = self._get(key)
        if value is None:
            return None
        value = value.strip()
        return value or None

    def required_str(self, key: str, fix: str) -> str:
        value = self.text(key)
        if value is None:
            raise ConfigError(key, "is required but not set", fix)
        return value

    def integer(self, key: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
        text = self.text(key)
        if text is None:
            return default
        try:
            value = int(text)
        except ValueError:
            raise ConfigError(key, f"{text!r} is not a whole number", "give an integer") from None
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            bounds = f"{minimum if minimum is not None else '-inf'}..{maximum if maximum is not None else 'inf'}"
            raise ConfigError(key, f"{value} is out of range", f"give a value in {bounds}")
        return value

    def number(self, key: str, default: float, minimum: float, maximum: float) -> float:
        text = self.text(key)
        if text is None:
            return default
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(key, f"{text!r} is not a number", "give a number") from None
        if not minimum <= value <= maximum:
            raise ConfigError(key, f"{value:g} is out of range", f"give a value in {minimum:g}..{maximum:g}")
        return value

    def flag(self, key: str, default: bool) -> bool:
        text = self.text(key)
        if text is None:
            return default
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        raise ConfigError(key, f"{text!r} is not a boolean", "use true or false")

    def _json(self, key: str) -> Any:
        text = self.text(key)
        if text is None:
            return None
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            raise ConfigError(
                key, "is not valid structured config", "set it as a YAML list/object in the stack file"
            ) from None

    def str_list(self, key: str, default: list[str]) -> list[str]:
        value = self._json(key)
        if value is None:
            return list(default)
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ConfigError(key, "must be a list of strings", "set it as a YAML list in the stack file")
        return value

    def obj(self, key: str) -> dict[str, Any] | None:
        value = self._json(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise ConfigError(key, "must be an object", "set it as a YAML mapping in the stack file")
        return value
