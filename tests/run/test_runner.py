"""The one step shape: plans read back from JSON, check-then-act, dry runs, resume, signals.

Everything here runs in memory (handlers are small objects recording what they were asked to do);
the journal is a real file in tmp_path.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest

from rollback.context import Services
from rollback.errors import BadInput, Interrupted, UnsafePrecondition
from rollback.journal import Journal, read_run
from rollback.plan import Plan, Step
from rollback.runner import (
    Check,
    RunObserver,
    StepContext,
    StepResult,
    execute,
    handler,
    load_resume_point,
    read_only,
    resume,
)

PLAN = Plan.of("restore", "production", [
    Step("backup", "db.backup", "emergency backup of app", params={"out": "/backups", "jobs": 2}),
    Step("rollback", "vercel.rollback", "instant rollback: a -> b", target="demo production",
         params={"to": "dpl_b", "nested": {"list": [1, 2.5, None, True]}}, destructive=True),
    Step("health", "health.check", "health checks", layer="verify"),
], notes=["the live database is kept"])


@dataclass
class World:
    """A pretend system: which steps' effects exist, and every act performed."""

    done: set[str] = field(default_factory=set)
    acts: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)

    def handler(self, *, fail: str | None = None) -> Any:
        def check(step: Step, ctx: StepContext) -> Check:
            self.checks.append(step.id)
            if step.id in self.done:
                return Check(True, {"state": "there"}, f"do {step.id}")
            return Check(False, {"seen": len(self.done)}, f"do {step.id}")

        def act(step: Step, ctx: StepContext) -> Mapping[str, Any]:
            if step.id == fail:
                raise UnsafePrecondition(f"{step.id} cannot be done now", "try later")
            assert ctx.checked is not None and ctx.checked.would == f"do {step.id}"
            self.acts.append(step.id)
            self.done.add(step.id)
            return {"did": step.id, "after": sorted(ctx.results)}

        return handler(act, check)

    def handlers(self, plan: Plan = PLAN, **kwargs: Any) -> dict[str, Any]:
        return {action: self.handler(**kwargs) for action in plan.actions}


# ------------------------------------------------------------------ plans as data


def test_a_plan_reads_back_from_its_json_exactly() -> None:
    document = json.loads(json.dumps(PLAN.to_dict()))
    assert Plan.from_dict(document) == PLAN
    assert [s["layer"] for s in document["steps"]] == ["db", "app", "verify"]
    assert Step.from_dict(PLAN.steps[1].to_dict()) == PLAN.steps[1]
    assert PLAN.actions == ("db.backup", "vercel.rollback", "health.check")
    assert PLAN.layers == ("db", "app", "verify")
    assert PLAN.table_rows()[1] == ("2", "app", "demo production: instant rollback: a -> b", "destructive")


@pytest.mark.parametrize(("action", "layer"), [
    ("vercel.promote", "app"), ("git.push", "app"), ("edge.pin", "edge"), ("cloudfront.invalidate", "edge"),
    ("s3.restore", "assets"), ("infra.up", "infra"), ("stack.config_restore", "infra"), ("db.swap", "db"),
    ("rds.restore", "db"), ("health.check", "verify"), ("something.else", "core"),
])
def test_a_step_without_a_layer_gets_its_actions(action: str, layer: str) -> None:
    assert Step("s", action, "x").layer == layer


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: d.pop("env"), "'env' must be a non-empty string"),
    (lambda d: d.update(steps={}), "'steps' must be a list"),
    (lambda d: d["steps"][0].pop("action"), "step 1: 'action' must be a non-empty string"),
    (lambda d: d["steps"][1].update(params=[1]), "step 2: 'params' must be an object"),
    (lambda d: d["steps"][1].update(destructive="yes"), "step 2: 'destructive' must be true or false"),
    (lambda d: d["steps"][2].update(layer="kitchen"), "step 3: 'layer' must be one of"),
    (lambda d: d["steps"][2].update(id="backup"), "duplicate step id 'backup'"),
    (lambda d: d.update(notes="x"), "'notes' must be a list of strings"),
])
def test_a_bad_plan_document_is_bad_input(mutate: Any, message: str) -> None:
    document = PLAN.to_dict()
    mutate(document)
    with pytest.raises(BadInput) as caught:
        Plan.from_dict(document)
    assert message in caught.value.one_line()
    assert "\n" not in caught.value.one_line()


# ------------------------------------------------------------------ check, then act


