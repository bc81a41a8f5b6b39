"""``rollback watch``: watch a release for ``--for`` after a deploy and roll it back by itself when it
goes bad, before anyone is paged.

Every ``--interval`` the watch reads the live signals as ``decide --live`` does (the same readers,
concurrently, within the same budget: :func:`rollback.commands.decide.live_signals`), the CloudFront
rates over the time since the deploy (``--deployed-at``, else the watch's start; at most the last 5
minutes), and decides (:func:`rollback.commands.decide.judge`) with the
runbook's thresholds raised by the baseline (the same rates over ``--baseline`` minutes before the
release, read once from CloudWatch's history: :class:`rollback.model.watch.Baseline`). The rules of the loop
(what a bad reading is, the streak, flapping, what the watch may do by itself, the outcome) are
:mod:`rollback.model.watch`'s.

The release began at the earliest change ``decide`` sees within :data:`RELEASE_WINDOW` before the deploy
(``--deployed-at``, else the moment the watch started): a release that updates the stack, then the
assets, then the app, is judged from its first change, and its baseline ends there.

When the streak is reached (``--min-bad`` consecutive bad readings) the watch:

1. opens the incident (or attaches to the open one), detected at the streak's first bad reading, and
   records the decision (``by: watch``);
2. reads the kill switch and the cooldown again (:class:`rollback.watchstate.WatchState`; a switch or a
   record that cannot be read counts as set: it fails closed) and splits the layers between itself and
   a person (:func:`rollback.model.watch.choose`);
3. for its own layers: plans them as ``rollback run`` does (:func:`~rollback.commands.run.plan.plan_run`;
   a blocking hazard, such as a migration the app's target does not know, pages instead), records the
   automatic rollback (for the cooldown, before anything changes, so that a watch killed mid-rollback
   still counts), and runs the plan through :func:`~rollback.commands.run.execute.execute_run`, the path
   ``rollback run --yes`` takes: the same lock and team lease, journal, incident timeline, posts and
   verification (without the data integrity items when the db layer is left to a person), so that
   ``rollback resume`` completes it if the watch is killed;
4. for a person's layers (the database, anything outside ``--auto``, everything when paused, in a
   cooldown, refused by a hazard or by the lock): writes ``needs_person`` on the incident, posts the
   exact ``rollback run`` command to the incident channel and prints it.

The watch ends once it has acted or paged: after an automatic rollback its verification is the check
that the rollback worked, and after a page the incident is a person's. Until then a paused watch reads,
prints its status lines and, when the streak comes, pages: it acts on nothing.
"""

from __future__ import annotations

import datetime as dt
import secrets
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rollback.commands import incident as incidents
from rollback.commands import signals as sources
from rollback.commands.budget import live_budget
from rollback.commands.decide import LiveReading, judge, live_signals
from rollback.errors import BadInput, LockHeld, OperationFailed, RollbackError
from rollback.model.decide import Decision
from rollback.model.incident import iso, parse_ts, read_incident
from rollback.model.watch import (
    BAD,
    BASELINED,
    DEFAULT_AUTO,
    GOOD,
    Baseline,
    Choice,
    Streak,
    choose,
    outcome,
    person_command,
    run_request_layers,
    verdict,
)
from rollback.units import format_duration
from rollback.watchstate import WatchState

if TYPE_CHECKING:
    from rollback.config import Config
    from rollback.context import Services
    from rollback.journal import Journal
    from rollback.model.incident import IncidentLog
    from rollback.notify import Notifier
    from rollback.plan import Plan
    from rollback.runner import RunObserver

__all__ = ["RELEASE_WINDOW", "Reading", "WatchHooks", "WatchOptions", "WatchResult", "read_baseline",
           "release_start", "run_watch"]

RELEASE_WINDOW = dt.timedelta(minutes=30)
BLIND_AFTER = 3  # consecutive readings with nothing measured before the watch says it is blind


