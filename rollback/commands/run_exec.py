"""Executing a ``rollback run`` plan: the library entry point that ``rollback run --yes`` and
``rollback watch`` share (:func:`execute_run`), and the one journal opener of every state-changing
command (:func:`start_journal`).

:func:`start_journal` opens the run's journal under the environment's run lock and, with ``[lock] url``,
the team lease (:mod:`rollback.lock`): every command that changes the world takes them through it, so a
rule added to the lock or the lease holds for ``run``, ``resume`` and ``watch`` alike.

:func:`execute_run` carries out a plan :func:`~rollback.commands.run_plan.plan_run` made: the incident
(the open one or ``request.incident``, else a new one that records the operator's choice of layers as
its decision), the :class:`~rollback.commands.run.RunTracker` (the incident's timeline and the
notifications), the journal, :func:`rollback.runner.execute`, and the finish: the notifier's end post and
close before the journal is finished, then ``run_finished`` on the incident. A failed or interrupted run
raises its error with ``rollback resume RUN`` in the hint. Showing the plan, asking for confirmation and
drawing progress are the caller's (``progress`` is any :class:`~rollback.runner.RunObserver`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rollback.errors import Interrupted, Refused, RollbackError

if TYPE_CHECKING:
    from rollback.commands.run import RunTracker
    from rollback.commands.run_types import RunPlan, RunRequest
    from rollback.config import Config
    from rollback.context import Services
    from rollback.incident import IncidentLog
    from rollback.journal import Journal
    from rollback.notify import Notifier
    from rollback.plan import Plan
    from rollback.runner import ExecutionResult, RunObserver

__all__ = [
    "NOTIFY_CLOSE_SECONDS",
    "RunResult",
    "execute_run",
    "open_incident",
    "resume_hint",
    "run_summary",
    "start_journal",
    "status_of",
]

NOTIFY_CLOSE_SECONDS = 5.0


def _quiet(message: str) -> None:
    """The default ``say``: a library caller hears nothing."""


def start_journal(config: Config, *, command: str, details: Mapping[str, Any],
                  say: Callable[[str], None] = _quiet) -> Journal:
    """Open a run's journal, taking the environment's run lock and, with ``[lock] url``, the team lease
    (:class:`~rollback.errors.LockHeld`, exit 4, naming the holder, when someone holds either)."""
    from rollback.journal import Journal
    from rollback.lock import TeamLock, describe_holder
    from rollback.redact import redact, redact_text

    lock = config.lock_settings
    team = TeamLock(lock.url, lock.ttl) if lock.url else None
    # Redacted here, where the text is made (an argument may quote a URL with its password):
    # the journal's own redaction is a second guard, not the only one.
    journal = Journal.start(config.journal_dir, command=redact_text(command), env=config.env_name,
                            details=redact(dict(details)), lock=True, lock_identity=config.identity,
                            team_lock=team)
    lease = journal.lock.lease if journal.lock is not None else None
    if lease is not None and lease.taken_over is not None:
        message = f"took over the expired team lease of {describe_holder(lease.taken_over)}"
        say(f"note: {message}")
        journal.note(message, taken_over=lease.taken_over)
    return journal


def status_of(exc: BaseException) -> tuple[str, int]:
    """The journal status and exit code of an error that stopped a run."""
    if isinstance(exc, (KeyboardInterrupt, Interrupted)):
        return "interrupted", 130
    if isinstance(exc, Refused):
        return "refused", exc.exit_code
    if isinstance(exc, RollbackError):
        return "failed", exc.exit_code
    return "failed", 1


def rolled_back(layers: Any) -> tuple[str, ...]:
    """The layers a plan rolls back, in the order ``run`` restores them (not ``core``, ``verify``)."""
    from rollback.decide import order_layers

    return tuple(n for n in order_layers(layers) if n not in ("core", "verify"))


def resume_hint(exc: BaseException, run_id: str | None) -> BaseException:
    """The error to raise: a RollbackError's hint names the command that continues the run."""
    from rollback.runner import next_command_hint

    if run_id and isinstance(exc, RollbackError):
        hint = next_command_hint(exc.hint, f"rollback resume {run_id}")
        return exc if hint == exc.hint else exc.with_hint(hint)
    return exc


