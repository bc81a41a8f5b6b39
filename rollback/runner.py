"""Apply a :class:`~rollback.plan.Plan`: check each step, act on it, journal it.

A handler is an object with two methods (:class:`StepHandler`):

- ``check(step, ctx) -> Check``: read-only, what the world is like. ``Check.done``
  means the step's effect is already there ("already rolled back", "backup
  already taken"): that is a result, not an error;
- ``act(step, ctx) -> dict``: the side effect; returns the step's result.

Handlers read only ``step.params`` and ``ctx.results`` (the results of earlier
steps), so that a plan printed as JSON, or read back from a journal, runs the
same as the plan built a moment ago. For every step :func:`execute` journals
*started*, calls ``check``, and then: if done, journals *finished* with
``already_done: true``; in a dry run, records ``{"would": ..., **check.result}``;
otherwise calls ``act``. That is the only place a dry run branches.

:class:`Run` is the one path from a plan to its finish that every state-changing
command shares (a single-layer command, ``rollback run`` and ``watch``, ``resume``,
a library caller): plan -> confirmation policy -> journal (:func:`open_journal`,
the one opener: the run lock and the team lease) -> :func:`execute` -> finish.
The CLI injects a terminal confirmation and live progress; a library caller
injects none. :func:`resume` is the same run with the finished steps taken from
a journal (:meth:`Run.resuming`): it continues from the first unfinished step;
the finished ones are re-checked, not repeated. Ctrl-C, SIGTERM and SIGHUP stop
the run between steps, or interrupt the running step; either way the journal
says where it stopped, and the run ends with :class:`~rollback.errors.Interrupted`
(exit 130).
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, runtime_checkable

from rollback.errors import BadInput, Interrupted, LockHeld, Refused, RollbackError, UnsafePrecondition
from rollback.interrupts import STOP_SIGNALS, handling
from rollback.lock import ensure_held
from rollback.plan import PLAN_FORMAT, Plan, Step, finished_word
from rollback.redact import redact, redact_text

if TYPE_CHECKING:
    from rollback.config import Config
    from rollback.journal import Journal, RunRecord

__all__ = [
    "ACTION_RENAMES",
    "Check",
    "ExecutionResult",
    "Handlers",
    "JournalOpener",
    "Observers",
    "Prepared",
    "Progress",
    "ResumePoint",
    "Run",
    "RunObserver",
    "StepContext",
    "StepFunctions",
    "StepHandler",
    "StepResult",
    "as_observer",
    "execute",
    "handler",
    "load_resume_point",
    "next_command_hint",
    "open_journal",
    "read_only",
    "resume",
    "status_of",
    "steps_in_format",
]

# Action names are ``family.snake_case``. Plans written before the plan format was recorded (format 1: a
# journal's ``step_planned`` or a ``--plan`` file without ``plan_format``) used some other names: their
# translation to today's. A newer format needs no map: the version says how to read it.
ACTION_RENAMES: Mapping[str, str] = {
    "infra.backup-config": "infra.backup_config",
    "infra.desired-state": "infra.desired_state",
    "infra.write-config": "infra.write_config",
}


def steps_in_format(steps: Any, plan_format: Any, *, where: str = "the plan") -> Any:
    """Serialised steps (as ``Plan.to_dict()["steps"]``) written in ``plan_format`` (``None``: format 1),
    read as today's (:data:`~rollback.plan.PLAN_FORMAT`): format 1's action names are translated through
    :data:`ACTION_RENAMES`; a format newer than this version knows is refused (exit 2). Anything that is
    not a list of objects is returned as it is, for :meth:`Plan.from_dict` to refuse."""
    version = 1 if plan_format is None else plan_format
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= PLAN_FORMAT:
        raise BadInput(f"{where} is in plan format {plan_format!r}, which this version of rollback cannot read "
                       f"(it reads formats 1 to {PLAN_FORMAT})", "use the rollback version that wrote it, or upgrade")
    if version > 1 or not isinstance(steps, list):
        return steps
    return [{**step, "action": ACTION_RENAMES.get(step["action"], step["action"])}
            if isinstance(step, Mapping) and isinstance(step.get("action"), str) else step for step in steps]


@dataclass(frozen=True)
class Check:
    """What a step's ``check`` found. ``done``: the effect is already there and ``result`` is the
    step's result; otherwise ``would`` says in one line what ``act`` would do (a dry run prints it),
    and ``result`` holds what the check read (recorded with ``would`` in a dry run)."""

    done: bool = False
    result: Mapping[str, Any] = field(default_factory=dict)
    would: str = ""


@dataclass
class StepContext:
    """What a handler gets besides its step.

    ``results`` holds the results of the steps before this one, keyed by step id.
    ``earlier`` holds the results of steps finished by an earlier run that this
    one resumes (``resumes`` is that run's id): a check sees there what its step
    did then. ``checked`` is the check of the step being acted on (a read-only
    step returns what its check read instead of reading it twice).
    ``dry_run`` is for information only: handlers never branch on it.
    """

    dry_run: bool
    plan: Plan
    journal: Journal | None = None
    results: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    progress: Callable[[str], None] = lambda message: None
    earlier: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    resumes: str | None = None
    checked: Check | None = None

    @property
    def resuming(self) -> bool:
        """Whether this run continues an earlier one. In a fresh run, what the planning read moments
        ago still holds (nothing has acted since); a resumed run must read the world again."""
        return self.resumes is not None or bool(self.earlier)

    @property
    def run_id(self) -> str | None:
        return self.journal.run_id if self.journal is not None else None

    def note(self, message: str, **fields: Any) -> None:
        """Tell the operator, and the journal, something worth knowing mid-step."""
        message = redact_text(message)  # notes quote API and tool messages: redacted where made
        self.progress(message)
        if self.journal is not None:
            self.journal.note(message, **redact(fields))


@runtime_checkable
class StepHandler(Protocol):
    """The two halves of a step: a read-only ``check`` and the ``act``."""

    def check(self, step: Step, ctx: StepContext) -> Check:
        """What the world is like; ``Check(done=True, result=...)`` when the step's effect is there."""

    def act(self, step: Step, ctx: StepContext) -> Mapping[str, Any]:
        """Carry out the step; return its result (JSON-serialisable, no secrets)."""


Handlers = Mapping[str, StepHandler]
ActFunction = Callable[[Step, StepContext], Mapping[str, Any] | None]
CheckFunction = Callable[[Step, StepContext], Check]


@dataclass(frozen=True)
class StepFunctions:
    """A :class:`StepHandler` made of two functions (a layer class binds its methods this way).

    Without a ``check`` function the step is never found done in a fresh run; when
    resuming, a step the earlier run finished counts as done with that run's result."""

    act_function: ActFunction
    check_function: CheckFunction | None = None
    creates_database: bool = False  # the journal names the steps that make a database beside the live one

    def check(self, step: Step, ctx: StepContext) -> Check:
        if self.check_function is not None:
            return self.check_function(step, ctx)
        earlier = ctx.earlier.get(step.id)
        return Check(done=earlier is not None, result=dict(earlier or {}), would=step.describe())

    def act(self, step: Step, ctx: StepContext) -> Mapping[str, Any]:
        return dict(self.act_function(step, ctx) or {})


def handler(act: ActFunction, check: CheckFunction | None = None, *, creates_database: bool = False) -> StepHandler:
    """A :class:`StepHandler` from an ``act`` function and an optional ``check`` function (``creates_database``:
    the step makes a database beside the live one, and the journal's ``step_planned`` says so)."""
    return StepFunctions(act, check, creates_database)


def _checked_result(step: Step, ctx: StepContext) -> Mapping[str, Any]:
    return dict(ctx.checked.result) if ctx.checked is not None else {}


def read_only(check: CheckFunction) -> StepHandler:
    """A step that only reads (verify a backup, check the rights): its check does the work and
    its act returns what the check found, so a dry run walks (and can fail on) the same reads.
    Resumed, a step the earlier run finished is done when its check passes again."""

    def again(step: Step, ctx: StepContext) -> Check:
        found = check(step, ctx)
        if step.id in ctx.earlier:
            return Check(True, found.result, found.would)
        return found

    return StepFunctions(_checked_result, again)


# ------------------------------------------------------------------ results


@dataclass(frozen=True)
class StepResult:
    step: Step
    result: Mapping[str, Any]
    seconds: float
    dry_run: bool
    already_done: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.step.id, "description": self.step.describe(), "layer": self.step.layer,
                "result": dict(self.result), "seconds": round(self.seconds, 3), "dry_run": self.dry_run,
                "already_done": self.already_done}


