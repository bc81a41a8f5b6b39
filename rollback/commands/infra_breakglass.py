"""Break-glass infrastructure restores straight through boto3, for when the Pulumi
path is too slow or broken: ``edge``, ``assets``, ``invalidate`` and ``drift``.

Each state-changing verb is split in two: ``plan_*`` reads and returns a
:class:`~rollback.plan.Plan` (nothing changes); :class:`EdgeHandlers`,
:class:`AssetsHandlers` and :class:`InvalidateHandlers` hold the step handlers
(a read-only check and an act each) that :func:`rollback.runner.execute` runs,
journaled, dry run or not. The handlers carry out exactly the planned change,
read from the step's params; where the world moved in between (a stale
CloudFront ETag, an S3 key written since the plan), they re-check and stop
rather than overwrite someone else's change.

Resources come from the command line (``--distribution``, ``--function``,
``--bucket``), else ``[env.<name>.aws]`` in rollback.toml, else (with
``aws.from_stack_outputs``) the Pulumi stack's outputs.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rollback.errors import AwsError, BadInput, ConfigError, OperationFailed, RollbackError, UnsafePrecondition
from rollback.plan import Plan, Step
from rollback.runner import Check, handler
from rollback.units import format_duration

if TYPE_CHECKING:
    from rollback.adapters.aws import AwsClients
    from rollback.adapters.cloudfront import DistributionConfig, EdgeAdapter
    from rollback.adapters.s3_versions import KeyAction, ObjectVersion, S3Versions
    from rollback.config import Config
    from rollback.runner import StepContext, StepHandler

__all__ = [
    "EDGE_PIN_KEY",
    "AssetsHandlers",
    "EdgeHandlers",
    "EdgePlan",
    "InvalidateHandlers",
    "Resources",
    "aws_clients",
    "drift",
    "edge_adapter",
    "edge_summary",
    "load_checkpoint_file",
    "pin_command",
    "plan_assets",
    "plan_edge",
    "plan_invalidate",
    "resolve_resources",
    "s3_versions",
]

EDGE_PIN_KEY = "edgeFunctionVersion"
EDGE_REGION = "us-east-1"  # Lambda@Edge functions (and CloudFront's API) live here

_RESOURCE_KEYS = {
    # name: (config attribute, stack output, option)
    "distribution": ("distribution_id", "distributionId", "--distribution"),
    "function": ("edge_function", "edgeFunctionName", "--function"),
    "bucket": ("assets_bucket", "assetsBucket", "--bucket"),
}


# --------------------------------------------------------------------------- resources and clients


@dataclass(frozen=True)
class Resources:
    distribution: str | None = None
    function: str | None = None
    bucket: str | None = None
    sources: Mapping[str, str] = field(default_factory=dict)  # name -> option | config | stack outputs

    def to_dict(self) -> dict[str, Any]:
        return {"distribution": self.distribution, "function": self.function, "bucket": self.bucket,
                "sources": dict(self.sources)}


def _stack_outputs(config: Config) -> Mapping[str, Any]:
    from rollback.commands.infra_stack import stack_outputs

    return stack_outputs(config)


def resolve_resources(config: Config, *, need: Sequence[str], distribution: str | None = None,
                      function: str | None = None, bucket: str | None = None) -> Resources:
    """The resources a command needs: option, else rollback.toml, else the stack's outputs."""
    given = {"distribution": distribution, "function": function, "bucket": bucket}
    values: dict[str, str | None] = {}
    sources: dict[str, str] = {}
    outputs: Mapping[str, Any] | None = None
    outputs_error: str | None = None
    outputs_read = False
    for name in ("distribution", "function", "bucket"):
        attribute, output, option = _RESOURCE_KEYS[name]
        value = given[name] or getattr(config.env.aws, attribute)
        source = "option" if given[name] else "config"
        if not value and name in need and config.env.aws.from_stack_outputs:
            if not outputs_read:
                outputs_read = True
                try:
                    outputs = _stack_outputs(config)
                except RollbackError as exc:
                    outputs_error = exc.message
            if outputs and outputs.get(output):
                value, source = str(outputs[output]), "stack outputs"
        if not value and name in need:
            key = f"env.{config.env_name}.aws.{attribute}"
            why = f" (reading the stack outputs failed: {outputs_error})" if outputs_error else ""
            raise ConfigError(f"no {name} to act on: {key} is not set{why}",
                              f"set {attribute} under [env.{config.env_name}.aws] in rollback.toml, or pass {option}",
                              key=key)
        values[name] = value or None
        if value:
            sources[name] = source
    return Resources(values["distribution"], values["function"], values["bucket"], sources)