@dataclass(frozen=True)
class WatchOptions:
    """The flags of ``rollback watch`` (seconds for durations)."""

    period: float = 900.0  # --for
    interval: float = 10.0
    auto: tuple[str, ...] = DEFAULT_AUTO
    abort_canary: bool = True  # --no-abort-canary turns it off
    min_bad: int = 3
    baseline: float = 600.0  # --baseline; 0: none (the runbook's thresholds)
    cooldown: float = 3600.0
    deployed_at: dt.datetime | None = None
    drill: bool = False
    budget: float | None = None  # the live sources' budget (default: decide's)

    def check(self) -> None:
        """Refuse values that cannot work (exit 2)."""
        if not 0 < self.period <= 7 * 86400:
            raise BadInput("--for must be between 1 s and 7 days", "e.g. --for 15m")
        if not 0.1 <= self.interval <= self.period:
            raise BadInput("--interval must be at least 0.1 s and at most --for", "e.g. --interval 10s")
        if self.min_bad < 1:
            raise BadInput("--min-bad must be at least 1", "e.g. --min-bad 3")
        if self.baseline < 0 or self.cooldown < 0:
            raise BadInput("--baseline and --cooldown cannot be negative", "e.g. --baseline 10m --cooldown 1h")

    def to_dict(self) -> dict[str, Any]:
        return {"for": self.period, "interval": self.interval, "auto": list(self.auto),
                "abort_canary": self.abort_canary, "min_bad": self.min_bad, "baseline": self.baseline,
                "cooldown": self.cooldown, "deployed_at": iso(self.deployed_at) if self.deployed_at else None,
                "drill": self.drill}


@dataclass
class Reading:
    """One reading: when, its decision and verdict, and the streak after it."""

    number: int
    at: dt.datetime
    seconds: float
    decision: Decision
    verdict: str
    streak: int
    needed: int

    def line(self) -> str:
        """One status line: the verdict, the streak, and what crossed (or the measured rates)."""
        stamp = self.at.astimezone(dt.UTC).strftime("%H:%M:%SZ")
        missing = len(self.decision.not_measured)
        tail = f"; {missing} not measured" if missing else ""
        head = f"#{self.number} {stamp}"
        if self.verdict == BAD:
            shown = [_reason_text(r) for r in self.decision.reasons[:3]]
            more = len(self.decision.reasons) - len(shown)
            return (f"{head} bad {self.decision.severity} ({self.streak}/{self.needed}): {'; '.join(shown)}"
                    f"{f' (+{more} more)' if more else ''}{tail}")
        if self.verdict == GOOD:
            rates = [f"{s.name} {s.value:g} {s.unit}".rstrip() for s in self.decision.signals
                     if s.name in BASELINED and isinstance(s.value, float)]
            alarms = [s for s in self.decision.signals if s.name.startswith("alarm.") and s.measured]
            if alarms:
                firing = sum(1 for s in alarms if s.value == "ALARM")
                rates.append(f"{len(alarms) - firing}/{len(alarms)} alarm(s) OK")
            severity = f" ({self.decision.severity}: not a rollback)" if self.decision.severity else ""
            return f"{head} ok{severity}: {', '.join(rates) or 'within thresholds'}{tail}"
        problems = "; ".join(f"{s.name}: {s.detail.removeprefix('not measured: ')}"
                             for s in self.decision.not_measured[:2])
        return f"{head} not measured (never counted as bad): {problems}"

    def to_dict(self) -> dict[str, Any]:
        return {"number": self.number, "at": iso(self.at), "seconds": round(self.seconds, 3),
                "verdict": self.verdict, "severity": self.decision.severity, "streak": self.streak,
                "needed": self.needed, "reasons": [r.signal.name for r in self.decision.reasons]}