@dataclass(frozen=True)
class ExecutionResult:
    plan: Plan
    steps: tuple[StepResult, ...]
    dry_run: bool
    run_id: str | None
    seconds: float
    resumes: str | None = None

    def result_of(self, step_id: str) -> Mapping[str, Any]:
        for item in self.steps:
            if item.step.id == step_id:
                return item.result
        raise KeyError(step_id)

    def to_dict(self) -> dict[str, Any]:
        document = {"plan": self.plan.to_dict(), "dry_run": self.dry_run, "run": self.run_id,
                    "seconds": round(self.seconds, 3), "steps": [s.to_dict() for s in self.steps]}
        if self.resumes:
            document["resumes"] = self.resumes
        return document


# ------------------------------------------------------------------ progress


class RunObserver:
    """What a live display learns from the runner. The default does nothing; the CLI's
    table with a spinner and plain progress lines are both observers."""

    def note(self, message: str) -> None:
        """A note from a step (job status, a retry...)."""

    def step_started(self, number: int, step: Step, *, dry_run: bool) -> None:
        """``step`` (1-based ``number``) is about to be checked and acted on."""

    def step_finished(self, number: int, item: StepResult) -> None:
        """The step finished (or was found already done)."""

    def step_failed(self, number: int, step: Step, error: BaseException) -> None:
        """The step failed or was interrupted; the run stops here."""

    def run_started(self, journal: Journal) -> None:
        """The run's journal is open, before the first step (:class:`Run` only)."""

    def run_ending(self, status: str, exit_code: int) -> None:
        """The run stops and its journal is about to be finished: the last moment to write to it.
        :func:`execute` says so when a step fails, is refused or interrupted; :class:`Run` on every end
        (a completed plan, an error before the first step, a journal that never opened)."""

    def run_finished(self, status: str, exit_code: int) -> None:
        """The run's journal is finished (:class:`Run` only)."""


