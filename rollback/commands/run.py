"""``rollback run``: one plan across layers, built from each layer's own planning functions.

:func:`plan_run` reads the world and returns a :class:`RunPlan`: one
:class:`~rollback.plan.Plan` whose steps come from the layers' planners
(``app``: :func:`~rollback.commands.app.plan_rollback` or
:func:`~rollback.commands.app.plan_revert`; ``edge``:
:func:`~rollback.commands.infra_breakglass.plan_edge`; ``assets``:
:func:`~rollback.commands.infra_breakglass.plan_assets` plus an invalidation;
``infra``: the stack's preview and restore; ``db``: an emergency backup, and
:func:`~rollback.commands.db.plan_restore`, a migration repair or an RDS
restore), in the order of :data:`rollback.layers.RUN_ORDER`:

1. ``run.world``: a read-only check that the world is still as planned (what
   production serves, the distribution's ETag, the asset keys' versions, the
   backup, the stack's last update): a plan saved with ``--dry-run --json`` and
   run later with ``--plan FILE`` is refused when something changed since;
2. ``db.emergency-backup`` when the db layer is included;
3. the layers, app first (the fastest way to restore service), each step id
   prefixed with its layer (``app.vercel-rollback``, ``edge.associate``) so that
   ids stay unique; a health check (``<layer>.health``) right after the layer
   that restores service (app when included, else the first of the others);
4. the database restore (swap) last, and only when the db layer is asked for;
5. ``verify.checklist``: the post-rollback checklist (unless ``--no-verify``).

Cross-layer hazards (:mod:`rollback.layers`) are stated in the plan's notes and
enforced: a blocking one refuses the run (exit 4) unless its flag is given.

:class:`RunTracker` keeps the incident's timeline and the notifications in step
with a running plan: ``run_started``, ``initiated`` (the first state-changing
step started), ``restored`` (the restoring layer finished and its health check
passed), ``run_finished``; the notifier's start, heartbeats, one post per layer
and the end.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rollback.backups import manifest_path as backup_manifest_path
from rollback.context import Services
from rollback.errors import BadInput, ConfigError, RollbackError, UnsafePrecondition
from rollback.layers import Hazard, MigrationRow, assets_mismatch, database_switch, order, schema_skew
from rollback.plan import Plan, Step
from rollback.runner import Check, RunObserver, handler, renamed_actions

if TYPE_CHECKING:
    from rollback.adapters.cloudfront import EdgeAdapter
    from rollback.adapters.s3_versions import ObjectVersion
    from rollback.config import Config
    from rollback.incident import IncidentLog
    from rollback.journal import Journal
    from rollback.notify import Notifier
    from rollback.runner import StepContext, StepHandler, StepResult

__all__ = [
    "READ_ONLY_ACTIONS",
    "RELEASE_GAP",
    "RunPlan",
    "RunRequest",
    "RunTracker",
    "Services",
    "SwitchHandlers",
    "WorldHandlers",
    "handler_services",
    "load_plan_document",
    "newest_release_start",
    "plan_run",
    "restoring_step",
    "segments",
]

# Steps that only read or wait: "initiated" is the first step *not* among them.
READ_ONLY_ACTIONS = frozenset({
    "run.check_world", "health.check", "verify.checklist", "vercel.wait_alias_job", "vercel.wait_deploy",
    "edge.wait", "cloudfront.wait_invalidation", "db.verify_backup", "db.check_rights", "db.check_counts",
    "db.check_migration", "infra.check", "infra.desired_state",
})
RELEASE_GAP = dt.timedelta(minutes=10)  # writes closer together than this belong to one release
SERVICE_LAYERS = ("app", "edge", "assets", "infra", "db")


# --------------------------------------------------------------------------------------------- request


@dataclass(frozen=True)
class RunRequest:
    """What ``rollback run`` was asked for (the flags, or the incident's decision)."""

    layers: tuple[str, ...]
    targets: Mapping[str, str] = field(default_factory=dict)
    severity: str | None = None
    accept_schema_skew: bool = False
    accept_mismatch: bool = False
    switch_database: bool = False
    verify: bool = True
    incident: str | None = None
    options: Mapping[str, str] = field(default_factory=dict)  # layer -> option, from a decision
    poll_interval: float = 15.0

    def to_dict(self) -> dict[str, Any]:
        return {"layers": list(self.layers), "targets": dict(self.targets), "severity": self.severity,
                "accept_schema_skew": self.accept_schema_skew, "accept_mismatch": self.accept_mismatch,
                "switch_database": self.switch_database, "verify": self.verify, "incident": self.incident,
                "options": dict(self.options)}


@dataclass
class RunPlan:
    """The cross-layer plan, its hazards, and what it was planned from."""

    plan: Plan
    hazards: list[Hazard]
    request: RunRequest
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def blocking(self) -> list[Hazard]:
        return [h for h in self.hazards if h.blocking]

    def to_dict(self) -> dict[str, Any]:
        restoring, restored_at = restoring_step(self.plan)
        return {"plan": self.plan.to_dict(), "hazards": [h.to_dict() for h in self.hazards],
                "request": self.request.to_dict(), "facts": self.facts,
                "restoring": {"layer": restoring, "step": restored_at}}


# --------------------------------------------------------------------------------------------- adapters


def handler_services(services: Services, poll_interval: float) -> dict[str, Any]:
    """What :func:`~rollback.commands.registry.handlers_for` gets: the adapters built while planning, and
    CloudFront polls every ``poll_interval`` seconds, often at first."""
    chosen = services.built()
    chosen.setdefault("edge_interval", poll_interval)
    chosen.setdefault("invalidate_interval", poll_interval)
    chosen.setdefault("poll_ramp", True)
    return chosen


# --------------------------------------------------------------------------------------------- layers


@dataclass
class _Layer:
    """One layer's part of the run: its steps (ids prefixed), notes, and what it read."""

    name: str
    steps: list[Step] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    world: dict[str, Any] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)


