"""``rollback infra edge``: put a Lambda@Edge version back on the distribution, straight through
CloudFront, then pin it in the stack config.

:func:`plan_edge` reads and returns the plan with its :class:`EdgeFacts` (nothing changes); :class:`EdgeHandlers`
carries out exactly the planned swap, guarded by the distribution's ETag: where someone changed the
distribution in between, it re-reads once and stops rather than overwrite their change.
:func:`prepare_edge` resolves the resources and builds the plan and its handlers from a
:class:`~rollback.context.Services`; :func:`run_edge` also executes it (a library caller's ``infra edge``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rollback.actions import StepHandlers, action
from rollback.adapters.cloudfront import DistributionConfig, EdgeAdapter, function_name_of, swap_associations
from rollback.adapters.stack_config import read_stack_config, write_stack_config
from rollback.commands.infra.cdn import CdnHandlers, snapshot_step
from rollback.commands.infra.resources import (
    EDGE_PIN_KEY,
    Resources,
    pin_command,
    pin_target,
    resolve_resources,
    short_path,
)
from rollback.config import Config
from rollback.context import Services
from rollback.errors import AwsError, BadInput, OperationFailed, RollbackError, StaleETag, UnsafePrecondition
from rollback.journal import Journal
from rollback.plan import Plan, Step
from rollback.runner import Check, ExecutionResult, Prepared, StepContext
from rollback.units import format_duration

__all__ = ["EdgeFacts", "EdgeHandlers", "edge_document", "edge_summary", "plan_edge", "prepare_edge",
           "run_edge"]


@dataclass(frozen=True)
class EdgeFacts:
    """What an edge rollback was planned against (the facts of its :class:`~rollback.runner.Prepared`)."""

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
    resources: Resources | None = field(default=None, repr=False, compare=False)
    """How the distribution and function were found (:func:`prepare_edge`)."""

    @property
    def unchanged(self) -> bool:
        return all(a["arn"] == self.to_arn for a in self.associations)

    def to_dict(self) -> dict[str, Any]:
        return {"distribution": self.distribution_id, "function": self.function, "to_version": self.to_version,
                "to_arn": self.to_arn, "etag": self.etag, "behaviours": list(self.behaviours),
                "from_versions": list(self.from_versions), "associations": [dict(a) for a in self.associations],
                "unchanged": self.unchanged, "pin": dict(self.pin) if self.pin else None}


def _versions_text(versions: Sequence[str]) -> str:
    unique = sorted(set(versions), key=lambda v: int(v) if v.isdigit() else -1)
    return ("version " if len(unique) == 1 else "versions ") + ", ".join(unique)


def plan_edge(config: Config, adapter: EdgeAdapter, *, to_version: int, distribution_id: str, function: str,
              pin: bool = True, timeout: float = 1200.0) -> Prepared[EdgeFacts]:
    """Read the distribution and the function's versions; plan the association swap, the wait and the pin."""
    if to_version < 1:
        raise BadInput(f"--to-version must be a published version number (1 or more), got {to_version}")
    name = function_name_of(function)
    version = str(to_version)
    pin_at = pin_target(config) if pin else None
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
    if pin_at is not None:
        path, key, stack = pin_at
        pin_info = {"path": str(path), "key": key, "stack": stack, "value": version}
        steps.append(Step(
            id="pin", action="edge.pin", target=f"stack {stack}",
            summary=f"pin {key} = {version} in {short_path(config, path)} so the next pulumi up keeps it",
            params={**pin_info, "function": name}, destructive=False, layer="edge",
        ))
    else:
        notes.append(f"--no-pin: the stack config is not changed; the next pulumi up will put back the version "
                     f"the stack pins unless you run: pulumi config set <project>:{EDGE_PIN_KEY} {version}")
    plan = Plan.of(f"break-glass edge rollback: {name} -> version {version}", config.env_name, steps, notes)
    return Prepared(plan, EdgeFacts(distribution_id, name, version, target.arn, current.etag, associations,
                                    behaviours, from_versions, current, pin_info))


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
class EdgeHandlers(StepHandlers):
    """The edge layer's handlers: swap the Lambda@Edge associations (ETag-guarded), wait for the
    distribution to deploy, pin the version in the stack config. ``interval``: seconds between polls."""

    layer = "edge"

    interval: float | None = None  # seconds between polls (None: the services' edge_interval)

    @property
    def adapter(self) -> EdgeAdapter:
        return self.services.edge()


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

    @action("edge.associate", check="check_associate")
    def associate(self, step: Step, ctx: StepContext) -> dict[str, Any]:
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

    @action("edge.wait", check="check_wait", read_only=True)
    def wait(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        interval = self.interval if self.interval is not None else self.services.settings.edge_interval
        status, seconds = self.adapter.wait_deployed(str(step.params["distribution"]),
                                                     timeout=float(step.params["timeout"]), interval=interval,
                                                     progress=ctx.note, ramp=self.services.settings.poll_ramp)
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
        path, key, value = Path(step.params["path"]), str(step.params["key"]), str(step.params["value"])
        try:
            before = read_stack_config(path).get(key)
        except (RollbackError, OSError) as exc:
            raise self._pin_failed(step, ctx, exc) from exc
        would = f"set {key} = {value} in {path}"
        if before == value:
            return Check(True, {"changed": False, "key": key, "value": value, "path": str(path)}, would)
        return Check(False, {"would_set": {key: value}, "current": before, "path": str(path)}, would)

    @action("edge.pin", check="check_pin")
    def pin(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        path, key, value = Path(step.params["path"]), str(step.params["key"]), str(step.params["value"])
        try:
            before = read_stack_config(path).get(key)
            write_stack_config(path, {key: value})
        except (RollbackError, OSError) as exc:
            raise self._pin_failed(step, ctx, exc) from exc
        return {"changed": True, "key": key, "before": before, "value": value, "path": str(path)}


def edge_summary(edge: EdgeFacts, results: Mapping[str, Mapping[str, Any]]) -> str:
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



def prepare_edge(config: Config, services: Services, *, to_version: int, distribution: str | None = None,
                 function: str | None = None, pin: bool = True, timeout: float = 1200.0,
                 interval: float = 15.0) -> Prepared[EdgeFacts]:
    """Resolve the distribution and function, plan the rollback (read-only) and build its handlers."""
    resources = resolve_resources(config, need=("distribution", "function"), distribution=distribution,
                                  function=function, services=services)
    assert resources.distribution and resources.function
    adapter = services.edge()
    planned = plan_edge(config, adapter, to_version=to_version, distribution_id=resources.distribution,
                        function=resources.function, pin=pin, timeout=timeout)
    handlers = {**EdgeHandlers(services, interval=interval).handlers(),
                **CdnHandlers(services, interval=interval).handlers()}
    return replace(planned, facts=replace(planned.facts, resources=resources), handlers=handlers)


def edge_document(prepared: Prepared[EdgeFacts], outcome: ExecutionResult) -> dict[str, Any]:
    """What ``infra edge`` prints (``--json``): the summary line, the resources, the plan and the run."""
    results = {item.step.id: item.result for item in outcome.steps}
    line = ("dry run: " if outcome.dry_run else "") + edge_summary(prepared.facts, results)
    resources = prepared.facts.resources
    return {"ok": True, "dry_run": outcome.dry_run, "summary": line,
            "resources": resources.to_dict() if resources is not None else None,
            "edge": prepared.to_dict(), "plan": prepared.plan.to_dict(), "run": outcome.to_dict()}


def run_edge(config: Config, services: Services, *, to_version: int, distribution: str | None = None,
             function: str | None = None, pin: bool = True, timeout: float = 1200.0, interval: float = 15.0,
             dry_run: bool = False, journal: Journal | None = None) -> dict[str, Any]:
    """``infra edge`` without the CLI: plan, then execute exactly that plan (no confirmation asked:
    the caller decided). Returns :func:`edge_document`; refusals raise as they do for the CLI."""
    prepared = prepare_edge(config, services, to_version=to_version, distribution=distribution, function=function,
                            pin=pin, timeout=timeout, interval=interval)
    outcome = prepared.run(journal=journal, dry_run=dry_run).go()
    return edge_document(prepared, outcome)