class Observers(RunObserver):
    """Several observers as one (a live display and an incident's bookkeeping, say), called in order."""

    def __init__(self, *observers: RunObserver) -> None:
        self.observers = observers

    def note(self, message: str) -> None:
        for observer in self.observers:
            observer.note(message)

    def step_started(self, number: int, step: Step, *, dry_run: bool) -> None:
        for observer in self.observers:
            observer.step_started(number, step, dry_run=dry_run)

    def step_finished(self, number: int, item: StepResult) -> None:
        for observer in self.observers:
            observer.step_finished(number, item)

    def step_failed(self, number: int, step: Step, error: BaseException) -> None:
        for observer in self.observers:
            observer.step_failed(number, step, error)

    def run_started(self, journal: Journal) -> None:
        for observer in self.observers:
            observer.run_started(journal)

    def run_ending(self, status: str, exit_code: int) -> None:
        for observer in self.observers:
            observer.run_ending(status, exit_code)

    def run_finished(self, status: str, exit_code: int) -> None:
        for observer in self.observers:
            observer.run_finished(status, exit_code)


class _Lines(RunObserver):
    """Plain lines through a ``Callable[[str], None]`` (the historical ``progress`` argument)."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say

    def note(self, message: str) -> None:
        self.say(message)

    def step_started(self, number: int, step: Step, *, dry_run: bool) -> None:
        self.say(("would " if dry_run else "") + step.describe())

    def step_finished(self, number: int, item: StepResult) -> None:
        if item.already_done:
            self.say(f"{finished_word(item.step.action)}: {item.step.describe()}")


Progress = Callable[[str], None] | RunObserver


def as_observer(progress: Progress | None) -> RunObserver:
    """``progress`` (one-line function, observer or ``None``) as a :class:`RunObserver`."""
    if progress is None:
        return RunObserver()
    if isinstance(progress, RunObserver):
        return progress
    return _Lines(progress)


# ------------------------------------------------------------------ signals


class _Interrupts:
    """SIGINT, SIGTERM and SIGHUP while a plan runs: inside a step they raise
    KeyboardInterrupt (interrupting it); between steps they are remembered and the
    run stops before the next step, so a journal entry is never cut in half."""

    def __init__(self) -> None:
        self.pending: str | None = None
        self.armed = False
        self._handlers = ExitStack()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.armed:
            self.armed = False  # a second signal while the step cleans up is only remembered
            raise KeyboardInterrupt(name)
        self.pending = self.pending or name

    def __enter__(self) -> _Interrupts:
        # A signal ignored when the run starts (nohup's SIGHUP) stays ignored.
        self._handlers.enter_context(handling(self._handle, STOP_SIGNALS))
        return self

    def __exit__(self, *exc: object) -> None:
        self._handlers.close()

    @contextmanager
    def step(self) -> Iterator[None]:
        if self.pending:
            # It came after the step was journaled as started but before it was armed: interrupt the step
            # now, at its start, rather than let it run to its end (a wait, a 5-minute checklist).
            name, self.pending = self.pending, None
            raise KeyboardInterrupt(name)
        self.armed = True
        try:
            yield
        finally:
            self.armed = False


def _signal_text(name: str | None) -> str:
    return "Ctrl-C" if name in (None, "", "SIGINT") else name


# ------------------------------------------------------------------ execute


def status_of(exc: BaseException) -> tuple[str, int]:
    """The journal status and exit code of an error that stopped a run."""
    if isinstance(exc, (KeyboardInterrupt, Interrupted)):
        return "interrupted", 130
    if isinstance(exc, Refused):
        return "refused", exc.exit_code
    if isinstance(exc, RollbackError):
        return "failed", exc.exit_code
    return "failed", 1


def _run_step(chosen: StepHandler, step: Step, ctx: StepContext) -> tuple[dict[str, Any], bool]:
    """``(result, already_done)``: check, then (unless done, or a dry run) act."""
    ctx.checked = None
    check = chosen.check(step, ctx)
    earlier = ctx.earlier.get(step.id)
    if check.done:
        return ({**check.result, **earlier} if earlier is not None else dict(check.result)), True
    if earlier is not None:
        # Finished by the earlier run, but its effect is gone: repeating it blindly could undo
        # whatever changed the world since. Stop and say so.
        raise UnsafePrecondition(
            f"step {step.id} ({step.describe()}) was finished by run {ctx.resumes or 'an earlier run'}, but "
            f"checking it again finds it not done: {check.would or 'its effect is gone'}",
            "something changed since that run: look at the current state, then plan a new run instead of "
            "resuming this one", details={"step": step.id})
    if ctx.dry_run:
        return {"would": check.would, **check.result}, False
    ctx.checked = check
    ensure_held()  # immediately before the act: a team lease lost during the check stops it here
    return dict(chosen.act(step, ctx) or {}), False


def _resume_text(journal: Journal, completed: list[StepResult]) -> str:
    done = ", ".join(s.step.id for s in completed) or "none"
    return (f"steps completed before this one: {done}; fix the cause, then 'rollback resume {journal.run_id}' "
            "continues from this step (finished steps are re-checked, not repeated)")


def execute(
    plan: Plan,
    handlers: Handlers,
    *,
    journal: Journal | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
    done: Mapping[str, Mapping[str, Any]] | None = None,
    resumes: str | None = None,
    resume_hint: str | None = None,
    finish_run: bool = True,
) -> ExecutionResult:
    """Run every step of ``plan`` in order through ``handlers`` (action -> :class:`StepHandler`).

    ``progress`` is a function taking one line, or a :class:`RunObserver`. ``done`` holds the
    results of steps an earlier run finished (``resumes`` is its run id): they are re-checked,
    not acted on again. With ``finish_run`` the journal's ``run_finished`` is written here;
    callers that journal more after the plan pass ``False`` and finish it themselves.
    """
    missing = sorted({s.action for s in plan.steps} - set(handlers))
    if missing:
        raise ValueError(f"no handler for action(s): {', '.join(missing)}")
    for action in plan.actions:
        if not isinstance(handlers[action], StepHandler):
            raise TypeError(f"the handler of {action!r} is not a StepHandler (an object with check() and act()); "
                            "wrap a function with rollback.runner.handler(act, check)")
    earlier = {str(k): dict(v) for k, v in (done or {}).items()}
    unknown = sorted(set(earlier) - {s.id for s in plan.steps})
    if unknown:
        raise ValueError(f"finished step(s) not in the plan: {', '.join(unknown)}")
    observer = as_observer(progress)
    ctx = StepContext(dry_run=dry_run, plan=plan, journal=journal, progress=observer.note, earlier=earlier,
                      resumes=resumes)
    if journal is not None:
        journal.plan(plan, creating=[s.id for s in plan.steps
                                     if getattr(handlers[s.action], "creates_database", False)])
    completed: list[StepResult] = []
    started = time.monotonic()
    with _Interrupts() as interrupts:
        for number, step in enumerate(plan.steps, start=1):
            if interrupts.pending:
                why = _signal_text(interrupts.pending)
                if journal is not None:
                    journal.note(f"interrupted ({why}) before step {step.id}", signal=interrupts.pending)
                observer.run_ending("interrupted", 130)
                if journal is not None:
                    journal.finish("interrupted", 130, stopped_before=step.id,
                                   resume=resume_hint or _resume_text(journal, completed).replace(
                                       "this step", f"step {step.id}"))
                raise Interrupted(f"interrupted ({why}) before step {step.id!r}; the steps before it are done")
            try:
                ensure_held()  # before every step: a lost team lease stops the run here (exit 4)
            except LockHeld as exc:
                if journal is not None:
                    journal.note(exc.message, lease_lost=True, holder=exc.holder)
                observer.run_ending("refused", exc.exit_code)
                if journal is not None:
                    journal.finish("refused", exc.exit_code, stopped_before=step.id,
                                   resume=resume_hint or _resume_text(journal, completed).replace(
                                       "this step", f"step {step.id}").replace("fix the cause", "once the lease "
                                                                               "is free"))
                raise
            if journal is not None:
                journal.step_started(step)
            observer.step_started(number, step, dry_run=dry_run)
            step_started = time.monotonic()
            try:
                with interrupts.step():
                    result, already_done = _run_step(handlers[step.action], step, ctx)
            except BaseException as exc:
                status, code = status_of(exc)
                if journal is not None:
                    message = exc.one_line() if isinstance(exc, RollbackError) else f"{type(exc).__name__}: {exc}"
                    if isinstance(exc, KeyboardInterrupt):
                        message = f"interrupted ({_signal_text(str(exc))})"
                    journal.step_failed(step, redact_text(message), error_type=type(exc).__name__,
                                        resume=resume_hint or _resume_text(journal, completed))
                observer.step_failed(number, step, exc)
                observer.run_ending(status, code)
                if journal is not None:
                    journal.finish(status, code, stopped_at=step.id)
                if isinstance(exc, KeyboardInterrupt):
                    raise Interrupted(f"interrupted ({_signal_text(str(exc))}) during step {step.id!r}") from exc
                raise
            ctx.results[step.id] = result
            item = StepResult(step, result, time.monotonic() - step_started, dry_run, already_done)
            completed.append(item)
            if journal is not None:
                journal.step_finished(step, result, dry_run=dry_run, already_done=already_done)
            observer.step_finished(number, item)
    outcome = ExecutionResult(plan, tuple(completed), dry_run, journal.run_id if journal else None,
                              time.monotonic() - started, resumes)
    if journal is not None and finish_run:
        journal.finish("succeeded", 0, seconds=round(outcome.seconds, 3))
    return outcome


# ------------------------------------------------------------------ resume

RESUMABLE = ("failed", "interrupted", "refused", "unfinished")


@dataclass(frozen=True)
class ResumePoint:
    """A journaled run as :func:`resume` continues it: the plan, the finished steps' results,
    and the first step not finished."""

    run_id: str
    env: str
    status: str
    command: str | None
    plan: Plan
    done: Mapping[str, Mapping[str, Any]]
    next_step: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run_id, "env": self.env, "status": self.status, "command": self.command,
                "plan": self.plan.to_dict(), "done": sorted(self.done), "next_step": self.next_step}


# "..., then run the command again": said by errors raised inside a run, where the command to type again
# is the resume (a second command beside it would leave the reader to choose).
_AGAIN = re.compile(r"[,;]?\s*(?:and |then )?(?:re-?run|run) (?:the|this|that|it)(?: same)?(?: command)?(?: again)?"
                    r"(?=$|[;,.)])", re.IGNORECASE)
# A command of its own in a hint ('rollback journal ...' only points at the record, where the resume is).
_QUOTED_COMMAND = re.compile(r"['`](?:rollback (?!journal)|pulumi |aws |vercel |psql |git )[^'`]+['`]")


def next_command_hint(hint: str, resume: str) -> str:
    """A failed run's hint naming one next command, not two: an advice to run the command again becomes
    ``..., then: <resume>``; a hint that names a command of its own (``'rollback verify'``) keeps it as the
    one; otherwise the resume is added. ``resume`` is ``rollback resume <run id>``."""
    if "rollback resume" in hint:
        return hint
    cleaned = _AGAIN.sub("", hint).strip(" ;,.")
    if not _QUOTED_COMMAND.search(hint) and "rollback journal" in hint:
        cleaned = ""  # the default hint: the resume says more than the journal listing
    if cleaned != hint.strip(" ;,.") or not _QUOTED_COMMAND.search(hint):
        return f"{cleaned}, then: {resume}" if cleaned else f"continue with: {resume}"
    return hint


def _plan_of(record: RunRecord) -> Plan:
    planned = next((e for e in record.entries if e.get("event") == "step_planned"), None)
    if planned is None:
        raise BadInput(f"run {record.run_id} stopped before its plan was journaled: there is nothing to resume",
                       "run the command again")
    env = planned.get("env") or record.started.get("env")
    steps = steps_in_format(planned.get("steps"), planned.get("plan_format"),
                            where=f"run {record.run_id}'s journaled plan")
    try:
        return Plan.from_dict({"title": planned.get("title", ""), "env": env, "steps": steps,
                               "notes": planned.get("notes", [])})
    except BadInput as exc:
        raise BadInput(f"run {record.run_id}: the journaled plan cannot be read back ({exc.message})",
                       "run the command again") from exc


def load_resume_point(journal_dir: Path, run: str) -> ResumePoint:
    """Read run ``run`` (an id, a unique prefix, or ``last``) back for :func:`resume`.

    Refuses (exit 2) a run that succeeded, a dry run, a run without a journaled
    plan, and a run that a later run already resumes (resume that one instead)."""
    from rollback.journal import find_run, list_runs

    record = find_run(journal_dir, run)
    if record.started.get("dry_run"):
        raise BadInput(f"run {record.run_id} was a dry run: it changed nothing, so there is nothing to resume",
                       "run the command without --dry-run")
    if record.status not in RESUMABLE:
        raise BadInput(f"run {record.run_id} {record.status}: there is nothing to resume",
                       "see 'rollback journal show " + record.run_id + "'")
    later = [r.run_id for r in list_runs(journal_dir) if r.started.get("resumes") == record.run_id]
    if later:
        raise BadInput(f"run {record.run_id} was already resumed by run {later[0]}",
                       f"resume that one instead: rollback resume {later[0]}")
    plan = _plan_of(record)
    done: dict[str, Mapping[str, Any]] = {}
    for entry in record.entries:
        if entry.get("event") == "step_finished" and not entry.get("dry_run"):
            result = entry.get("result")
            done[str(entry.get("step"))] = dict(result) if isinstance(result, Mapping) else {}
        elif entry.get("event") == "step_failed":
            done.pop(str(entry.get("step")), None)
    ids = {s.id for s in plan.steps}
    done = {k: v for k, v in done.items() if k in ids}
    next_step = next((s.id for s in plan.steps if s.id not in done), None)
    return ResumePoint(record.run_id, str(plan.env), record.status, record.started.get("command"), plan, done,
                       next_step)


def resume(
    source: Config | Path,
    run: str,
    handlers: Handlers | Callable[[Plan], Handlers],
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
    command: str | None = None,
    details: Mapping[str, Any] | None = None,
    lock: bool = True,
    on_journal: Callable[[Journal], None] | None = None,
) -> ExecutionResult:
    """Continue run ``run`` from its first unfinished step, in a new journaled run: the library's
    ``rollback resume``, the same :class:`Run` with the finished steps taken from the journal.

    ``source`` is the environment's :class:`~rollback.config.Config` (the new run takes its run lock
    and, with ``[lock] url``, the team lease, through :func:`open_journal` like every other run), or a
    bare journal directory (no config: the local run lock only). The plan comes from the old run's
    ``step_planned`` entry and the finished steps' results from its ``step_finished`` entries;
    ``handlers`` is a mapping, or a function that builds one from the plan
    (``lambda plan: handlers_for(config, plan.actions, services)``). Finished steps are re-checked
    (``already_done`` in the new journal), never repeated; the step that was running is checked first,
    so one that completed before a SIGKILL is not done twice. The new run's ``run_started`` records
    ``resumes``. A dry run changes nothing and is not journaled. ``on_journal`` sees the new journal
    as soon as it exists.
    """
    journal_dir = _journal_dir(source)
    point = load_resume_point(journal_dir, run)
    env = getattr(source, "env_name", None)
    if env is not None and point.env != env:
        raise BadInput(f"run {point.run_id} is of env {point.env!r}, not {env!r}", f"pass --env {point.env}")
    said = command or f"rollback resume {point.run_id}"
    where: Config | Path = journal_dir if env is None else source

    def opener(**fields: Any) -> Journal:
        return open_journal(where, command=said, env=point.env, details=fields, lock=lock)

    return Run.resuming(point, handlers, dry_run=dry_run, open_journal=opener, details=dict(details or {}),
                        observers=(as_observer(progress),), on_journal=on_journal).go()


def _journal_dir(source: Config | Path | str) -> Path:
    journal_dir = getattr(source, "journal_dir", None)
    return Path(journal_dir) if journal_dir is not None else Path(source)  # type: ignore[arg-type]


# ------------------------------------------------------------------ the journal: one opener


def _quiet(message: str) -> None:
    """The default ``say``: a library caller hears nothing."""


def open_journal(where: Config | Path, *, command: str, details: Mapping[str, Any] | None = None,
                 env: str | None = None, lock: bool = True, say: Callable[[str], None] = _quiet) -> Journal:
    """Open a run's journal: the one opener of every state-changing run (the CLI's commands, ``run``,
    ``resume``, ``watch`` and a library :func:`resume` alike).

    ``where`` is the environment's :class:`~rollback.config.Config`: the journal goes to its journal
    directory under the environment's run lock and, with ``[lock] url``, the team lease
    (:class:`~rollback.errors.LockHeld`, exit 4, naming the holder, when someone holds either); a lease
    taken over from an expired holder is noted in the journal and told through ``say``. A bare journal
    directory (a library caller without a config; ``env`` required) takes the local run lock only:
    without a config there is no team lease to take. ``lock=False`` takes neither (tests).
    """
    from rollback.journal import Journal
    from rollback.lock import TeamLock, describe_holder

    if isinstance(where, (str, Path)):
        if env is None:
            raise TypeError("open_journal(journal_dir, ...) needs env=")
        directory, identity, team = Path(where), None, None
    else:
        directory, identity, env = where.journal_dir, where.identity, where.env_name
        settings = where.lock_settings
        team = TeamLock(settings.url, settings.ttl) if settings.url else None
    # Redacted here, where the text is made (an argument may quote a URL with its password):
    # the journal's own redaction is a second guard, not the only one.
    journal = Journal.start(directory, command=redact_text(command), env=env, details=redact(dict(details or {})),
                            lock=lock, lock_identity=identity, team_lock=team)
    lease = journal.lock.lease if journal.lock is not None else None
    if lease is not None and lease.taken_over is not None:
        message = f"took over the expired team lease of {describe_holder(lease.taken_over)}"
        say(f"note: {message}")
        journal.note(message, taken_over=lease.taken_over)
    return journal


# ------------------------------------------------------------------ the run: plan to finish


class JournalOpener(Protocol):
    """Opens a run's journal with ``details`` in its ``run_started`` (:func:`open_journal` bound to a
    config, or the CLI's ``AppContext.start_journal``, which also closes it if the process ends early)."""

    def __call__(self, **details: Any) -> Journal: ...