def test_check_then_act_and_already_done_is_a_result(tmp_path: Path) -> None:
    world = World(done={"rollback"})  # e.g. production already on the target
    journal = Journal.start(tmp_path, command="x", env="production")
    outcome = execute(PLAN, world.handlers(), journal=journal)
    assert world.acts == ["backup", "health"]
    assert world.checks == ["backup", "rollback", "health"]
    assert outcome.result_of("rollback") == {"state": "there"}
    assert [s.already_done for s in outcome.steps] == [False, True, False]
    assert outcome.result_of("health") == {"did": "health", "after": ["backup", "rollback"]}
    finished = [e for e in read_run(journal.path).entries if e["event"] == "step_finished"]
    assert [e["already_done"] for e in finished] == [False, True, False]
    assert read_run(journal.path).steps[1]["already_done"] is True


def test_a_dry_run_branches_only_in_the_runner() -> None:
    world = World(done={"health"})
    outcome = execute(PLAN, world.handlers(), dry_run=True)
    assert world.acts == []
    assert outcome.result_of("backup") == {"would": "do backup", "seen": 1}
    assert outcome.result_of("health") == {"state": "there"}
    assert outcome.run_id is None and outcome.dry_run


def test_a_read_only_step_runs_its_reads_in_a_dry_run_too() -> None:
    reads: list[str] = []

    def verify(step: Step, ctx: StepContext) -> Check:
        reads.append(step.id)
        if step.id == "health":
            raise UnsafePrecondition("backup is damaged")
        return Check(False, {"files": 3}, "verified")

    handlers = dict.fromkeys(PLAN.actions, read_only(verify))
    with pytest.raises(UnsafePrecondition, match="damaged"):
        execute(PLAN, handlers, dry_run=True)
    assert reads == ["backup", "rollback", "health"]
    real = execute(Plan.of("p", "e", PLAN.steps[:2]), handlers)
    assert real.result_of("backup") == {"files": 3}  # what the check read, not read twice
    assert reads[-2:] == ["backup", "rollback"]


def test_a_handler_must_have_check_and_act() -> None:
    with pytest.raises(TypeError, match="not a StepHandler"):
        execute(PLAN, dict.fromkeys(PLAN.actions, object()))
    with pytest.raises(ValueError, match="no handler for action"):
        execute(PLAN, {})


# ------------------------------------------------------------------ resume


def test_done_steps_are_rechecked_not_repeated() -> None:
    world = World(done={"backup"})
    outcome = execute(PLAN, world.handlers(), done={"backup": {"name": "app-1"}}, resumes="run-1")
    assert world.acts == ["rollback", "health"]
    assert outcome.result_of("backup") == {"state": "there", "name": "app-1"}
    assert outcome.steps[0].already_done and outcome.resumes == "run-1"


def test_a_done_step_whose_effect_is_gone_stops_the_run() -> None:
    world = World()  # someone undid the backup's effect since the earlier run
    with pytest.raises(UnsafePrecondition) as caught:
        execute(PLAN, world.handlers(), done={"backup": {"name": "app-1"}}, resumes="run-1")
    assert "was finished by run run-1, but checking it again finds it not done: do backup" in caught.value.message
    assert world.acts == []


def _failed_run(tmp_path: Path, world: World) -> str:
    journal = Journal.start(tmp_path, command="rollback run", env="production")
    with pytest.raises(UnsafePrecondition):
        execute(PLAN, world.handlers(fail="rollback"), journal=journal)
    return journal.run_id


def test_resume_continues_a_journaled_run_from_its_first_unfinished_step(tmp_path: Path) -> None:
    world = World()
    first = _failed_run(tmp_path, world)
    assert world.acts == ["backup"]
    point = load_resume_point(tmp_path, first[:24])
    assert point.plan == PLAN and point.next_step == "rollback" and set(point.done) == {"backup"}
    assert json.loads(json.dumps(point.to_dict()))["done"] == ["backup"]

    dry = resume(tmp_path, first, world.handlers(), dry_run=True)
    assert dry.run_id is None and world.acts == ["backup"]

    outcome = resume(tmp_path, "last", lambda plan: world.handlers(plan), command="rollback resume last")
    assert world.acts == ["backup", "rollback", "health"]  # backup not repeated
    assert outcome.resumes == first
    second = read_run(Path(tmp_path / f"{outcome.run_id}.jsonl"))
    assert second.status == "succeeded"
    assert second.started["resumes"] == first and second.summary()["resumes"] == first
    assert [s.get("already_done", False) for s in second.steps] == [True, False, False]

    with pytest.raises(BadInput, match="succeeded: there is nothing to resume"):
        resume(tmp_path, outcome.run_id, world.handlers())
    with pytest.raises(BadInput, match=f"already resumed by run {outcome.run_id}"):
        load_resume_point(tmp_path, first)


