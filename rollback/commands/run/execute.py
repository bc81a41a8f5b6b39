"""Executing a ``rollback run`` plan: the library entry point that ``rollback run --yes`` and
``rollback watch`` share (:func:`execute_run`).

:func:`execute_run` carries out a plan :func:`~rollback.commands.run.plan.plan_run` made as a
:class:`rollback.runner.Run` (the controller every state-changing command shares, ``resume`` included),
adding what a cross-layer run keeps besides: the incident (the open one or ``request.incident``, else a
new one that records the operator's choice of layers as its decision) and the
:class:`~rollback.commands.run.tracker.RunTracker` (the incident's timeline and the notifications), attached
after the confirmation and before the journal opens. The finish is the runner's: the notifier's end
post and close before the journal is finished, then ``run_finished`` on the incident. A failed or
interrupted run raises its error with ``rollback resume RUN`` in the hint. The journal is opened by
:func:`rollback.runner.open_journal` (the run lock and the team lease) through the caller's opener.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rollback.commands.run.tracker import RunTracker
    from rollback.commands.run.types import RunFacts, RunRequest
    from rollback.config import Config
    from rollback.context import Services
    from rollback.journal import Journal
    from rollback.model.incident import IncidentLog
    from rollback.notify import Notifier
    from rollback.plan import Plan
    from rollback.runner import Confirm, Display, ExecutionResult, JournalOpener, Prepared, RunObserver

__all__ = [
    "NOTIFY_CLOSE_SECONDS",
    "RunResult",
    "execute_run",
    "open_incident",
    "rolled_back",
    "run_summary",
]

NOTIFY_CLOSE_SECONDS = 5.0


def _quiet(message: str) -> None:
    """The default ``say``: a library caller hears nothing."""


def rolled_back(layers: Any) -> tuple[str, ...]:
    """The layers a plan rolls back, in the order ``run`` restores them (not ``core``, ``verify``)."""
    from rollback.model.decide import order_layers

    return tuple(n for n in order_layers(layers) if n not in ("core", "verify"))


def _operator_options(planned: Prepared[RunFacts]) -> dict[str, str]:
    options: dict[str, str] = {}
    for layer in planned.plan.layers:
        if layer == "app":
            options[layer] = str(planned.facts.by_layer.get("app", {}).get("option") or "vercel-instant-rollback")
        elif layer in ("edge", "assets"):
            options[layer] = "break-glass"
        elif layer == "infra":
            options[layer] = "infra-pin"
        elif layer == "db":
            mode = planned.facts.by_layer.get("db", {}).get("mode")
            options[layer] = {"repair": "migration-repair", "rds": "rds-restore"}.get(str(mode), "restore-backup")
    return options


def open_incident(config: Config, planned: Prepared[RunFacts] | None, plan: Plan, *, ref: str | None,
                  severity: str | None, detected_at: str | None, drill: bool, command: str, services: Services,
                  say: Callable[[str], None] = _quiet) -> IncidentLog:
    """The incident this run attaches to: ``ref``, the open one, or a new one (a run without a decision
    opens one, and records the operator's choice of layers, ``command``, as its decision)."""
    from rollback.commands import incident as incidents
    from rollback.commands.decide import live_signals
    from rollback.model.incident import open_incident_of, parse_ts, read_incident

    facts = (planned.facts.by_layer.get("app") if planned is not None else None) or {}
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
                start_journal: JournalOpener | None, command: str, planned: Prepared[RunFacts] | None = None,
                progress: RunObserver | None = None, dry_run: bool = False, detected_at: str | None = None,
                drill: bool = False, notifier: Notifier | None = None, details: Mapping[str, Any] | None = None,
                say: Callable[[str], None] = _quiet, confirm: Confirm | None = None,
                display: Display | None = None) -> RunResult:
    """Carry out ``plan`` (see the module's docstring) as a :class:`~rollback.runner.Run`.
    ``start_journal(**details)`` opens the journal (the CLI's, which also closes it if the process ends
    early, or :func:`rollback.runner.open_journal` with the config bound); without it nothing is
    recorded: no journal, incident or post (a dry run, which the runner walks through the same steps).
    ``confirm`` and ``display`` are the CLI's (none for a library caller or ``watch``, which shows the
    run through ``progress``). ``command`` is what the incident records as the operator's decision
    when it has none; ``notifier``: post through this one (in order with the caller's own posts)."""
    from rollback.commands.registry import handlers_for
    from rollback.commands.run.plan import handler_services
    from rollback.commands.run.tracker import RunTracker
    from rollback.model.incident import read_incident
    from rollback.notify import Notifier
    from rollback.runner import Run

    kept: dict[str, Any] = {"incident": None, "tracker": None}

    def attach(run: Run) -> None:
        """After the confirmation, before the journal: the incident, and the tracker that keeps it."""
        log = open_incident(config, planned, run.plan, ref=request.incident, severity=request.severity,
                            detected_at=detected_at, drill=drill, command=command, services=services,
                            say=say)
        run.plan = _with_incident(run.plan, log.id)
        chosen = notifier or Notifier.from_config(config, incident=log.id, drill=read_incident(log.path).drill,
                                                  stderr=say)
        tracker = RunTracker(run.plan, config=config, incident=log, notifier=chosen, severity=request.severity,
                             close_unstarted=NOTIFY_CLOSE_SECONDS if notifier is not None else 0.0)
        run.observers = (*run.observers, tracker)
        run.details = {**run.details, "incident": log.id}
        kept.update(incident=log, tracker=tracker)

    fields = {"layer": "run", "verb": "run", "layers": list(plan.layers), "severity": request.severity,
              "incident": None, "poll_interval": request.poll_interval, **dict(details or {})}
    run = Run(plan, lambda chosen: handlers_for(config, chosen.actions,
                                                handler_services(services, request.poll_interval)),
              dry_run=dry_run, open_journal=start_journal, details=fields, confirm=confirm, display=display,
              prepare=attach if start_journal is not None else None,
              observers=(progress,) if progress is not None else (), names_resume=True)
    outcome = run.go()
    return RunResult(run.plan, outcome, kept["incident"], kept["tracker"], run.journal)


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