Confirm = Callable[[Plan], bool]
"""The confirmation policy: shows the plan and asks (raising :class:`~rollback.errors.Refused` or
:class:`~rollback.errors.ConfirmationRequired` for a no); returns whether a question was asked."""

Display = Callable[[Plan, bool], AbstractContextManager[RunObserver]]
"""The live display of a running plan: ``display(plan, asked)`` enters an observer for the run's length."""


class _Everyone(Observers):
    """A run's observers, told of its end once (:func:`execute` tells them of a failed step's)."""

    ended = False

    def run_ending(self, status: str, exit_code: int) -> None:
        if not self.ended:
            self.ended = True
            super().run_ending(status, exit_code)


def _error_line(exc: BaseException) -> str:
    text = exc.one_line() if isinstance(exc, RollbackError) else f"{type(exc).__name__}: {exc}".rstrip(": ")
    return redact_text(text)[:500]


def _naming_resume(exc: BaseException, run_id: str) -> BaseException:
    """The error to raise: a RollbackError's hint names the command that continues the run."""
    if isinstance(exc, RollbackError):
        exc.details.setdefault("run", run_id)  # the run to resume
        hint = next_command_hint(exc.hint, f"rollback resume {run_id}")
        return exc if hint == exc.hint else exc.with_hint(hint)
    return exc


