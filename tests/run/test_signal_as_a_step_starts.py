"""Ctrl-C right as a step starts interrupts that step, not the one after it (found with issue 18's
Ctrl-C-during-the-checklist test, under load).

Between steps a signal is only remembered (a journal line is never cut in half) and the run stops before
the next step; inside a step it interrupts it. A signal that came after the step was journaled as
started, but before the runner armed the interruption, used to wait for the whole step (the
post-rollback checklist: up to 5 minutes) and, for the last step, was lost: the run succeeded. The
signal is real (``os.kill`` of this process), sent by an observer at the step's start."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from rollback.errors import Interrupted
from rollback.journal import Journal, read_run
from rollback.plan import Plan, Step
from rollback.runner import RunObserver, execute, handler


class CtrlCAtStart(RunObserver):
    def step_started(self, number: int, step: Step, *, dry_run: bool) -> None:
        os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_as_the_last_step_starts_interrupts_it(tmp_path: Path) -> None:
    acted: list[str] = []

    def act(step: Step, ctx: Any) -> dict[str, Any]:
        acted.append(step.id)
        return {}

    plan = Plan.of("test", "production", [Step("checklist", "test.checklist", "the post-rollback checklist")])
    journal = Journal.start(tmp_path, command="rollback test", env="production")
    with pytest.raises(Interrupted, match="during step 'checklist'"):
        execute(plan, {"test.checklist": handler(act)}, journal=journal, progress=CtrlCAtStart())
    assert acted == []
    run = read_run(journal.path)
    assert run.status == "interrupted" and run.failed_step is not None and run.failed_step["id"] == "checklist"