def test_resume_of_a_run_killed_mid_step_checks_that_step_first(tmp_path: Path) -> None:
    journal = Journal.start(tmp_path, command="x", env="production")
    journal.plan(PLAN)
    for step in PLAN.steps[:2]:
        journal.step_started(step)
    journal.step_finished(PLAN.steps[0], {"name": "app-1"})
    journal.close()  # the process died here: no step_finished for "rollback", no run_finished
    world = World(done={"backup", "rollback"})  # the rollback had gone through before the kill
    outcome = resume(tmp_path, journal.run_id, world.handlers())
    assert world.acts == ["health"]
    assert [s.already_done for s in outcome.steps] == [True, True, False]


# ------------------------------------------------------------------ signals


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_signal_during_a_step_interrupts_it_and_is_journaled(tmp_path: Path, signum: int) -> None:
    before = signal.getsignal(signum)
    acts: list[str] = []

    def act(step: Step, ctx: StepContext) -> Mapping[str, Any]:
        acts.append(step.id)
        if step.id == "rollback":
            os.kill(os.getpid(), signum)
        return {}

    journal = Journal.start(tmp_path, command="x", env="production")
    with pytest.raises(Interrupted) as caught:
        execute(PLAN, dict.fromkeys(PLAN.actions, handler(act)), journal=journal)
    name = signal.Signals(signum).name
    assert caught.value.exit_code == 130
    assert acts == ["backup", "rollback"]
    run = read_run(journal.path)
    assert run.status == "interrupted" and run.finished is not None and run.finished["exit_code"] == 130
    assert run.failed_step is not None and run.failed_step["id"] == "rollback"
    assert run.failed_step["error"] == f"interrupted ({'Ctrl-C' if name == 'SIGINT' else name})"
    assert signal.getsignal(signum) == before  # the old handler is back


def test_a_signal_between_steps_stops_before_the_next_one(tmp_path: Path) -> None:
    acts: list[str] = []

    class SignalAfterFirst(RunObserver):
        def step_finished(self, number: int, item: StepResult) -> None:
            if number == 1:
                os.kill(os.getpid(), signal.SIGTERM)  # arrives while the runner is journaling

    journal = Journal.start(tmp_path, command="x", env="production")
    with pytest.raises(Interrupted, match="before step 'rollback'"):
        execute(PLAN, dict.fromkeys(PLAN.actions, handler(lambda step, ctx: acts.append(step.id) or {})),
                journal=journal, progress=SignalAfterFirst())
    assert acts == ["backup"]
    run = read_run(journal.path)
    assert run.status == "interrupted" and run.finished is not None
    assert run.finished["stopped_before"] == "rollback"
    assert [s["status"] for s in run.steps] == ["done", "planned", "planned"]
    assert load_resume_point(tmp_path, journal.run_id).next_step == "rollback"


# ------------------------------------------------------------------ handlers_for


def test_handlers_for_builds_any_mix_of_layers(write_config: Any) -> None:
    from rollback.commands.registry import handlers_for
    from rollback.config import load_config
    from rollback.runner import StepHandler

    path = write_config({"production": {"vercel": {"project": "demo"},
                                        "health": {"base_url": "http://127.0.0.1:9/app"}}})
    config = load_config(path)
    built = handlers_for(config, ["vercel.rollback", "vercel.wait_alias_job", "health.check", "edge.pin"],
                         services=Services(config, edge=cast(Any, object())))
    assert set(built) == {"vercel.rollback", "vercel.wait_alias_job", "health.check", "edge.pin"}
    assert all(isinstance(h, StepHandler) for h in built.values())
    with pytest.raises(BadInput, match="no step handler for action"):
        handlers_for(config, ["vercel.rollback", "teleport.now"], Services(config))


def test_no_handler_branches_on_dry_run() -> None:
    """The runner is the only place a dry run branches: handlers and adapters never look at it."""
    import re

    root = Path(__file__).resolve().parents[2] / "rollback"
    offenders = []
    for path in sorted([*root.glob("commands/*.py"), *root.glob("adapters/*.py")]):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if re.search(r"ctx\.dry_run|\bif (not )?dry_run\b|dry_run=ctx", line):
                offenders.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    assert offenders == []