def _prefixed(steps: Sequence[Step], group: str) -> list[Step]:
    """``steps`` with their ids prefixed by ``group`` (``associate`` -> ``edge.associate``). Handlers
    find the results of the steps they depend on through :meth:`Step.sibling`, so nothing else changes."""
    return [dataclasses.replace(step, id=f"{group}.{step.id}") for step in steps]


def _iso_ms(ms: int | None) -> str | None:
    if not ms:
        return None
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _plan_app(config: Config, services: Services, request: RunRequest) -> _Layer:
    from rollback.commands import app as app_commands

    layer = _Layer("app")
    target = request.targets.get("app")
    client = services.vercel()
    revert = target == "revert" or (target or "").startswith("revert:") or (
        target is None and request.options.get("app") == "git-revert")
    if revert:
        from rollback.adapters.git import GitRepo

        project = app_commands.project_of(config, client)
        spec = target.partition(":")[2] if target and ":" in target else ""
        if not spec:
            current = project.production
            if current is None or not current.commit_sha:
                raise BadInput("--to app=revert: production's commit is not known to Vercel",
                               "name the commit: --to app=revert:SHA")
            spec = current.commit_sha
        repo = services.given.get("git") or GitRepo(Path.cwd())
        planned = app_commands.plan_revert(config, repo, spec, push=True, wait=True, project=project)
        layer.facts = {"option": "git-revert", "spec": spec,
                       "from": project.production.id if project.production else None}
        layer.world = {"production": project.production_deployment_id,
                       "alias_request_at": project.last_alias_request.requested_at
                       if project.last_alias_request else None}
    else:
        reason = f"rollback run ({request.incident})" if request.incident else "rollback run"
        planned = app_commands.plan_rollback(config, client, to=target, reason=reason, verify=True)
        assert planned.project is not None and planned.target is not None and planned.current is not None
        to = planned.target
        layer.facts = {"option": "vercel-instant-rollback", "from": planned.current.id,
                       "from_created": _iso_ms(planned.current.created_at), "to": to.id, "to_url": to.url,
                       "to_commit": to.commit_sha, "to_created": _iso_ms(to.created_at)}
        last = planned.project.last_alias_request
        layer.world = {"production": planned.current.id, "alias_request_at": last.requested_at if last else None}
    layer.steps = _prefixed(planned.plan.steps, "app")
    layer.notes = list(planned.plan.notes)
    return layer


