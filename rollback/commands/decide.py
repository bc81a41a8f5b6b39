"""``rollback decide``: gather signals (flags, or live sources), decide, record it on the incident.

The decision itself is pure (:func:`rollback.model.decide.decide`). This module
turns flags into :class:`~rollback.model.decide.Signal` values, measures the live
ones concurrently within a budget (:func:`live_signals`): the rollback alarms,
CloudFront ``5xxErrorRate`` and ``OriginLatency`` p95 over the last 5
minutes, a probe of the health URLs, failed ``_prisma_migrations`` rows,
data loss in the tables declared ``grow_only`` (fewer rows than in the newest
backup: rows were deleted where they never are; data loss only past the
table's threshold and with a failed migration, a deploy or a migration within
the lookback to explain it, else "rows fewer than the backup", P2: see
:func:`rollback.model.decide.data_loss_signals`), and Vercel (is a rollback already in
effect; when was production deployed; is a rolling release active). A source
that is not configured is a signal *not measured*, with the reason (the
grow-only check only when some table is declared grow-only).

During an active Vercel rolling release the canary is judged on its share of the
traffic: the CloudFront error rate and a burst of health probes (each request is
served by the canary or the base) become ``canary_error_rate`` (the rate divided by
the canary's share, see :mod:`rollback.model.decide`); the app is the changed layer (the
canary started taking traffic), and its option is the abort.

In the same budget it reads what changed recently in each layer (the Vercel
production deployment, the stack's latest update, the distribution and the
Lambda@Edge version it serves, the objects under the served assets release,
the newest migration) and :func:`rollback.model.changes.judge` measures each change
against the detection time: the layers that changed within the lookback
window fill the matrix's ``@changed`` slot, unless ``--changed`` names them.
A change source that cannot be read is reported as such and never fails the
decision.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rollback.commands import incident as incidents
from rollback.commands import signals as sources
from rollback.commands.budget import live_budget
from rollback.commands.signals import Outcome
from rollback.context import Services
from rollback.errors import BadInput
from rollback.model import changes as recent
from rollback.model.decide import (
    RULES,
    Context,
    Decision,
    RowLoss,
    Rule,
    Signal,
    alarm_criterion,
    data_loss_signals,
    decide,
    order_layers,
)
from rollback.model.incident import iso, read_incident
from rollback.units import parse_time

if TYPE_CHECKING:
    from rollback.adapters.cloudwatch import AlarmState
    from rollback.adapters.vercel import RollingRelease
    from rollback.commands.signals import Production
    from rollback.commands.status import StatusReport
    from rollback.config import Config

__all__ = [
    "DecideResult",
    "Flags",
    "LiveReading",
    "corroboration",
    "flag_signals",
    "judge",
    "judge_changed",
    "live_signals",
    "run_decide",
]

METRIC_MINUTES = 5



@dataclass(frozen=True)
class Flags:
    """What the operator knows, from the command line."""

    error_rate: float | None = None
    p95_ms: float | None = None
    service_down: bool = False
    data_loss: bool = False
    security_breach: bool = False
    feature_broken: str | None = None  # major | minor
    failed_migration: bool = False
    db_connections_exhausted: bool = False
    cosmetic: bool = False

    def any(self) -> bool:
        return any(value not in (None, False) for value in vars(self).values())


def flag_signals(flags: Flags) -> list[Signal]:
    signals: list[Signal] = []
    if flags.error_rate is not None:
        signals.append(Signal("error_rate", float(flags.error_rate), "flag", "%"))
    if flags.p95_ms is not None:
        signals.append(Signal("p95_ms", float(flags.p95_ms), "flag", "ms"))
    if flags.feature_broken:
        signals.append(Signal("feature_broken", flags.feature_broken.lower(), "flag"))
    for name in ("service_down", "data_loss", "security_breach", "failed_migration", "db_connections_exhausted",
                 "cosmetic"):
        if getattr(flags, name):
            signals.append(Signal(name, True, "flag"))
    return signals


@dataclass
class LiveReading:
    signals: list[Signal] = field(default_factory=list)
    alarms: list[AlarmState] | None = None
    production: Production | None = None
    seconds: float = 0.0
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    changes: list[recent.Change] = field(default_factory=list)  # what changed recently, not yet judged
    change_problems: dict[str, str] = field(default_factory=dict)  # change source -> why it was not read
    losses: list[RowLoss] | None = None  # grow-only tables with fewer rows than the newest backup (None: none read)
    notes: list[str] = field(default_factory=list)  # what the reading itself says (no CloudFront in front...)
    rolling: RollingRelease | None = None  # the project's rolling release (any state)
    also: dict[str, Outcome] = field(default_factory=dict)  # the outcomes of the ``also`` readers
    outcomes: dict[str, Outcome] = field(default_factory=dict)  # every source's outcome, by reader name

    @property
    def canary(self) -> RollingRelease | None:
        """The rolling release while it is active (its canary takes a share of production)."""
        return self.rolling if self.rolling is not None and self.rolling.is_active else None


def _not_measured(name: str, source: str, problem: str) -> Signal:
    return Signal(name, None, source, detail=f"not measured: {problem}")


def live_signals(config: Config, *, budget: float | None = None, minutes: int = METRIC_MINUTES,
                 alarms_only: bool = False, services: Services,
                 since: dt.datetime | None = None,
                 also: Mapping[str, Callable[[], Any]] | None = None) -> LiveReading:
    """Measure every live source concurrently; a source that did not answer in time is not measured.

    ``since``: the CloudFront rates judge the window from then (never longer than ``minutes``): ``watch``
    reads the time since the release began, not the minutes before it. ``also``: more readers (the status
    screen's) read at the same time, their outcomes in ``reading.also``."""
    budget = live_budget(budget)
    timeout = max(0.3, budget - 0.2)
    readers: dict[str, Any] = {"alarms": lambda: sources.read_alarms(config, timeout=timeout, services=services)}
    if not alarms_only:
        readers.update({
            "cloudfront": lambda: sources.cloudfront_metrics(
                config, [("5xxErrorRate", "Average"), ("OriginLatency", "p95")], minutes=minutes, timeout=timeout,
                services=services, since=since),
            "health": lambda: sources.probe_health(config, timeout=timeout),
            "migrations": lambda: sources.migration_state(config, timeout=timeout, services=services),
            "data": lambda: sources.grow_only_losses(config, timeout=timeout, services=services),
            "vercel": lambda: sources.production_deployment(config, timeout=timeout, services=services),
            "canary": lambda: sources.canary(config, timeout=timeout, services=services),
            "changes.vercel": lambda: sources.recent_deployments(config, timeout=timeout, services=services),
            "changes.stack": lambda: sources.stack_changes(config, timeout=timeout, services=services),
            "changes.cdn": lambda: sources.cdn_changes(config, timeout=timeout, services=services),
        })
    readers.update(also or {})
    started = time.monotonic()
    outcomes = sources.gather(readers, budget=budget)
    reading = LiveReading(seconds=time.monotonic() - started,
                          also={name: outcomes.pop(name) for name in also or {}}, outcomes=dict(outcomes))
    reading.sources = {name: {"ok": o.ok, "problem": o.problem, "seconds": round(o.seconds, 3)}
                       for name, o in outcomes.items()}
    signals = reading.signals

    alarms = outcomes["alarms"]
    if alarms.ok:
        wanted, found = alarms.value
        reading.alarms = list(found)
        if not found:
            signals.append(_not_measured("alarms", "alarm", f"none of the rollback alarms ({wanted.origin}) exist"))
        for alarm in found:
            criterion = "composite" if alarm.composite else alarm_criterion(alarm.name, wanted.prefix)
            changed_at = f" since {alarm.updated_at.isoformat(timespec='seconds')}" if alarm.updated_at else ""
            signals.append(Signal(f"alarm.{criterion}", alarm.state, "alarm", detail=f"{alarm.name}{changed_at}"))
    else:
        signals.append(_not_measured("alarms", "alarm", str(alarms.problem)))
    if alarms_only:
        return reading

    cloudfront = outcomes["cloudfront"]
    health = outcomes["health"]
    direct = (config.env.vercel is not None and not cloudfront.ok
              and str(cloudfront.problem).startswith("not configured: "))
    if direct:
        # No CloudFront in front of the app: no CloudFront rates to miss. Latency is the health probe's.
        reading.notes.append(sources.vercel_direct_note(str(cloudfront.problem).removeprefix("not configured: ")))
        if health.ok and health.value:
            slowest = max(health.value, key=lambda r: r.seconds)
            signals.append(Signal("p95_ms", round(slowest.seconds * 1000, 1), "health", "ms",
                                  f"the slowest of {len(health.value)} health URL(s) ({slowest.name}); no CloudFront"))
    span = f"the last {minutes} min" if since is None else \
        f"the last {minutes} min since {since.astimezone(dt.UTC).strftime('%H:%M:%SZ')}"
    for index, (name, unit) in enumerate((("error_rate", "%"), ("p95_ms", "ms"))):
        if direct:
            continue
        if not cloudfront.ok:
            signals.append(_not_measured(name, "cloudfront", str(cloudfront.problem)))
        elif cloudfront.value[index].value is None:
            signals.append(_not_measured(name, "cloudfront", f"no datapoints in {span}"))
        else:
            window = cloudfront.value[index]
            signals.append(Signal(name, round(window.value, 3), "cloudfront", unit,
                                  f"{window.metric} {window.stat} over {span}"))

    if not health.ok:
        signals.append(_not_measured("service_down", "health", str(health.problem)))
    else:
        results = health.value
        failing = [r for r in results if not r.ok]
        detail = "; ".join(f"{r.name}: {r.detail}" for r in failing) or f"{len(results)} health URL(s) answer"
        all_down = bool(results) and len(failing) == len(results)
        signals.append(Signal("service_down", all_down, "health", detail=detail))
        if failing and not all_down:
            signals.append(Signal("health_failing", True, "health", detail=f"{len(failing)}/{len(results)} "
                                  f"failing: {detail}"))

    migrations = outcomes["migrations"]
    if not migrations.ok:
        signals.append(_not_measured("failed_migration", "database", str(migrations.problem)))
        reading.change_problems["changes.db"] = str(migrations.problem)
    elif not migrations.value.managed:
        signals.append(Signal("failed_migration", False, "database", detail="not managed by Prisma Migrate"))
    else:
        names = migrations.value.failed
        signals.append(Signal("failed_migration", bool(names), "database",
                              detail=", ".join(names) if names else "no failed migration"))
        change = migrations.value.change()
        if change is not None:
            reading.changes.append(change)

    data = outcomes["data"]
    if not data.ok:
        if config.env.database.grow_only:
            signals.append(_not_measured("data_loss", "database", str(data.problem)))
    elif data.value is not None:
        # Judged once the recent changes are (run_decide): data loss needs what explains it.
        reading.losses = list(data.value)

    vercel = outcomes["vercel"]
    if vercel.ok:
        reading.production = vercel.value
    else:
        signals.append(_not_measured("rollback_active", "vercel", str(vercel.problem)))
    _read_canary(reading, outcomes, minutes)
    _read_changes(reading, outcomes)
    return reading


def _canary_label(release: RollingRelease) -> str:
    canary = release.canary.label() if release.canary else "(unknown)"
    return f"canary {canary} at {release.percentage:g} %"


def _read_canary(reading: LiveReading, outcomes: dict[str, sources.Outcome], minutes: int) -> None:
    """While a rolling release is active: the error rates measured over all of production, judged on the
    canary's share (``canary_error_rate``: every error counted against the canary)."""
    found = outcomes["canary"]
    if not found.ok:
        if not str(found.problem).startswith("not configured"):  # no Vercel: said once, by its own reader
            reading.signals.append(_not_measured("canary_error_rate", "vercel", str(found.problem)))
        return
    canary: sources.CanaryReading = found.value
    reading.rolling = canary.release
    release = reading.canary
    if release is None or release.percentage <= 0:
        return
    share = release.percentage / 100
    label = _canary_label(release)
    measured: list[tuple[str, float, str]] = []
    overall = next((s for s in reading.signals if s.name == "error_rate" and s.source == "cloudfront"
                    and isinstance(s.value, float)), None)
    if overall is not None and isinstance(overall.value, float):
        measured.append(("cloudfront", overall.value, f"5xxErrorRate Average over the last {minutes} min"))
    if canary.error_rate is not None:
        measured.append(("health", canary.error_rate, f"{canary.failed} of {canary.probes} health probes failed"))
    elif canary.problem:
        reading.signals.append(_not_measured("canary_error_rate", "health", canary.problem))
    for source, rate, how in measured:
        own = min(100.0, rate / share)
        reading.signals.append(Signal(
            "canary_error_rate", round(own, 3), source, "%",
            f"{label}: abort; {rate:g} % of all requests failed ({how}), about {own:.3g} % of the canary's "
            f"(every error counted against the canary; base {release.base.label() if release.base else '?'})"))


def _read_changes(reading: LiveReading, outcomes: dict[str, sources.Outcome]) -> None:
    """The recent-change facts of every change source that answered; why not, for the others."""
    deployments = outcomes["changes.vercel"]
    serving = reading.production.serving if reading.production is not None else None
    release = reading.canary
    if release is not None and release.started_at:
        # The canary is the app's change (the newest deployment, not serving production: not a rollback).
        base = release.base.label() if release.base else "?"
        reading.changes.append(recent.Change(
            "app", "vercel", f"{_canary_label(release)} started a rolling release (base {base})",
            dt.datetime.fromtimestamp(release.started_at / 1000, dt.UTC)))
    elif deployments.ok or serving is not None:
        change = recent.app_change(serving, deployments.value if deployments.ok else [])
        if change is not None:
            reading.changes.append(change)
    if not deployments.ok:
        reading.change_problems["changes.vercel"] = str(deployments.problem)
    stack = outcomes["changes.stack"]
    if stack.ok:
        reading.changes.extend(stack.value)
    else:
        reading.change_problems["changes.stack"] = str(stack.problem)
    cdn = outcomes["changes.cdn"]
    if cdn.ok:
        reading.changes.extend(cdn.value.changes)
        if cdn.value.problems:
            reading.change_problems["changes.cdn"] = "; ".join(cdn.value.problems)
    else:
        reading.change_problems["changes.cdn"] = str(cdn.problem)


def _canary_context(release: RollingRelease) -> str:
    base = release.base.label() if release.base else "?"
    return f"{_canary_label(release)}, base {base}"


@dataclass(frozen=True)
class Changed:
    """The layers the bad change touched, and how that is known."""

    layers: tuple[str, ...]
    origin: str  # "flag" (--changed) | "live" (recent changes) | "default" (app)
    detected_at: dt.datetime | None = None
    lookback: float = recent.LOOKBACK_MINUTES
    findings: tuple[recent.Finding, ...] = ()
    problems: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"layers": list(self.layers), "from": self.origin, "lookback_minutes": self.lookback,
                "detected_at": iso(self.detected_at) if self.detected_at else None,
                "changes": [f.to_dict() for f in self.findings],
                "not_measured": [{"source": name, "detail": f"not measured: {problem}"}
                                 for name, problem in self.problems.items()]}