Facts = TypeVar("Facts")


@dataclass(frozen=True)
class Prepared(Generic[Facts]):
    """A plan ready to run: what every planner returns (the app's rollback, promote and revert, the
    edge, assets and CloudFront restores, the stack's preview and restore, ``rollback run``).

    - ``plan``: the steps, exactly as they will run (and as ``--dry-run --json`` prints them);
    - ``facts``: what it was planned from, the layer's own record (the deployments, the distribution and
      the ETag it was read with, the hazards of a cross-layer run, ...): shown, never re-read by a step;
    - ``handlers``: what carries the steps out. A planner that reads through one client (the app's, on a
      Vercel client) returns none; the caller attaches them (:meth:`with_handlers`) from its services.

    :meth:`run` is the :class:`Run` of it; ``to_dict`` is the plan and the facts' own document.
    """

    plan: Plan
    facts: Facts
    handlers: Mapping[str, StepHandler] = field(default_factory=dict)

    def with_handlers(self, handlers: Mapping[str, StepHandler]) -> Prepared[Facts]:
        return replace(self, handlers=handlers)

    def run(self, **options: Any) -> Run:
        """The :class:`Run` of this plan with its handlers (``options`` as :class:`Run` takes them)."""
        return Run(self.plan, dict(self.handlers), **options)

    def to_dict(self) -> dict[str, Any]:
        document = getattr(self.facts, "to_dict", None)
        return {"plan": self.plan.to_dict(), **(document() if callable(document) else {})}