def aws_clients(config: Config) -> AwsClients:
    from rollback.adapters.aws import AwsClients, make_session

    return AwsClients(make_session(config.env.aws.region))


def edge_adapter(clients: AwsClients) -> EdgeAdapter:
    from rollback.adapters.cloudfront import EdgeAdapter

    return EdgeAdapter(clients.client("cloudfront", EDGE_REGION), clients.client("lambda", EDGE_REGION))


def s3_versions(clients: AwsClients) -> S3Versions:
    from rollback.adapters.s3_versions import S3Versions

    return S3Versions(clients.client("s3"))


# --------------------------------------------------------------------------- edge


def _pin_target(config: Config) -> tuple[Path, str, str]:
    """``(stack config file, qualified pin key, stack name)``."""
    from rollback.adapters.stack_config import qualify_key, stack_config_path

    pulumi = config.env.pulumi
    if pulumi is None:
        raise ConfigError(
            f"environment {config.env_name!r} has no [env.{config.env_name}.pulumi] section, so the edge pin "
            "cannot be written to the stack config",
            f"add [env.{config.env_name}.pulumi] with stack = \"...\", or pass --no-pin and pin the version by hand",
            key=f"env.{config.env_name}.pulumi")
    from rollback.commands.infra_stack import stack_ref

    ref = stack_ref(config)
    path = stack_config_path(config.resolve_path(pulumi.project_dir), ref.name)
    if not path.exists():
        # Creating it would hide a wrong project_dir / stackConfigDir: the pin would land where Pulumi never looks.
        raise ConfigError(f"stack config file {path} does not exist, so the edge pin cannot be written",
                          "check pulumi.project_dir and pulumi.stack in rollback.toml (and stackConfigDir in "
                          "Pulumi.yaml), or pass --no-pin and pin the version by hand",
                          key=f"env.{config.env_name}.pulumi.project_dir")
    return path, qualify_key(EDGE_PIN_KEY, ref.project), pulumi.stack


def _short(config: Config, path: Path) -> str:
    """``path`` relative to the config's directory when it is inside it."""
    try:
        return str(path.resolve().relative_to(config.root.resolve()))
    except ValueError:
        return str(path)


def pin_command(key: str, version: str, stack: str) -> str:
    return f"pulumi config set {key} {version} --stack {stack}"


@dataclass(frozen=True)
class EdgePlan:
    """A planned edge rollback: the plan, and what it was planned against."""

    plan: Plan
    distribution_id: str
    function: str
    to_version: str
    to_arn: str
    etag: str
    associations: tuple[Mapping[str, Any], ...]  # the associations of the function when planned
    behaviours: tuple[str, ...]
    from_versions: tuple[str, ...]
    config: DistributionConfig = field(repr=False, compare=False)
    pin: Mapping[str, str] | None = None  # path, key, stack, value

    @property
    def unchanged(self) -> bool:
        return all(a["arn"] == self.to_arn for a in self.associations)

    def to_dict(self) -> dict[str, Any]:
        return {"distribution": self.distribution_id, "function": self.function, "to_version": self.to_version,
                "to_arn": self.to_arn, "etag": self.etag, "behaviours": list(self.behaviours),
                "from_versions": list(self.from_versions), "associations": [dict(a) for a in self.associations],
                "unchanged": self.unchanged, "pin": dict(self.pin) if self.pin else None,
                "plan": self.plan.to_dict()}


def _versions_text(versions: Sequence[str]) -> str:
    unique = sorted(set(versions), key=lambda v: int(v) if v.isdigit() else -1)
    return ("version " if len(unique) == 1 else "versions ") + ", ".join(unique)