def judge_changed(given: Sequence[str] | None, reading: LiveReading | None, detected: dt.datetime,
                  lookback: float = recent.LOOKBACK_MINUTES) -> Changed:
    """``--changed`` when given; else the layers that changed within ``lookback`` minutes before
    ``detected`` (with ``--live``); else the app."""
    findings = recent.judge(reading.changes, detected, lookback) if reading is not None else ()
    problems = dict(reading.change_problems) if reading is not None else {}
    if given:
        return Changed(order_layers(given), "flag", detected, lookback, findings, problems)
    layers = recent.changed_layers(findings)
    if layers:
        return Changed(layers, "live", detected, lookback, findings, problems)
    return Changed(("app",), "default", detected if reading is not None else None, lookback, findings, problems)


# Changes that can delete rows: a deployment (Vercel), a stack update (Pulumi), a migration (Prisma).
_WRITERS = ("vercel", "pulumi", "prisma")


def corroboration(signals: Sequence[Signal], changed: Changed) -> list[str]:
    """What explains rows missing from a grow-only table: a failed migration, or a deploy or migration
    within the lookback window before detection."""
    found = [f"failed migration ({s.detail})" if s.detail and s.source != "flag" else "a failed migration"
             for s in signals if s.name == "failed_migration" and s.value is True]
    found += [f"{f.change.what} ({f.minutes_before:.0f} min before detection)" for f in changed.findings
              if f.within and f.change.source in _WRITERS]
    return found


