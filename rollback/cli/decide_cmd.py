"""``rollback decide``: severity, layers and the command to run, from what you see or from live signals."""

from __future__ import annotations

import math

import click

from rollback.cli.support import AppContext, common_options, emit, layers_option, pass_app, printable


def _finite(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    if value is not None and (not math.isfinite(value) or value < 0):
        raise click.BadParameter("must be a finite number >= 0")
    return value


@click.command("decide")
@click.option("--error-rate", type=float, metavar="PCT", callback=_finite, help="Error rate in percent (e.g. 7).")
@click.option("--p95-ms", type=float, metavar="MS", callback=_finite, help="p95 response time in milliseconds.")
@click.option("--service-down", is_flag=True, help="The service does not answer.")
@click.option("--data-loss", is_flag=True, help="User data is being lost or corrupted.")
@click.option("--security-breach", is_flag=True, help="Unauthorized access or leaked credentials.")
@click.option("--feature-broken", type=click.Choice(["major", "minor"], case_sensitive=False),
              help="A feature is broken: major (login, checkout...) or minor.")
@click.option("--failed-migration", is_flag=True, help="A database migration failed.")
@click.option("--db-connections-exhausted", is_flag=True, help="The database connection pool is exhausted.")
@click.option("--cosmetic", is_flag=True, help="A UI issue or non-critical bug.")
@click.option("--live", is_flag=True,
              help="Measure: rollback alarms, CloudFront 5xx rate and origin p95 (5 min), health URLs, failed "
                   "migrations, Vercel; and what changed recently in each layer.")
@click.option("--changed", "changed", multiple=True, callback=layers_option, metavar="LAYER[,LAYER]",
              help="Layers the bad change touched: app, edge, assets, infra, db (default: with --live, the "
                   "layers that changed within --lookback before detection; else app).")
@click.option("--lookback", type=click.FloatRange(min=1, max=7 * 24 * 60), default=60, show_default=True,
              metavar="MINUTES", help="With --live: a layer changed when it changed this long before detection.")
@click.option("--revert", "remove_commit", is_flag=True,
              help="The bad commit must go: recommend git revert over an instant rollback.")
@click.option("--detected-at", metavar="TIME", help="When the issue was detected: ISO-8601 or '15m ago'.")
@click.option("--deployed-at", metavar="TIME", help="When the bad deployment started (else Vercel's, with --live).")
@click.option("--incident", "incident_ref", metavar="ID", help="Record on this incident (else the open one, else new).")
@click.option("--no-incident", is_flag=True, help="Decide only; open or update no incident.")
@click.option("--drill", is_flag=True, help="Mark a newly opened incident as a drill.")
@common_options()
@pass_app
def decide(app: AppContext, error_rate: float | None, p95_ms: float | None, service_down: bool, data_loss: bool,
           security_breach: bool, feature_broken: str | None, failed_migration: bool,
           db_connections_exhausted: bool, cosmetic: bool, live: bool, changed: tuple[str, ...],
           lookback: float, remove_commit: bool, detected_at: str | None, deployed_at: str | None,
           incident_ref: str | None, no_incident: bool, drill: bool) -> None:
    """Decide severity (P0..P3), the layers to roll back and how, from the runbook's matrix.

    Give what you see as flags, or --live to measure it (which shows the
    status screen of 'rollback status' first, read at the same time). Prints each reason
    with its measured value and threshold, and the 'rollback run' command to
    type. With --live it also finds which layers changed recently (the Vercel
    production deployment, the stack's latest update, the distribution and its
    Lambda@Edge version, the served assets, the newest migration) and
    recommends those; --changed overrides that. A decision that calls for a rollback opens the environment's
    incident (or updates the open one); 'rollback run' and 'rollback verify'
    attach to it.

    \b
    Examples:
      rollback decide --error-rate 7
      rollback decide --data-loss --detected-at '10m ago'
      rollback decide --live --json

    Exit codes: 0 decided (whatever the severity), 2 bad input.
    """
    from rollback.changes import changed_layers
    from rollback.commands.decide import Flags, run_decide
    from rollback.context import Services

    flags = Flags(error_rate=error_rate, p95_ms=p95_ms, service_down=service_down, data_loss=data_loss,
                  security_breach=security_breach, feature_broken=feature_broken.lower() if feature_broken else None,
                  failed_migration=failed_migration, db_connections_exhausted=db_connections_exhausted,
                  cosmetic=cosmetic)
    config = app.config()
    result = run_decide(config, flags, services=Services(config), live=live, changed=changed or None,
                        remove_commit=remove_commit, record=not no_incident, incident=incident_ref,
                        detected_at=detected_at, deployed_at=deployed_at, drill=drill, lookback=lookback,
                        status=live and not app.json)
    decision = result.decision

    def human() -> None:
        out = click.echo
        if result.status is not None:
            for line in result.status.lines():
                out(printable(line))
            out("")
        if decision.severity is None:
            out(f"no rollback indicated: no signal crosses a threshold ({result.seconds:.2f} s)")
        else:
            out(f"{decision.severity}: {decision.action} (timeline {decision.timeline}; decided in "
                f"{result.seconds:.2f} s)")
        if decision.reasons:
            out("reasons:")
            for reason in decision.reasons:
                out(f"  {printable(reason.line())}")
        measured_ok = [s for s in decision.signals if s.measured and all(r.signal is not s for r in decision.reasons)]
        if measured_ok:
            out("measured, within thresholds:")
            for signal in measured_ok:
                unit = f" {signal.unit}" if signal.unit else ""
                value = signal.value if not isinstance(signal.value, bool) else str(signal.value).lower()
                detail = f" ({signal.detail})" if signal.detail else ""
                out(f"  {signal.name} = {printable(value)}{unit}{printable(detail)}")
        for signal in decision.not_measured:
            out(f"  {signal.name}: {printable(signal.detail)}")
        changed_now = result.changed
        if changed_now is not None and (changed_now.findings or changed_now.problems):
            found = changed_layers(changed_now.findings)
            out(f"changed within {changed_now.lookback:g} min before detection: "
                + (", ".join(found) or "nothing found")
                + (" (--changed overrides)" if changed_now.origin == "flag" else ""))
            for finding in changed_now.findings:
                out(f"  {printable(finding.line())}")
            for source, problem in changed_now.problems.items():
                out(f"  {source}: not measured: {printable(problem)}")
        if decision.layers:
            out("layers: " + ", ".join(f"{layer} ({decision.options[layer]})" for layer in decision.layers))
        for note in decision.notes:
            out(f"note: {printable(note)}")
        for warning in result.warnings:
            out(f"note: {printable(warning)}")
        if result.incident:
            verb = "opened" if result.incident_opened else "updated"
            detected = result.detection or {}
            out(f"incident {result.incident} {verb} (detected {detected.get('at')} from {detected.get('from')})")
        if decision.command:
            out(f"run: {decision.command}")

    emit(app, result.to_dict(), human)