def plan_edge(config: Config, adapter: EdgeAdapter, *, to_version: int, distribution_id: str, function: str,
              pin: bool = True, timeout: float = 1200.0) -> EdgePlan:
    """Read the distribution and the function's versions; plan the association swap, the wait and the pin."""
    from rollback.adapters.cloudfront import function_name_of

    if to_version < 1:
        raise BadInput(f"--to-version must be a published version number (1 or more), got {to_version}")
    name = function_name_of(function)
    version = str(to_version)
    pin_target = _pin_target(config) if pin else None
    target = adapter.get_version(name, version)
    if target is None:
        published = [v.version for v in adapter.function_versions(name)]
        raise BadInput(f"version {version} of function {name} does not exist",
                       f"published versions: {', '.join(published) or 'none'}", details={"available": published})
    current = adapter.get_config(distribution_id)
    mine = current.associations_of(name)
    if not mine:
        others = ", ".join(f"{a.behaviour}: {a.arn}" for a in current.associations) or "none"
        raise BadInput(f"distribution {distribution_id} has no behaviour using function {name}",
                       f"its edge associations: {others}; check --function / aws.edge_function")
    behaviours = tuple(dict.fromkeys(a.behaviour for a in mine))
    from_versions = tuple(a.version or a.arn for a in mine)
    associations = tuple(a.to_dict() for a in mine)
    unchanged = all(a.arn == target.arn for a in mine)
    from rollback.commands.infra_cdn import snapshot_step

    steps = [] if unchanged else [snapshot_step(config, distribution_id, f"before moving {name} to version {version}")]
    steps += [Step(
        id="associate", action="edge.associate", target=f"distribution {distribution_id}",
        summary=(f"edge function {name}: already on version {version} on behaviours [{', '.join(behaviours)}]"
                 if unchanged else
                 f"edge function {name}: {_versions_text(from_versions)} -> {version} on behaviours "
                 f"[{', '.join(behaviours)}] (IfMatch {current.etag})"),
        params={"distribution": distribution_id, "function": name, "to_version": version, "to_arn": target.arn,
                "etag": current.etag, "behaviours": list(behaviours), "associations": [dict(a) for a in associations],
                "unchanged": unchanged},
        destructive=not unchanged,
    ), Step(
        id="wait", action="edge.wait", target=f"distribution {distribution_id}",
        summary=f"wait until it is Deployed (at most {format_duration(timeout)})",
        params={"distribution": distribution_id, "timeout": timeout},
    )]
    pin_info: dict[str, str] | None = None
    notes = [f"Lambda@Edge replicas take a while to drop {_versions_text(from_versions)}; "
             "CloudFront serves the new version as the distribution deploys."]
    if pin_target is not None:
        path, key, stack = pin_target
        pin_info = {"path": str(path), "key": key, "stack": stack, "value": version}
        steps.append(Step(
            id="pin", action="edge.pin", target=f"stack {stack}",
            summary=f"pin {key} = {version} in {_short(config, path)} so the next pulumi up keeps it",
            params={**pin_info, "function": name}, destructive=False, layer="edge",
        ))
    else:
        notes.append(f"--no-pin: the stack config is not changed; the next pulumi up will put back the version "
                     f"the stack pins unless you run: pulumi config set <project>:{EDGE_PIN_KEY} {version}")
    plan = Plan.of(f"break-glass edge rollback: {name} -> version {version}", config.env_name, steps, notes)
    return EdgePlan(plan, distribution_id, name, version, target.arn, current.etag, associations, behaviours,
                    from_versions, current, pin_info)


def _changed_by_someone(function: str, planned: Sequence[Mapping[str, Any]], fresh: DistributionConfig) -> str | None:
    """Why re-applying on ``fresh`` would overwrite someone else's change, or ``None`` when it would not."""
    now = {(a.behaviour, a.event_type): a.arn for a in fresh.associations_of(function)}
    then = {(str(a["behaviour"]), str(a["event_type"])): str(a["arn"]) for a in planned}
    for key in sorted(set(now) | set(then)):
        behaviour, event = key
        if key not in now:
            return f"behaviour {behaviour} ({event}) no longer uses function {function}"
        if key not in then:
            return f"behaviour {behaviour} ({event}) now also uses {now[key]}"
        if now[key] != then[key]:
            return f"behaviour {behaviour} ({event}) now uses {now[key]} (planned to change {then[key]})"
    return None