def _edge_version(adapter: EdgeAdapter, distribution: str, function: str) -> int:
    """The newest published version older than the one the distribution runs now."""
    from rollback.adapters.cloudfront import function_name_of

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
    from rollback.commands import infra_breakglass as bg

    layer = _Layer("edge")
    resources = bg.resolve_resources(config, need=("distribution", "function"))
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
        planned = bg.plan_edge(config, adapter, to_version=version, distribution_id=resources.distribution,
                               function=resources.function, pin=pin)
    except ConfigError as exc:
        if not pin:
            raise
        planned = bg.plan_edge(config, adapter, to_version=version, distribution_id=resources.distribution,
                               function=resources.function, pin=False)
        layer.notes.append(f"the version is not pinned in the stack config: {exc.message}")
    layer.steps = _prefixed(planned.plan.steps, "edge")
    layer.notes += [n for n in planned.plan.notes if not n.startswith("--no-pin")]
    if not pin and "infra" in request.layers:
        layer.notes.append("the edge version is not pinned separately: the infra layer restores the whole stack "
                           "config")
    layer.world = {"distribution": planned.distribution_id, "etag": planned.etag}
    layer.facts = {"distribution": planned.distribution_id, "function": planned.function,
                   "from_versions": list(planned.from_versions), "to_version": planned.to_version}
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
    from rollback.commands import infra_breakglass as bg

    distribution = bg.resolve_resources(config, need=()).distribution
    if not distribution:
        return None
    for origin in services.edge().get_config(distribution).origins:
        if origin.domain_name.startswith(f"{bucket}."):
            path = origin.origin_path.strip("/")
            return f"{path}/" if path else ""
    return None


def _plan_assets(config: Config, services: Services, request: RunRequest) -> _Layer:
    from rollback.commands import infra_breakglass as bg
    from rollback.units import parse_time

    layer = _Layer("assets")
    resources = bg.resolve_resources(config, need=("bucket",))
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
    planned = bg.plan_assets(config, store, bucket=bucket, key=key, prefix=prefix, to_version=version,
                             before=before)
    layer.steps = _prefixed(planned.plan.steps, "assets")
    layer.notes += list(planned.plan.notes)
    layer.world = {"bucket": bucket, "keys": {a.key: a.current_version for a in planned.actions}}
    release = (prefix or "").strip("/").rpartition("/")[2] or None
    layer.facts = {"bucket": bucket, "prefix": prefix, "key": key, "before": before.isoformat() if before else None,
                   "release": release, "changes": len(planned.plan.steps)}
    return layer


def _invalidation(config: Config, group: str) -> list[Step]:
    """``/*`` invalidated and waited for, in ``group`` (ids ``<group>.invalidate``, ``<group>.wait-invalidation``)."""
    from rollback.commands import infra_breakglass as bg

    distribution = bg.resolve_resources(config, need=()).distribution
    if not distribution:
        return []
    plan = bg.plan_invalidate(config, distribution_id=distribution, paths=["/*"], wait=True)
    renamed = [dataclasses.replace(s, id="wait-invalidation") if s.action == "cloudfront.wait_invalidation" else s
               for s in plan.steps]
    return _prefixed(renamed, group)


def _plan_infra(config: Config, services: Services, request: RunRequest) -> _Layer:
    from rollback.adapters.pulumi import cli_available
    from rollback.commands import infra_stack as stack

    config.require_pulumi()
    if not cli_available():
        raise UnsafePrecondition(
            "the infra layer restores the Pulumi stack through the Pulumi CLI (preview, then up), which is not "
            "installed here",
            "restore the edge pieces straight through AWS instead: --layers edge,assets (break-glass; the edge "
            "version is pinned in the stack config so the next pulumi up keeps it)")
    source = services.given.get("stack_source") or stack.open_source(config, "cli")
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
    plan_file = stack.default_plan_file(config, version)
    preview, context = stack.preview_plan(config, stack.PreviewOptions(to_version=version, plan_file=plan_file))
    restore = stack.restore_plan(config, version, plan_file)
    # The restore's own "check" step reads the preview's plan file, which a dry run never writes: the up
    # step checks the plan it applies, and the preview right before it made that plan.
    steps = [*preview.steps, *(s for s in restore.steps if s.action != "infra.check")]
    layer = _Layer("infra", _prefixed(steps, "infra"), [*preview.notes, *restore.notes])
    layer.world = {"stack_latest": latest.version}
    layer.facts = {"stack": config.require_pulumi().stack, "from_version": latest.version, "to_version": version,
                   "config_changes": [c.key for c in context["changes"]]}
    return layer


def _file_sha256(path: Path) -> str | None:
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


def _failed_migrations(config: Config) -> list[str]:
    from rollback.commands import db as db_commands

    return [str(name) for name in db_commands.migrations(config).get("failed", [])]


