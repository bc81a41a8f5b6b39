"""Action names are ``family.snake_case``; plans journaled or saved by an earlier version (which wrote
``infra.backup-config``) still resume and still load with ``--plan``. The journal records the plan's format
(``plan_format`` in ``step_planned``): the old names are translated only for plans without it (format 1).

In memory, with the journal a real file in tmp_path and handlers that record what they were asked to do."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rollback.commands.registry import FAMILIES, family_of
from rollback.commands.run.types import load_plan_document
from rollback.errors import BadInput
from rollback.journal import Journal, read_run
from rollback.plan import PLAN_FORMAT, Plan, Step
from rollback.runner import ACTION_RENAMES, Check, StepContext, handler, load_resume_point, resume

OLD_PLAN = Plan.of("restore stack config", "production", [
    Step("backup-config", "infra.backup-config", "save Pulumi.production.yaml"),
    Step("desired-state", "infra.desired-state", "diff the desired state"),
    Step("write-config", "infra.write-config", "write version 6's config", destructive=True),
])


def _journal_as_format_1(journal: Journal, plan: Plan) -> None:
    """What versions before the plan format was recorded journaled: ``step_planned`` without ``plan_format``."""
    journal.write("step_planned", title=plan.title, env=plan.env, steps=[step.to_dict() for step in plan.steps],
                  notes=list(plan.notes))


def test_every_action_is_family_dot_snake_case() -> None:
    actions = [action for names in FAMILIES.values() for action in names]
    assert actions and all(re.fullmatch(r"[a-z0-9]+\.[a-z0-9_]+", action) for action in actions), actions
    for old, new in ACTION_RENAMES.items():
        assert family_of(old) is None and family_of(new) is not None


def test_a_journal_with_old_action_names_resumes_under_the_new_ones(tmp_path: Path) -> None:
    journal = Journal.start(tmp_path, command="rollback infra restore", env="production")
    _journal_as_format_1(journal, OLD_PLAN)  # what the previous version journaled
    journal.step_started(OLD_PLAN.steps[0])
    journal.step_finished(OLD_PLAN.steps[0], {"backup": "/backups/Pulumi.production.yaml"})
    journal.step_started(OLD_PLAN.steps[1])
    journal.close()  # killed during the second step

    point = load_resume_point(tmp_path, journal.run_id)
    assert point.plan.actions == ("infra.backup_config", "infra.desired_state", "infra.write_config")
    assert point.next_step == "desired-state"

    acts: list[str] = []

    def act(step: Step, ctx: StepContext) -> Mapping[str, Any]:
        acts.append(step.action)
        return {}

    def check(step: Step, ctx: StepContext) -> Check:
        done = step.id == "backup-config"  # the earlier run's backup is there
        return Check(done, {"there": done}, f"do {step.id}")

    def handlers(plan: Plan) -> dict[str, Any]:
        assert all(family_of(action) == "infra" for action in plan.actions)  # the registry knows them all
        return {action: handler(act, check) for action in plan.actions}

    outcome = resume(tmp_path, journal.run_id, handlers)
    assert acts == ["infra.desired_state", "infra.write_config"]
    assert [s.already_done for s in outcome.steps] == [True, False, False]
    again = read_run(tmp_path / f"{outcome.run_id}.jsonl")
    assert again.status == "succeeded" and again.started["resumes"] == journal.run_id


def test_a_plan_file_with_old_action_names_loads_under_the_new_ones(tmp_path: Path) -> None:
    world = Step("world", "run.check_world", "the world is as planned")
    document = {"plan": Plan.of("run", "production", [world, *OLD_PLAN.steps]).to_dict(), "request": {"layers": []}}
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(document))
    plan, request = load_plan_document(path)
    assert plan.actions == ("run.check_world", "infra.backup_config", "infra.desired_state", "infra.write_config")
    assert request == {"layers": []}


def test_the_journal_records_the_plan_format(tmp_path: Path) -> None:
    journal = Journal.start(tmp_path, command="rollback infra restore", env="production")
    journal.plan(Plan.of("p", "production", [Step("backup-config", "infra.backup_config", "save it")]))
    journal.close()
    planned = next(e for e in read_run(journal.path).entries if e["event"] == "step_planned")
    assert planned["plan_format"] == PLAN_FORMAT == 2


def test_a_plan_of_todays_format_is_read_as_written(tmp_path: Path) -> None:
    """The translation belongs to format 1 only: a name in a versioned plan is never rewritten behind its back
    (an unknown one is then refused by the registry, not silently mapped)."""
    journal = Journal.start(tmp_path, command="rollback infra restore", env="production")
    journal.plan(OLD_PLAN)  # today's journal, with plan_format, even though these names are old
    journal.close()
    point = load_resume_point(tmp_path, journal.run_id)
    assert point.plan.actions == ("infra.backup-config", "infra.desired-state", "infra.write-config")


def test_a_plan_of_a_newer_format_is_refused(tmp_path: Path) -> None:
    journal = Journal.start(tmp_path, command="rollback infra restore", env="production")
    journal.write("step_planned", title="p", env="production", notes=[], plan_format=PLAN_FORMAT + 1,
                  steps=[Step("backup-config", "infra.backup_config", "save it").to_dict()])
    journal.close()
    try:
        load_resume_point(tmp_path, journal.run_id)
    except BadInput as exc:
        assert exc.exit_code == 2 and f"plan format {PLAN_FORMAT + 1}" in exc.message
        assert journal.run_id in exc.message
    else:
        raise AssertionError("a plan of a newer format was read")
    world = Step("world", "run.check_world", "the world is as planned")
    path = tmp_path / "plan.json"
    newer = {"plan_format": PLAN_FORMAT + 1, "plan": Plan.of("run", "production", [world]).to_dict()}
    path.write_text(json.dumps(newer))
    try:
        load_plan_document(path)
    except BadInput as exc:
        assert f"--plan {path} is in plan format {PLAN_FORMAT + 1}" in exc.message
    else:
        raise AssertionError("a plan file of a newer format was read")


def test_a_plan_file_of_todays_format_keeps_its_names(tmp_path: Path) -> None:
    world = Step("world", "run.check_world", "the world is as planned")
    document = {"plan_format": PLAN_FORMAT, "plan": Plan.of("run", "production", [world, *OLD_PLAN.steps]).to_dict()}
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(document))
    plan, _ = load_plan_document(path)
    assert plan.actions == ("run.check_world", "infra.backup-config", "infra.desired-state", "infra.write-config")