def judge(config: Config, reading: LiveReading | None, signals: Sequence[Signal] = (), *, detected: dt.datetime,
          changed: Sequence[str] | None = None, remove_commit: bool = False,
          lookback: float = recent.LOOKBACK_MINUTES, rules: Sequence[Rule] = RULES) -> tuple[Decision, Changed]:
    """The decision from ``signals`` (the flags') and a live ``reading``: the changed layers judged against
    ``detected``, data loss judged with what explains it, the rolling release and the instant rollback in
    effect as its context, the reading's notes first. ``rules``: the matrix (``watch`` raises its
    thresholds by a baseline)."""
    chosen = [*signals, *(reading.signals if reading is not None else ())]
    layers_changed = judge_changed(changed, reading, detected, lookback)
    if reading is not None and reading.losses is not None:
        chosen.extend(data_loss_signals(reading.losses, corroboration(chosen, layers_changed)))
    production = reading.production if reading else None
    release = reading.canary if reading else None
    has_pulumi = config.env.pulumi is not None
    ctx = Context(env=config.env_name, changed=layers_changed.layers,
                  rollback_active=bool(production and production.rollback_active), remove_commit=remove_commit,
                  has_pulumi=has_pulumi, pulumi_cli=has_pulumi and _pulumi_cli(),
                  canary=_canary_context(release) if release is not None else None)
    decision = decide(chosen, ctx, rules)
    if reading is not None and reading.notes:
        decision = dataclasses.replace(decision, notes=(*reading.notes, *decision.notes))
    return decision, layers_changed