def _plan_db(config: Config, services: Services, request: RunRequest) -> tuple[_Layer, _Layer]:
    """``(first, last)``: the emergency backup (before every other layer), and the restore."""
    from rollback.commands import db as db_commands

    mode, argument = _db_mode(request)
    jobs = db_commands.default_jobs()
    first = _Layer("db", _prefixed([db_commands._emergency_step(None, config, jobs)], "db"))
    last = _Layer("db")
    last.facts["mode"] = mode
    if mode == "restore":
        plan = db_commands.plan_restore(config, argument, swap=True, jobs=jobs)
        manifest, dump_dir = db_commands.resolve_backup(config, argument)
        manifest_path = backup_manifest_path(dump_dir)
        last.steps = _prefixed([s for s in plan.steps if s.id != "emergency-backup"], "db")
        last.notes = list(plan.notes)
        name = str(manifest.get("name", dump_dir.name))
        last.world = {"backup": name, "manifest_sha256": _file_sha256(manifest_path)}
        last.facts.update(backup=name, backup_created=manifest.get("created_at"), manifest=str(manifest_path))
    elif mode == "repair":
        failed = _failed_migrations(config)
        target = db_commands.database_target(config)
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
        from rollback.adapters.rds import resolve_instance

        source = resolve_instance(config, None)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S")
        restored = f"{source}-restored-{stamp}"
        kind, _, value = argument.partition(":")
        plan = db_commands.plan_rds_restore(config, snapshot=value if kind == "snapshot" else None,
                                            to_time=value if kind == "time" else None, latest=kind == "latest",
                                            target=restored, wait=True, rds=services.given.get("rds"))
        last.steps = _prefixed(plan.steps, "db")
        last.notes = list(plan.notes)
        last.facts.update(rds_source=source, rds_target=restored)
    return first, last


def _migration_rows(config: Config) -> list[MigrationRow] | str:
    """The ``_prisma_migrations`` rows for the schema-skew check, or why they could not be read."""
    if not config.database_url():
        return f"{config.env.database.url_env} is not set"
    from rollback.commands import db as db_commands

    try:
        listed = db_commands.migrations(config)
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
    from urllib.parse import urlsplit

    url = config.database_url()
    return urlsplit(url).hostname if url else None


def _switch_steps(config: Config, facts: Mapping[str, Any]) -> list[Step]:
    """``--switch-database``: point the Vercel project's database variable at the restored RDS instance
    and redeploy what production serves (the rolled-back deployment) so that it takes the new value."""
    settings = config.require_vercel()
    url_env = config.env.database.url_env
    restored_step = "rds-restore"
    redeploy_of = facts.get("app_to")
    return _prefixed([
        Step("switch-database", "vercel.switch_database",
             f"set {url_env} of Vercel project {settings.project} (production) to the restored instance "
             f"{facts.get('rds_target')}", target=f"{settings.project} env {url_env}", layer="app",
             params={"project": settings.project, "key": url_env, "from_step": restored_step,
                     "instance": facts.get("rds_target")}, destructive=True),
        Step("redeploy", "vercel.redeploy",
             f"redeploy {'the rolled-back deployment ' + str(redeploy_of) if redeploy_of else 'production'} so it "
             f"runs with the new {url_env}, and promote it", target=f"{settings.project} production", layer="app",
             params={"project": settings.project, "deployment": redeploy_of, "timeout": 600.0}, destructive=True),
    ], "db")


def plan_run(config: Config, request: RunRequest, services: Services | None = None) -> RunPlan:
    """Read the world and build the cross-layer plan (nothing changes). Blocking hazards are listed,
    not raised: the caller refuses (exit 4) after showing them."""
    from rollback.commands.app import health_step
    from rollback.commands.verify import checklist_step

    services = services or Services(config)
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
        rows = _migration_rows(config)
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
            switch = _switch_steps(config, {**db_facts, "app_to": app_facts.get("to")})
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
            steps += _invalidation(config, name)
        if name == restoring and name != "app":
            steps += _health(config, name, health_step)
        notes += parts[name].notes
    if request.verify:
        baseline = parts["db"].facts.get("manifest") if "db" in parts else None
        steps.append(checklist_step(config, step_id="verify.checklist", incident=request.incident,
                                    baseline=baseline, expect_version=app_facts.get("to_commit")))
    if restoring is not None and not any(s.id == f"{restoring}.health" for s in steps):
        notes.append(f"no health check after the {restoring} layer ([env.{config.env_name}.health] base_url is "
                     "not set): service counts as restored when the layer finishes")
    for hazard in hazards:
        flag = f" (refused unless {hazard.override})" if hazard.blocking and hazard.override else ""
        notes.append(f"hazard: {hazard.kind}: {hazard.message}{flag}")
    title = f"rollback run: {', '.join(layers)}" + (f" ({request.severity})" if request.severity else "")
    plan = Plan.of(title, config.env_name, steps, list(dict.fromkeys(notes)))
    return RunPlan(plan, hazards, request, facts)


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


# --------------------------------------------------------------------------------------------- world check


