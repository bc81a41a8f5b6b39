"""``rollback infra invalidate`` (CloudFront invalidations, planned and waited for) and
``rollback infra drift`` (the live edge, functions, bucket versioning and alarms against the
stack's last checkpoint).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rollback.actions import StepHandlers, action
from rollback.adapters.cloudfront import CloudWatchAlarms, EdgeAdapter, function_name_of
from rollback.config import Config
from rollback.context import Services
from rollback.errors import AwsError, BadInput
from rollback.model.drift import Live, LiveAlarm, LiveDistribution, compare, expected_from_checkpoint
from rollback.plan import Plan, Step
from rollback.runner import Check, StepContext
from rollback.units import format_duration

__all__ = ["InvalidateHandlers", "drift", "load_checkpoint_file", "plan_invalidate"]


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
class InvalidateHandlers(StepHandlers):
    """Create a CloudFront invalidation (its CallerReference is planned, so a resumed run that sends it
    again gets the same invalidation back) and wait for it to complete."""

    layer = "edge"

    interval: float | None = None  # seconds between polls (None: the services' invalidate_interval)

    @property
    def adapter(self) -> EdgeAdapter:
        return self.services.edge()


    def check_invalidate(self, step: Step, ctx: StepContext) -> Check:
        paths = [str(p) for p in step.params["paths"]]
        earlier = ctx.earlier.get(step.id)
        if earlier is not None:
            return Check(True, dict(earlier), f"invalidate {', '.join(paths)}")
        return Check(False, {"would_invalidate": paths}, f"invalidate {', '.join(paths)}")

    @action("cloudfront.invalidate", check="check_invalidate")
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

    @action("cloudfront.wait_invalidation", check="check_wait", read_only=True)
    def wait(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        invalidation_id = str(ctx.results[step.sibling("invalidate")]["id"])
        status, seconds = self.adapter.wait_invalidation(str(step.params["distribution"]), invalidation_id,
                                                         timeout=float(step.params["timeout"]),
                                                         interval=self.interval if self.interval is not None
                                                         else self.services.settings.invalidate_interval,
                                                         progress=ctx.note, ramp=self.services.settings.poll_ramp)
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


def _checkpoint_resources(services: Services, checkpoint: Path | None) -> tuple[list[Mapping[str, Any]], str]:
    if checkpoint is not None:
        return load_checkpoint_file(checkpoint), str(checkpoint)
    source = services.stack_source()
    state = source.current()
    described = source.describe()
    where = str(described.get("url") or described.get("stack") or described.get("kind"))
    return list(state.resources), where


def _missing(exc: AwsError, *codes: str) -> bool:
    return str(getattr(exc, "code", "")) in codes


def drift(config: Config, services: Services, *, checkpoint: Path | None = None) -> dict[str, Any]:
    """Compare the live edge, functions, bucket versioning and alarms with the stack's last checkpoint.

    Everything of those kinds in the checkpoint is compared; resources named in
    ``[env.<name>.aws]`` but absent from the checkpoint are reported as notes
    (the config may point at the wrong stack).
    """
    clients = services.aws()  # first: a bad AWS_ENDPOINT_URL is named before the stack is read
    resources, source = _checkpoint_resources(services, checkpoint)
    expected = expected_from_checkpoint(resources)
    adapter = services.edge()
    store = services.s3()
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