def _reason_text(reason: Any) -> str:
    signal, rule = reason.signal, reason.rule
    if rule.op == ">":
        unit = rule.unit or signal.unit
        return f"{signal.name} {signal.value:g} {unit} > {rule.threshold:g}".rstrip()
    if rule.op == "==":
        return f"{signal.name} {signal.value}"
    return str(signal.name)


@dataclass
class WatchResult:
    """How a watch went; :meth:`to_dict` is its ``--json`` document."""

    id: str
    env: str
    options: WatchOptions
    started_at: dt.datetime
    ended_at: dt.datetime | None = None
    outcome: str = "healthy"
    exit_code: int = 0
    deployed_at: dt.datetime | None = None
    release_started_at: dt.datetime | None = None
    baseline: Baseline | None = None
    streak: Streak = field(default_factory=Streak)
    last: Reading | None = None
    incident: str | None = None
    detected_at: dt.datetime | None = None  # the first bad reading of the streak that decided
    decided_at: dt.datetime | None = None
    decision: Decision | None = None
    choice: Choice | None = None
    acted: dict[str, Any] | None = None  # the automatic rollback: layers, run, status, verified
    person: dict[str, Any] | None = None  # what a person must do: layers, command, why
    refused: dict[str, Any] | None = None  # paused, or the lock or lease held: reason, detail
    error: str | None = None
    failure_code: int | None = None  # an operation failed (or was interrupted) with this exit code
    interrupted: bool = False
    restored_at: str | None = None
    verified_at: str | None = None
    notifications: dict[str, int] = field(default_factory=lambda: {"sent": 0, "failed": 0})

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.exit_code == 0, "outcome": self.outcome, "exit_code": self.exit_code, "watch": self.id,
            "env": self.env, "incident": self.incident,
            "started_at": iso(self.started_at), "ended_at": iso(self.ended_at) if self.ended_at else None,
            "deployed_at": iso(self.deployed_at) if self.deployed_at else None,
            "release_started_at": iso(self.release_started_at) if self.release_started_at else None,
            "detected_at": iso(self.detected_at) if self.detected_at else None,
            "decided_at": iso(self.decided_at) if self.decided_at else None,
            "restored_at": self.restored_at, "verified_at": self.verified_at,
            "seconds": _seconds_between(self.started_at, self.ended_at),
            "since_start": {"detected": _seconds_between(self.started_at, self.detected_at),
                            "decided": _seconds_between(self.started_at, self.decided_at),
                            "restored": _seconds_between(self.started_at, parse_ts(self.restored_at)),
                            "verified": _seconds_between(self.started_at, parse_ts(self.verified_at))},
            "options": self.options.to_dict(),
            "baseline": self.baseline.to_dict() if self.baseline else None,
            "readings": self.streak.to_dict(),
            "last_reading": self.last.to_dict() if self.last else None,
            "decision": self.decision.to_dict() if self.decision else None,
            "choice": self.choice.to_dict() if self.choice else None,
            "acted": self.acted, "person": self.person, "refused": self.refused, "error": self.error,
            "interrupted": self.interrupted, "notifications": self.notifications,
        }


def _seconds_between(start: dt.datetime | None, end: dt.datetime | None) -> float | None:
    return round((end - start).total_seconds(), 3) if start is not None and end is not None else None


# ------------------------------------------------------------------------------------------ the world's seams


def release_start(deployed: dt.datetime, reading: LiveReading | None, window: dt.timedelta = RELEASE_WINDOW
                  ) -> dt.datetime:
    """When the release began: the earliest change within ``window`` before ``deployed`` (or ``deployed``)."""
    moments = [deployed, *(c.at for c in (reading.changes if reading is not None else ())
                           if deployed - window <= c.at <= deployed)]
    return min(moments)


