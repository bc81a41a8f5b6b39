"""The rollback decision: the runbook's decision matrix and tree, as data.

Pure: no I/O, no clock, no boto3/httpx/psycopg. ``rollback decide`` gathers
:class:`Signal` values (from flags, or measured live by
:mod:`rollback.commands.decide`) and :func:`decide` turns them into a
:class:`Decision`: a severity, the layers to roll back and the option for each,
the reasons (each with its measured value and threshold) and the ``rollback
run`` command to type.

Severity (the runbook's matrix, made exact):

======  ==========================================================================
P0      service down, data being lost or corrupted, security breach
P1      error rate > 5 %, p95 > 5 s, major feature broken, failed migration,
        DB connections exhausted (and the rollback alarms for those criteria)
P2      minor feature broken, some errors (error rate > 1 %), rows fewer than the
        backup without the evidence of data loss
P3      cosmetic (UI issues, non-critical bugs), cache hit rate low: fix forward
======  ==========================================================================

Each signal is judged by the first row of :data:`RULES` (most severe first)
that it matches; the decision's severity is the most severe of its reasons.

Layers and options. The runbook's tree sends "data being lost" to option 1
(Vercel instant rollback) alone; that is wrong. An app rollback stops the
damage (the bad code stops writing), and only a database step repairs what
was lost. So data loss recommends *app + db*, and a database restore is
recommended only for data loss or corruption, never for high error rates
alone. A failed migration gets the db layer too, but its option is migration
repair (``prisma migrate resolve`` / a down migration), not a restore.

- ``app``: Vercel instant rollback; ``git revert`` instead when a rollback is
  already in effect (an instant rollback would go further back) or the bad
  commit must go; during a Vercel rolling release, its **abort** (all traffic
  back to the release's base), never a rollback past the base.

A canary is judged on its own share: ``canary_error_rate`` is the error rate
measured over all of production (CloudFront, a burst of health probes) divided
by the canary's share of the traffic, every error counted against the canary
(a 10 % canary failing every request is a 10 % error rate overall, 100 % of its
own). It is bad (P1, abort) above 5 % of its own requests, which is sooner than
a full release (P1 above 5 % of all requests: at a 10 % stage the canary is
aborted from 0.5 % overall), because aborting a canary is cheap and loses nothing.
- ``edge`` / ``assets``: break-glass (straight through the AWS API) for P0,
  without a Pulumi stack, or without the Pulumi CLI on PATH (a pinned restore
  previews and applies through it; ``rollback infra edge`` pins the version
  in the stack config itself); else a pinned restore through the stack.
- ``infra``: a pinned restore through the stack (break-glass of the edge and
  the assets without a stack or without the CLI).
- ``db``: ``restore-backup`` for data loss or corruption; ``migration-repair``
  for a failed migration.

Evidence of data loss (:func:`data_loss_signals`). A grow-only table with fewer rows
than in the newest backup is ``data_loss`` (P0, app + db) only when the loss crosses
its threshold (default: at least 1 % AND at least 10 rows fewer; per table in
``database.data_loss_tables``) *and* something explains it: a failed migration, or a
deploy or migration within the lookback window. Otherwise it is ``rows_fewer`` (P2,
no db layer): one account removal must not restore the database.

Alarms. The cache-hit-rate alarm is a post-rollback check, not a rollback criterion:
every release and every rollback invalidates ``/*``, so a low hit rate follows them
by design; alone it is P3 and recommends no layer.

The recommended command (:func:`run_command`) is what ``rollback run`` runs as
written: a pinned restore of the edge or the assets is its ``infra`` layer, a
break-glass one its ``edge``/``assets`` layers; ``--to db=repair`` asks for the
migration repair, ``--to app=revert`` for the git revert.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rollback.plan import SERVICE_LAYERS as LAYERS  # the order ``rollback run`` restores them in

__all__ = [
    "ACTIONS",
    "ALARM_CRITERIA",
    "CHANGED",
    "CRITERION_LAYERS",
    "LAYERS",
    "RULES",
    "SEVERITIES",
    "Context",
    "Decision",
    "Reason",
    "RowLoss",
    "Rule",
    "Signal",
    "alarm_criterion",
    "data_loss_signals",
    "decide",
    "order_layers",
    "run_command",
]

SEVERITIES = ("P0", "P1", "P2", "P3")
CHANGED = "@changed"  # in a rule's layers: the layers the bad change touched (default: app)

# The runbook's action and timeline per severity.
ACTIONS: dict[str, tuple[str, str]] = {
    "P0": ("immediate rollback", "< 5 min"),
    "P1": ("rollback within 15 min", "< 15 min"),
    "P2": ("fix forward or roll back", "< 1 hour"),
    "P3": ("fix forward in the next deployment", "next deploy"),
}

# What each rollback alarm of infra/alarms.py (named ``<prefix>-<criterion>``) stands for.
ALARM_CRITERIA = (
    "cdn-5xx-error-rate",
    "cdn-origin-latency-p95",
    "cdn-cache-hit-rate",
    "edge-function-errors",
    "db-connections",
    "db-free-storage",
)

# The layers whose rollback can clear the alarm of each criterion; the first is the layer it is about
# (``rollback status`` shows it there). The 5xx rate is everyone's: a bad app, edge function, release or
# database all show as 5xx answers.
CRITERION_LAYERS: dict[str, tuple[str, ...]] = {
    "cdn-5xx-error-rate": ("app", "edge", "assets", "infra", "db"),
    "cdn-origin-latency-p95": ("app", "infra", "db"),
    "cdn-cache-hit-rate": ("assets", "infra"),
    "edge-function-errors": ("edge", "infra"),
    "db-connections": ("db", "app"),
    "db-free-storage": ("db",),
}


@dataclass(frozen=True)
class Signal:
    """One observation: from a flag, or measured live.

    ``value`` is a number (``error_rate`` in percent, ``p95_ms`` in ms), a
    bool (``service_down``...), a string (``feature_broken``: major|minor;
    an alarm's state), or ``None`` when the source could not be measured, in
    which case ``detail`` says why.
    """

    name: str
    value: float | bool | str | None
    source: str = "flag"  # flag | alarm | cloudfront | health | database | vercel
    unit: str = ""
    detail: str = ""

    @property
    def measured(self) -> bool:
        return self.value is not None

    def to_dict(self) -> dict[str, Any]:
        return {"signal": self.name, "value": _json_value(self.value), "unit": self.unit, "source": self.source,
                "detail": self.detail}


@dataclass(frozen=True)
class Rule:
    """One row of the decision matrix: ``signal op threshold`` gives ``severity`` and ``layers``."""

    signal: str
    op: str  # ">" (number above), "is" (true), "==" (equals)
    threshold: float | bool | str
    severity: str
    layers: tuple[str, ...]
    why: str
    unit: str = ""

    def matches(self, value: float | bool | str | None) -> bool:
        if value is None:
            return False
        if self.op == "is":
            return value is True
        if self.op == "==":
            return isinstance(value, str) and value.lower() == str(self.threshold).lower()
        if self.op == ">":
            return (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                    and value > float(self.threshold))
        raise ValueError(f"unknown operator {self.op!r}")

    def threshold_text(self) -> str:
        if self.op == "is":
            return "true"
        if self.op == "==":
            return f"== {self.threshold}"
        return f"> {self.threshold:g}" if isinstance(self.threshold, float) else f"> {self.threshold}"


def _alarm_rule(criterion: str, severity: str, layers: tuple[str, ...], why: str) -> Rule:
    return Rule(f"alarm.{criterion}", "==", "ALARM", severity, layers, why)


# The decision matrix, most severe first. A signal takes the first row it matches.
RULES: tuple[Rule, ...] = (
    Rule("service_down", "is", True, "P0", (CHANGED,), "service down"),
    Rule("data_loss", "is", True, "P0", (CHANGED, "db"),
         "data being lost or corrupted: an app rollback stops the damage, a database step repairs it"),
    Rule("security_breach", "is", True, "P0", (CHANGED,), "security breach"),
    Rule("canary_error_rate", ">", 5.0, "P1", (CHANGED,),
         "a canary counts as bad sooner than a full release: aborting it is cheap and loses nothing", "%"),
    Rule("error_rate", ">", 5.0, "P1", (CHANGED,), "high error rate", "%"),
    Rule("p95_ms", ">", 5000.0, "P1", (CHANGED,), "slow responses (p95 over 5 s)", "ms"),
    Rule("feature_broken", "==", "major", "P1", (CHANGED,), "major feature broken"),
    Rule("health_failing", "is", True, "P1", (CHANGED,), "some health checks fail"),
    Rule("failed_migration", "is", True, "P1", (CHANGED, "db"),
         "failed migration: roll the code back and repair the migration (no restore)"),
    Rule("db_connections_exhausted", "is", True, "P1", (CHANGED,), "database connections exhausted"),
    _alarm_rule("cdn-5xx-error-rate", "P1", (CHANGED,), "rollback alarm: CloudFront 5xx error rate"),
    _alarm_rule("cdn-origin-latency-p95", "P1", (CHANGED,), "rollback alarm: origin latency p95"),
    _alarm_rule("edge-function-errors", "P1", ("edge",), "rollback alarm: Lambda@Edge errors"),
    _alarm_rule("db-connections", "P1", (CHANGED,), "rollback alarm: database connections exhausted"),
    _alarm_rule("db-free-storage", "P1", (CHANGED,), "rollback alarm: database storage running out"),
    Rule("feature_broken", "==", "minor", "P2", (CHANGED,), "minor feature broken"),
    Rule("error_rate", ">", 1.0, "P2", (CHANGED,), "some errors", "%"),
    Rule("rows_fewer", "is", True, "P2", (CHANGED,),
         "rows fewer than the backup: below the data-loss threshold, or nothing (a failed migration, a deploy or "
         "a migration within the lookback) explains it; look before restoring anything"),
    _alarm_rule("other", "P2", (CHANGED,), "an alarm is in ALARM"),
    _alarm_rule("cdn-cache-hit-rate", "P3", (),
                "rollback alarm: CloudFront cache hit rate low (a post-rollback check: every release and rollback "
                "invalidates /*, so alone it recommends no rollback)"),
    Rule("cosmetic", "is", True, "P3", (), "cosmetic issue (UI, non-critical bug)"),
)


@dataclass(frozen=True)
class RowLoss:
    """A grow-only table with fewer rows than in the newest backup, and its data-loss threshold."""

    table: str
    rows: int
    backup_rows: int
    backup: str
    min_percent: float = 1.0
    min_rows: int = 10

    @property
    def fewer(self) -> int:
        return self.backup_rows - self.rows

    @property
    def percent(self) -> float:
        return 100.0 * self.fewer / self.backup_rows if self.backup_rows else 0.0

    @property
    def crosses(self) -> bool:
        """At least ``min_rows`` AND at least ``min_percent`` % fewer."""
        return self.fewer >= self.min_rows and self.percent >= self.min_percent

    def line(self) -> str:
        return (f"{self.table} has {self.rows} rows, {self.fewer} fewer than backup {self.backup} "
                f"({self.percent:.1f} %; threshold >= {self.min_rows} rows and >= {self.min_percent:g} %)")


def data_loss_signals(losses: Sequence[RowLoss], corroboration: Sequence[str]) -> list[Signal]:
    """``data_loss`` when a loss crosses its threshold and ``corroboration`` (a failed migration, a deploy or
    a migration within the lookback) explains it; else ``rows_fewer`` for any table that lost rows."""
    crossing = [loss for loss in losses if loss.crosses]
    if crossing and corroboration:
        return [Signal("data_loss", True, "database", detail="; ".join(loss.line() for loss in crossing)
                       + f"; explained by {', '.join(corroboration)}")]
    if not losses:
        return [Signal("data_loss", False, "database",
                       detail="no grow-only table lost rows since the newest backup")]
    why = ("nothing explains it: no failed migration, deploy or migration within the lookback" if crossing
           else "below the data-loss threshold")
    return [Signal("data_loss", False, "database", detail=f"not counted as data loss: {why}"),
            Signal("rows_fewer", True, "database", detail="; ".join(loss.line() for loss in losses) + f" ({why})")]


def alarm_criterion(alarm_name: str, prefix: str | None = None) -> str:
    """The criterion an alarm stands for (``...-db-connections`` -> ``db-connections``), else ``other``.

    The composite rollback alarm (``<prefix>-rollback``) is ``composite``: it
    only repeats its children and decides nothing by itself.
    """
    name = alarm_name.removeprefix(f"{prefix}-") if prefix else alarm_name
    for criterion in ALARM_CRITERIA:
        if name == criterion or name.endswith(f"-{criterion}"):
            return criterion
    if name == "rollback" or name.endswith("-rollback"):
        return "composite"
    return "other"


@dataclass(frozen=True)
class Context:
    """What the decision needs besides the signals."""

    env: str = "production"
    changed: tuple[str, ...] = ("app",)  # layers the bad change touched
    rollback_active: bool = False  # Vercel: an instant rollback is already in effect
    remove_commit: bool = False  # the bad commit must go (git revert)
    has_pulumi: bool = False  # a Pulumi stack is configured (pinned restores possible)
    pulumi_cli: bool = True  # the Pulumi CLI is on PATH (a pinned restore previews and applies through it)
    canary: str | None = None  # Vercel: a rolling release is active (its canary, share and base, for people)


@dataclass(frozen=True)
class Reason:
    """A signal that crossed a threshold, and the row it matched."""

    signal: Signal
    rule: Rule

    def to_dict(self) -> dict[str, Any]:
        return {"signal": self.signal.name, "value": _json_value(self.signal.value), "threshold":
                self.rule.threshold_text(), "unit": self.rule.unit or self.signal.unit,
                "detail": self.signal.detail or self.rule.why, "why": self.rule.why,
                "severity": self.rule.severity, "source": self.signal.source}

    def line(self) -> str:
        unit = self.rule.unit or self.signal.unit
        value = _show(self.signal.value, unit)
        threshold = self.rule.threshold_text() + (f" {unit}" if unit and self.rule.op == ">" else "")
        detail = f" ({self.signal.detail})" if self.signal.detail else ""
        return (f"{self.rule.severity}  {self.signal.name} = {value} (threshold {threshold}, "
                f"from {self.signal.source}): {self.rule.why}{detail}")


@dataclass(frozen=True)
class Decision:
    severity: str | None  # None: nothing crossed a threshold
    reasons: tuple[Reason, ...]
    layers: tuple[str, ...]
    options: Mapping[str, str]
    command: str | None
    action: str
    timeline: str | None
    signals: tuple[Signal, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)
    option_reasons: Mapping[str, str] = field(default_factory=dict)  # layer -> why this option

    @property
    def not_measured(self) -> tuple[Signal, ...]:
        return tuple(s for s in self.signals if not s.measured)

    def to_dict(self) -> dict[str, Any]:
        breached = {id(r.signal) for r in self.reasons}
        return {
            "severity": self.severity,
            "action": self.action,
            "timeline": self.timeline,
            "layers": list(self.layers),
            "options": dict(self.options),
            "option_reasons": dict(self.option_reasons),
            "command": self.command,
            "reasons": [r.to_dict() for r in self.reasons],
            "signals": [{**s.to_dict(), "status": ("breach" if id(s) in breached else
                                                   "ok" if s.measured else "not measured")}
                        for s in self.signals],
            "not_measured": [{"signal": s.name, "source": s.source, "detail": s.detail} for s in self.not_measured],
            "notes": list(self.notes),
        }


def _json_value(value: float | bool | str | None) -> float | bool | str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # strict JSON: never NaN/Infinity
    return value


def _show(value: float | bool | str | None, unit: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g} {unit}".rstrip()
    return f"{value} {unit}".rstrip() if value is not None else "not measured"


def order_layers(layers: Iterable[str]) -> tuple[str, ...]:
    """Layers in the order ``rollback run`` restores them (unknown names last, as given)."""
    wanted = list(dict.fromkeys(layers))
    known = [layer for layer in LAYERS if layer in wanted]
    return (*known, *(layer for layer in wanted if layer not in LAYERS))


def _rule_for(signal: Signal, rules: Sequence[Rule]) -> Rule | None:
    return next((rule for rule in rules if rule.signal == signal.name and rule.matches(signal.value)), None)


NO_CLI = ("the Pulumi CLI is not on PATH, and a pinned restore previews and applies through it; the break-glass "
          "restore goes straight through the AWS API, and 'rollback infra edge' also pins the version in the "
          "stack config so the next pulumi up keeps it")


def _option(layer: str, severity: str, reasons: Sequence[Reason], ctx: Context) -> tuple[str, str]:
    """The option for ``layer``, and why."""
    signals = {r.signal.name for r in reasons}
    if layer == "app":
        if ctx.canary:
            return "abort-rolling-release", (f"a rolling release is active ({ctx.canary}): abort it, all traffic "
                                             "back to its base; never an instant rollback past the base")
        if ctx.rollback_active:
            return "git-revert", "an instant rollback is already in effect: another one would go further back"
        if ctx.remove_commit:
            return "git-revert", "the bad commit must go"
        return "vercel-instant-rollback", "the fastest way to restore service (option 1)"
    if layer in ("edge", "assets", "infra"):
        if severity == "P0" and layer != "infra":
            return "break-glass", "P0: straight through the AWS API, the fastest path"
        if not ctx.has_pulumi:
            return "break-glass", "no Pulumi stack is configured for this environment"
        if not ctx.pulumi_cli:
            return "break-glass", NO_CLI
        return "infra-pin", "a pinned restore through the Pulumi stack keeps the stack and the cloud in step"
    if layer == "db":
        if "data_loss" in signals:
            return "restore-backup", "data was lost or corrupted: restore a backup from before the damage"
        return "migration-repair", "a failed migration: repair it; no restore unless data was lost"
    return "manual", "no automated option"


def _command_layers(layers: Sequence[str], options: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """The ``--layers`` and ``--to`` of the ``rollback run`` that carries out these options."""
    chosen: list[str] = []
    targets: list[str] = []
    for layer in layers:
        option = options.get(layer, "")
        if layer in ("edge", "assets") and option == "infra-pin":
            chosen.append("infra")  # a pinned restore of the edge or the assets is the stack's restore
        elif layer == "infra" and option == "break-glass":
            chosen.extend(("edge", "assets"))  # what break-glass can restore of the stack, through AWS
        else:
            chosen.append(layer)
        if layer == "db" and option == "migration-repair":
            targets.append("db=repair")
        if layer == "app" and option == "git-revert":
            targets.append("app=revert")
    return list(order_layers(chosen)), targets


def run_command(env: str, severity: str, layers: Sequence[str], options: Mapping[str, str] | None = None) -> str:
    """The ``rollback run`` command line that carries out a decision (``rollback run`` runs it as written)."""
    chosen, targets = _command_layers(layers, options or {})
    parts = ["rollback", "--env", shlex.quote(env), "run", "--severity", severity, "--layers", ",".join(chosen)]
    for target in targets:
        parts += ["--to", target]
    return " ".join(parts)


def decide(signals: Sequence[Signal], ctx: Context | None = None, rules: Sequence[Rule] = RULES) -> Decision:
    """Judge every signal against the matrix and recommend layers, options and a command."""
    ctx = ctx or Context()
    reasons = [Reason(s, rule) for s in signals if (rule := _rule_for(s, rules)) is not None]
    reasons.sort(key=lambda r: SEVERITIES.index(r.rule.severity))
    if not reasons:
        return Decision(None, (), (), {}, None, "no rollback indicated: no signal crosses a threshold", None,
                        tuple(signals), _notes(None, (), ctx, signals))
    severity = reasons[0].rule.severity
    action, timeline = ACTIONS[severity]
    layers: list[str] = []
    if severity != "P3":
        for reason in reasons:
            for layer in reason.rule.layers:
                layers.extend(ctx.changed or ("app",)) if layer == CHANGED else layers.append(layer)
    ordered = order_layers(layers)
    chosen = {layer: _option(layer, severity, reasons, ctx) for layer in ordered}
    options = {layer: option for layer, (option, _why) in chosen.items()}
    command = run_command(ctx.env, severity, ordered, options) if ordered else None
    notes = list(_notes(severity, reasons, ctx, signals))
    if any(why == NO_CLI for _option_name, why in chosen.values()):
        notes.append(f"{', '.join(layer for layer, (_o, why) in chosen.items() if why == NO_CLI)}: break-glass "
                     f"rather than a pinned restore: {NO_CLI}")
    return Decision(severity, tuple(reasons), ordered, options, command, action, timeline, tuple(signals),
                    tuple(notes), {layer: why for layer, (_option_name, why) in chosen.items()})


def _notes(severity: str | None, reasons: Sequence[Reason], ctx: Context, signals: Sequence[Signal]) -> tuple[str, ...]:
    notes: list[str] = []
    names = {r.signal.name for r in reasons}
    if ctx.canary and severity is not None and severity != "P3":
        notes.append(f"a rolling release is active ({ctx.canary}): the app step of 'rollback run' is its abort, all "
                     "traffic back to the base")
    if ctx.rollback_active:
        notes.append("an instant rollback is already in effect: another one would go further back, so the app "
                     "option is git revert (or 'rollback app undo' then promote a fixed deployment)")
    if "security_breach" in names:
        notes.append("rotate every credential that may have leaked, and git revert the bad commit so a new "
                     "deployment cannot bring it back")
    if "data_loss" in names:
        notes.append("the db layer takes an emergency backup first, then restores the newest backup (not an "
                     "emergency one) and swaps it in last; if that backup is not from before the damage started, "
                     "pick one ('rollback db backups') and give it as --to db=BACKUP")
    if "failed_migration" in names and "data_loss" not in names:
        notes.append("repair the failed migration ('rollback db migrations'; 'rollback db resolve "
                     "--rolled-back NAME'); a restore is not needed unless data was lost")
    if severity == "P2":
        notes.append("P2: fixing forward is an option; the command rolls back if the fix takes longer than an hour")
    if severity == "P3":
        notes.append("P3: no rollback; fix forward in the next deployment")
    missing = [s for s in signals if not s.measured]
    if missing:
        notes.append(f"{len(missing)} signal source(s) not measured: the decision may be missing something")
    return tuple(notes)