@dataclass
class WorldHandlers:
    """The ``run.check_world`` step: read again what the plan was made from; refuse (exit 4) when it
    changed, so that a saved plan (``--plan FILE``) never acts on a world it was not made for."""

    services: Services

    def handlers(self) -> dict[str, StepHandler]:
        return {"run.check_world": handler(self.act, self.check)}

    def check(self, step: Step, ctx: StepContext) -> Check:
        if step.id in ctx.earlier:  # checked by the run this one resumes; its own steps changed it since
            return Check(True, dict(ctx.earlier[step.id]), step.summary)
        planned = step.params.get("world") or {}
        changed = self.differences(planned)
        if changed:
            raise UnsafePrecondition("the world changed since the plan was made: " + "; ".join(changed),
                                     "nothing was changed; plan again (rollback run ... --dry-run) and run that plan")
        return Check(False, {"checked": sorted(planned)}, step.summary)

    def act(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        return dict(ctx.checked.result) if ctx.checked is not None else {}

    def differences(self, planned: Mapping[str, Any]) -> list[str]:
        config = self.services.config
        found: list[str] = []
        if "app" in planned:
            project = self.services.vercel().get_project(config.require_vercel().project)
            app = planned["app"]
            last = project.last_alias_request
            if project.production_deployment_id != app.get("production"):
                found.append(f"production serves {project.production_deployment_id}, not {app.get('production')}")
            elif (last.requested_at if last else None) != app.get("alias_request_at"):
                found.append(f"a new rollback or promote was requested ({last.requested if last else 'none'})")
        if "edge" in planned:
            edge = planned["edge"]
            etag = self.services.edge().get_config(str(edge["distribution"])).etag
            if etag != edge.get("etag"):
                found.append(f"distribution {edge['distribution']} changed (ETag {edge.get('etag')} -> {etag})")
        if "assets" in planned:
            from rollback.adapters.s3_versions import group_by_key, newest_first

            assets = planned["assets"]
            keys: Mapping[str, Any] = assets.get("keys") or {}
            store = self.services.s3()
            moved = []
            prefix = _common_prefix(list(keys))
            listed = group_by_key(store.list_versions(str(assets["bucket"]), prefix=prefix)) if keys else {}
            for key, version in keys.items():
                versions = newest_first(listed.get(key, []))
                now = versions[0].version_id if versions else None
                if now != version:
                    moved.append(key)
            if moved:
                found.append(f"{len(moved)} asset key(s) written since the plan: {', '.join(moved[:3])}")
        if "infra" in planned:
            from rollback.commands import infra_stack as stack

            latest = stack.open_source(config, "cli").latest()
            if (latest.version if latest else None) != planned["infra"].get("stack_latest"):
                found.append(f"stack updated since the plan (update {latest.version if latest else None})")
        if "db" in planned:
            db = planned["db"]
            if "backup" in db:
                from rollback.commands import db as db_commands

                _, dump_dir = db_commands.resolve_backup(config, str(db["backup"]))
                digest = _file_sha256(backup_manifest_path(dump_dir))
                if digest != db.get("manifest_sha256"):
                    found.append(f"backup {db['backup']}'s manifest changed")
            if "failed_migrations" in db and sorted(_failed_migrations(config)) != sorted(db["failed_migrations"]):
                found.append("the failed migrations changed")
        return found


def _common_prefix(keys: Sequence[str]) -> str:
    if not keys:
        return ""
    first, last = min(keys), max(keys)
    size = 0
    while size < min(len(first), len(last)) and first[size] == last[size]:
        size += 1
    return first[:size]


# --------------------------------------------------------------------------------------------- --switch-database


@dataclass
class SwitchHandlers:
    """``--switch-database``: the Vercel project's database variable to the restored RDS instance, then a
    redeploy of what production serves (a variable applies to deployments built after it), promoted
    when a rollback paused the automatic assignment of production domains. The variable's value (it
    holds a password) is read, changed and written back without ever being journaled or printed."""

    services: Services
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic

    def handlers(self) -> dict[str, StepHandler]:
        return {"vercel.switch_database": handler(self.switch, self.check_switch),
                "vercel.redeploy": handler(self.redeploy, self.check_redeploy)}

    def _endpoint(self, step: Step, ctx: StepContext) -> tuple[str | None, int | None]:
        restored = ctx.results.get(step.sibling(str(step.params.get("from_step") or "rds-restore"))) or {}
        endpoint = restored.get("endpoint")
        port = restored.get("port")
        return (str(endpoint) if endpoint else None), (int(port) if isinstance(port, int) else None)

    def _variable(self, step: Step) -> tuple[Any, str | None]:
        client = self.services.vercel()
        project, key = str(step.params["project"]), str(step.params["key"])
        for env in client.list_env(project):
            if env.key == key and "production" in env.target:
                return env, client.env_value(project, env.id)
        raise UnsafePrecondition(f"Vercel project {project} has no production variable {key}",
                                 f"add it in the Vercel dashboard, or change {key} by hand")

    def check_switch(self, step: Step, ctx: StepContext) -> Check:
        from urllib.parse import urlsplit

        endpoint, _ = self._endpoint(step, ctx)
        would = f"set {step.params['key']} of {step.params['project']} to the restored instance's endpoint"
        if endpoint is None:
            return Check(False, {"would_set": step.params["key"], "host": "(known once restored)"}, would)
        env, value = self._variable(step)
        if value is not None and urlsplit(value).hostname == endpoint:
            return Check(True, {"variable": env.to_dict(), "host": endpoint}, would)
        return Check(False, {"would_set": step.params["key"], "host": endpoint}, would)

    def switch(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        from urllib.parse import urlsplit, urlunsplit

        endpoint, port = self._endpoint(step, ctx)
        if endpoint is None:
            raise UnsafePrecondition("the restored instance has no endpoint yet", "wait for it, then resume")
        env, value = self._variable(step)
        source = value
        if source is None:  # a sensitive variable cannot be read back: build it from our own URL
            source = self.services.config.database_url()
            ctx.note(f"{env.key} on Vercel cannot be read back (type {env.type}): using this environment's "
                     f"{self.services.config.env.database.url_env} with the new host")
        if not source:
            raise UnsafePrecondition(f"no value of {env.key} to change the host of", "set it by hand")
        parts = urlsplit(source)
        userinfo = parts.netloc.rpartition("@")[0]
        host = f"{endpoint}:{port or parts.port or 5432}"
        new = urlunsplit(parts._replace(netloc=f"{userinfo}@{host}" if userinfo else host))
        self.services.vercel().edit_env(str(step.params["project"]), env.id, value=new)
        ctx.note(f"{env.key}: host {parts.hostname} -> {endpoint} (Vercel project {step.params['project']}, "
                 "production)")
        return {"variable": env.to_dict(), "from_host": parts.hostname, "to_host": endpoint}

    def check_redeploy(self, step: Step, ctx: StepContext) -> Check:
        earlier = ctx.earlier.get(step.id)
        would = f"POST /v13/deployments (redeploy) for {step.params['project']}, then promote it"
        if earlier is not None:
            return Check(True, dict(earlier), would)
        return Check(False, {"would_redeploy": step.params.get("deployment") or "production"}, would)

    def redeploy(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        from rollback.errors import OperationFailed

        client = self.services.vercel()
        project = client.get_project(str(step.params["project"]))
        source = str(step.params.get("deployment") or project.production_deployment_id or "")
        if not source:
            raise UnsafePrecondition(f"project {project.name} serves no deployment to redeploy", "deploy by hand")
        created = client.redeploy(project.name, source, target="production")
        ctx.note(f"redeploying {source} as {created.id} ({created.url})", deployment=created.id)
        deadline = self.clock() + float(step.params.get("timeout") or 600.0)
        while True:
            current = client.get_deployment(created.id)
            if current.is_ready:
                break
            if current.state in ("ERROR", "CANCELED"):
                raise OperationFailed(f"the redeploy {created.id} is {current.state}", "see its build logs on Vercel")
            if self.clock() >= deadline:
                raise OperationFailed(f"the redeploy {created.id} is not READY after {step.params.get('timeout')} s",
                                      f"promote it when it is: rollback app promote {created.id}")
            self.sleep(0.5)
        project = client.get_project(project.id)
        promoted = False
        if project.production_deployment_id != created.id:
            # A rollback paused the automatic assignment: promote the new build explicitly.
            before = project.last_alias_request
            client.request_promote(project.id, created.id, before=before)
            while True:
                project = client.get_project(project.id)
                last = project.last_alias_request
                if project.production_deployment_id == created.id:
                    break
                if last is not None and last.to_deployment_id == created.id and last.job_status == "failed":
                    raise OperationFailed(f"promoting {created.id} failed", f"rollback app promote {created.id}")
                if self.clock() >= deadline:
                    raise OperationFailed(f"{created.id} does not serve production yet",
                                          f"rollback app promote {created.id}")
                self.sleep(0.25)
            promoted = True
        return {"redeployed": source, "deployment": created.id, "url": created.url, "promoted": promoted}


# --------------------------------------------------------------------------------------------- saved plans


def load_plan_document(path: Path) -> tuple[Plan, dict[str, Any]]:
    """A plan printed by ``rollback run --dry-run --json`` (the whole document or its ``plan``) and the
    request it was made for (``{}`` when the file holds the plan alone)."""
    import json

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"cannot read --plan {path}: {exc.strerror}", "pass the file --dry-run --json wrote") from exc

    def refuse(value: str) -> Any:
        raise ValueError(f"{value} is not allowed")

    try:
        document = json.loads(text, parse_constant=refuse)
    except ValueError as exc:
        raise BadInput(f"--plan {path} is not a JSON document ({exc})",
                       "pass the output of 'rollback run ... --dry-run --json'") from exc
    if not isinstance(document, dict):
        raise BadInput(f"--plan {path} is not a JSON object", "pass the output of 'rollback run ... --dry-run --json'")
    inner = document.get("plan")
    body: dict[str, Any] = inner if isinstance(inner, dict) else document
    plan = Plan.from_dict({**body, "steps": renamed_actions(body.get("steps"))})
    if not any(step.action == "run.check_world" for step in plan.steps):
        raise BadInput(f"--plan {path} was not made by 'rollback run' (it has no run.check_world step, so a change "
                       "of the world since could not be noticed)", "plan with 'rollback run ... --dry-run --json'")
    request = document.get("request")
    return plan, dict(request) if isinstance(request, dict) else {}


# --------------------------------------------------------------------------------------------- progress


def segments(plan: Plan) -> list[tuple[str, list[Step]]]:
    """The plan as runs of consecutive steps of one group (``[("run", [...]), ("db", [...]), ("app", ...)]``)."""
    found: list[tuple[str, list[Step]]] = []
    for step in plan.steps:
        group = step.group or step.layer
        if found and found[-1][0] == group:
            found[-1][1].append(step)
        else:
            found.append((group, [step]))
    return found


def _is_emergency(steps: Sequence[Step]) -> bool:
    return all(s.action in ("db.backup", "db.skip_emergency_backup") and s.id.endswith("emergency-backup")
               for s in steps)


def restoring_step(plan: Plan) -> tuple[str | None, str | None]:
    """``(layer, step id)``: the layer that brings service back (app when in the plan, else the first of
    edge, assets, infra, db), and the step whose end means it is back: its ``<layer>.health`` check,
    else the layer's last step."""
    runs = [(group, steps) for group, steps in segments(plan) if group in SERVICE_LAYERS and not _is_emergency(steps)]
    present = [group for group, _ in runs]
    layer = next((name for name in SERVICE_LAYERS if name in present), None)
    if layer is None:
        return None, None
    health = f"{layer}.health"
    if any(step.id == health for step in plan.steps):
        return layer, health
    last = [steps for group, steps in runs if group == layer][-1]
    return layer, last[-1].id


class RunTracker(RunObserver):
    """The incident's timeline and the notifications, kept with a running plan.

    Written once per incident: ``initiated`` when the first state-changing step starts (not a check
    or a wait), ``restored`` when the restoring step (:func:`restoring_step`) finishes, with its
    health checks. Per run: ``run_started`` (:meth:`started`, when the journal opens) and
    ``run_finished`` (:meth:`closed`, after the journal is finished). Notifications: the start, a
    heartbeat while a long step runs, one post per layer, and the end (:meth:`finish`, which also
    closes the notifier before the journal is finished, so that a failed post is noted in it).
    """

    def __init__(self, plan: Plan, *, config: Config, incident: IncidentLog | None, notifier: Notifier,
                 severity: str | None, resumes: str | None = None, done: Sequence[str] = ()) -> None:
        from rollback.incident import read_incident

        self.plan = plan
        self.config = config
        self.incident = incident
        self.notifier = notifier
        self.severity = severity
        self.resumes = resumes
        self.layer, self.restored_step = restoring_step(plan)
        record = read_incident(incident.path) if incident is not None else None
        timeline = record.timeline() if record is not None else {}
        self.initiated = bool(timeline.get("initiated"))
        self.restored = bool(timeline.get("restored"))
        self.restored_at: str | None = timeline.get("restored")
        self.verified: bool | None = None
        self.run_id: str | None = None
        self.failure: str | None = None
        self.finished = False
        self.ended = False
        self._segments = segments(plan)
        self._last_of = {steps[-1].id: (group, steps) for group, steps in self._segments}
        self._results: dict[str, StepResult] = {}
        self.done = set(done)

    # ---------------------------------------------------------------- run
    def started(self, journal: Journal) -> None:
        """The run's journal is open: ``run_started`` on the incident, the first notification."""
        self.run_id = journal.run_id
        if self.incident is not None:
            fields: dict[str, Any] = {"run": journal.run_id, "layers": list(self.plan.layers),
                                      "plan_title": self.plan.title}
            if self.resumes:
                fields["resumes"] = self.resumes
            self.incident.write("run_started", **fields)
            journal.note(f"attached to incident {self.incident.id}", incident=self.incident.id)
        self.notifier.attach(journal)
        if self.resumes:
            self.notifier.post(f"resuming run {self.resumes} as {journal.run_id}: {self.plan.title}")
        self.notifier.start(self.severity, self.plan)

    # ---------------------------------------------------------------- steps
    def step_started(self, number: int, step: Step, *, dry_run: bool) -> None:
        # A tracker follows real runs only (a dry run changes nothing, posts nothing, records nothing).
        self.notifier.step_started(step)
        if not self.initiated and step.action not in READ_ONLY_ACTIONS and step.id not in self.done:
            self.initiated = True
            if self.incident is not None:
                self.incident.write("initiated", run=self.run_id, step=step.id)

    def step_finished(self, number: int, item: StepResult) -> None:
        if item.dry_run:
            return
        self.notifier.step_finished(item.step)
        self._results[item.step.id] = item
        step = item.step
        if step.action == "verify.checklist":
            self.verified = bool(item.result.get("ok"))
        if step.id == self.restored_step and not self.restored:
            self.restored = True
            checks = list(item.result.get("checks") or []) if step.action == "health.check" else []
            if self.incident is not None:
                entry = self.incident.write("restored", run=self.run_id, layer=self.layer, step=step.id,
                                            health=checks)
                self.restored_at = str(entry.get("ts"))
        if step.id in self._last_of:
            group, steps = self._last_of[step.id]
            self._layer_done(group, steps)

    def _layer_done(self, group: str, steps: Sequence[Step]) -> None:
        if group == "run":
            return
        results = [self._results[s.id] for s in steps if s.id in self._results]
        seconds = round(sum(r.seconds for r in results), 3)
        already = sum(1 for r in results if r.already_done)
        if group == "db" and _is_emergency(steps):
            name = (results[-1].result.get("name") if results else None) or "taken"
            label, status, detail = "db", "emergency backup taken", str(name)
        elif group == "verify":
            label, status, detail = "verification", "passed" if self.verified else "done", ""
        else:
            label = group
            status = "restored" if group == self.layer and self.restored else "done"
            detail = ""
        if already:
            detail = (detail + "; " if detail else "") + f"{already} step(s) already done"
        self.notifier.layer_done(label, {"status": status, "seconds": seconds, "steps": len(steps), "detail": detail})

    def step_failed(self, number: int, step: Step, error: BaseException) -> None:
        self.notifier.step_finished(step)
        if step.action == "verify.checklist":
            self.verified = False
        message = error.one_line() if isinstance(error, RollbackError) else (
            "interrupted" if isinstance(error, KeyboardInterrupt) else f"{type(error).__name__}: {error}")
        self.failure = f"stopped at step {step.id} ({step.describe()}): {message}"

    def run_ending(self, status: str, exit_code: int) -> None:
        self.finish(status, exit_code)

    # ---------------------------------------------------------------- end
    def metrics(self) -> tuple[dict[str, Any], dict[str, Any]]:
        from rollback.commands.incident import targets_seconds
        from rollback.incident import read_incident

        if self.incident is None:
            return {}, {}
        document = read_incident(self.incident.path).to_dict(targets_seconds(self.config))
        return dict(document["metrics"]), dict(document["targets"])

    def finish(self, status: str, exit_code: int, timeout: float = 5.0) -> None:
        """The end post and the notifier closed (at most ``timeout`` s), before the journal is finished."""
        if self.ended:
            return
        self.ended = True
        if status != "succeeded":
            why = self.failure or f"the run {status}"
            resume = f"; continue with: rollback resume {self.run_id}" if self.run_id else ""
            self.notifier.post(f"{why} (exit {exit_code}){resume}")
        metrics, targets = self.metrics()
        self.notifier.end(self.restored, self.verified, metrics, targets)
        self.notifier.close(timeout=timeout)

    def closed(self, status: str, exit_code: int) -> None:
        """After the journal is finished: ``run_finished`` on the incident."""
        if self.finished or self.incident is None or self.run_id is None:
            return
        self.finished = True
        self.incident.write("run_finished", run=self.run_id, status=status, exit_code=exit_code)