def read_baseline(config: Config, *, end: dt.datetime, minutes: float, budget: float,
                  services: Services) -> Baseline:
    """The CloudFront rates over the ``minutes`` before ``end`` (CloudWatch's history), within ``budget``."""
    if minutes <= 0:
        return Baseline(problem="--baseline 0")
    timeout = max(0.3, budget - 0.2)
    found = sources.gather({"baseline": lambda: sources.cloudfront_metrics(
        config, [("5xxErrorRate", "Average"), ("OriginLatency", "p95")], minutes=minutes, timeout=timeout,
        services=services, now=end)}, budget=budget)["baseline"]
    start = end - dt.timedelta(minutes=minutes)
    if not found.ok:
        return Baseline(minutes=minutes, start=start, end=end, problem=str(found.problem))
    values = {name: round(float(window.value), 3) for name, window in zip(BASELINED, found.value, strict=True)
              if window.value is not None}
    if not values:
        return Baseline(minutes=minutes, start=start, end=end,
                        problem=f"no CloudFront datapoints in the {minutes:g} min before the release")
    return Baseline(values, minutes, start, end)


@dataclass
class WatchHooks:
    """What the loop reads and acts through: the live readers, the clocks, the kill switch and cooldown
    store, the journal opener and the display of the automatic rollback. :meth:`real` wires them to the
    world; the tests inject readings and a clock."""

    read: Callable[[dt.datetime | None], LiveReading]
    baseline: Callable[[dt.datetime, float], Baseline]
    services: Services  # what a rollback the watch starts acts through
    state: WatchState | None = None
    clock: Callable[[], float] = time.monotonic
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
    sleep: Callable[[float], None] = time.sleep
    line: Callable[[Reading], None] = lambda reading: None  # one status line per reading
    say: Callable[[str], None] = lambda message: None  # everything else the watch says
    start_journal: Callable[..., Journal] | None = None  # default: runner.open_journal (lock and lease)
    display: Callable[[Plan], AbstractContextManager[RunObserver | None]] = lambda plan: nullcontext(None)
    command: str = "rollback watch"  # what the journal records as the command

    @classmethod
    def real(cls, services: Services, options: WatchOptions, **given: Any) -> WatchHooks:
        """Readings from the live sources (``decide --live``'s), the baseline from CloudWatch, the state
        beside the lock; ``given`` overrides any other field (the CLI's display, journal opener, lines)."""
        config = services.config
        budget = live_budget(options.budget)
        return cls(read=lambda since: live_signals(config, budget=budget, services=services, since=since),
                   baseline=lambda end, minutes: read_baseline(config, end=end, minutes=minutes, budget=budget,
                                                               services=services),
                   state=WatchState.of(config), services=services, **given)


# ------------------------------------------------------------------------------------------ the loop


def run_watch(config: Config, options: WatchOptions, hooks: WatchHooks) -> WatchResult:
    """Watch the environment (see the module's docstring). What happens in the world never raises: the
    result says how it ended (its ``outcome`` and ``exit_code``). Bad options raise :class:`BadInput`
    before anything is read."""
    options.check()
    h = hooks
    state = h.state or WatchState.of(config)
    started = h.clock()
    result = WatchResult(id=f"watch-{h.now().strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(2)}",
                         env=config.env_name, options=options, started_at=h.now(), deployed_at=options.deployed_at,
                         streak=Streak(options.min_bad))
    _announce(config, options, state, h)
    watcher = _Watcher(config, options, h, state, result)
    try:
        watcher.loop(started)
    except KeyboardInterrupt:
        result.interrupted = True
        result.failure_code = 130
        result.error = result.error or "interrupted"
        h.say("watch interrupted: nothing more is read or done")
    result.ended_at = h.now()
    acted = result.acted or {}
    measured = result.streak.totals[BAD] + result.streak.totals[GOOD] > 0
    result.outcome, result.exit_code = outcome(
        acted=acted.get("status") in ("succeeded", "checks failed"), verified=acted.get("verified"),
        person=result.person is not None, refused=result.refused is not None, error_code=result.failure_code,
        measured=measured)
    if result.outcome == "failed" and not result.error:
        result.error = f"no reading measured anything in {result.streak.readings} reading(s)"
    watcher.finish()
    return result