@dataclass
class Run:
    """One plan from confirmation to finish: the controller every state-changing path shares.

    :meth:`go` walks ``plan`` -> ``confirm`` -> ``prepare`` -> the journal (``open_journal``: lock and
    lease) -> :func:`execute` -> the finish. The CLI injects a terminal confirmation and a live
    ``display``; a library caller injects neither (it decided). :meth:`resuming` is the same run with
    the finished steps taken from an earlier run's journal.

    - ``handlers``: a mapping, or a function of the plan as run (after ``prepare``);
    - ``open_journal``: without it (or in a dry run) nothing is journaled;
    - ``prepare(run)``: after the confirmation, before the journal opens: may replace ``run.plan``, add
      ``observers`` and ``details`` (``rollback run`` attaches its incident and tracker here, so that
      a plan refused at the prompt opens no incident);
    - ``observers`` see every step and the run's ends: ``run_started(journal)``, ``run_ending`` (before
      the journal's ``run_finished``: the last moment to write to it) and ``run_finished`` (after);
    - ``names_resume``: a failed run's error names ``rollback resume RUN`` as the next command;
    - ``journal``: an already open journal (a library caller's own, dry runs included) instead of
      ``open_journal``; after :meth:`go` starts, the run's journal either way.

    The finish is the same on every path: the observers' ``run_ending``, ``run_finished`` in the
    journal (with the error's line when the run stopped before a step could record it), then the
    observers' ``run_finished``; the journal is closed and its lock released.
    """

    plan: Plan
    handlers: Handlers | Callable[[Plan], Handlers]
    dry_run: bool = False
    open_journal: JournalOpener | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    confirm: Confirm | None = None
    display: Display | None = None
    prepare: Callable[[Run], None] | None = None
    observers: tuple[RunObserver, ...] = ()
    done: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    resumes: str | None = None
    on_journal: Callable[[Journal], None] | None = None
    names_resume: bool = False
    journal: Journal | None = None

    @classmethod
    def resuming(cls, point: ResumePoint, handlers: Handlers | Callable[[Plan], Handlers], **options: Any) -> Run:
        """The run that continues ``point``: its plan, its finished steps re-checked, ``resumes`` journaled."""
        return cls(point.plan, handlers, done=point.done, resumes=point.run_id, **options)

    def go(self) -> ExecutionResult:
        """Confirm, journal, execute and finish (see the class docstring); raises the error that stopped it."""
        asked = self.confirm(self.plan) if self.confirm is not None else False
        everyone = _Everyone(*self.observers)
        try:
            if self.prepare is not None:
                self.prepare(self)
                everyone = _Everyone(*self.observers)
            handlers = self.handlers(self.plan) if callable(self.handlers) else self.handlers
            if self.journal is None and self.open_journal is not None and not self.dry_run:
                fields = {**({"resumes": self.resumes} if self.resumes else {}), **dict(self.details)}
                self.journal = self.open_journal(**fields)
            if self.journal is not None:
                if self.on_journal is not None:
                    self.on_journal(self.journal)
                everyone.run_started(self.journal)
            shown = self.display(self.plan, asked) if self.display is not None else nullcontext(RunObserver())
            with shown as display:
                outcome = execute(self.plan, handlers, journal=self.journal, dry_run=self.dry_run,
                                  progress=Observers(display, everyone), done=self.done, resumes=self.resumes,
                                  finish_run=False)
        except BaseException as exc:
            status, code = status_of(exc)
            everyone.run_ending(status, code)
            journal = self.journal
            if journal is not None and not journal.finished:  # stopped before a step could record it
                journal.finish(status, code, error=_error_line(exc))
            everyone.run_finished(status, code)
            again = _naming_resume(exc, journal.run_id) if self.names_resume and journal is not None else exc
            if again is exc:
                raise
            raise again from exc
        everyone.run_ending("succeeded", 0)
        if self.journal is not None:
            self.journal.finish("succeeded", 0, seconds=round(outcome.seconds, 3))
        everyone.run_finished("succeeded", 0)
        return outcome