def _operator_options(planned: RunPlan) -> dict[str, str]:
    options: dict[str, str] = {}
    for layer in planned.plan.layers:
        if layer == "app":
            options[layer] = str(planned.facts.get("app", {}).get("option") or "vercel-instant-rollback")
        elif layer in ("edge", "assets"):
            options[layer] = "break-glass"
        elif layer == "infra":
            options[layer] = "infra-pin"
        elif layer == "db":
            mode = planned.facts.get("db", {}).get("mode")
            options[layer] = {"repair": "migration-repair", "rds": "rds-restore"}.get(str(mode), "restore-backup")
    return options


def open_incident(config: Config, planned: RunPlan | None, plan: Plan, *, ref: str | None, severity: str | None,
                  detected_at: str | None, drill: bool, command: str, services: Services,
                  say: Callable[[str], None] = _quiet) -> IncidentLog:
    """The incident this run attaches to: ``ref``, the open one, or a new one (a run without a decision
    opens one, and records the operator's choice of layers, ``command``, as its decision)."""
    from rollback.commands import incident as incidents
    from rollback.commands.decide import live_signals
    from rollback.incident import open_incident_of, parse_ts, read_incident

    facts = (planned.facts.get("app") if planned is not None else None) or {}
    initiated = parse_ts(facts.get("from_created"))  # the bad deploy this run rolls back, when known
    log = incidents.attach(config, ref, deployment_initiated_at=initiated)
    if log is None:
        if ref is None:
            stale = open_incident_of(incidents.directory(config), config.env_name)
            why = incidents.superseded(stale, initiated) if stale is not None else None
            if why:
                say(why)
        alarms = None if detected_at else live_signals(config, alarms_only=True, services=services).alarms
        detection = incidents.detect(detected_at, alarms)
        deployment = {"id": facts.get("from"), "created": facts.get("from_created")} if facts.get("from") else None
        log, _ = incidents.ensure(config, None, detection=detection, drill=drill, deployment=deployment,
                                  deployment_initiated_at=initiated)
        say(f"opened incident {log.id} (detected {detection.source}: {detection.detail})")
    if not read_incident(log.path).decision:
        options = _operator_options(planned) if planned is not None else {}
        log.write("decided", severity=severity, layers=list(rolled_back(plan.layers)), options=options,
                  command=command,
                  seconds=0.0, signals=[],
                  reasons=[{"signal": "operator", "value": command, "threshold": "", "unit": "",
                            "detail": "layers chosen by the operator ('rollback run' without a decision)",
                            "why": "the operator's choice", "severity": severity, "source": "operator"}])
    return log


def _with_incident(plan: Plan, incident: str) -> Plan:
    """The plan with the verify step recording on ``incident``."""
    steps = [dataclasses.replace(s, params={**s.params, "incident": incident})
             if s.action == "verify.checklist" and not s.params.get("incident") else s for s in plan.steps]
    return dataclasses.replace(plan, steps=tuple(steps))


@dataclass
class RunResult:
    """A run that went to its end: the plan as run, the runner's result, the incident, the tracker and
    the journal (both None for a dry run)."""

    plan: Plan
    outcome: ExecutionResult
    incident: IncidentLog | None
    tracker: RunTracker | None
    journal: Journal | None


