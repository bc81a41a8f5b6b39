"""``rollback run``'s planning: each layer's part of the plan, read from the world through one
:class:`~rollback.context.Services`, and :func:`plan_run`, which puts them in order with the
cross-layer hazards, the health checks, the world check and the verification.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from rollback.adapters import stack_history
from rollback.adapters.cloudfront import function_name_of
from rollback.adapters.git import GitRepo
from rollback.adapters.pulumi import cli_available
from rollback.adapters.rds import resolve_instance
from rollback.backups import manifest_path as backup_manifest_path
from rollback.commands.app import plan as app_commands
from rollback.commands.app.health import health_step
from rollback.commands.db import common as db_common
from rollback.commands.db import handlers as db_commands
from rollback.commands.db import migrations as db_migrations
from rollback.commands.db import rds as db_rds
from rollback.commands.db import restore as db_restore
from rollback.commands.infra import stack_plan as infra_stack_plan
from rollback.commands.infra.assets import plan_assets
from rollback.commands.infra.edge import plan_edge
from rollback.commands.infra.invalidate import plan_invalidate
from rollback.commands.infra.resources import resolve_resources
from rollback.commands.run.types import RELEASE_GAP, RunFacts, RunRequest, restoring_step
from rollback.commands.verify import checklist_step
from rollback.context import Services
from rollback.dburl import pooler_reason, register_conninfo_secrets, url_user
from rollback.errors import BadInput, ConfigError, RollbackError, UnsafePrecondition
from rollback.model.layers import Hazard, MigrationRow, assets_mismatch, database_switch, order, schema_skew
from rollback.plan import SERVICE_LAYERS, Plan, Step
from rollback.runner import Prepared
from rollback.units import parse_time

if TYPE_CHECKING:
    from rollback.adapters.cloudfront import EdgeAdapter
    from rollback.adapters.s3_versions import ObjectVersion
    from rollback.config import Config


__all__ = [
    "check_switchable",
    "failed_migrations",
    "file_sha256",
    "handler_services",
    "newest_release_start",
    "plan_run",
    "switch_keys",
    "switch_variables",
]

# --------------------------------------------------------------------------------------------- adapters


def handler_services(services: Services, poll_interval: float) -> Services:
    """What :func:`~rollback.commands.registry.handlers_for` gets: the adapters built while planning (the
    same database target, the same boto3 session), and CloudFront polls every ``poll_interval`` seconds,
    often at first."""
    return services.with_settings(dataclasses.replace(services.settings, edge_interval=poll_interval,
                                                      invalidate_interval=poll_interval, poll_ramp=True))


# --------------------------------------------------------------------------------------------- layers


@dataclass
class _Layer:
    """One layer's part of the run: its steps (ids prefixed), notes, and what it read. ``after``: steps
    that follow the layer's health check (the db restore's safety dump: service first)."""

    name: str
    steps: list[Step] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    world: dict[str, Any] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    after: list[Step] = field(default_factory=list)


def _prefixed(steps: Sequence[Step], group: str) -> list[Step]:
    """``steps`` with their ids prefixed by ``group`` (``associate`` -> ``edge.associate``). Handlers
    find the results of the steps they depend on through :meth:`Step.sibling`, so nothing else changes."""
    return [dataclasses.replace(step, id=f"{group}.{step.id}") for step in steps]


def _iso_ms(ms: int | None) -> str | None:
    if not ms:
        return None
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _plan_app(config: Config, services: Services, request: RunRequest) -> _Layer:
    layer = _Layer("app")
    target = request.targets.get("app")
    client = services.vercel()
    revert = target == "revert" or (target or "").startswith("revert:") or (
        target is None and request.options.get("app") == "git-revert")
    if revert:
        project = app_commands.project_of(config, client)
        spec = target.partition(":")[2] if target and ":" in target else ""
        if not spec:
            current = project.production
            if current is None or not current.commit_sha:
                raise BadInput("--to app=revert: production's commit is not known to Vercel",
                               "name the commit: --to app=revert:SHA")
            spec = current.commit_sha
        repo = services.existing("git") or GitRepo(Path.cwd())
        planned = app_commands.plan_revert(config, repo, spec, push=True, wait=True, project=project)
        layer.facts = {"option": "git-revert", "spec": spec,
                       "from": project.production.id if project.production else None}
        layer.world = {"production": project.production_deployment_id,
                       "alias_request_at": project.last_alias_request.requested_at
                       if project.last_alias_request else None}
    else:
        reason = f"rollback run ({request.incident})" if request.incident else "rollback run"
        # During an active rolling release this plans its abort (all traffic back to the base), never an
        # instant rollback past the base. A database switch in this run redeploys the target with the new
        # variables; an earlier one is named in the plan's notes (run has no --yes-old-database: the hazard
        # is the operator's to judge).
        planned = app_commands.plan_rollback(config, client, to=target, reason=reason, verify=True,
                                             yes_old_database=True)
        facts = planned.facts
        assert facts.project is not None and facts.target is not None and facts.current is not None
        to = facts.target
        release = facts.extra.get("rolling_release")
        layer.facts = {"option": str(facts.extra.get("option") or "vercel-instant-rollback"),
                       "from": facts.current.id, "from_created": _iso_ms(facts.current.created_at),
                       "to": to.id, "to_url": to.url, "to_commit": to.commit_sha, "to_created": _iso_ms(to.created_at)}
        last = facts.project.last_alias_request
        layer.world = {"production": facts.project.production_deployment_id,
                       "alias_request_at": last.requested_at if last else None}
        if release:
            layer.facts.update(canary=facts.current.id, canary_url=facts.current.url,
                               percentage=release.get("percentage"))
            layer.world["canary"] = facts.current.id
    layer.steps = _prefixed(planned.plan.steps, "app")
    layer.notes = list(planned.plan.notes)
    return layer


def _edge_version(adapter: EdgeAdapter, distribution: str, function: str) -> int:
    """The newest published version older than the one the distribution runs now."""

    name = function_name_of(function)
    running = [int(a.version) for a in adapter.get_config(distribution).associations_of(name)
               if a.version and a.version.isdigit()]
    published = sorted(int(v.version) for v in adapter.function_versions(name) if v.version.isdigit())
    if not running:
        raise BadInput(f"distribution {distribution} runs no published version of function {name}",
                       "name the version: --to edge=N")
    older = [v for v in published if v < max(running)]
    if not older:
        raise UnsafePrecondition(f"function {name} has no published version older than {max(running)}, which the "
                                 f"distribution runs", "name the version: --to edge=N")
    return older[-1]


def _plan_edge(config: Config, services: Services, request: RunRequest, *, pin: bool) -> _Layer:
    layer = _Layer("edge")
    resources = resolve_resources(config, need=("distribution", "function"), services=services)
    assert resources.distribution and resources.function
    adapter = services.edge()
    target = request.targets.get("edge")
    if target:
        try:
            version = int(target)
        except ValueError:
            raise BadInput(f"--to edge={target}: not a version number", "e.g. --to edge=6") from None
    else:
        version = _edge_version(adapter, resources.distribution, resources.function)
    pin = pin and config.env.pulumi is not None
    try:
        planned = plan_edge(config, adapter, to_version=version, distribution_id=resources.distribution,
                            function=resources.function, pin=pin)
    except ConfigError as exc:
        if not pin:
            raise
        planned = plan_edge(config, adapter, to_version=version, distribution_id=resources.distribution,
                            function=resources.function, pin=False)
        layer.notes.append(f"the version is not pinned in the stack config: {exc.message}")
    layer.steps = _prefixed(planned.plan.steps, "edge")
    layer.notes += [n for n in planned.plan.notes if not n.startswith("--no-pin")]
    if not pin and "infra" in request.layers:
        layer.notes.append("the edge version is not pinned separately: the infra layer restores the whole stack "
                           "config")
    edge = planned.facts
    layer.world = {"distribution": edge.distribution_id, "etag": edge.etag}
    layer.facts = {"distribution": edge.distribution_id, "function": edge.function,
                   "from_versions": list(edge.from_versions), "to_version": edge.to_version}
    return layer


def newest_release_start(versions: Sequence[ObjectVersion], gap: dt.timedelta = RELEASE_GAP) -> dt.datetime | None:
    """When the newest release began writing: walking back from the newest write (a version or a delete
    marker), writes less than ``gap`` apart belong to it. ``None`` without any version."""
    moments = sorted({v.last_modified for v in versions}, reverse=True)
    if not moments:
        return None
    start = moments[0]
    for moment in moments[1:]:
        if start - moment >= gap:
            break
        start = moment
    return start


def _origin_prefix(config: Config, services: Services, bucket: str) -> str | None:
    """The prefix the distribution serves the bucket from (its origin path: ``/releases/r42`` ->
    ``releases/r42/``), or ``None`` without a distribution that serves it."""

    distribution = resolve_resources(config, need=(), services=services).distribution
    if not distribution:
        return None
    for origin in services.edge().get_config(distribution).origins:
        if origin.domain_name.startswith(f"{bucket}."):
            path = origin.origin_path.strip("/")
            return f"{path}/" if path else ""
    return None


def _plan_assets(config: Config, services: Services, request: RunRequest) -> _Layer:
    layer = _Layer("assets")
    resources = resolve_resources(config, need=("bucket",), services=services)
    assert resources.bucket
    bucket = resources.bucket
    store = services.s3()
    target = request.targets.get("assets") or ""
    key = version = prefix = None
    before: dt.datetime | None = None
    if "#" in target:
        key, _, version = target.partition("#")
        if not key or not version:
            raise BadInput(f"--to assets={target}: write KEY#VERSION_ID", "e.g. --to assets=index.html#3HL4kq")
    elif "@" in target:
        prefix, _, when = target.partition("@")
        before = parse_time(when, option="--to assets") if when.strip() else None
    elif target.endswith("/"):
        prefix = target
    elif target:
        before = parse_time(target, option="--to assets")
    if key is None and prefix is None:
        found = _origin_prefix(config, services, bucket)
        prefix = found or ""
        if found is None:
            layer.notes.append(f"assets: no distribution serves s3://{bucket} from a prefix: the whole bucket is "
                               "restored (name one with --to assets=PREFIX/)")
    if key is None and before is None:
        versions = store.list_versions(bucket, prefix=prefix)
        start = newest_release_start(versions)
        if start is None:
            raise BadInput(f"s3://{bucket}/{prefix} has no object versions to restore",
                           "check the bucket and prefix (--to assets=PREFIX/)")
        if not any(v.last_modified < start for v in versions):
            raise UnsafePrecondition(
                f"s3://{bucket}/{prefix} holds nothing older than its newest release (written since "
                f"{start.isoformat(timespec='seconds')}): there is no earlier state to put back",
                "name the time: --to assets=PREFIX@TIME, or roll the release back on the edge instead")
        before = start - dt.timedelta(milliseconds=1)
        newest = max(v.last_modified for v in versions)
        layer.notes.append(f"assets: the newest release of s3://{bucket}/{prefix} was written "
                           f"{start.isoformat(timespec='seconds')} .. {newest.isoformat(timespec='seconds')}; "
                           "its keys go back to their state just before it")
    planned = plan_assets(config, store, bucket=bucket, key=key, prefix=prefix, to_version=version,
                          before=before)
    layer.steps = _prefixed(planned.plan.steps, "assets")
    layer.notes += list(planned.plan.notes)
    layer.world = {"bucket": bucket, "keys": {a.key: a.current_version for a in planned.facts.actions}}
    release = (prefix or "").strip("/").rpartition("/")[2] or None
    layer.facts = {"bucket": bucket, "prefix": prefix, "key": key, "before": before.isoformat() if before else None,
                   "release": release, "changes": len(planned.plan.steps)}
    return layer


def _invalidation(config: Config, services: Services, group: str) -> list[Step]:
    """``/*`` invalidated and waited for, in ``group`` (ids ``<group>.invalidate``, ``<group>.wait-invalidation``)."""

    distribution = resolve_resources(config, need=(), services=services).distribution
    if not distribution:
        return []
    plan = plan_invalidate(config, distribution_id=distribution, paths=["/*"], wait=True)
    renamed = [dataclasses.replace(s, id="wait-invalidation") if s.action == "cloudfront.wait_invalidation" else s
               for s in plan.steps]
    return _prefixed(renamed, group)


def _plan_infra(config: Config, services: Services, request: RunRequest) -> _Layer:
    config.require_pulumi()
    if not cli_available():
        raise UnsafePrecondition(
            "the infra layer restores the Pulumi stack through the Pulumi CLI (preview, then up), which is not "
            "installed here",
            "restore the edge pieces straight through AWS instead: --layers edge,assets (break-glass; the edge "
            "version is pinned in the stack config so the next pulumi up keeps it)")
    source = services.existing("stack_source") or stack_history.open_source(config, "cli")
    latest = source.latest()
    if latest is None:
        raise UnsafePrecondition(f"stack {config.require_pulumi().stack} has no update to go back from",
                                 "nothing to restore")
    target = request.targets.get("infra")
    try:
        version = int(target) if target else latest.version - 1
    except ValueError:
        raise BadInput(f"--to infra={target}: not a stack version number", "see 'rollback infra history'") from None
    if version < 1 or version >= latest.version + (0 if target is None else 1):
        raise BadInput(f"--to infra: no earlier stack version {version} (the latest is {latest.version})",
                       "see 'rollback infra history'")
    plan_file = infra_stack_plan.default_plan_file(config, version)
    options = infra_stack_plan.PreviewOptions(to_version=version, plan_file=plan_file)
    preview, context = infra_stack_plan.preview_plan(config, options, services)
    restore = infra_stack_plan.restore_plan(config, version, plan_file, services=services,
                                            release=context.get("release"))
    # The restore's own "check" step reads the preview's plan file, which a dry run never writes: the up
    # step checks the plan it applies, and the preview right before it made that plan.
    steps = [*preview.steps, *(s for s in restore.steps if s.action != "infra.check")]
    layer = _Layer("infra", _prefixed(steps, "infra"), [*preview.notes, *restore.notes])
    layer.world = {"stack_latest": latest.version}
    layer.facts = {"stack": config.require_pulumi().stack, "from_version": latest.version, "to_version": version,
                   "config_changes": [c.key for c in context["changes"]]}
    return layer


def file_sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _db_mode(request: RunRequest) -> tuple[str, str]:
    """``(mode, argument)``: ``restore`` (a backup ref), ``repair``, or ``rds`` (``snapshot:ID``,
    ``time:TIME`` or ``latest``)."""
    target = request.targets.get("db")
    if target is None:
        if request.options.get("db") == "migration-repair":
            return "repair", ""
        return "restore", "latest"
    if target == "repair":
        return "repair", ""
    if target.startswith("rds"):
        kind, _, value = target.partition(":")
        if kind == "rds-snapshot" and value:
            return "rds", f"snapshot:{value}"
        if kind == "rds-time" and value:
            return "rds", f"time:{value}"
        if kind == "rds-latest" and not value:
            return "rds", "latest"
        raise BadInput(f"--to db={target}: write rds-snapshot:ID, rds-time:TIME or rds-latest",
                       "e.g. --to db=rds-time:'15m ago'")
    return "restore", target


def failed_migrations(config: Config, services: Services) -> list[str]:
    return [str(name) for name in db_migrations.migrations(config, services=services).get("failed", [])]


def _plan_db(config: Config, services: Services, request: RunRequest) -> tuple[_Layer, _Layer]:
    """``(first, last)``: the emergency backup before every other layer (a repair or an RDS restore), and
    the restore, whose safety dump follows once service is back (``last.after``: service first, the dump
    read from the copy the swap kept, which holds every write up to the swap)."""

    mode, argument = _db_mode(request)
    jobs = db_common.default_jobs()
    first = _Layer("db", _prefixed([db_common.emergency_step(None, config, jobs)], "db"))
    last = _Layer("db")
    last.facts["mode"] = mode
    if mode == "restore":
        first = _Layer("db")
        plan = db_restore.plan_restore(config, argument, swap=True, jobs=jobs, services=services)
        manifest, dump_dir = db_commands.resolve_backup(config, argument)
        manifest_path = backup_manifest_path(dump_dir)
        last.steps = _prefixed([s for s in plan.steps if s.id != "emergency-backup"], "db")
        last.after = _prefixed([s for s in plan.steps if s.id == "emergency-backup"], "db")
        last.notes = list(plan.notes)
        name = str(manifest.get("name", dump_dir.name))
        last.world = {"backup": name, "manifest_sha256": file_sha256(manifest_path)}
        last.facts.update(backup=name, backup_created=manifest.get("created_at"), manifest=str(manifest_path))
    elif mode == "repair":
        failed = failed_migrations(config, services)
        target = services.database_target()
        last.steps = _prefixed([Step(f"resolve-{n}", "db.resolve", f"mark failed migration {name} rolled back",
                                     target=f"database {target.dbname}", params={"rolled_back": name})
                                for n, name in enumerate(failed, start=1)], "db")
        if not failed:
            last.notes.append("db: no failed migration to repair; the db layer only takes the emergency backup")
        last.notes.append("db: migration repair marks failed migrations rolled back (prisma migrate resolve); "
                          "no data is restored (--to db=BACKUP restores a backup)")
        last.world = {"failed_migrations": failed}
        last.facts["failed_migrations"] = failed
    else:
        source = resolve_instance(config, None)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S")
        restored = f"{source}-restored-{stamp}"
        kind, _, value = argument.partition(":")
        plan = db_rds.plan_rds_restore(config, snapshot=value if kind == "snapshot" else None,
                                            to_time=value if kind == "time" else None, latest=kind == "latest",
                                            target=restored, wait=True, services=services)
        last.steps = _prefixed(plan.steps, "db")
        last.notes = list(plan.notes)
        last.facts.update(rds_source=source, rds_target=restored)
    return first, last


def _migration_rows(config: Config, services: Services) -> list[MigrationRow] | str:
    """The ``_prisma_migrations`` rows for the schema-skew check, or why they could not be read."""
    if not config.database_url():
        return f"{config.env.database.url_env} is not set"

    try:
        listed = db_migrations.migrations(config, services=services)
    except RollbackError as exc:
        return exc.message
    rows = []
    for item in listed.get("migrations", []):
        finished = item.get("finished_at")
        when = dt.datetime.fromisoformat(str(finished)) if finished else None
        if when is not None and when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        rows.append(MigrationRow(str(item.get("name")), when, str(item.get("status"))))
    return rows


def _parse_iso(text: Any) -> dt.datetime | None:
    if not isinstance(text, str) or not text:
        return None
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _database_host(config: Config) -> str | None:
    url = config.database_url()
    return urlsplit(url).hostname if url else None


def _switch_steps(config: Config, services: Services, facts: Mapping[str, Any]) -> tuple[list[Step], list[str]]:
    """``--switch-database``: point the Vercel project's database variables (``url_env``, and
    ``direct_url_env`` when the project has it) at the restored RDS instance and redeploy what
    production serves (the rolled-back deployment) so that it takes the new values.

    Checked now, before anything changes: each variable can be read, none goes through a pooler,
    and the app will have credentials (``database.app_role``'s, as the variables hold them, or the
    restored instance's managed master secret: never this shell's database URL)."""
    settings = config.require_vercel()
    database = config.env.database
    wanted = list(dict.fromkeys((database.url_env, database.direct_url_env)))
    client = services.vercel()
    present = {env.key for env in client.list_env(settings.project) if "production" in env.target}
    keys = [key for key in wanted if key == database.url_env or key in present]
    for env, value in switch_variables(services, settings.project, keys):
        check_switchable(settings.project, env.key, value, app_role=database.app_role)
    notes = [f"--switch-database changes {' and '.join(keys)} together, with the restored instance's endpoint"]
    if database.app_role:
        credentials = "app-role"
        notes.append(f"--switch-database keeps the credentials of the app role {database.app_role} "
                     "(RDS restores roles with the data)")
    else:
        source = str(facts.get("rds_source") or "")
        master = services.rds().instance(source) if source else None
        if master is None or not master.master_secret_arn:
            raise BadInput(f"--switch-database needs credentials for the app: {source or 'the source'} has no "
                           "managed master password for the restored instance to get, and database.app_role is "
                           "not set",
                           "set database.app_role to the app's own role (its credentials stay those the app's "
                           "variables hold); this shell's database URL is never used")
        credentials = "master-secret"
        notes.append(f"--switch-database takes the credentials from the restored instance's managed master "
                     f"secret: the app connects as the master user {master.master_username or ''}".rstrip()
                     + "; set database.app_role to keep the app's own role")
    restored_step = "rds-restore"
    redeploy_of = facts.get("app_to")
    shown = " and ".join(keys)
    return _prefixed([
        Step("switch-database", "vercel.switch_database",
             f"set {shown} of Vercel project {settings.project} (production) to the restored instance "
             f"{facts.get('rds_target')}", target=f"{settings.project} env {shown}", layer="app",
             params={"project": settings.project, "key": database.url_env, "keys": keys,
                     "from_step": restored_step, "instance": facts.get("rds_target"), "credentials": credentials,
                     "app_role": database.app_role}, destructive=True),
        Step("redeploy", "vercel.redeploy",
             f"redeploy {'the rolled-back deployment ' + str(redeploy_of) if redeploy_of else 'production'} so it "
             f"runs with the new {shown}, and promote it", target=f"{settings.project} production", layer="app",
             params={"project": settings.project, "deployment": redeploy_of, "timeout": 600.0}, destructive=True),
    ], "db"), notes


def switch_keys(params: Mapping[str, Any]) -> list[str]:
    """The Vercel variables a switch step changes (``key`` alone in plans made before ``keys``)."""
    return [str(k) for k in params.get("keys") or [params["key"]]]


def switch_variables(services: Services, project: str, keys: Sequence[str]) -> list[tuple[Any, str | None]]:
    """The project's production variables ``keys`` and their values (None: Vercel will not show it)."""
    client = services.vercel()
    envs = {env.key: env for env in client.list_env(project) if "production" in env.target}
    found = []
    for key in keys:
        env = envs.get(key)
        if env is None:
            raise UnsafePrecondition(f"Vercel project {project} has no production variable {key}",
                                     f"add it in the Vercel dashboard, or change {key} by hand")
        value = client.env_value(project, env.id)
        if value is not None:
            register_conninfo_secrets(value)
        found.append((env, value))
    return found


def check_switchable(project: str, key: str, value: str | None, *, app_role: Any = None) -> None:
    """Refuse a variable the restored instance's endpoint cannot simply replace the host of."""
    if value is None:
        raise UnsafePrecondition(
            f"Vercel will not show the value of {key} of project {project} (a sensitive variable), so rollback "
            "cannot keep its database name and parameters nor check that it does not go through a pooler",
            f"set {key} by hand to the restored instance's endpoint and redeploy; nothing was changed")
    pooled = pooler_reason(value)
    if pooled:
        raise UnsafePrecondition(
            f"{key} of Vercel project {project} goes through a connection pooler ({pooled}): the restored "
            "instance's endpoint in its place would bypass the pool",
            "point the pooler at the restored instance instead (the RDS Proxy's target, PgBouncer's host), then "
            "run without --switch-database; nothing was changed")
    if app_role and url_user(value) != app_role:
        raise UnsafePrecondition(f"{key} of Vercel project {project} connects as {url_user(value) or 'nobody'}, not "
                                 f"as the app role {app_role} (database.app_role)",
                                 "fix database.app_role or the variable; nothing was changed")


def plan_run(config: Config, request: RunRequest, services: Services) -> Prepared[RunFacts]:
    """Read the world and build the cross-layer plan (nothing changes). Blocking hazards are listed,
    not raised: the caller refuses (exit 4) after showing them."""

    layers = order(request.layers)
    if not layers:
        raise BadInput("no layer to roll back", "pass --layers, e.g. --layers app")
    parts: dict[str, _Layer] = {}
    db_first: _Layer | None = None
    if "app" in layers:
        parts["app"] = _plan_app(config, services, request)
    if "edge" in layers:
        parts["edge"] = _plan_edge(config, services, request, pin="infra" not in layers)
    if "assets" in layers:
        parts["assets"] = _plan_assets(config, services, request)
    if "infra" in layers:
        parts["infra"] = _plan_infra(config, services, request)
    if "db" in layers:
        db_first, parts["db"] = _plan_db(config, services, request)
    facts: dict[str, Any] = {name: part.facts for name, part in parts.items()}
    hazards: list[Hazard] = []

    app_facts = parts["app"].facts if "app" in parts else {}
    if app_facts.get("to_created"):
        rows = _migration_rows(config, services)
        db_mode = parts["db"].facts.get("mode") if "db" in parts else None
        if isinstance(rows, str):
            parts["app"].notes.append(f"schema skew not checked: {rows}")
        else:
            hazard = schema_skew(_parse_iso(app_facts["to_created"]), rows, restores_db=db_mode in ("restore", "rds"),
                                 accepted=request.accept_schema_skew)
            if hazard is not None:
                hazards.append(hazard)
            facts["applied_migrations"] = [r.name for r in rows if r.status == "applied"]
    if "assets" in parts and app_facts.get("to"):
        releases = dict(config.env.aws.assets_releases)
        release = parts["assets"].facts.get("release")
        hazard = assets_mismatch(str(app_facts["to"]), release, releases)
        if hazard is not None and app_facts.get("to_commit") and releases.get(str(release)) and \
                str(app_facts["to_commit"]).startswith(releases[str(release)]):
            hazard = None  # the map names the commit rather than the deployment id
        if hazard is not None:
            if request.accept_mismatch:
                hazard = dataclasses.replace(hazard, blocking=False,
                                             message=hazard.message + " (accepted with --accept-mismatch)")
            hazards.append(hazard)
    switch: list[Step] = []
    if "db" in parts and parts["db"].facts.get("mode") == "rds":
        db_facts = parts["db"].facts
        hazard = database_switch(_database_host(config) or "(unset)", f"the endpoint of {db_facts['rds_target']}",
                                 url_env=config.env.database.url_env, switching=request.switch_database)
        if hazard is not None:
            hazards.append(hazard)
        if request.switch_database:
            switch, switch_notes = _switch_steps(config, services, {**db_facts, "app_to": app_facts.get("to")})
            parts["db"].notes.extend(switch_notes)
    elif request.switch_database:
        raise BadInput("--switch-database needs an RDS restore in this run",
                       "add --to db=rds-time:TIME (or rds-snapshot:ID, rds-latest)")

    notes: list[str] = []
    world: dict[str, Any] = {name: part.world for name, part in parts.items() if part.world}
    world_step = Step("world", "run.check_world", _world_summary(world), target=f"env {config.env_name}",
                      layer="core", params={"world": world})
    steps = [dataclasses.replace(world_step, id="run.world")]
    if db_first is not None:
        steps += db_first.steps
    restoring = next((name for name in SERVICE_LAYERS if name in parts and parts[name].steps), None)
    # One invalidation after the edge and the assets (cached copies of what they served).
    cache_after = "assets" if "assets" in parts and parts["assets"].steps else ("edge" if "edge" in parts else None)
    for name in SERVICE_LAYERS:
        if name not in parts:
            continue
        steps += parts[name].steps
        if name == "db":
            steps += switch
        if name == cache_after:
            steps += _invalidation(config, services, name)
        if name == restoring and name != "app":
            steps += _health(config, name, health_step)
        steps += parts[name].after
        notes += parts[name].notes
    if request.verify:
        baseline = parts["db"].facts.get("manifest") if "db" in parts else None
        steps.append(checklist_step(config, step_id="verify.checklist", incident=request.incident,
                                    baseline=baseline, expect_version=app_facts.get("to_commit"),
                                    skip=request.verify_skip, wait=request.verify_wait,
                                    layers=[name for name in layers if name in parts]))
    if restoring is not None and not any(s.id == f"{restoring}.health" for s in steps):
        notes.append(f"no health check after the {restoring} layer ([env.{config.env_name}.health] base_url is "
                     "not set): service counts as restored when the layer finishes")
    for hazard in hazards:
        flag = f" (refused unless {hazard.override})" if hazard.blocking and hazard.override else ""
        notes.append(f"hazard: {hazard.kind}: {hazard.message}{flag}")
    title = f"rollback run: {', '.join(layers)}" + (f" ({request.severity})" if request.severity else "")
    plan = Plan.of(title, config.env_name, steps, list(dict.fromkeys(notes)))
    return Prepared(plan, RunFacts(hazards, request, facts, restoring_step(plan)))


def _health(config: Config, layer: str, health_step: Callable[..., Step | None]) -> list[Step]:
    step = health_step(config, after=f"the {layer} layer is restored", step_id="health")
    return _prefixed([step], layer) if step is not None else []


def _world_summary(world: Mapping[str, Any]) -> str:
    parts = []
    if "app" in world:
        parts.append(f"production {world['app'].get('production')}")
    if "edge" in world:
        parts.append(f"distribution ETag {world['edge'].get('etag')}")
    if "assets" in world:
        parts.append(f"{len(world['assets'].get('keys') or {})} asset key(s)")
    if "infra" in world:
        parts.append(f"stack at update {world['infra'].get('stack_latest')}")
    if "db" in world:
        db = world["db"]
        parts.append(f"backup {db['backup']}" if "backup" in db else
                     f"{len(db.get('failed_migrations') or [])} failed migration(s)")
    return "check the world is as planned: " + (", ".join(parts) or "nothing to compare")
