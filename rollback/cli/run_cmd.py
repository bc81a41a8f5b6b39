"""``rollback run`` and ``rollback resume``: one plan across layers, journaled, with the incident kept.

Parsing and presentation; the plan is built by :mod:`rollback.commands.run.plan` and executed as a
:class:`rollback.runner.Run` like every other command's (``run`` through
:func:`~rollback.commands.run.execute.execute_run`, which ``rollback watch`` shares; ``resume`` as
:meth:`Run.resuming <rollback.runner.Run.resuming>`), with the terminal's confirmation and progress
(:func:`rollback.cli.support.terminal_run`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from rollback.cli.decide_cmd import signal_flags
from rollback.cli.output import echo, say
from rollback.cli.support import DURATION, AppContext, common_options, dry_run_option, emit, pass_app, yes_option
from rollback.errors import BadInput, UnsafePrecondition

if TYPE_CHECKING:
    from rollback.commands.decide import Flags
    from rollback.commands.run.tracker import RunTracker
    from rollback.commands.run.types import RunFacts, RunRequest
    from rollback.config import Config
    from rollback.context import Services
    from rollback.journal import Journal
    from rollback.model.decide import Decision
    from rollback.model.incident import IncidentLog
    from rollback.plan import Plan
    from rollback.runner import ExecutionResult, Prepared

__all__ = ["resume", "run"]

SEVERITIES = ("P0", "P1", "P2", "P3")


def _layers_and_targets(decision_layers: list[str], options: dict[str, str]) -> tuple[tuple[str, ...], dict[str, str]]:
    """The ``--layers`` and ``--to`` of the ``rollback run`` a decision recommends (decide's own mapping)."""
    from rollback.model.watch import run_request_layers

    return run_request_layers(decision_layers, options)


def _decision_of(log: IncidentLog | None) -> dict[str, Any]:
    if log is None:
        return {}
    from rollback.model.incident import read_incident

    return dict(read_incident(log.path).decision)


def _human(document: dict[str, Any]) -> None:
    from rollback.model.report import format_seconds

    out = echo
    if document["dry_run"]:
        out(f"dry run: {len(document['steps'])} step(s) checked; nothing was changed")
        out("save this plan with --json and run it with --plan FILE; it is refused if the world changes meanwhile")
        return
    restored = document.get("restored")
    if restored:
        out(f"restored: {restored['layer']} at {restored['at']} (step {restored['step']})")
    verification = document.get("verification")
    if verification:
        summary = verification.get("summary") or {}
        out(f"verified: {summary.get('pass', 0)} passed, {summary.get('fail', 0)} failed, "
            f"{summary.get('not_measured', 0)} not measured ({verification.get('rounds')} round(s))")
    for change in document.get("database_url_changes") or []:
        out(f"database: {change}")
    metrics, targets = document.get("metrics") or {}, document.get("targets") or {}
    shown = []
    for phase in ("detect", "decide", "rollback", "verify", "total"):
        value = metrics.get(phase)
        if isinstance(value, (int, float)):
            target = targets.get(phase)
            verdict = "" if not isinstance(target, (int, float)) else (
                " (met)" if value <= target else f" (missed: target {format_seconds(float(target))})")
            shown.append(f"{phase} {format_seconds(float(value))}{verdict}")
    if document.get("incident"):
        out(f"incident {document['incident']}" + (": " + "; ".join(shown) if shown else ""))


def _database_url_changes(outcome: ExecutionResult, config: Config) -> list[str]:
    """An RDS restore the app does not point at yet: the DATABASE_URL change to make (host only)."""
    from urllib.parse import urlsplit

    url = config.database_url()
    host = urlsplit(url).hostname if url else None
    switched = any(s.step.action == "vercel.switch_database" for s in outcome.steps)
    changes = []
    for item in outcome.steps:
        endpoint = item.result.get("endpoint") if item.step.action == "rds.restore" else None
        if endpoint and endpoint != host:
            env = config.env.database.url_env
            changes.append(f"{env} on Vercel now points at {endpoint}" if switched else
                           f"the app's {env} points at {host or '(unset)'}, not at the restored instance: change its "
                           f"host to {endpoint} (or run again with --switch-database)")
    return changes


@click.command("run")
@click.option("--layers", "layer_values", multiple=True, metavar="LAYER[,LAYER]",
              help="Layers to roll back: app, edge, assets, infra, db (run in that order).")
@click.option("--to", "target_values", multiple=True, metavar="LAYER=TARGET",
              help="A layer's target: app=DEPLOYMENT|revert[:SHA], edge=VERSION, assets=TIME|PREFIX/|PREFIX@TIME|"
                   "KEY#VERSION, infra=STACK_VERSION, db=BACKUP|latest|repair|rds-time:TIME|rds-snapshot:ID|"
                   "rds-latest.")
@click.option("--severity", type=click.Choice(SEVERITIES, case_sensitive=False), help="The incident's severity.")
@click.option("--plan", "plan_file", metavar="FILE",
              help="Run the plan saved by '--dry-run --json' (refused when the world changed since).")
@click.option("--incident", "incident_ref", metavar="ID", help="Attach to this incident (else the open one, else a "
              "new one).")
@click.option("--accept-schema-skew", is_flag=True,
              help="Roll the app back past migrations applied since its target was built, without the db layer.")
@click.option("--accept-mismatch", is_flag=True, help="Accept an asset release that belongs to another deployment.")
@click.option("--switch-database", is_flag=True,
              help="After an RDS restore: point the Vercel project's database variable at it and redeploy.")
@click.option("--no-verify", is_flag=True, help="Skip the post-rollback checklist at the end.")
@click.option("--poll-interval", type=DURATION, default="15s", show_default=True, metavar="DURATION",
              help="Longest pause between CloudFront status polls (the first ones come sooner).")
@signal_flags(help_prefix="Decide first: ")
@click.option("--live", is_flag=True, help="Decide first from live signals (as 'rollback decide --live').")
@click.option("--detected-at", metavar="TIME", help="When the issue was detected (for a new incident).")
@click.option("--drill", is_flag=True, help="Mark a newly opened incident as a drill.")
@dry_run_option
@yes_option
@common_options()
@pass_app
def run(app: AppContext, layer_values: tuple[str, ...], target_values: tuple[str, ...], severity: str | None,
        plan_file: str | None, incident_ref: str | None, accept_schema_skew: bool, accept_mismatch: bool,
        switch_database: bool, no_verify: bool, poll_interval: float, flags: Flags, live: bool,
        detected_at: str | None, drill: bool, dry_run: bool, yes: bool) -> None:
    """Roll back several layers as one plan: app, edge, assets, infra, db, then verify.

    One plan across the layers, in a safe order: with db, an emergency
    backup first; the app (fastest to restore service); the edge and the
    assets (and an invalidation); the Pulumi stack; the database restore
    last; then the post-rollback checklist. Cross-layer hazards are in the
    plan and refuse the run (exit 4) unless accepted. Without --layers, the
    open incident's decision says what to run (or decide's flags decide
    first). A failed or interrupted run prints 'rollback resume RUN'.

    \b
    Examples:
      rollback run --layers app,edge,db --dry-run
      rollback run --layers app,edge,db --yes
      rollback run --layers app --to app=dpl_123 --yes
      rollback run --dry-run --json > plan.json && rollback run --plan plan.json --yes

    Exit codes: 0 restored (and verified), 1 a step failed, 2 bad input,
    3 a health check or the verification failed, 4 refused (a hazard, a
    changed world, no --yes without a terminal), 130 interrupted.
    """
    from rollback.commands.run.plan import plan_run
    from rollback.commands.run.types import RunRequest, load_plan_document
    from rollback.context import Services
    from rollback.plan import SERVICE_LAYERS

    config = app.config()
    severity = severity.upper() if severity else None
    planned: Prepared[RunFacts] | None = None
    services = Services(config)
    if plan_file:
        if layer_values or target_values or flags.any() or live:
            raise BadInput("--plan runs a saved plan as it is", "drop --layers, --to and the decide flags")
        plan, saved = load_plan_document(Path(plan_file))
        if plan.env != config.env_name:
            raise BadInput(f"--plan {plan_file} is for env {plan.env!r}, not {config.env_name!r}",
                           f"pass --env {plan.env}")
        severity = severity or saved.get("severity")
        layers = tuple(name for name in plan.layers if name in SERVICE_LAYERS)
        request: RunRequest = RunRequest(layers=layers, severity=severity, incident=incident_ref,
                                                  poll_interval=poll_interval)
    else:
        request = _request(app, config, layer_values, target_values, severity, incident_ref, flags, live,
                           detected_at, drill, dry_run, accept_schema_skew, accept_mismatch, switch_database,
                           no_verify, poll_interval, services=services)
        severity = request.severity
        planned = plan_run(config, request, services)
        plan = planned.plan
        if planned.facts.blocking:
            from rollback.cli.support import show_plan

            show_plan(app, plan, dry_run=dry_run)
            blocking = planned.facts.blocking
            first = blocking[0]
            others = f" (and {len(blocking) - 1} more hazard(s))" if len(blocking) > 1 else ""
            flags_needed = ", ".join(dict.fromkeys(h.override or "" for h in blocking if h.override))
            raise UnsafePrecondition(f"{first.kind}: {first.message}{others}",
                                     f"nothing was changed; accept it with {flags_needed}, or change the layers",
                                     details={"hazards": [h.to_dict() for h in blocking]})
    _execute(app, config, plan, planned, request, services, dry_run=dry_run, yes=yes, detected_at=detected_at,
             drill=drill)


def _request(app: AppContext, config: Config, layer_values: tuple[str, ...], target_values: tuple[str, ...],
             severity: str | None, incident_ref: str | None, flags: Any, live: bool, detected_at: str | None,
             drill: bool, dry_run: bool, accept_schema_skew: bool, accept_mismatch: bool, switch_database: bool,
             no_verify: bool, poll: float, *, services: Services) -> RunRequest:
    """The run's layers and targets: ``--layers``, else the open incident's decision, else decide now."""
    from rollback.commands import incident as incidents
    from rollback.commands.decide import run_decide
    from rollback.commands.run.types import RunRequest
    from rollback.model.layers import parse_layers, parse_targets
    from rollback.plan import LAYERS

    options: dict[str, str] = {}
    targets: dict[str, str] = {}
    if layer_values:
        if flags.any() or live:
            raise BadInput("--layers and decide's flags exclude each other", "give the layers, or the signals")
        layers = parse_layers(layer_values)
        log = incidents.attach(config, incident_ref)
        decision = _decision_of(log)
        severity = severity or decision.get("severity")
    else:
        log = incidents.attach(config, incident_ref)
        decision = _decision_of(log)
        if not decision.get("layers") and (flags.any() or live):
            result = run_decide(config, flags, services=services, live=live, record=not dry_run,
                                incident=incident_ref, detected_at=detected_at, drill=drill)
            made: Decision = result.decision
            if made.severity is None or not made.layers:
                raise BadInput(f"decide: {made.action}", "nothing to roll back; see 'rollback decide' for the signals")
            say(f"decided {made.severity}: {', '.join(f'{k} ({v})' for k, v in made.options.items())}"
                + (f" (incident {result.incident})" if result.incident else ""))
            decision = {"severity": made.severity, "layers": list(made.layers), "options": dict(made.options)}
        elif not decision.get("layers"):
            raise BadInput("nothing to run: no --layers, and no decision on an open incident of env "
                           f"{config.env_name}",
                           "pass --layers (e.g. --layers app), or decide's flags (e.g. --error-rate 7), or run "
                           "'rollback decide' first")
        else:
            say(f"running the decision of incident {log.id if log else '?'}: {decision.get('command')}")
        layers, targets = _layers_and_targets(list(decision.get("layers") or []), dict(decision.get("options") or {}))
        options = dict(decision.get("options") or {})
        severity = severity or decision.get("severity")
    given = parse_targets(target_values, layers if layer_values else tuple(LAYERS))
    unknown = [layer for layer in given if layer not in layers]
    if unknown:
        raise BadInput(f"--to names layer {unknown[0]!r}, which is not in the run ({', '.join(layers)})",
                       "add it to --layers")
    targets.update(given)
    return RunRequest(layers=tuple(layers), targets=targets, severity=severity, accept_schema_skew=accept_schema_skew,
                      accept_mismatch=accept_mismatch, switch_database=switch_database, verify=not no_verify,
                      incident=incident_ref, options=options, poll_interval=poll)


def _execute(app: AppContext, config: Config, plan: Plan, planned: Prepared[RunFacts] | None, request: RunRequest,
             services: Services, *, dry_run: bool, yes: bool, detected_at: str | None, drill: bool) -> None:
    """The library's :func:`execute_run` (the path ``rollback watch`` takes when it acts) with the
    terminal's confirmation and progress injected."""
    from rollback.cli.support import saying_the_run, terminal_run
    from rollback.commands.run.execute import execute_run, rolled_back, run_summary
    from rollback.plan import PLAN_FORMAT

    action = f"roll back {', '.join(rolled_back(plan.layers))} of env {config.env_name}"
    terminal = terminal_run(app, dry_run=dry_run, yes=yes, action=action)
    with saying_the_run(app):
        result = execute_run(config, plan, request, services, planned=planned,
                             start_journal=None if dry_run else terminal["open_journal"],
                             command="rollback " + " ".join(app.argv), dry_run=dry_run, detected_at=detected_at,
                             drill=drill, say=say, confirm=terminal["confirm"], display=terminal["display"])
    outcome = result.outcome
    log = result.incident
    document: dict[str, Any] = {"ok": True, "dry_run": dry_run, "run": outcome.run_id,
                                "incident": log.id if log else None, "plan_format": PLAN_FORMAT,
                                "plan": result.plan.to_dict(),
                                "hazards": [h.to_dict() for h in planned.facts.hazards] if planned else [],
                                "request": request.to_dict(), "facts": planned.facts.by_layer if planned else {},
                                "steps": [s.to_dict() for s in outcome.steps], **run_summary(result.tracker, outcome),
                                "database_url_changes": _database_url_changes(outcome, config)}
    emit(app, document, lambda: _human(document))


# --------------------------------------------------------------------------------------------- resume


def _newest_resumable(journal_dir: Path, env: str) -> str:
    from rollback.journal import list_runs
    from rollback.runner import RESUMABLE

    runs = list_runs(journal_dir)
    resumed = {str(r.started.get("resumes")) for r in runs if r.started.get("resumes")}
    for record in runs:
        if (record.started.get("env") == env and record.status in RESUMABLE and not record.started.get("dry_run")
                and record.run_id not in resumed
                and any(e.get("event") == "step_planned" for e in record.entries)):
            return record.run_id
    raise BadInput(f"no failed, interrupted or unfinished run of env {env} to resume",
                   "see 'rollback journal list'")


@click.command("resume")
@click.argument("run_ref", metavar="[RUN]", required=False)
@dry_run_option
@yes_option
@common_options()
@pass_app
def resume(app: AppContext, run_ref: str | None, dry_run: bool, yes: bool) -> None:
    """Continue a failed, interrupted or killed run from its first unfinished step.

    RUN is a run id (or a unique prefix, or 'last'); default: the newest
    unfinished, failed or interrupted run of the environment. The plan and
    the finished steps' results come from the run's journal; every finished
    step is checked again (and journaled as already done), never repeated;
    the step that was running is checked first. Attaches to the same
    incident. Asks before continuing a plan with destructive steps left
    (or --yes). Refused when another run of the environment acted since
    the run started (it took the lease over and swapped, say): the plan
    no longer fits the world; plan a new run instead.

    \b
    Examples:
      rollback resume
      rollback resume 20261128T093512.048213Z-1a2b3c --yes

    Exit codes: 0 completed, 1 a step failed, 2 bad input (nothing to
    resume), 3 a check failed, 4 refused (another run acted since, a
    finished step no longer holds, the lock is held, no --yes without a
    terminal), 130 interrupted.
    """
    from rollback.cli.support import saying_the_run, terminal_run
    from rollback.commands import incident as incidents
    from rollback.commands.registry import handlers_for
    from rollback.commands.run.execute import run_summary
    from rollback.commands.run.plan import handler_services
    from rollback.commands.run.resume_guard import refuse_if_overtaken
    from rollback.commands.run.tracker import RunTracker
    from rollback.context import Services
    from rollback.journal import find_run
    from rollback.notify import Notifier
    from rollback.runner import Run, load_resume_point

    config = app.config()
    journal_dir = config.journal_dir
    chosen = run_ref or _newest_resumable(journal_dir, config.env_name)
    refuse_if_overtaken(config, chosen)  # another run acted since this one: its plan no longer fits the world
    point = load_resume_point(journal_dir, chosen)
    if point.env != config.env_name:
        raise BadInput(f"run {point.run_id} is of env {point.env!r}, not {config.env_name!r}",
                       f"pass --env {point.env}")
    started = find_run(journal_dir, point.run_id).started
    severity = started.get("severity") if isinstance(started.get("severity"), str) else None
    poll = float(started.get("poll_interval") or 15.0)
    log = None
    if started.get("incident"):
        try:
            log = incidents.attach(config, str(started["incident"]))
        except BadInput as exc:
            say(f"note: not recording on incident {started['incident']}: {exc.message}")
    left = [s for s in point.plan.steps if s.id not in point.done]
    say(f"resuming run {point.run_id} ({point.status}): {len(point.done)} of {len(point.plan.steps)} step(s) "
        f"finished; continuing at step {point.next_step}")
    kept: list[RunTracker] = []

    def attach(run: Run) -> None:
        """After the confirmation, before the journal (as for 'rollback run'): the tracker of the incident."""
        from rollback.model.incident import read_incident

        notifier = Notifier.from_config(config, incident=log.id if log else None,
                                        drill=read_incident(log.path).drill if log else False, stderr=say)
        kept.append(RunTracker(run.plan, config=config, incident=log, notifier=notifier, severity=severity,
                               resumes=point.run_id, done=list(point.done)))
        run.observers = (*run.observers, kept[0])

    services = Services(config)
    details = {"layer": str(started.get("layer") or "run"), "verb": "resume", "layers": list(point.plan.layers),
               "severity": severity, "incident": log.id if log else None, "poll_interval": poll}
    terminal = terminal_run(app, dry_run=dry_run, yes=yes, action=f"resume run {point.run_id}",
                            confirm_first=any(s.destructive for s in left),
                            prompt=f"continue run {point.run_id} from step {point.next_step}?")
    opener = terminal["open_journal"]

    def open_journal(**fields: Any) -> Journal:
        journal = opener(**fields)
        # Again, now that this run holds the lock and the lease: no other run can act any more.
        refuse_if_overtaken(config, point.run_id, journal=journal)
        return journal

    terminal["open_journal"] = open_journal
    # The same run as 'rollback run', its finished steps taken from the journal; it asks only when a
    # destructive step is left.
    run = Run.resuming(point, lambda plan: handlers_for(config, plan.actions, handler_services(services, poll)),
                       dry_run=dry_run, details=details, prepare=None if dry_run else attach, names_resume=True,
                       **terminal)
    with saying_the_run(app):
        outcome = run.go()
    tracker = kept[0] if kept else None
    document: dict[str, Any] = {"ok": True, "dry_run": dry_run, "run": outcome.run_id, "resumes": point.run_id,
                                "incident": log.id if log else None, "plan": point.plan.to_dict(),
                                "already_done": sorted(point.done),
                                "steps": [s.to_dict() for s in outcome.steps], **run_summary(tracker, outcome),
                                "database_url_changes": _database_url_changes(outcome, config)}
    emit(app, document, lambda: _human(document))