def test_resume_never_repeats_a_finished_step_that_has_no_check(tmp_path: Path) -> None:
    """A step with an ``act`` and no ``check`` (say, "post to the channel", "send the rollback") cannot tell
    from the world that it ran: only the journal's finished steps keep ``resume`` from doing it twice."""
    acts: list[str] = []

    def act(step: Step, ctx: StepContext) -> Mapping[str, Any]:
        acts.append(step.id)
        if step.id == "rollback" and acts.count("rollback") == 1:
            raise UnsafePrecondition("the API answered 502", "resume")
        return {"sent": step.id}

    handlers = dict.fromkeys(PLAN.actions, handler(act))
    journal = Journal.start(tmp_path, command="x", env="production")
    with pytest.raises(UnsafePrecondition):
        execute(PLAN, handlers, journal=journal)
    assert acts == ["backup", "rollback"]
    outcome = resume(tmp_path, journal.run_id, handlers)
    assert acts == ["backup", "rollback", "rollback", "health"]  # backup not sent again
    assert [s.already_done for s in outcome.steps] == [True, False, False]
    assert outcome.steps[0].result == {"sent": "backup"}  # the earlier run's result, carried over


def test_a_signal_as_a_step_starts_interrupts_it_before_it_acts(tmp_path: Path) -> None:
    """A signal that lands after the step was journaled as started but before the runner armed it (the
    moment a test or an operator sees "step started") interrupts that step at once: a wait step must not
    run to its end (minutes) first."""
    acts: list[str] = []

    class SignalAsRollbackStarts(RunObserver):
        def step_started(self, number: int, step: Step, *, dry_run: bool) -> None:
            if step.id == "rollback":
                os.kill(os.getpid(), signal.SIGTERM)

    journal = Journal.start(tmp_path, command="x", env="production")
    with pytest.raises(Interrupted, match="during step 'rollback'"):
        execute(PLAN, dict.fromkeys(PLAN.actions, handler(lambda step, ctx: acts.append(step.id) or {})),
                journal=journal, progress=SignalAsRollbackStarts())
    assert acts == ["backup"]  # the rollback step never acted
    run = read_run(journal.path)
    assert run.status == "interrupted" and run.failed_step is not None and run.failed_step["id"] == "rollback"


def test_a_wait_found_over_says_finished_and_another_step_already_done(capsys: pytest.CaptureFixture[str]) -> None:
    """A wait step whose check finds its work over did not skip anything: the progress line says
    "finished"; any other step found done says "already done"."""
    from rollback.cli.progress import PlainProgress
    from rollback.plan import finished_word, is_wait

    plan = Plan.of("run", "sandbox", [
        Step("wait", "cloudfront.wait_invalidation", "wait until the invalidation is Completed"),
        Step("pin", "edge.pin", "pin rollback:edgeFunctionVersion = 2"),
    ])
    done = handler(lambda step, ctx: {}, lambda step, ctx: Check(True, {"status": "Completed"}))
    execute(plan, {"cloudfront.wait_invalidation": done, "edge.pin": done}, progress=PlainProgress(2))
    lines = capsys.readouterr().err.splitlines()
    assert "[1/2] finished" in lines and "[2/2] already done" in lines
    assert [is_wait(a) for a in ("vercel.wait_alias_job", "edge.wait", "cdn.wait", "vercel.wait_abort",
                                 "edge.pin", "db.swap")] == [True, True, True, True, False, False]
    assert finished_word("edge.wait") == "finished" and finished_word("db.swap") == "already done"


@pytest.mark.parametrize(("hint", "expected"), [
    ("check those domains in the Vercel dashboard, then run the command again",
     "check those domains in the Vercel dashboard, then: rollback resume R1"),
    ("a concurrent transaction got in the way; run the command again",
     "a concurrent transaction got in the way, then: rollback resume R1"),
    ("check your AWS credentials", "check your AWS credentials, then: rollback resume R1"),
    ("see the journal with 'rollback journal list'", "continue with: rollback resume R1"),
    ("see 'rollback verify' for every item", "see 'rollback verify' for every item"),
    ("then continue with: rollback resume R0", "then continue with: rollback resume R0"),
])
def test_a_failed_runs_hint_names_one_next_command(hint: str, expected: str) -> None:
    from rollback.runner import next_command_hint

    assert next_command_hint(hint, "rollback resume R1") == expected