def execute_run(config: Config, plan: Plan, request: RunRequest, services: Services, *,
                start_journal: Callable[..., Journal] | None, command: str, planned: RunPlan | None = None,
                progress: RunObserver | None = None, dry_run: bool = False, detected_at: str | None = None,
                drill: bool = False, notifier: Notifier | None = None, details: Mapping[str, Any] | None = None,
                say: Callable[[str], None] = _quiet) -> RunResult:
    """Carry out ``plan`` (see the module's docstring). ``start_journal(**details)`` opens the journal
    (the CLI's, which also closes it if the process ends early, or :func:`start_journal` with the config
    bound); without it nothing is recorded: no journal, incident or post (a dry run, which the runner
    walks through the same steps). ``command`` is what the incident records as the operator's decision
    when it has none; ``notifier``: post through this one (in order with the caller's own posts)."""
    from rollback.commands.registry import handlers_for
    from rollback.commands.run import RunTracker, handler_services
    from rollback.incident import read_incident
    from rollback.notify import Notifier
    from rollback.runner import Observers, execute

    tracker: RunTracker | None = None
    log: IncidentLog | None = None
    shared = notifier is not None
    if start_journal is not None:
        log = open_incident(config, planned, plan, ref=request.incident, severity=request.severity,
                            detected_at=detected_at, drill=drill, command=command, services=services, say=say)
        plan = _with_incident(plan, log.id)
        if notifier is None:
            notifier = Notifier.from_config(config, incident=log.id, drill=read_incident(log.path).drill, stderr=say)
        tracker = RunTracker(plan, config=config, incident=log, notifier=notifier, severity=request.severity)
    handlers = handlers_for(config, plan.actions, handler_services(services, request.poll_interval))
    fields = {"layer": "run", "verb": "run", "layers": list(plan.layers), "severity": request.severity,
              "incident": log.id if log else None, "poll_interval": request.poll_interval, **dict(details or {})}
    journal: Journal | None = None
    observers = Observers(*(o for o in (progress, tracker) if o is not None))
    try:
        if start_journal is not None:
            journal = start_journal(**fields)
            if tracker is not None:
                tracker.started(journal)
        outcome = execute(plan, handlers, journal=journal, dry_run=dry_run, progress=observers, finish_run=False)
    except BaseException as exc:
        status, code = status_of(exc)
        if tracker is not None:
            if tracker.run_id is not None:
                tracker.finish(status, code)
            else:  # the journal never opened (the lock is held): only the caller's own posts are waiting
                tracker.notifier.close(timeout=NOTIFY_CLOSE_SECONDS if shared else 0)
            if journal is not None and not journal.finished:
                journal.finish(status, code, error=(exc.one_line() if isinstance(exc, RollbackError)
                                                    else type(exc).__name__)[:500])
            tracker.closed(status, code)
        if isinstance(exc, RollbackError) and journal is not None:
            exc.details.setdefault("run", journal.run_id)  # the run to resume
        again = resume_hint(exc, journal.run_id if journal is not None else None)
        if again is exc:
            raise
        raise again from exc
    if tracker is not None:
        tracker.finish("succeeded", 0, timeout=NOTIFY_CLOSE_SECONDS)
    if journal is not None:
        journal.finish("succeeded", 0, seconds=round(outcome.seconds, 3))
    if tracker is not None:
        tracker.closed("succeeded", 0)
    return RunResult(plan, outcome, log, tracker, journal)


def run_summary(tracker: RunTracker | None, outcome: ExecutionResult) -> dict[str, Any]:
    """What a run's ``--json`` adds: the verification's summary, when service was restored, the incident's
    metrics and targets, and the notifications."""
    verification = next((dict(s.result) for s in outcome.steps if s.step.action == "verify.checklist"), None)
    document: dict[str, Any] = {"verification": verification}
    if tracker is not None:
        metrics, targets = tracker.metrics()
        document.update(restored={"layer": tracker.layer, "step": tracker.restored_step,
                                  "at": tracker.restored_at} if tracker.restored else None,
                        metrics=metrics, targets=targets, notifications=tracker.notifier.report.to_dict())
    return document
