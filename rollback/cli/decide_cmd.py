"""``rollback decide``: severity, layers and the command to run, from what you see or from live signals."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from rollback.cli.support import AppContext, common_options, emit, layers_option, pass_app
from rollback.safetext import printable

if TYPE_CHECKING:
    from rollback.commands.decide import Flags

__all__ = ["decide", "signal_flags"]


def _finite(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    if value is not None and (not math.isfinite(value) or value < 0):
        raise click.BadParameter("must be a finite number >= 0")
    return value


# What the on-call sees, as flags: one declaration for 'rollback decide' and 'rollback run' (which decides
# first from them). Each is a field of rollback.commands.decide.Flags, of the same name.
_SIGNAL_FLAGS: tuple[tuple[str, dict[str, Any], str], ...] = (
    ("--error-rate", {"type": float, "metavar": "PCT", "callback": _finite}, "Error rate in percent (e.g. 7)."),
    ("--p95-ms", {"type": float, "metavar": "MS", "callback": _finite}, "p95 response time in milliseconds."),
    ("--service-down", {"is_flag": True}, "The service does not answer."),
    ("--data-loss", {"is_flag": True}, "User data is being lost or corrupted."),
    ("--security-breach", {"is_flag": True}, "Unauthorized access or leaked credentials."),
    ("--feature-broken", {"type": click.Choice(["major", "minor"], case_sensitive=False)},
     "A feature is broken: major (login, checkout...) or minor."),
    ("--failed-migration", {"is_flag": True}, "A database migration failed."),
    ("--db-connections-exhausted", {"is_flag": True}, "The database connection pool is exhausted."),
    ("--cosmetic", {"is_flag": True}, "A UI issue or non-critical bug."),
)
SIGNAL_FLAG_NAMES = tuple(option.removeprefix("--").replace("-", "_") for option, _, _ in _SIGNAL_FLAGS)


def signal_flags(*, help_prefix: str = "") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """decide's signal flags as click options; the command receives them as one ``flags`` argument
    (a :class:`rollback.commands.decide.Flags`) instead of one parameter each."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(command)
        def with_flags(*args: Any, **kwargs: Any) -> Any:
            values = {name: kwargs.pop(name) for name in SIGNAL_FLAG_NAMES}
            return command(*args, flags=make_flags(values), **kwargs)

        decorated: Callable[..., Any] = with_flags
        for option, attrs, text in reversed(_SIGNAL_FLAGS):
            shown = f"{help_prefix}{text[0].lower()}{text[1:]}" if help_prefix else text
            decorated = click.option(option, **attrs, help=shown)(decorated)
        return decorated

    return decorate


def make_flags(values: dict[str, Any]) -> Flags:
    from rollback.commands.decide import Flags

    broken = values.get("feature_broken")
    return Flags(**{**values, "feature_broken": broken.lower() if broken else None})


@click.command("decide")
@signal_flags()
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
def decide(app: AppContext, flags: Flags, live: bool, changed: tuple[str, ...],
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
    from rollback.commands.decide import run_decide
    from rollback.context import Services
    from rollback.model.changes import changed_layers

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