@dataclass
class DecideResult:
    decision: Decision
    seconds: float
    incident: str | None = None
    incident_opened: bool = False
    detection: dict[str, Any] | None = None
    live: LiveReading | None = None
    warnings: list[str] = field(default_factory=list)
    changed: Changed | None = None
    status: StatusReport | None = None  # the status screen, read with the live sources (``status=True``)

    def to_dict(self) -> dict[str, Any]:
        document = self.decision.to_dict()
        return {**document, "seconds": round(self.seconds, 3), "incident": self.incident,
                "incident_opened": self.incident_opened, "detected": self.detection,
                "changed": self.changed.to_dict() if self.changed else None,
                "live_sources": self.live.sources if self.live else None, "warnings": self.warnings,
                **({"status": self.status.to_dict()} if self.status is not None else {})}


def _pulumi_cli() -> bool:
    # Only asked with a Pulumi stack configured: without one the matrix never weighs the CLI, and the
    # Pulumi adapter is not loaded for nothing.
    from rollback.adapters.pulumi import cli_available

    return cli_available()


def run_decide(config: Config, flags: Flags, *, live: bool = False, changed: Sequence[str] | None = None,
               remove_commit: bool = False, record: bool = True, incident: str | None = None,
               detected_at: str | None = None, deployed_at: str | None = None, drill: bool = False,
               budget: float | None = None, lookback: float = recent.LOOKBACK_MINUTES,
               services: Services, status: bool = False) -> DecideResult:
    """Decide from ``flags`` (and the live sources with ``live``), and record it on the environment's incident.

    ``changed``: the layers the bad change touched; None = find them (with ``live``: the layers that
    changed within ``lookback`` minutes before detection), else the app. No incident is opened when
    nothing crosses a threshold. With ``status`` (and ``live``), the status screen's sources are read in
    the same budget, beside the signals (``result.status``).
    """
    if not flags.any() and not live:
        raise BadInput("no signal given", "pass what you see (e.g. --error-rate 7, --service-down) or --live")
    started = time.monotonic()
    deployed = parse_time(deployed_at, option="--deployed-at") if deployed_at else None
    detected_flag = parse_time(detected_at, option="--detected-at") if detected_at else None
    reading: LiveReading | None = None
    budget = live_budget(budget)
    screen = None
    if live:
        from rollback.commands import status as status_screen

        # The status screen's sources that decide does not read already, read beside them.
        also = status_screen.status_readers(config, timeout=max(0.3, budget - 0.2), services=services,
                                            only=status_screen.BEYOND_DECIDE) if status else None
        reading = live_signals(config, budget=budget, services=services, also=also)
        if status:
            screen = status_screen.status_from(config, {**status_screen.from_decide(reading.outcomes),
                                                        **reading.also}, seconds=reading.seconds, budget=budget)
    production = reading.production if reading else None
    release = reading.canary if reading else None
    when = incidents.detect(detected_at, reading.alarms if reading else None).at
    decision, layers_changed = judge(config, reading, flag_signals(flags), detected=when, changed=changed,
                                     remove_commit=remove_commit, lookback=lookback)
    seconds = time.monotonic() - started
    result = DecideResult(decision, seconds, live=reading, changed=layers_changed, status=screen)
    if not record or decision.severity is None:
        return result
    alarms = reading.alarms if reading else None
    if alarms is None and detected_flag is None:
        # Not --live: still look at the alarms for when the incident began (within the same budget).
        alarms = live_signals(config, budget=budget, alarms_only=True, services=services).alarms
    detection = incidents.detect(detected_at, alarms)
    deployment = production.deployment if production else None
    if release is not None and release.canary is not None:
        # The bad deployment is the canary; it went out when the rolling release started.
        deployment = {**release.canary.to_dict(), "rolling_release": release.to_dict()}
        if deployed is None and release.started_at:
            deployed = dt.datetime.fromtimestamp(release.started_at / 1000, dt.UTC)
    if production is not None and deployed is None and production.created is not None \
            and not production.rollback_active:
        deployed = production.created
    log, opened = incidents.ensure(config, incident, detection=detection, drill=drill,
                                   deployment=deployment, deployment_initiated_at=deployed)
    incidents.record_decision(log, decision, seconds)
    result.incident, result.incident_opened = log.id, opened
    result.detection = {"at": iso(detection.at), "from": detection.source, "detail": detection.detail}
    if not opened:
        first = read_incident(log.path).opened
        result.detection = {"at": first.get("detected_at"), "from": first.get("detected_from"),
                            "detail": first.get("detected_detail")}
        result.warnings.append(f"attached to the open incident {log.id} of env {config.env_name}")
        if detected_at:
            result.warnings.append("--detected-at is kept from when the incident was opened")
    return result

