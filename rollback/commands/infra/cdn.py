"""``rollback infra cdn snapshot | list | restore | release``: break-glass for the whole distribution.

``snapshot`` saves the distribution's full ``DistributionConfig`` with its ETag
(under ``.rollback/cdn-snapshots/<distribution>/``, owner-only: custom origin
headers may hold secrets; and, with ``[cdn] snapshots_url`` or a team lease,
also in S3, encrypted and private, where another engineer can list and restore
it); every break-glass change of the distribution takes one first,
automatically (``infra edge`` too). ``restore SNAPSHOT`` puts a saved config
back, whole (every field but ``CallerReference``, which CloudFront never lets
change), on the environment's own distribution only; ``release RELEASE``
switches the assets origin path alone. Both are plans run through the one step
shape (Contract A), and both show what differs field by field (origin header
values masked) before anything is sent:

1. ``cdn.snapshot``: save the config as it is now (the undo of this run);
2. ``cdn.update``: send the new config guarded by the ETag read when planning
   (``IfMatch``): if anyone changed the distribution since, CloudFront answers
   412 and the run stops, exit 4, nothing overwritten; done only when the
   config CloudFront answers with equals the target in every field;
3. ``cdn.wait``: until the distribution is ``Deployed``;
4. ``cloudfront.invalidate``: what the change can serve differently (an origin
   path change invalidates every behaviour of that origin: the cache key does
   not include the origin path, so the other release would be served for up to
   a day otherwise);
5. ``cdn.pin``: the same values in the stack config (``assetsRelease``,
   ``edgeFunctionVersion``), like ``infra edge`` does, so the next
   ``pulumi up`` keeps them (``--no-pin`` skips it).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rollback.actions import StepHandlers, action
from rollback.adapters.cloudfront import (
    DEFAULT_BEHAVIOUR,
    DistributionSnapshot,
    EdgeAdapter,
    SnapshotStore,
    _parse_config,
    function_name_of,
    invalidation_paths,
    set_origin_path,
    take_snapshot,
)
from rollback.adapters.s3_snapshots import S3SnapshotStore
from rollback.adapters.s3_versions import S3Versions
from rollback.adapters.stack_config import read_stack_config, write_stack_config
from rollback.commands.infra.invalidate import InvalidateHandlers
from rollback.commands.infra.resources import pin_target, resolve_resources, short_path
from rollback.config import Config
from rollback.context import Services
from rollback.errors import BadInput, OperationFailed, RollbackError, StaleETag, UnsafePrecondition
from rollback.journal import Journal
from rollback.model.cdndiff import FieldChange, config_diff, config_digest, with_caller_reference
from rollback.plan import Plan, Step
from rollback.runner import Check, ExecutionResult, Prepared, StepContext, StepHandler
from rollback.units import format_duration

__all__ = ["ASSETS_ORIGIN", "CdnFacts", "CdnHandlers", "cdn_document", "cdn_handlers", "find_snapshot",
           "list_snapshots", "plan_release", "plan_restore", "plan_snapshot", "prepare_restore",
           "release_invalidation_paths", "run_cdn", "snapshot_step", "snapshot_store"]

ASSETS_ORIGIN = "assets"
RELEASE_PIN_KEY = "assetsRelease"
EDGE_PIN_KEY = "edgeFunctionVersion"
RELEASES_PREFIX = "/releases/"


def snapshot_store(config: Config) -> SnapshotStore:
    return SnapshotStore(config.resolve_path(".rollback/cdn-snapshots"))


def snapshot_step(config: Config, distribution_id: str, reason: str, step_id: str = "snapshot") -> Step:
    """The automatic first step of every break-glass change of the distribution (shared in S3 too when
    ``config.cdn_snapshots_url`` says where)."""
    directory = snapshot_store(config).directory
    shared = config.cdn_snapshots_url
    params: dict[str, Any] = {"distribution": distribution_id, "reason": reason, "directory": str(directory)}
    if shared:
        params["shared"] = shared
    return Step(step_id, "cdn.snapshot", f"save distribution {distribution_id}'s whole config and ETag first "
                                         f"({reason})" + (f"; also in {shared}" if shared else ""),
                target=f"distribution {distribution_id}", params=params, layer="edge")


@dataclass(frozen=True)
class CdnFacts:
    """What a CloudFront restore or release switch was planned against: the distribution, the ETag it
    was read with, the field-by-field diff (the facts of its :class:`~rollback.runner.Prepared`)."""

    distribution_id: str
    etag: str
    invalidate: tuple[str, ...]
    pins: Mapping[str, str] = field(default_factory=dict)
    changes: tuple[FieldChange, ...] = ()
    """What the update changes, field by field (header values masked)."""
    edited: bool = False
    """The snapshot was edited by hand after it was taken."""

    def to_dict(self) -> dict[str, Any]:
        return {"distribution": self.distribution_id, "etag": self.etag, "invalidate": list(self.invalidate),
                "pins": dict(self.pins), "diff": [c.to_dict() for c in self.changes], "edited": self.edited}


def plan_snapshot(config: Config, distribution_id: str, reason: str) -> Plan:
    return Plan.of(f"snapshot distribution {distribution_id}", config.env_name,
                   [snapshot_step(config, distribution_id, reason or "on request")])


def _release_of(config: Mapping[str, Any], origin: str) -> str | None:
    for item in (config.get("Origins") or {}).get("Items") or []:
        if item.get("Id") == origin:
            path = str(item.get("OriginPath") or "")
            return path[len(RELEASES_PREFIX):] if path.startswith(RELEASES_PREFIX) else None
    return None


def _edge_version_of(config: Mapping[str, Any], function: str | None) -> str | None:
    parsed = _parse_config("", "", config)
    wanted = function_name_of(function) if function else None
    versions = {a.version for a in parsed.associations if a.behaviour == DEFAULT_BEHAVIOUR and a.version
                and (wanted is None or a.function == wanted)}
    return versions.pop() if len(versions) == 1 else None


def _pin_steps(config: Config, values: Mapping[str, str | None], pin: bool) -> tuple[list[Step], dict[str, str],
                                                                                      list[str]]:
    wanted = {k: v for k, v in values.items() if v}
    if not wanted:
        return [], {}, []
    if not pin:
        shown = ", ".join(f"{k} = {v}" for k, v in wanted.items())
        return [], {}, [f"--no-pin: the stack config is not changed; the next pulumi up puts back what the stack "
                        f"pins unless you set {shown}"]
    path, _key, stack = pin_target(config)
    project = _key.split(":", 1)[0] if ":" in _key else None
    qualified = {(f"{project}:{k}" if project else k): v for k, v in wanted.items()}
    step = Step("pin", "cdn.pin", f"pin {', '.join(f'{k} = {v}' for k, v in qualified.items())} in "
                                  f"{short_path(config, path)} so the next pulumi up keeps it",
                target=f"stack {stack}", params={"path": str(path), "stack": stack, "values": qualified},
                layer="edge")
    return [step], qualified, []


def _tail_steps(config: Config, distribution_id: str, paths: list[str], timeout: float) -> list[Step]:
    steps = [Step("wait", "cdn.wait", f"wait until it is Deployed (at most {format_duration(timeout)})",
                  target=f"distribution {distribution_id}", params={"distribution": distribution_id,
                                                                     "timeout": timeout}, layer="edge")]
    if paths:
        steps.append(Step("invalidate", "cloudfront.invalidate",
                          f"invalidate {', '.join(paths)} (what the change serves differently)",
                          target=f"distribution {distribution_id}",
                          params={"distribution": distribution_id, "paths": paths,
                                  "caller_reference": f"rollback-{uuid.uuid4().hex}"}, layer="edge"))
    return steps


def _diff_notes(changes: list[FieldChange]) -> list[str]:
    if not changes:
        return ["the distribution already has this config in every field"]
    return [f"{len(changes)} field(s) differ from the distribution now:",
            *(f"  ~ {change.describe()}" for change in changes)]


def check_snapshot_target(snapshot: DistributionSnapshot, distribution_id: str) -> None:
    """Refuse (BadInput) a snapshot whose file or id names another distribution than ``distribution_id``."""
    named = {snapshot.distribution_id, snapshot.id_names} - {distribution_id}
    if named:
        raise BadInput(f"snapshot {snapshot.id} is of distribution {', '.join(sorted(named))}, not of "
                       f"{distribution_id} (this environment's distribution); nothing was sent",
                       f"restore a snapshot of {distribution_id} ('rollback infra cdn list'), or pick the "
                       "environment that owns the other distribution with --env")


def plan_restore(config: Config, adapter: EdgeAdapter, snapshot: DistributionSnapshot, *,
                 distribution_id: str | None = None, function: str | None = None, pin: bool = True,
                 timeout: float = 1200.0, source: str | None = None) -> Prepared[CdnFacts]:
    """Put ``snapshot``'s whole config back on ``distribution_id`` (the environment's; read-only: reads
    the distribution now, for the ETag and the field-by-field diff). A snapshot of another distribution
    is refused (BadInput)."""
    distribution_id = distribution_id or snapshot.distribution_id
    check_snapshot_target(snapshot, distribution_id)
    current = adapter.get_config(distribution_id)
    target = with_caller_reference(snapshot.config, current.raw)
    changes = config_diff(current.raw, target)
    paths = invalidation_paths(current.raw, target)
    unchanged = not changes
    steps = [snapshot_step(config, distribution_id, f"before restoring {snapshot.id}"),
             Step("update", "cdn.update",
                  (f"already as in snapshot {snapshot.id}" if unchanged else
                   f"put back snapshot {snapshot.id} (taken {snapshot.taken_at}), {len(changes)} field(s), "
                   f"under IfMatch {current.etag}"),
                  target=f"distribution {distribution_id}",
                  params={"distribution": distribution_id, "etag": current.etag, "kind": "restore",
                          "snapshot": snapshot.id, "directory": str(snapshot_store(config).directory),
                          "config_sha256": config_digest(snapshot.config),
                          "fields": [c.path for c in changes]},
                  destructive=not unchanged, layer="edge"),
             *_tail_steps(config, distribution_id, paths, timeout)]
    pin_steps, pins, notes = _pin_steps(config, {RELEASE_PIN_KEY: _release_of(snapshot.config, ASSETS_ORIGIN),
                                                 EDGE_PIN_KEY: _edge_version_of(snapshot.config, function)}, pin)
    found = [f"snapshot {snapshot.id} comes from {source}; a copy is kept in {snapshot_store(config).directory}"
             ] if source else []
    if snapshot.edited:
        found.append(f"snapshot {snapshot.id} was EDITED after it was taken (its config no longer matches the "
                     "checksum recorded then): what is sent is exactly the difference below")
    elif snapshot.config_sha256 is None:
        found.append(f"snapshot {snapshot.id} has no checksum (an older rollback took it): whether it was edited "
                     "cannot be told; what is sent is exactly the difference below")
    notes = [*found, *_diff_notes(changes),
             f"what changes is served fresh: invalidating {', '.join(paths)}" if paths else
             "nothing served changes (no invalidation needed)", *notes]
    plan = Plan.of(f"restore distribution {distribution_id} from snapshot {snapshot.id}", config.env_name,
                   [*steps, *pin_steps], notes)
    return Prepared(plan, CdnFacts(distribution_id, current.etag, tuple(paths), pins, tuple(changes), snapshot.edited))


_S3_DOMAIN = re.compile(r"^(?P<bucket>[a-z0-9][a-z0-9.-]*?)\.s3(?:[.-][a-z0-9-]+)*\.amazonaws\.com(?:\.cn)?$")


def bucket_of_domain(domain: str) -> str | None:
    """The bucket an S3 origin's domain names (``assets.s3.us-east-1.amazonaws.com`` -> ``assets``)."""
    found = _S3_DOMAIN.match(domain.strip().lower())
    return found.group("bucket") if found else None