@dataclass
class EdgeHandlers:
    """The edge layer's handlers: swap the Lambda@Edge associations (ETag-guarded), wait for the
    distribution to deploy, pin the version in the stack config. ``interval``: seconds between polls."""

    adapter: EdgeAdapter
    interval: float = 15.0
    ramp: bool = False  # poll often at first (see EdgeAdapter.wait_deployed)

    def handlers(self) -> dict[str, StepHandler]:
        return {"edge.associate": handler(self.associate, self.check_associate),
                "edge.wait": handler(self.wait, self.check_wait),
                "edge.pin": handler(self.pin, self.check_pin)}

    def check_associate(self, step: Step, ctx: StepContext) -> Check:
        p = step.params
        distribution, function, to_arn = str(p["distribution"]), str(p["function"]), str(p["to_arn"])
        fresh = self.adapter.get_config(distribution)
        mine = fresh.associations_of(function)
        would = (f"update distribution {distribution}: {function} -> version {p['to_version']} on behaviours "
                 f"[{', '.join(p['behaviours'])}] (IfMatch {p['etag']})")
        if mine and all(a.arn == to_arn for a in mine):
            return Check(True, {"changed": False, "etag": fresh.etag, "arn": to_arn,
                                "reason": f"already on version {p['to_version']}"}, would)
        return Check(False, {"changed": False, "would_update": list(p["behaviours"]), "if_match": p["etag"],
                             "to_arn": to_arn}, would)

    def associate(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        from rollback.adapters.cloudfront import StaleETag, swap_associations

        p = step.params
        distribution, function, to_arn = str(p["distribution"]), str(p["function"]), str(p["to_arn"])
        planned_etag, behaviours = str(p["etag"]), [str(b) for b in p["behaviours"]]
        fresh = self.adapter.get_config(distribution)
        if fresh.etag == planned_etag:
            body = swap_associations(fresh.raw, function, to_arn, behaviours)
            try:
                new_etag = self.adapter.update_config(distribution, body, planned_etag)
                return {"changed": True, "etag_before": planned_etag, "etag_after": new_etag, "arn": to_arn,
                        "retried": False}
            except StaleETag:
                pass
            fresh = self.adapter.get_config(distribution)
        ctx.note(f"distribution {distribution} changed since the plan (ETag {planned_etag} is stale); "
                 "re-reading it once")
        reason = _changed_by_someone(function, list(p["associations"]), fresh)
        if reason is not None:
            raise UnsafePrecondition(
                f"distribution {distribution} was changed by someone else since the plan: {reason}; "
                "not overwriting it",
                "nothing was changed by this run; find out who changed it, then run the command again to plan "
                "against the new state", details={"reason": reason})
        ctx.note(f"the edge associations are as planned (ETag now {fresh.etag}); retrying once")
        body = swap_associations(fresh.raw, function, to_arn, behaviours)
        try:
            new_etag = self.adapter.update_config(distribution, body, fresh.etag)
        except StaleETag as exc:
            raise AwsError(
                f"distribution {distribution} changed again while retrying (ETag {fresh.etag} is stale); "
                "stopped after one retry",
                "nothing was changed by this run; wait for the other change to finish, then run the command again",
                code="PreconditionFailed") from exc
        return {"changed": True, "etag_before": fresh.etag, "etag_planned": planned_etag, "etag_after": new_etag,
                "arn": to_arn, "retried": True}

    def check_wait(self, step: Step, ctx: StepContext) -> Check:
        timeout = float(step.params["timeout"])
        would = f"wait until distribution {step.params['distribution']} is Deployed"
        earlier = ctx.earlier.get(step.id)
        if earlier is not None:  # the deploy it waited for ended; a later change is another deploy's
            return Check(True, dict(earlier), would)
        associate = ctx.results.get(step.sibling("associate")) or {}
        # Read the status only when the associations were not just changed (or, in a dry run, to be
        # changed): right after a change the distribution is deploying, and the wait reads it anyway.
        settled = "would_update" not in associate and associate.get("changed") is not True
        if settled and self.adapter.status(str(step.params["distribution"])) == "Deployed":
            return Check(True, {"status": "Deployed", "seconds": 0.0}, would)
        return Check(False, {"would_wait_for": "Deployed", "timeout": timeout}, would)

    def wait(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        status, seconds = self.adapter.wait_deployed(str(step.params["distribution"]),
                                                     timeout=float(step.params["timeout"]), interval=self.interval,
                                                     progress=ctx.note, ramp=self.ramp)
        return {"status": status, "seconds": round(seconds, 3)}

    @staticmethod
    def _pin_failed(step: Step, ctx: StepContext, exc: RollbackError | OSError) -> OperationFailed:
        key, stack, value, path = (str(step.params["key"]), str(step.params["stack"]), str(step.params["value"]),
                                   str(step.params["path"]))
        changed = ctx.results.get(step.sibling("associate"), {})
        message = exc.message if isinstance(exc, RollbackError) else str(exc)
        function = str(step.params.get("function") or "the edge function")
        applied = (f"CloudFront now uses {function} version {value}"
                   + (f" (ETag {changed['etag_after']})" if changed.get("etag_after") else ""))
        return OperationFailed(
            f"{applied}, but writing the pin to {path} failed: {message}",
            f"write it by hand, or the next pulumi up undoes the rollback: {pin_command(key, value, stack)}",
            details={"pin_command": pin_command(key, value, stack)})

    def check_pin(self, step: Step, ctx: StepContext) -> Check:
        from rollback.adapters.stack_config import read_stack_config

        path, key, value = Path(step.params["path"]), str(step.params["key"]), str(step.params["value"])
        try:
            before = read_stack_config(path).get(key)
        except (RollbackError, OSError) as exc:
            raise self._pin_failed(step, ctx, exc) from exc
        would = f"set {key} = {value} in {path}"
        if before == value:
            return Check(True, {"changed": False, "key": key, "value": value, "path": str(path)}, would)
        return Check(False, {"would_set": {key: value}, "current": before, "path": str(path)}, would)

    def pin(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        from rollback.adapters.stack_config import read_stack_config, write_stack_config

        path, key, value = Path(step.params["path"]), str(step.params["key"]), str(step.params["value"])
        try:
            before = read_stack_config(path).get(key)
            write_stack_config(path, {key: value})
        except (RollbackError, OSError) as exc:
            raise self._pin_failed(step, ctx, exc) from exc
        return {"changed": True, "key": key, "before": before, "value": value, "path": str(path)}


def edge_summary(edge: EdgePlan, results: Mapping[str, Mapping[str, Any]]) -> str:
    """``edge function X: version 7 -> 6 on behaviours [default, /api/*]; ETag E1 -> E2``."""
    associate = results.get("associate", {})
    behaviours = ", ".join(edge.behaviours)
    if edge.unchanged:
        text = f"edge function {edge.function}: already on version {edge.to_version} on behaviours [{behaviours}]"
    else:
        text = (f"edge function {edge.function}: {_versions_text(edge.from_versions)} -> {edge.to_version} "
                f"on behaviours [{behaviours}]")
        if associate.get("etag_after"):
            text += f"; ETag {associate.get('etag_before', edge.etag)} -> {associate['etag_after']}"
    pin = results.get("pin")
    if pin and edge.pin:
        if "would_set" in pin:
            text += f"; would pin {edge.pin['key']} = {edge.to_version}"
        elif pin.get("changed"):
            text += f"; pinned {edge.pin['key']} = {edge.to_version}"
        elif "changed" in pin:
            text += f"; pin {edge.pin['key']} already {edge.to_version}"
    return text


# --------------------------------------------------------------------------- assets


@dataclass(frozen=True)
class AssetsPlan:
    plan: Plan
    bucket: str
    actions: tuple[KeyAction, ...]
    versioning: str

    def to_dict(self) -> dict[str, Any]:
        return {"bucket": self.bucket, "versioning": self.versioning,
                "actions": [a.to_dict() for a in self.actions],
                "changes": sum(1 for a in self.actions if a.changes), "plan": self.plan.to_dict()}


def stamp(moment: dt.datetime) -> str:
    """``2026-11-28T09:30:00Z`` (milliseconds only when there are some)."""
    spec = "milliseconds" if moment.microsecond else "seconds"
    return moment.astimezone(dt.UTC).isoformat(timespec=spec).replace("+00:00", "Z")


def plan_assets(config: Config, store: S3Versions, *, bucket: str, key: str | None = None,
                prefix: str | None = None, to_version: str | None = None, before: dt.datetime | None = None,
                undelete: bool = False, keep_new: bool = False) -> AssetsPlan:
    """Plan the per-key restores (one step per key that changes)."""
    from rollback.adapters.s3_versions import group_by_key, plan_key

    if (key is None) == (prefix is None):
        raise BadInput("choose exactly one of --key and --prefix")
    if sum((to_version is not None, before is not None, undelete)) != 1:
        raise BadInput("choose exactly one of --to-version, --before and --undelete")
    if to_version is not None and prefix is not None:
        raise BadInput("--to-version names one version of one key: use it with --key",
                       "for a prefix, use --before TIME or --undelete")
    if keep_new and before is None:
        raise BadInput("--keep-new only applies with --before")
    versioning = store.versioning(bucket)
    if versioning == "Disabled":
        raise UnsafePrecondition(f"bucket {bucket} has never had versioning enabled: there are no old versions "
                                 "to restore", "enable versioning (the stack does) so the next incident has them")
    versions = store.list_versions(bucket, key=key, prefix=prefix)
    if key is not None and not versions:
        raise BadInput(f"s3://{bucket}/{key} has no versions", "check the key (it is case-sensitive)")
    by_key = group_by_key(versions)
    actions = tuple(plan_key(k, v, to_version=to_version, before=before, undelete=undelete, keep_new=keep_new)
                    for k, v in by_key.items())
    if versioning == "Suspended":
        # With versioning suspended, copy_object and an unversioned delete_object write the version
        # "null", replacing the one already there: that content would be gone for good.
        at_risk = [a.key for a in actions if a.action in ("copy", "delete")
                   and any(v.version_id == "null" and not v.is_delete_marker for v in by_key[a.key])]
        if at_risk:
            shown = ", ".join(at_risk[:5]) + (f" and {len(at_risk) - 5} more" if len(at_risk) > 5 else "")
            raise UnsafePrecondition(
                f"bucket {bucket} has versioning suspended: restoring {shown} would overwrite or remove its "
                "null version for good",
                f"re-enable versioning first: aws s3api put-bucket-versioning --bucket {bucket} "
                "--versioning-configuration Status=Enabled", details={"keys": at_risk})
    steps = [Step(id=f"key-{number}", action="s3.restore", target=f"s3://{bucket}", summary=action.describe(),
                  params={"bucket": bucket, **action.to_dict(), "size": action.size},
                  destructive=True)
             for number, action in enumerate((a for a in actions if a.changes), start=1)]
    unchanged = sum(1 for a in actions if not a.changes)
    what = f"s3://{bucket}/{key}" if key is not None else f"s3://{bucket}/{prefix or ''}*"
    mode = f"version {to_version}" if to_version else f"state at {stamp(before)}" if before else "undelete"
    notes = [f"{unchanged} key(s) need no change"] if unchanged else []
    deleting = sum(1 for a in actions if a.action == "delete")
    if deleting:
        notes.append(f"{deleting} key(s) did not exist (or were deleted) at that time and get a delete marker; "
                     "no version is removed (undo with --undelete); --keep-new leaves keys created since alone")
    if versioning == "Suspended":
        notes.append(f"bucket {bucket} has versioning suspended: a restored key's new version is 'null', which the "
                     "next write replaces (re-enable versioning to keep it)")
    return AssetsPlan(Plan.of(f"restore {what} ({mode})", config.env_name, steps, notes), bucket, actions,
                      versioning)


def _key_action(step: Step) -> KeyAction:
    from rollback.adapters.s3_versions import KeyAction

    p = step.params
    return KeyAction(str(p["key"]), str(p["action"]), str(p["reason"]), p.get("current_version"),
                     p.get("target_version"), tuple(p.get("markers") or ()), p.get("size"))


@dataclass
class AssetsHandlers:
    """The assets layer's handler: put one key of a versioned bucket back (copy an old version over
    it, remove delete markers, or add one). Never deletes a version."""

    store: S3Versions

    def handlers(self) -> dict[str, StepHandler]:
        return {"s3.restore": handler(self.restore, self.check_restore)}

    def check_restore(self, step: Step, ctx: StepContext) -> Check:
        """Done when the key is already as this step leaves it; refused when someone wrote it since the plan."""
        from rollback.adapters.s3_versions import newest_first

        bucket, action = str(step.params["bucket"]), _key_action(step)
        would = action.describe()
        versions = newest_first(self.store.list_versions(bucket, key=action.key))
        latest = versions[0] if versions else None
        now = latest.version_id if latest is not None else None
        done = self._already(action, versions)
        if done is not None:
            return Check(True, done, would)
        if now != action.current_version:
            raise UnsafePrecondition(
                f"s3://{bucket}/{action.key} changed since the plan (current version {now}, "
                f"planned over {action.current_version})",
                "someone else wrote it; run the command again to plan against the new state")
        return Check(False, {"key": action.key, "action": action.action}, would)

    @staticmethod
    def _already(action: KeyAction, versions: Sequence[ObjectVersion]) -> dict[str, Any] | None:
        if not versions or versions[0].version_id == action.current_version:
            return None
        latest = versions[0]
        if action.action == "copy":
            target = next((v for v in versions if v.version_id == action.target_version), None)
            if (target is not None and not latest.is_delete_marker and latest.etag and latest.etag == target.etag
                    and latest.last_modified >= target.last_modified):
                return {"key": action.key, "action": "copy", "from_version": action.target_version,
                        "new_version": latest.version_id}
        if action.action == "remove-delete-markers":
            left = {v.version_id for v in versions} & set(action.markers)
            if latest.version_id == action.target_version and not left:
                return {"key": action.key, "action": "remove-delete-markers", "removed": list(action.markers),
                        "current_version": action.target_version}
        if action.action == "delete" and latest.is_delete_marker and any(
                v.version_id == action.current_version for v in versions[1:]):
            return {"key": action.key, "action": "delete", "delete_marker": latest.version_id}
        return None

    def restore(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        # The check just read the key and found it as planned.
        return self.store.apply(str(step.params["bucket"]), _key_action(step), check=False)


# --------------------------------------------------------------------------- invalidate


def plan_invalidate(config: Config, *, distribution_id: str, paths: Sequence[str], wait: bool,
                    timeout: float = 900.0) -> Plan:
    cleaned = [p.strip() for p in paths if p.strip()]
    if not cleaned:
        raise BadInput("no paths to invalidate", 'pass --paths "/*" or one or more paths starting with /')
    bad = [p for p in cleaned if not p.startswith("/")]
    if bad:
        raise BadInput(f"invalidation paths must start with '/': {', '.join(bad)}")
    steps = [Step(id="invalidate", action="cloudfront.invalidate", target=f"distribution {distribution_id}",
                  summary=f"invalidate {', '.join(cleaned)}",
                  params={"distribution": distribution_id, "paths": cleaned,
                          "caller_reference": f"rollback-{uuid.uuid4().hex}"})]
    if wait:
        steps.append(Step(id="wait", action="cloudfront.wait_invalidation", target=f"distribution {distribution_id}",
                          summary=f"wait until the invalidation is Completed (at most {format_duration(timeout)})",
                          params={"distribution": distribution_id, "timeout": timeout}))
    return Plan.of(f"invalidate distribution {distribution_id}", config.env_name, steps)


@dataclass
class InvalidateHandlers:
    """Create a CloudFront invalidation (its CallerReference is planned, so a resumed run that sends it
    again gets the same invalidation back) and wait for it to complete."""

    adapter: EdgeAdapter
    interval: float = 10.0
    ramp: bool = False

    def handlers(self) -> dict[str, StepHandler]:
        return {"cloudfront.invalidate": handler(self.invalidate, self.check_invalidate),
                "cloudfront.wait_invalidation": handler(self.wait, self.check_wait)}

    def check_invalidate(self, step: Step, ctx: StepContext) -> Check:
        paths = [str(p) for p in step.params["paths"]]
        earlier = ctx.earlier.get(step.id)
        if earlier is not None:
            return Check(True, dict(earlier), f"invalidate {', '.join(paths)}")
        return Check(False, {"would_invalidate": paths}, f"invalidate {', '.join(paths)}")

    def invalidate(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        paths = [str(p) for p in step.params["paths"]]
        reference = str(step.params.get("caller_reference") or f"rollback-{uuid.uuid4().hex}")
        return self.adapter.create_invalidation(str(step.params["distribution"]), paths, reference).to_dict()

    def check_wait(self, step: Step, ctx: StepContext) -> Check:
        would = "wait until the invalidation is Completed"
        earlier = ctx.earlier.get(step.id)
        if earlier is not None:
            return Check(True, dict(earlier), would)
        created = ctx.results.get(step.sibling("invalidate")) or {}
        if created.get("id"):
            status = self.adapter.invalidation_status(str(step.params["distribution"]), str(created["id"]))
            if status == "Completed":
                return Check(True, {"id": created["id"], "status": status, "seconds": 0.0}, would)
        return Check(False, {"would_wait_for": "Completed"}, would)

    def wait(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        invalidation_id = str(ctx.results[step.sibling("invalidate")]["id"])
        status, seconds = self.adapter.wait_invalidation(str(step.params["distribution"]), invalidation_id,
                                                         timeout=float(step.params["timeout"]),
                                                         interval=self.interval, progress=ctx.note, ramp=self.ramp)
        return {"id": invalidation_id, "status": status, "seconds": round(seconds, 3)}


# --------------------------------------------------------------------------- drift


def load_checkpoint_file(path: Path) -> list[Mapping[str, Any]]:
    """Resources from ``pulumi stack export`` output or a self-managed backend's stack file."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise BadInput(f"{path} is not JSON: {exc}", "pass the output of 'pulumi stack export'") from exc
    node: Any = document
    for step in ("deployment", "checkpoint", "latest"):
        if isinstance(node, Mapping) and isinstance(node.get(step), Mapping):
            node = node[step]
    resources = node.get("resources") if isinstance(node, Mapping) else None
    if not isinstance(resources, list):
        raise BadInput(f"{path} has no resources", "pass the output of 'pulumi stack export' or a checkpoint file")
    return [r for r in resources if isinstance(r, Mapping)]


def _checkpoint_resources(config: Config, checkpoint: Path | None) -> tuple[list[Mapping[str, Any]], str]:
    if checkpoint is not None:
        return load_checkpoint_file(checkpoint), str(checkpoint)
    from rollback.commands.infra_stack import open_source

    source = open_source(config)
    state = source.current()
    described = source.describe()
    where = str(described.get("url") or described.get("stack") or described.get("kind"))
    return list(state.resources), where


def _missing(exc: AwsError, *codes: str) -> bool:
    return str(getattr(exc, "code", "")) in codes


def drift(config: Config, clients: AwsClients, *, checkpoint: Path | None = None) -> dict[str, Any]:
    """Compare the live edge, functions, bucket versioning and alarms with the stack's last checkpoint.

    Everything of those kinds in the checkpoint is compared; resources named in
    ``[env.<name>.aws]`` but absent from the checkpoint are reported as notes
    (the config may point at the wrong stack).
    """
    from rollback.adapters.cloudfront import CloudWatchAlarms, function_name_of
    from rollback.drift import Live, LiveAlarm, LiveDistribution, compare, expected_from_checkpoint

    resources, source = _checkpoint_resources(config, checkpoint)
    expected = expected_from_checkpoint(resources)
    adapter = edge_adapter(clients)
    store = s3_versions(clients)
    notes: list[str] = []
    aws = config.env.aws
    if aws.distribution_id and aws.distribution_id not in expected.distributions:
        notes.append(f"distribution {aws.distribution_id} (aws.distribution_id) is not in the checkpoint")
    if aws.edge_function and function_name_of(aws.edge_function) not in expected.functions:
        notes.append(f"function {aws.edge_function} (aws.edge_function) is not in the checkpoint")
    if aws.assets_bucket and aws.assets_bucket not in expected.buckets:
        notes.append(f"bucket {aws.assets_bucket} (aws.assets_bucket) is not in the checkpoint")

    live_distributions: dict[str, LiveDistribution | None] = {}
    for distribution_id in expected.distributions:
        try:
            read = adapter.get_config(distribution_id)
        except AwsError as exc:
            if not _missing(exc, "NoSuchDistribution"):
                raise
            live_distributions[distribution_id] = None
            continue
        live_distributions[distribution_id] = LiveDistribution(
            distribution_id, {(a.behaviour, a.event_type): a.arn for a in read.associations},
            {o.id: o.origin_path for o in read.origins})
    live_functions: dict[str, Sequence[str] | None] = {}
    for name in expected.functions:
        try:
            live_functions[name] = [v.version for v in adapter.function_versions(name)]
        except AwsError as exc:
            if not _missing(exc, "ResourceNotFoundException"):
                raise
            live_functions[name] = None
    live_buckets: dict[str, str | None] = {}
    for name in expected.buckets:
        try:
            live_buckets[name] = store.versioning(name)
        except AwsError as exc:
            if not _missing(exc, "NoSuchBucket"):
                raise
            live_buckets[name] = None
    alarms = CloudWatchAlarms(clients.client("cloudwatch")).describe(sorted(expected.alarms))
    live_alarms = {name: LiveAlarm(a.name, a.metric, a.namespace, a.threshold, a.comparison, a.actions_enabled)
                   for name, a in alarms.items()}
    live = Live(live_distributions, live_functions, live_buckets, live_alarms)
    differences = compare(expected, live)
    return {
        "checkpoint": source,
        "checked": {"distributions": sorted(expected.distributions), "functions": sorted(expected.functions),
                    "buckets": sorted(expected.buckets), "alarms": sorted(expected.alarms)},
        "differences": [d.to_dict() for d in differences],
        "drift": bool(differences),
        "notes": notes,
    }

