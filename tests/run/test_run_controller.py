"""``rollback.runner.Run``: one controller from plan to finish (issue 23, item 1).

plan -> confirmation -> prepare -> journal -> execute -> finish, the same for a single-layer command,
``rollback run``/``watch`` and ``resume``. In memory, with the journal a real file in tmp_path."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from rollback.errors import BadInput, Refused, UnsafePrecondition
from rollback.journal import Journal, list_runs, read_run
from rollback.plan import Plan, Step
from rollback.runner import Check, Run, RunObserver, StepContext, handler, load_resume_point, open_journal

PLAN = Plan.of("roll back", "production", [
    Step("backup", "test.backup", "take a backup"),
    Step("restore", "test.restore", "restore it", destructive=True),
])


class Recorder(RunObserver):
    def __init__(self, fail_at_start: Exception | None = None) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.fail_at_start = fail_at_start

    def run_started(self, journal: Journal) -> None:
        self.events.append(("started", journal.run_id))
        if self.fail_at_start is not None:
            raise self.fail_at_start

    def run_ending(self, status: str, exit_code: int) -> None:
        self.events.append(("ending", status, exit_code))

    def run_finished(self, status: str, exit_code: int) -> None:
        self.events.append(("finished", status, exit_code))


def _handlers(fail: str | None = None) -> dict[str, Any]:
    def act(step: Step, ctx: StepContext) -> Mapping[str, Any]:
        if step.id == fail:
            raise UnsafePrecondition("the backup is damaged", "run the command again")
        return {"did": step.id}

    def check(step: Step, ctx: StepContext) -> Check:
        return Check(step.id in ctx.earlier, dict(ctx.earlier.get(step.id, {})), f"do {step.id}")

    return {action: handler(act, check) for action in PLAN.actions}


def _opener(tmp_path: Path) -> Any:
    return lambda **details: open_journal(tmp_path, command="rollback test", env="production", details=details)


def test_every_end_is_told_once_in_order_and_the_journal_is_finished_between(tmp_path: Path) -> None:
    seen = Recorder()
    outcome = Run(PLAN, _handlers(), open_journal=_opener(tmp_path), observers=(seen,)).go()
    assert seen.events == [("started", outcome.run_id), ("ending", "succeeded", 0), ("finished", "succeeded", 0)]
    assert read_run(tmp_path / f"{outcome.run_id}.jsonl").status == "succeeded"

    failed = Recorder()
    with pytest.raises(UnsafePrecondition):
        Run(PLAN, _handlers(fail="restore"), open_journal=_opener(tmp_path), observers=(failed,)).go()
    # execute() tells of the failed step's end; the Run does not tell it twice
    assert [e[0] for e in failed.events] == ["started", "ending", "finished"]
    assert failed.events[1:] == [("ending", "refused", 4), ("finished", "refused", 4)]  # UnsafePrecondition: a refusal


def test_a_run_stopped_before_its_first_step_is_finished_with_the_error(tmp_path: Path) -> None:
    """The finish is identical on every path: the journal's run_finished carries the error's line (the CLI's
    resume left it out before)."""
    seen = Recorder(fail_at_start=BadInput("incident log unwritable", "check the disk"))
    with pytest.raises(BadInput):
        Run(PLAN, _handlers(), open_journal=_opener(tmp_path), observers=(seen,)).go()
    [record] = list_runs(tmp_path)
    assert record.status == "failed" and record.finished is not None
    assert record.finished["exit_code"] == 2
    assert record.finished["error"] == "incident log unwritable (check the disk)"
    assert seen.events[1:] == [("ending", "failed", 2), ("finished", "failed", 2)]


def test_a_refusal_at_the_prompt_prepares_nothing_and_journals_nothing(tmp_path: Path) -> None:
    prepared: list[str] = []

    def refuse(plan: Plan) -> bool:
        raise Refused("roll back: cancelled at the prompt", "nothing was changed")

    with pytest.raises(Refused):
        Run(PLAN, _handlers(), open_journal=_opener(tmp_path), confirm=refuse,
            prepare=lambda run: prepared.append("incident")).go()
    assert prepared == [] and list_runs(tmp_path) == []


def test_prepare_changes_the_plan_and_details_before_the_journal(tmp_path: Path) -> None:
    tracker = Recorder()

    def attach(run: Run) -> None:
        run.plan = Plan.of(run.plan.title, run.plan.env, run.plan.steps[:1])
        run.details = {**run.details, "incident": "inc-1"}
        run.observers = (*run.observers, tracker)

    outcome = Run(PLAN, lambda plan: _handlers(), open_journal=_opener(tmp_path), details={"incident": None},
                  prepare=attach).go()
    record = read_run(tmp_path / f"{outcome.run_id}.jsonl")
    assert record.started["incident"] == "inc-1" and [s.step.id for s in outcome.steps] == ["backup"]
    assert tracker.events[0] == ("started", outcome.run_id)


def test_names_resume_puts_the_resume_command_in_the_hint(tmp_path: Path) -> None:
    with pytest.raises(UnsafePrecondition) as stopped:
        Run(PLAN, _handlers(fail="restore"), open_journal=_opener(tmp_path), names_resume=True).go()
    [record] = list_runs(tmp_path)
    assert stopped.value.hint == f"continue with: rollback resume {record.run_id}"  # 'run the command again' made one
    assert stopped.value.details["run"] == record.run_id


def test_resuming_is_the_same_run_with_the_finished_steps_from_the_journal(tmp_path: Path) -> None:
    with pytest.raises(UnsafePrecondition):
        Run(PLAN, _handlers(fail="restore"), open_journal=_opener(tmp_path)).go()
    [first] = list_runs(tmp_path)
    seen = Recorder()
    outcome = Run.resuming(load_resume_point(tmp_path, first.run_id), _handlers(), open_journal=_opener(tmp_path),
                           observers=(seen,)).go()
    assert [s.already_done for s in outcome.steps] == [True, False] and outcome.resumes == first.run_id
    record = read_run(tmp_path / f"{outcome.run_id}.jsonl")
    assert record.started["resumes"] == first.run_id and record.status == "succeeded"
    assert seen.events[-1] == ("finished", "succeeded", 0)


def test_a_dry_run_opens_no_journal(tmp_path: Path) -> None:
    outcome = Run(PLAN, _handlers(), dry_run=True, open_journal=_opener(tmp_path)).go()
    assert outcome.run_id is None and list_runs(tmp_path) == []
    assert [s.result["would"] for s in outcome.steps] == ["do backup", "do restore"]
