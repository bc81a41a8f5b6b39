"""Apply a :class:`~rollback.plan.Plan`: run each step's handler, journal each step.

Handlers are plain callables ``handler(step, ctx) -> result`` registered by
action name. They receive a :class:`StepContext` whose ``dry_run`` flag tells
them to stop short of the final side effect and return what they would have
done: a dry run walks the same code as the real one.

Each step is journaled as started before its handler runs and as finished or
failed before the next one starts. A failure records where the run stopped and
how to resume, then re-raises.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rollback.errors import Interrupted, Refused, RollbackError
from rollback.journal import Journal
from rollback.plan import Plan, Step
from rollback.redact import redact, redact_text

__all__ = ["ExecutionResult", "Handler", "StepContext", "StepResult", "execute"]


@dataclass
class StepContext:
    """What a handler gets besides its step."""

    dry_run: bool
    plan: Plan
    journal: Journal | None = None
    results: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    progress: Callable[[str], None] = lambda message: None

    def note(self, message: str, **fields: Any) -> None:
        """Tell the operator, and the journal, something worth knowing mid-step."""
        message = redact_text(message)  # notes quote API and tool messages: redacted where made
        self.progress(message)
        if self.journal is not None:
            self.journal.note(message, **redact(fields))


Handler = Callable[[Step, StepContext], Mapping[str, Any] | None]


@dataclass(frozen=True)
class StepResult:
    step: Step
    result: Mapping[str, Any]
    seconds: float
    dry_run: bool

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.step.id, "description": self.step.describe(), "result": dict(self.result),
                "seconds": round(self.seconds, 3), "dry_run": self.dry_run}


@dataclass(frozen=True)
class ExecutionResult:
    plan: Plan
    steps: tuple[StepResult, ...]
    dry_run: bool
    run_id: str | None
    seconds: float

    def result_of(self, step_id: str) -> Mapping[str, Any]:
        for item in self.steps:
            if item.step.id == step_id:
                return item.result
        raise KeyError(step_id)

    def to_dict(self) -> dict[str, Any]:
        return {"plan": self.plan.to_dict(), "dry_run": self.dry_run, "run": self.run_id,
                "seconds": round(self.seconds, 3), "steps": [s.to_dict() for s in self.steps]}


def _status_of(exc: BaseException) -> str:
    if isinstance(exc, (KeyboardInterrupt, Interrupted)):
        return "interrupted"
    if isinstance(exc, Refused):
        return "refused"
    return "failed"


def execute(
    plan: Plan,
    handlers: Mapping[str, Handler],
    *,
    journal: Journal | None = None,
    dry_run: bool = False,
    progress: Callable[[str], None] | None = None,
    resume_hint: str | None = None,
    finish_run: bool = True,
) -> ExecutionResult:
    """Run every step of ``plan`` in order through ``handlers``.

    With ``finish_run`` the journal's ``run_finished`` is written here; callers
    that journal more after the plan pass ``False`` and finish it themselves.
    """
    missing = sorted({s.action for s in plan.steps} - set(handlers))
    if missing:
        raise ValueError(f"no handler for action(s): {', '.join(missing)}")
    ctx = StepContext(dry_run=dry_run, plan=plan, journal=journal, progress=progress or (lambda m: None))
    if journal is not None:
        journal.plan(plan)
    done: list[StepResult] = []
    started = time.monotonic()
    for step in plan.steps:
        if journal is not None:
            journal.step_started(step)
        ctx.progress(("would " if dry_run else "") + step.describe())
        step_started = time.monotonic()
        try:
            result = dict(handlers[step.action](step, ctx) or {})
        except BaseException as exc:
            if journal is not None:
                message = exc.one_line() if isinstance(exc, RollbackError) else f"{type(exc).__name__}: {exc}"
                if isinstance(exc, KeyboardInterrupt):
                    message = "interrupted (Ctrl-C)"
                completed = ", ".join(s.step.id for s in done) or "none"
                journal.step_failed(
                    step,
                    redact_text(message),
                    error_type=type(exc).__name__,
                    resume=resume_hint
                    or f"steps completed before this one: {completed}; fix the cause, then run the same "
                    "command again (completed steps are re-checked, not repeated blindly)",
                )
                status = _status_of(exc)
                code = exc.exit_code if isinstance(exc, RollbackError) else (130 if status == "interrupted" else 1)
                journal.finish(status, code, stopped_at=step.id)
            if isinstance(exc, KeyboardInterrupt):
                raise Interrupted(f"interrupted during step {step.id!r}") from exc
            raise
        ctx.results[step.id] = result
        done.append(StepResult(step, result, time.monotonic() - step_started, dry_run))
        if journal is not None:
            journal.step_finished(step, result, dry_run=dry_run)
    outcome = ExecutionResult(plan, tuple(done), dry_run, journal.run_id if journal else None,
                              time.monotonic() - started)
    if journal is not None and finish_run:
        journal.finish("succeeded", 0, seconds=round(outcome.seconds, 3))
    return outcome
