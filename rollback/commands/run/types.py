"""What ``rollback run`` plans and reads back: the request, the plan with its hazards, a saved plan
(``--plan FILE``), and the plan's segments (which layer restores service, at which step).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rollback.errors import BadInput
from rollback.model.layers import Hazard
from rollback.plan import SERVICE_LAYERS, Plan, Step
from rollback.runner import steps_in_format

__all__ = [
    "RELEASE_GAP",
    "RunFacts",
    "RunRequest",
    "is_emergency",
    "load_plan_document",
    "restoring_step",
    "segments",
]

RELEASE_GAP = dt.timedelta(minutes=10)  # writes closer together than this belong to one release


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
    verify_skip: Mapping[str, str] = field(default_factory=dict)  # checklist sources left out, and why
    verify_wait: float | None = None  # how long the checklist re-checks (None: the environment's verify target)

    def to_dict(self) -> dict[str, Any]:
        return {"layers": list(self.layers), "targets": dict(self.targets), "severity": self.severity,
                "accept_schema_skew": self.accept_schema_skew, "accept_mismatch": self.accept_mismatch,
                "switch_database": self.switch_database, "verify": self.verify, "incident": self.incident,
                "options": dict(self.options), "verify_skip": dict(self.verify_skip), "verify_wait": self.verify_wait}


@dataclass
class RunFacts:
    """What a cross-layer plan was planned from (the facts of its :class:`~rollback.runner.Prepared`):
    the request, its hazards, each layer's facts (``by_layer``: the deployments, versions, keys and
    backup it chose) and the step after which service is restored (``restoring``: layer, step id)."""

    hazards: list[Hazard]
    request: RunRequest
    by_layer: dict[str, Any] = field(default_factory=dict)
    restoring: tuple[str | None, str | None] = (None, None)

    @property
    def blocking(self) -> list[Hazard]:
        return [h for h in self.hazards if h.blocking]

    def to_dict(self) -> dict[str, Any]:
        restoring, restored_at = self.restoring
        return {"hazards": [h.to_dict() for h in self.hazards], "request": self.request.to_dict(),
                "facts": self.by_layer, "restoring": {"layer": restoring, "step": restored_at}}



# --------------------------------------------------------------------------------------------- saved plans


def load_plan_document(path: Path) -> tuple[Plan, dict[str, Any]]:
    """A plan printed by ``rollback run --dry-run --json`` (the whole document or its ``plan``) and the
    request it was made for (``{}`` when the file holds the plan alone)."""

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
    version = document.get("plan_format", body.get("plan_format"))
    plan = Plan.from_dict({**body, "steps": steps_in_format(body.get("steps"), version, where=f"--plan {path}")})
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


def is_emergency(steps: Sequence[Step]) -> bool:
    return all(s.action in ("db.backup", "db.skip_emergency_backup") and s.id.endswith("emergency-backup")
               for s in steps)


def restoring_step(plan: Plan) -> tuple[str | None, str | None]:
    """``(layer, step id)``: the layer that brings service back (app when in the plan, else the first of
    edge, assets, infra, db), and the step whose end means it is back: its ``<layer>.health`` check,
    else the layer's last step."""
    runs = [(group, steps) for group, steps in segments(plan) if group in SERVICE_LAYERS and not is_emergency(steps)]
    present = [group for group, _ in runs]
    layer = next((name for name in SERVICE_LAYERS if name in present), None)
    if layer is None:
        return None, None
    health = f"{layer}.health"
    if any(step.id == health for step in plan.steps):
        return layer, health
    last = [steps for group, steps in runs if group == layer][-1]
    return layer, last[-1].id
