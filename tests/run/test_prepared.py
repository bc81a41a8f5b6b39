"""Every planner returns the one prepared-plan type, :class:`rollback.runner.Prepared` (the plan, the
facts it was planned from, the handlers): no layer keeps a plan wrapper of its own.

In memory: the planners' declared return types and the classes of ``rollback/commands`` are read; a
prepared plan is run through its own :class:`~rollback.runner.Run`."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rollback
from rollback.commands.app import plan as app_plan
from rollback.commands.infra import assets, cdn, edge, stack
from rollback.commands.run import plan as run_plan
from rollback.plan import Plan, Step
from rollback.runner import Check, Prepared, StepContext, handler

PLANNERS = [app_plan.plan_rollback, app_plan.plan_promote, app_plan.plan_undo, app_plan.plan_revert,
            edge.plan_edge, edge.prepare_edge, assets.plan_assets, cdn.plan_restore, cdn.plan_release,
            cdn.prepare_restore, stack.prepare_preview, stack.prepare_restore, run_plan.plan_run]


def test_every_planner_returns_a_prepared_plan() -> None:
    for planner in PLANNERS:
        returned = str(planner.__annotations__["return"])
        assert returned.startswith("Prepared["), f"{planner.__module__}.{planner.__name__} returns {returned}"


def test_no_layer_keeps_a_plan_wrapper_of_its_own() -> None:
    commands = Path(rollback.__file__).parent / "commands"
    wrappers = []
    for path in commands.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and (node.name.endswith("Plan") or node.name.startswith("Prepared")):
                wrappers.append(f"{path.relative_to(commands)}: {node.name}")
    assert wrappers == []


@dataclass(frozen=True)
class _Facts:
    what: str

    def to_dict(self) -> dict[str, Any]:
        return {"what": self.what}


def test_a_prepared_plan_runs_its_own_handlers_and_documents_its_facts() -> None:
    acted: list[str] = []

    def act(step: Step, ctx: StepContext) -> dict[str, Any]:
        acted.append(step.id)
        return {"done": step.id}

    def check(step: Step, ctx: StepContext) -> Check:
        return Check(done=step.id in acted)

    plan = Plan.of("two steps", "test", [Step(id="one", action="test.act", target="t", summary="one"),
                                         Step(id="two", action="test.act", target="t", summary="two")])
    prepared = Prepared(plan, _Facts("planned from here"))
    assert prepared.to_dict() == {"plan": plan.to_dict(), "what": "planned from here"}
    dry = prepared.with_handlers({"test.act": handler(act, check)}).run(dry_run=True).go()
    assert acted == [] and [s.step.id for s in dry.steps] == ["one", "two"]
    outcome = prepared.with_handlers({"test.act": handler(act, check)}).run().go()
    assert acted == ["one", "two"] and outcome.result_of("two") == {"done": "two"}