def _announce(config: Config, options: WatchOptions, state: WatchState, h: WatchHooks) -> None:
    auto = ", ".join(options.auto) or "nothing (--auto none)"
    canary = "; a rolling release's canary is aborted automatically" if options.abort_canary else ""
    h.say(f"watching env {config.env_name} for {format_duration(options.period)}, a reading every "
          f"{format_duration(options.interval)}: after {options.min_bad} bad reading(s) in a row it rolls back "
          f"{auto}{canary}; never the database")
    try:
        pause = state.paused()
    except OperationFailed as exc:
        h.say(f"note: the kill switch could not be read ({exc.message}): nothing will be done automatically "
              "unless it can be read when the time comes")
        return
    if pause is not None:
        h.say(f"note: env {config.env_name} is {pause.line()}: this watch reads and posts, and acts on nothing "
              "('rollback watch --resume' lifts it)")


class _Watcher:
    def __init__(self, config: Config, options: WatchOptions, hooks: WatchHooks, state: WatchState,
                 result: WatchResult) -> None:
        self.config = config
        self.options = options
        self.h = hooks
        self.state = state
        self.result = result
        self.blind_said = False
        self.notifier: Notifier | None = None
        self.shared_closed = False  # the automatic rollback's tracker closed the notifier it shared

    # ------------------------------------------------------------------ readings

    def loop(self, started: float) -> None:
        h, options, result = self.h, self.options, self.result
        number = 0
        while True:
            number += 1
            tick = h.clock()
            at = h.now()
            deployed = options.deployed_at or result.started_at
            reading = h.read(deployed)  # the CloudFront rates since the deploy: not the minutes before it
            if result.baseline is None:
                result.release_started_at = release_start(deployed, reading)
                result.baseline = h.baseline(result.release_started_at, options.baseline / 60)
                h.say(result.baseline.line())
            release = reading.canary
            share = release.percentage / 100 if release is not None and release.percentage else None
            decision, _changed = judge(self.config, reading, detected=at,
                                       rules=result.baseline.rules(canary_share=share))
            judged = verdict(decision)
            result.streak.add(judged, at)
            result.last = Reading(number, at, h.clock() - tick, decision, judged, result.streak.count,
                                  result.streak.needed)
            h.line(result.last)
            if result.streak.blind >= BLIND_AFTER and not self.blind_said:
                self.blind_said = True
                h.say(f"warning: {result.streak.blind} readings in a row measured nothing: the watch is blind "
                      "until a source answers (an unreadable source never counts as bad)")
            if result.streak.reached:
                self.decide(decision, reading)
                return  # acted or paged: the verification, or the person, has the last word
            following = tick - started + options.interval  # when the next reading would start
            if following >= options.period:
                return
            h.sleep(max(0.0, following - (h.clock() - started)))

    # ------------------------------------------------------------------ the decision

    def decide(self, decision: Decision, reading: LiveReading) -> None:
        result, h = self.result, self.h
        result.decision = decision
        result.detected_at = result.streak.first_bad_at
        result.decided_at = h.now()
        log = self._incident(decision, reading)
        refused = self._refusal()
        choice = choose(decision, auto=self.options.auto, abort_canary=self.options.abort_canary,
                        refused=refused)
        result.choice = choice
        streak = f"{result.streak.count} bad readings in a row since {_hhmmss(result.detected_at)}"
        h.say(f"decided {decision.severity} after {streak}: "
              + "; ".join(_reason_text(r) for r in decision.reasons[:3]))
        if choice.person:
            why = "; ".join(f"{layer}: {choice.why[layer]}" for layer in choice.person)
            # With layers of its own, the watch posts once: what it rolls back, then what the person runs.
            self._page(log, choice.person, person_command(self.config.env_name, decision, choice.person), why,
                       first=bool(choice.auto), post=not choice.auto)
        if choice.auto:
            self._roll_back(decision, choice, log)

    def _refusal(self) -> str | None:
        """Why nothing may be done automatically now (the kill switch, the cooldown), read now; a switch
        or record that cannot be read refuses (fail closed)."""
        result, env = self.result, self.config.env_name
        try:
            pause = self.state.paused()
        except OperationFailed as exc:
            result.refused = {"reason": "paused", "detail": f"the kill switch could not be read: {exc.message}"}
            return f"the kill switch could not be read ({exc.message}): not acting without it"
        if pause is not None:
            result.refused = {"reason": "paused", "detail": pause.line(), "pause": pause.to_dict()}
            return f"env {env} is {pause.line()}"
        if self.options.cooldown <= 0:
            return None
        try:
            last = self.state.last_auto() or {}
        except OperationFailed as exc:
            return f"the last automatic rollback could not be read ({exc.message}): not acting without it"
        when = parse_ts(last.get("at"))
        since = (self.h.now() - when).total_seconds() if when is not None else None
        if since is not None and since < self.options.cooldown:
            return (f"cooldown: a watch rolled env {env} back automatically {format_duration(max(0.0, since))} ago "
                    f"(incident {last.get('incident') or '?'}), within --cooldown "
                    f"{format_duration(self.options.cooldown)}: a second automatic rollback pages instead")
        return None

    def _incident(self, decision: Decision, reading: LiveReading) -> IncidentLog:
        from rollback.notify import Notifier

        result = self.result
        first = result.streak.first_bad_at or result.decided_at or self.h.now()
        detection = incidents.Detection(first, "watch", f"rollback watch {result.id}: the first of "
                                                        f"{result.streak.count} bad readings in a row")
        deployment, deployed = _deployment(reading, self.options.deployed_at)
        log, opened = incidents.ensure(self.config, None, detection=detection, drill=self.options.drill,
                                       deployment=deployment, deployment_initiated_at=deployed)
        seconds = (result.decided_at - first).total_seconds() if result.decided_at else 0.0
        incidents.record_decision(log, decision, seconds, by="watch", watch=result.id,
                                  readings=result.streak.to_dict())
        result.incident = log.id
        self.h.say(("opened" if opened else "attached to the open") + f" incident {log.id}")
        self.notifier = Notifier.from_config(self.config, incident=log.id, drill=read_incident(log.path).drill,
                                             stderr=self.h.say)
        return log

    def _page(self, log: IncidentLog, layers: Sequence[str], command: str | None, why: str, *,
              first: bool = False, post: bool = True) -> None:
        """A person must act: on the incident, in the channel (unless ``post`` is False: the caller's own
        post says it), on the terminal. ``first``: the watch rolls the other layers back itself, and the
        person acts after it."""
        result = self.result
        result.person = {"layers": list(layers), "command": command, "why": why}
        log.write("needs_person", why=why, layers=list(layers), command=command, watch=result.id)
        severity = f"{result.decision.severity} " if result.decision is not None else ""
        after = " once the automatic rollback has finished" if first else ""
        text = (f"rollback watch: a person must act{after}: {severity}{', '.join(layers)} ({why})"
                + (f". Run: {command}" if command else ""))
        notifier = self._notifier()
        if notifier is not None and post:
            notifier.post(text)
        self.h.say(f"a person must act{after}: {command or '(see the incident)'} ({why})")

    def _notifier(self) -> Notifier | None:
        """The watch's notifier; a new one once the automatic rollback's tracker closed the shared one."""
        if self.shared_closed and self.notifier is not None:
            from rollback.notify import Notifier

            self._count(self.notifier)
            self.notifier = Notifier.from_config(self.config, incident=self.result.incident,
                                                 drill=self.options.drill, stderr=self.h.say)
            self.shared_closed = False
        return self.notifier

    # ------------------------------------------------------------------ the automatic rollback

    def _roll_back(self, decision: Decision, choice: Choice, log: IncidentLog) -> None:
        from rollback.commands.run.execute import execute_run
        from rollback.commands.run.plan import plan_run
        from rollback.commands.run.types import RunRequest

        result, h, config = self.result, self.h, self.config
        layers, targets = run_request_layers(choice.auto, decision.options)
        skip = {"database": "the db layer is left to a person (rollback watch never restores the database)"} \
            if "db" in choice.person else {}
        # Other layers left to a person keep some items failing until they act: one round of the checklist
        # then, not minutes of it holding the lock their command needs.
        once = 0.0 if any(layer != "db" for layer in choice.person) else None
        request = RunRequest(layers=layers, targets=targets, severity=decision.severity, incident=log.id,
                             options={layer: decision.options[layer] for layer in choice.auto
                                      if layer in decision.options}, verify_skip=skip, verify_wait=once)
        everything = person_command(config.env_name, decision, decision.layers)
        services = h.services
        try:
            planned = plan_run(config, request, services)
        except RollbackError as exc:
            result.error, result.failure_code = exc.one_line(), exc.exit_code
            self._page(log, decision.layers, everything, f"the automatic rollback could not be planned: "
                                                         f"{exc.one_line()}")
            return
        if planned.facts.blocking:
            hazard = planned.facts.blocking[0]
            how = f": a person decides (the db layer, or {hazard.override})" if hazard.override else ""
            self._page(log, decision.layers, everything, f"{hazard.kind}: {hazard.message}{how}")
            return
        refused = self._refusal()  # a --pause (or another watch's rollback) since the decision
        if refused is None:
            try:
                self.state.record_auto(watch=result.id, incident=log.id, layers=list(layers))
            except OperationFailed as exc:
                refused = (f"the automatic rollback could not be recorded for the cooldown ({exc.message}): not "
                           "acting without that record")
        if refused is not None:
            self._page(log, decision.layers, everything, refused)
            return
        notifier = self._notifier()
        assert notifier is not None
        person = result.person or {}
        then = (f"; then a person must run: {person['command']} ({person.get('why')})" if person.get("command")
                else "")
        notifier.post(f"rollback watch: {decision.severity} for {result.streak.count} readings in a row: rolling "
                      f"back {', '.join(choice.auto)} automatically{then}")
        h.say(f"rolling back {', '.join(choice.auto)} automatically (rollback run --layers {','.join(layers)})")
        acted: dict[str, Any] = {"layers": list(choice.auto), "run_layers": list(layers), "plan": planned.plan.title,
                                 "run": None, "status": "running", "verified": None, "exit_code": None}
        result.acted = acted
        start_journal = h.start_journal or (lambda **details: _open_journal(config, h, details))
        try:
            with h.display(planned.plan) as display:
                done = execute_run(config, planned.plan, request, services, planned=planned,
                                   start_journal=start_journal, command=h.command, progress=display,
                                   notifier=notifier, details={"watch": result.id}, say=h.say)
        except LockHeld as exc:
            result.acted = None
            result.refused = {"reason": "lock", "detail": exc.message, "holder": exc.holder}
            self.shared_closed = True
            self._page(log, decision.layers, everything, f"refused: {exc.message}")
            return
        except RollbackError as exc:
            self.shared_closed = True
            self._failed(acted, exc, log)
            return
        self.shared_closed = True
        verification = next((s.result for s in done.outcome.steps if s.step.action == "verify.checklist"), None)
        acted.update(status="succeeded", exit_code=0, run=done.outcome.run_id,
                     verified=bool(verification.get("ok")) if verification is not None else None)
        self._times()
        if verification is not None and verification.get("ok"):
            # The run's checklist (the incident's "verified" waits for the whole one when a person restores
            # the database): when its last, passing, round began.
            result.verified_at = str(verification.get("checked_at") or "") or result.verified_at
        h.say(f"rolled back {', '.join(choice.auto)} (run {done.outcome.run_id})"
              + (", verified" if acted["verified"] else ""))

    def _failed(self, acted: dict[str, Any], exc: RollbackError, log: IncidentLog) -> None:
        """The automatic rollback stopped: say where, and what a person does next."""
        from rollback.errors import ChecksFailed, Interrupted

        run_id = exc.details.get("run")
        checks = isinstance(exc, ChecksFailed)
        status = "checks failed" if checks else "interrupted" if isinstance(exc, Interrupted) else "failed"
        acted.update(status=status, run=run_id, exit_code=exc.exit_code, error=exc.one_line())
        if checks:
            acted["verified"] = False
        else:
            self.result.failure_code = exc.exit_code
        self.result.interrupted = isinstance(exc, Interrupted)
        self.result.error = exc.one_line()
        self._times()
        self.h.say(f"the automatic rollback {status}: {exc.one_line()}")
        earlier = self.result.person or {}
        if checks:
            # With layers left to a person their items fail until they act: the page stays theirs.
            why = f"the checklist after the automatic rollback did not pass: {exc.message}"
            self._page(log, earlier.get("layers") or acted["layers"], earlier.get("command"),
                       f"{earlier['why']}; {why}" if earlier else why)
        else:
            then = f"; then: {earlier['command']}" if earlier.get("command") else ""
            resume = f"rollback --env {self.config.env_name} resume {run_id}" if run_id else None
            self._page(log, acted["layers"], resume, f"the automatic rollback {status}: continue it{then}")

    def _times(self) -> None:
        """When service was restored and verified, from the incident's timeline."""
        if self.result.incident is None:
            return
        from rollback.model.incident import find_incident

        timeline = find_incident(incidents.directory(self.config), self.result.incident).timeline()
        self.result.restored_at = timeline.get("restored")
        self.result.verified_at = timeline.get("verified")

    # ------------------------------------------------------------------ the end

    def finish(self) -> None:
        """The last post: how the watch ended, and the command a person must run (only once an incident
        was opened: a healthy watch says nothing in the channel)."""
        result = self.result
        notifier = self._notifier()
        if notifier is None:
            return
        text = f"rollback watch ended: {result.outcome.replace('_', ' ')} (exit {result.exit_code})"
        person = result.person or {}
        if person.get("command"):
            text += f"; a person must run: {person['command']}"
        elif person:
            text += f"; a person must act: {person.get('why')}"
        notifier.post(text)
        notifier.close(timeout=5.0)
        self._count(notifier)

    def _count(self, notifier: Notifier) -> None:
        report = notifier.report
        self.result.notifications["sent"] += report.sent
        self.result.notifications["failed"] += report.failed + report.unsent + report.dropped


def _hhmmss(moment: dt.datetime | None) -> str:
    return moment.astimezone(dt.UTC).strftime("%H:%M:%SZ") if moment else "?"


def _deployment(reading: LiveReading, deployed_at: dt.datetime | None
                ) -> tuple[dict[str, Any] | None, dt.datetime | None]:
    """The bad deployment (the canary of an active rolling release, else what production serves) and when
    it went out (``--deployed-at`` first), for the incident."""
    release = reading.canary
    production = reading.production
    if release is not None and release.canary is not None:
        deployment: dict[str, Any] | None = {**release.canary.to_dict(), "rolling_release": release.to_dict()}
        started = dt.datetime.fromtimestamp(release.started_at / 1000, dt.UTC) if release.started_at else None
        return deployment, deployed_at or started
    if production is None:
        return None, deployed_at
    created = production.created if not production.rollback_active else None
    return production.deployment, deployed_at or created



def _open_journal(config: Config, h: WatchHooks, details: dict[str, Any]) -> Journal:
    from rollback.runner import open_journal

    return open_journal(config, command=h.command, details=details, say=h.say)