def check_release_exists(store: S3Versions, bucket: str, release: str) -> None:
    """Refuse (exit 2) a release folder that is missing or holds no object: serving it would answer 403/404
    to every asset, and the invalidation would drop the cached copies that still work."""
    folder = f"{RELEASES_PREFIX.lstrip('/')}{release}/"
    if store.has_current_object(bucket, folder):
        return
    existing = store.folders(bucket, RELEASES_PREFIX.lstrip("/"))
    listed = ", ".join(existing[-20:]) if existing else "none"
    raise BadInput(f"release {release!r} has no objects in s3://{bucket}/{folder} (the folder is missing or empty): "
                   "serving it would take the site down",
                   f"name one of the releases in s3://{bucket}/{RELEASES_PREFIX.lstrip('/')}: {listed}",
                   details={"bucket": bucket, "release": release, "releases": existing})


def plan_release(config: Config, adapter: EdgeAdapter, *, distribution_id: str, release: str,
                 origin: str = ASSETS_ORIGIN, pin: bool = True, timeout: float = 1200.0,
                 store: S3Versions | None = None) -> Prepared[CdnFacts]:
    """Switch the assets origin to ``releases/<release>`` alone. With ``store`` (the S3 client of the
    origin's bucket), a release folder that is missing or empty is refused before anything is planned."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", release):
        raise BadInput(f"{release!r} is not a release id", "use the folder name under releases/ in the bucket")
    current = adapter.get_config(distribution_id)
    path = f"{RELEASES_PREFIX}{release}"
    target = set_origin_path(current.raw, origin, path)  # BadInput naming the origins when it is not there
    before = next(o.origin_path for o in current.origins if o.id == origin)
    domain = next((o.domain_name for o in current.origins if o.id == origin), "")
    bucket = bucket_of_domain(domain)
    unchecked: list[str] = []
    if before != path and store is not None:
        if bucket is not None:
            check_release_exists(store, bucket, release)
        else:
            unchecked.append(f"origin {origin} ({domain}) is not an S3 bucket: whether {path} holds the release "
                             "was not checked")
    paths = invalidation_paths(current.raw, target)
    changes = config_diff(current.raw, target)
    unchanged = before == path
    steps = [snapshot_step(config, distribution_id, f"before switching {origin} to {path}"),
             Step("update", "cdn.update",
                  (f"origin {origin} already serves {path}" if unchanged else
                   f"origin {origin}: {before or '(root)'} -> {path} under IfMatch {current.etag}"),
                  target=f"distribution {distribution_id}",
                  params={"distribution": distribution_id, "etag": current.etag, "kind": "release", "origin": origin,
                          "origin_path": path}, destructive=not unchanged, layer="edge"),
             *_tail_steps(config, distribution_id, paths, timeout)]
    pin_steps, pins, notes = _pin_steps(config, {RELEASE_PIN_KEY: release} if origin == ASSETS_ORIGIN else {}, pin)
    notes = [*(_diff_notes(changes) if changes else []),
             f"the cache key does not include the origin path: invalidating {', '.join(paths)}" if paths else
             "nothing served changes (no invalidation needed)", *notes, *unchecked]
    plan = Plan.of(f"switch distribution {distribution_id} to release {release}", config.env_name,
                   [*steps, *pin_steps], notes)
    return Prepared(plan, CdnFacts(distribution_id, current.etag, tuple(paths), pins, tuple(changes)))


def release_invalidation_paths(live: Mapping[str, Any], before: str | None, after: str,
                               origin: str = ASSETS_ORIGIN) -> list[str]:
    """What to invalidate once ``origin`` serves ``releases/<after>`` instead of ``releases/<before>``: the
    behaviours that origin serves (``/*`` when it is not found as expected: better too much than stale)."""
    path = f"{RELEASES_PREFIX}{after}"
    origins = {str(o.get("Id")): str(o.get("OriginPath") or "") for o in (live.get("Origins") or {}).get("Items") or []}
    if origins.get(origin) != path:
        return ["/*"]
    earlier = set_origin_path(live, origin, f"{RELEASES_PREFIX}{before}" if before else "")
    return invalidation_paths(earlier, live) or ["/*"]


def _same(current: Mapping[str, Any], target: Mapping[str, Any]) -> bool:
    """Whether ``current`` already is ``target`` in every field (``CallerReference`` aside)."""
    return not config_diff(current, with_caller_reference(target, current))


def list_snapshots(config: Config, distribution_id: str | None = None,
                   shared: S3SnapshotStore | None = None) -> list[dict[str, Any]]:
    """Snapshots here and (with ``shared``) in S3, newest first; ``where`` says which."""
    found: dict[str, dict[str, Any]] = {}
    for snapshot in snapshot_store(config).list(distribution_id):
        found[snapshot.id] = {**snapshot.summary(), "where": ["local"]}
    if shared is not None:
        for snapshot in shared.list(distribution_id):
            if snapshot.id in found:
                found[snapshot.id]["where"].append(shared.url)
            else:
                found[snapshot.id] = {**snapshot.summary(), "where": [shared.url]}
    return sorted(found.values(), key=lambda s: (s["taken_at"], s["id"]), reverse=True)


def find_snapshot(config: Config, snapshot_id: str, distribution_id: str,
                  shared: S3SnapshotStore | None = None) -> tuple[DistributionSnapshot, str | None]:
    """The snapshot from this machine, else from the shared store (a copy is then saved here, so that the
    run reads what was planned); the second value names the shared store it came from."""
    local = snapshot_store(config)
    if shared is None or local.exists(snapshot_id):
        return local.load(snapshot_id), None
    try:
        snapshot = shared.load(snapshot_id, snapshot_id.rsplit("-", 1)[0])
    except ValueError as exc:
        raise BadInput(f"shared snapshot {snapshot_id} is damaged ({exc})",
                       "pick another one with 'rollback infra cdn list'") from exc
    if snapshot is None:
        raise BadInput(f"no distribution snapshot {snapshot_id} in {local.directory} nor in {shared.url}",
                       "list them with 'rollback infra cdn list'")
    check_snapshot_target(snapshot, distribution_id)
    local.save(snapshot)
    return snapshot, shared.url


@dataclass
class CdnHandlers(StepHandlers):
    """The distribution's break-glass handlers: snapshot, ETag-guarded update, wait, pin."""

    layer = "edge"

    interval: float | None = None  # seconds between polls (None: the services' edge_interval)

    @property
    def adapter(self) -> EdgeAdapter:
        return self.services.edge()

    @property
    def shared(self) -> S3SnapshotStore | None:
        """Where snapshots are also written (``[cdn] snapshots_url``); ``None``: this machine only."""
        return self.services.cdn_snapshots()


    @staticmethod
    def _store(step: Step) -> SnapshotStore:
        return SnapshotStore(Path(str(step.params["directory"])))

    # --- snapshot -----------------------------------------------------------------------------------
    def check_snapshot(self, step: Step, ctx: StepContext) -> Check:
        would = f"save distribution {step.params['distribution']}'s config and ETag"
        earlier = ctx.earlier.get(step.id)
        if earlier is not None and earlier.get("path") and Path(str(earlier["path"])).exists():
            return Check(True, dict(earlier), would)
        return Check(False, {"would_save_in": str(step.params["directory"])}, would)

    @action("cdn.snapshot", check="check_snapshot")
    def snapshot(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        taken = take_snapshot(self.adapter, str(step.params["distribution"]), str(step.params.get("reason") or ""))
        path = self._store(step).save(taken)
        result: dict[str, Any] = {"snapshot": taken.id, "etag": taken.etag, "path": str(path),
                                  "taken_at": taken.taken_at, "restore": f"rollback infra cdn restore {taken.id}"}
        if step.params.get("shared"):
            result.update(self._share(taken, str(step.params["shared"]), ctx))
        return result

    def _share(self, taken: DistributionSnapshot, url: str, ctx: StepContext) -> dict[str, Any]:
        """Also write the snapshot to the shared store. A failure there is a warning, not a failed step:
        the local copy is the undo of this run, and a break-glass change must not wait on S3."""
        if self.shared is None:
            ctx.note(f"warning: snapshot {taken.id} is on this machine only (no S3 client for {url})",
                     level="warning")
            return {"shared": None}
        try:
            return {"shared": self.shared.save(taken)}
        except RollbackError as exc:
            ctx.note(f"warning: snapshot {taken.id} is on this machine only: {exc.message}", level="warning")
            return {"shared": None, "shared_error": exc.message}

    # --- update -------------------------------------------------------------------------------------
    def _target(self, step: Step, current: Mapping[str, Any]) -> dict[str, Any]:
        """The config to send: the snapshot's (as planned) or the current one with the new origin path;
        with the distribution's own ``CallerReference`` (CloudFront refuses to change it)."""
        if step.params["kind"] == "restore":
            snapshot = self._store(step).load(str(step.params["snapshot"]))
            planned = step.params.get("config_sha256")
            if planned and config_digest(snapshot.config) != planned:
                raise UnsafePrecondition(f"snapshot {snapshot.id} changed since the plan (its file was edited); "
                                         "nothing was sent", "run the command again to plan against it")
            return with_caller_reference(snapshot.config, current)
        return with_caller_reference(set_origin_path(current, str(step.params["origin"]),
                                                     str(step.params["origin_path"])), current)

    def check_update(self, step: Step, ctx: StepContext) -> Check:
        distribution = str(step.params["distribution"])
        fresh = self.adapter.get_config(distribution)
        would = f"update distribution {distribution} (IfMatch {step.params['etag']})"
        if _same(fresh.raw, self._target(step, fresh.raw)):
            return Check(True, {"changed": False, "etag": fresh.etag, "reason": "already as planned"}, would)
        return Check(False, {"changed": False, "if_match": step.params["etag"],
                             "would_change": [c.path for c in config_diff(fresh.raw,
                                                                           self._target(step, fresh.raw))]}, would)

    @action("cdn.update", check="check_update")
    def update(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        distribution, planned = str(step.params["distribution"]), str(step.params["etag"])
        fresh = self.adapter.get_config(distribution)
        body = self._target(step, fresh.raw)
        try:
            written = self.adapter.replace_config(distribution, body, planned)
        except StaleETag as exc:
            raise UnsafePrecondition(
                f"distribution {distribution} changed since the plan (IfMatch {planned}: 412 PreconditionFailed); "
                "nothing was overwritten",
                "see what changed ('rollback infra cdn snapshot' saves it as it is now), then run the command again "
                "to plan against it", details={"etag": planned}) from exc
        # Done only when every field reads back as sent: UpdateDistribution replaces the whole config.
        left = config_diff(written.raw, body)
        if left:
            shown = "; ".join(c.describe() for c in left[:5]) + (f" (and {len(left) - 5} more)" if len(left) > 5
                                                                  else "")
            raise OperationFailed(
                f"distribution {distribution} was updated (ETag {written.etag}) but {len(left)} field(s) read back "
                f"otherwise than sent: {shown}",
                "compare with 'rollback infra cdn snapshot' and fix those fields by hand; re-running the command "
                "sends the config again", details={"etag_after": written.etag, "fields": [c.path for c in left]})
        return {"changed": True, "etag_before": planned, "etag_after": written.etag,
                "fields": [c.path for c in config_diff(fresh.raw, body)]}

    # --- wait ---------------------------------------------------------------------------------------
    def check_wait(self, step: Step, ctx: StepContext) -> Check:
        would = f"wait until distribution {step.params['distribution']} is Deployed"
        update = ctx.results.get(step.sibling("update")) or {}
        if update.get("changed") is not True and "if_match" not in update \
                and self.adapter.status(str(step.params["distribution"])) == "Deployed":
            return Check(True, {"status": "Deployed", "seconds": 0.0}, would)
        return Check(False, {"would_wait_for": "Deployed", "timeout": float(step.params["timeout"])}, would)

    @action("cdn.wait", check="check_wait")
    def wait(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        status, seconds = self.adapter.wait_deployed(str(step.params["distribution"]),
                                                     timeout=float(step.params["timeout"]),
                                                     interval=self.interval if self.interval is not None
                                                     else self.services.settings.edge_interval,
                                                     progress=ctx.note)
        return {"status": status, "seconds": round(seconds, 3)}

    # --- pin ----------------------------------------------------------------------------------------
    @staticmethod
    def _pin_failed(step: Step, exc: RollbackError | OSError) -> OperationFailed:
        message = exc.message if isinstance(exc, RollbackError) else str(exc)
        stack = str(step.params["stack"])
        commands = "; ".join(f"pulumi config set {k} {v} --stack {stack}" for k, v in step.params["values"].items())
        return OperationFailed(f"CloudFront was changed, but writing the pins to {step.params['path']} failed: "
                               f"{message}", f"write them by hand, or the next pulumi up undoes the change: {commands}",
                               details={"pin_command": commands})

    def check_pin(self, step: Step, ctx: StepContext) -> Check:
        values = {str(k): str(v) for k, v in step.params["values"].items()}
        try:
            current = read_stack_config(Path(str(step.params["path"])))
        except (RollbackError, OSError) as exc:
            raise self._pin_failed(step, exc) from exc
        would = f"set {', '.join(f'{k} = {v}' for k, v in values.items())} in {step.params['path']}"
        if all(current.get(k) == v for k, v in values.items()):
            return Check(True, {"changed": False, "values": values, "path": str(step.params["path"])}, would)
        return Check(False, {"would_set": values, "current": {k: current.get(k) for k in values}}, would)

    @action("cdn.pin", check="check_pin")
    def pin(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        path = Path(str(step.params["path"]))
        values = {str(k): str(v) for k, v in step.params["values"].items()}
        try:
            before = read_stack_config(path)
            write_stack_config(path, values)
        except (RollbackError, OSError) as exc:
            raise self._pin_failed(step, exc) from exc
        return {"changed": True, "values": values, "before": {k: before.get(k) for k in values}, "path": str(path)}


# --------------------------------------------------------------------------- without the CLI


def cdn_handlers(services: Services, interval: float = 15.0) -> dict[str, StepHandler]:
    """The handlers of every ``cdn`` plan: its own steps and the invalidation."""
    return {**CdnHandlers(services, interval=interval).handlers(),
            **InvalidateHandlers(services, interval=interval).handlers()}


def prepare_restore(config: Config, services: Services, snapshot_id: str, *, pin: bool = True,
                    timeout: float = 1200.0) -> Prepared[CdnFacts]:
    """Plan putting the snapshot back on the environment's distribution (read-only), through
    ``services.edge()``; the snapshot comes from this machine, else from the shared store."""
    resources = resolve_resources(config, need=("distribution",), services=services)
    assert resources.distribution
    snapshot, source = find_snapshot(config, snapshot_id, resources.distribution, services.cdn_snapshots())
    return plan_restore(config, services.edge(), snapshot, distribution_id=resources.distribution,
                        function=resources.function, pin=pin, timeout=timeout, source=source)


def cdn_document(planned: Prepared[CdnFacts], outcome: ExecutionResult) -> dict[str, Any]:
    """What ``infra cdn restore|release`` prints with ``--json``."""
    results = {item.step.id: dict(item.result) for item in outcome.steps}
    return {"ok": True, "dry_run": outcome.dry_run, **planned.to_dict(), "run": outcome.to_dict(), "results": results}


def run_cdn(planned: Prepared[CdnFacts], services: Services, *, interval: float = 15.0, dry_run: bool = False,
            journal: Journal | None = None) -> dict[str, Any]:
    """Execute a planned ``cdn restore|release`` without the CLI (no confirmation asked)."""
    outcome = planned.with_handlers(cdn_handlers(services, interval)).run(journal=journal, dry_run=dry_run).go()
    return cdn_document(planned, outcome)
