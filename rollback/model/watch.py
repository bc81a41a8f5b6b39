"""``rollback watch`` as data: each reading judged, the streak of bad readings, what the watch may do by
itself, and how it ends.

Pure: no I/O, no clock (times are given). :mod:`rollback.commands.watch` reads the live signals every
``--interval``, decides each reading with :func:`rollback.model.decide.decide` and the rules
:meth:`Baseline.rules` returns, and asks this module the rest.

**A reading** is *bad* when its decision is P0 or P1 and recommends a layer, *good* when it is not and at
least one signal was measured, and *not measured* when no source could be read at all. An unreadable
source is never bad: its signal is "not measured", and a reading with nothing measured neither extends
nor breaks a streak (Argo Rollouts' "inconclusive").

**The streak** (:class:`Streak`): the watch acts after ``--min-bad`` consecutive bad readings. A good
reading ends a streak; a streak ended that way before it was acted on is a *flap*. A signal that flapped
within the last :data:`FLAP_WINDOW` readings must then be bad twice as long (``2 x --min-bad``) before the
watch acts: a flapping signal (good, bad, good, bad...) never reaches the streak, and a steady bad
release after a noisy start still does (after twice as many readings). What no such rule removes: one
that acts after N bad readings in a row acts when a source's *first* bad readings come N in a row,
about p^(N-1) of the time for a source that is bad at random with probability p. With readings bad at
random 20 % of the time, 4 % of 100-reading watches roll back (N = 3; the plain "N in a row" rule: 47 %),
and 0.7 % with ``--min-bad 4`` (tests/model/test_watch.py measures both over 2000 seeded watches).

**The baseline** (:class:`Baseline`): the measured rates (CloudFront error rate, latency p95, and a
canary's judged error rate) as they were over ``--baseline`` minutes before the release, from
CloudWatch's history. Each threshold of the runbook is raised by that much, so a service that always
runs at 2 % errors is judged on the rise (P2 above 3 %, P1 above 7 %), not rolled back for its 2 %.
Without a baseline (not readable, or ``--baseline 0``) the runbook's thresholds apply as they are.

**What the watch does itself** (:func:`choose`): the recommended layers that are in ``--auto`` (default
``app,edge,assets``), each through the option ``decide`` chose for it: a layer whose option runs as
another layer (an edge pinned through the stack is the ``infra`` layer) needs that layer in ``--auto``.
Never the database, never a git revert (it pushes a commit): those, and any layer outside ``--auto``,
are left to a person, with the exact ``rollback run`` command to type. The abort of an active Vercel
rolling release is automatic even with ``--auto none`` (aborting a canary loses nothing), unless
``--no-abort-canary``. Nothing is done automatically while the environment is paused (the kill switch)
or within ``--cooldown`` of its last automatic rollback: then everything is left to a person.

**How it ends** (:func:`outcome`): ``healthy`` (exit 0) when the period ended with nothing to do;
``rolled_back`` (exit 0) after an automatic rollback that verified with nothing left for a person;
``needs_person`` (exit 3; exit 4 when refused: paused, or another run holds the lock or lease) when a
person must act; ``failed`` (exit 1, or the error's code) when an operation failed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rollback.errors import BadInput
from rollback.model.decide import RULES, Decision, Rule, _command_layers, order_layers, run_command
from rollback.plan import LAYERS

__all__ = [
    "ACTING",
    "DEFAULT_AUTO",
    "FLAP_WINDOW",
    "OUTCOMES",
    "Baseline",
    "Choice",
    "Streak",
    "choose",
    "outcome",
    "parse_auto",
    "person_command",
    "run_request_layers",
    "verdict",
]

ACTING = ("P0", "P1")  # the severities the watch acts on (the runbook's "immediate" and "within 15 min")
DEFAULT_AUTO = ("app", "edge", "assets")
FLAP_WINDOW = 30  # readings: a flap this recent doubles the streak needed
OUTCOMES = ("healthy", "rolled_back", "needs_person", "failed")
BASELINED = ("error_rate", "p95_ms")  # the measured rates a baseline can be read for (CloudWatch history)

BAD, GOOD, NOT_MEASURED = "bad", "good", "not measured"


def parse_auto(value: str) -> tuple[str, ...]:
    """``--auto app,edge,assets`` (or ``none``) -> the layers, in run order. The database is refused:
    the watch never restores it by itself."""
    text = value.strip().lower()
    if text in ("none", ""):
        return ()
    chosen: list[str] = []
    for part in text.split(","):
        name = part.strip()
        if not name:
            continue
        if name == "none":
            raise BadInput("--auto none cannot be combined with layers", "give layers, or none")
        if name not in LAYERS:
            raise BadInput(f"--auto: {name!r} is not a layer", "use some of app, edge, assets, infra, or none")
        if name == "db":
            raise BadInput("--auto db: the watch never restores the database by itself",
                           "leave db out: when a decision includes it, the watch posts the command for a person")
        chosen.append(name)
    return order_layers(chosen)


# ------------------------------------------------------------------------------------------ readings


def verdict(decision: Decision) -> str:
    """``bad`` (P0/P1 with a layer to roll back), ``good``, or ``not measured`` (no signal was measured)."""
    if decision.severity in ACTING and decision.layers:
        return BAD
    if not any(s.measured for s in decision.signals):
        return NOT_MEASURED
    return GOOD


@dataclass(frozen=True)
class Baseline:
    """The measured rates before the release (``values``: signal -> value), or why there are none."""

    values: Mapping[str, float] = field(default_factory=dict)
    minutes: float = 0.0
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    problem: str | None = None  # why not read (then the runbook's thresholds apply)

    def rules(self, rules: Sequence[Rule] = RULES, *, canary_share: float | None = None) -> tuple[Rule, ...]:
        """``rules`` with each rate's thresholds raised by its baseline.

        A canary's judged error rate (the overall rate divided by its share ``s``) is raised by ``b / s``:
        with the base still failing ``b`` % of its requests, the canary is bad when its own requests fail
        more than the threshold plus ``b``."""
        raised: list[Rule] = []
        for rule in rules:
            value = self._offset(rule.signal, canary_share)
            if value and rule.op == ">" and isinstance(rule.threshold, (int, float)):
                shown = f"{value:.3g}"
                rule = dataclasses.replace(rule, threshold=round(float(rule.threshold) + value, 3),
                                           why=f"{rule.why} (the runbook's {rule.threshold:g} over the "
                                               f"baseline {shown})")
            raised.append(rule)
        return tuple(raised)

    def _offset(self, signal: str, canary_share: float | None) -> float:
        if signal == "canary_error_rate":
            rate = self.values.get("error_rate")
            return rate / canary_share if rate and canary_share else 0.0
        return float(self.values.get(signal) or 0.0)

    def line(self) -> str:
        if not self.values:
            return f"no baseline ({self.problem or 'none read'}): the runbook's thresholds apply"
        units = {"error_rate": "%", "p95_ms": "ms"}
        shown = ", ".join(f"{name} {value:g} {units.get(name, '')}".rstrip() for name, value in self.values.items())
        when = f" before {_iso(self.end)}" if self.end else ""
        return f"baseline over the {self.minutes:g} min{when}: {shown} (the thresholds are raised by as much)"

    def to_dict(self) -> dict[str, Any]:
        return {"values": dict(self.values), "minutes": self.minutes,
                "start": _iso(self.start) if self.start else None, "end": _iso(self.end) if self.end else None,
                "problem": self.problem}


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class Streak:
    """Consecutive bad readings, flaps, and readings where nothing could be measured."""

    min_bad: int = 3
    flap_window: int = FLAP_WINDOW
    readings: int = 0
    count: int = 0  # the bad readings of the current streak
    first_bad_at: dt.datetime | None = None  # when the current streak began
    blind: int = 0  # consecutive readings with nothing measured
    flaps: list[int] = field(default_factory=list)  # the readings whose good ended a bad streak
    totals: dict[str, int] = field(default_factory=lambda: {BAD: 0, GOOD: 0, NOT_MEASURED: 0})

    def add(self, judged: str, at: dt.datetime) -> None:
        self.readings += 1
        self.totals[judged] += 1
        if judged == NOT_MEASURED:
            self.blind += 1
            return  # inconclusive: the streak neither grows nor ends
        self.blind = 0
        if judged == BAD:
            if self.count == 0:
                self.first_bad_at = at
            self.count += 1
            return
        if self.count:
            self.flaps.append(self.readings)
        self.count = 0
        self.first_bad_at = None

    @property
    def flapping(self) -> bool:
        """A streak ended by a good reading within the last :attr:`flap_window` readings."""
        return any(self.readings - at < self.flap_window for at in self.flaps)

    @property
    def needed(self) -> int:
        return self.min_bad * 2 if self.flapping else self.min_bad

    @property
    def reached(self) -> bool:
        return self.count >= self.needed

    def to_dict(self) -> dict[str, Any]:
        return {"readings": self.readings, "bad": self.totals[BAD], "good": self.totals[GOOD],
                "not_measured": self.totals[NOT_MEASURED], "flaps": len(self.flaps), "streak": self.count,
                "needed": self.needed}


# ------------------------------------------------------------------------------------------ acting


@dataclass(frozen=True)
class Choice:
    """What the watch rolls back itself (``auto``) and what it leaves to a person (``person``): decision
    layers, with why each went where it went. ``refused``: nothing is automatic, and why."""

    auto: tuple[str, ...]
    person: tuple[str, ...]
    why: Mapping[str, str]
    refused: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"auto": list(self.auto), "person": list(self.person), "why": dict(self.why),
                "refused": self.refused}


def _run_layers(layer: str, options: Mapping[str, str]) -> list[str]:
    """The ``rollback run`` layers that carry out ``layer`` with its option."""
    return _command_layers([layer], options)[0]


def choose(decision: Decision, *, auto: Collection[str], abort_canary: bool = True,
           refused: str | None = None) -> Choice:
    """Split a bad decision's layers between the watch and a person (see the module's docstring).

    ``refused`` (the environment is paused, a cooldown runs...) leaves every layer to a person."""
    options = dict(decision.options)
    mine: list[str] = []
    theirs: list[str] = []
    why: dict[str, str] = {}
    for layer in decision.layers:
        option = options.get(layer, "")
        runs_as = _run_layers(layer, options)
        if refused:
            theirs.append(layer)
            why[layer] = refused
        elif layer == "app" and option == "abort-rolling-release":
            if abort_canary:
                mine.append(layer)
                why[layer] = "the abort of an active rolling release is automatic (--no-abort-canary turns it off)"
            else:
                theirs.append(layer)
                why[layer] = "--no-abort-canary: the canary's abort is left to a person"
        elif layer == "db":
            theirs.append(layer)
            why[layer] = "the watch never restores the database by itself"
        elif option == "git-revert":
            theirs.append(layer)
            why[layer] = "a git revert pushes a commit: a person decides"
        elif option == "manual" or not runs_as:
            theirs.append(layer)
            why[layer] = "no automated option"
        elif all(name in auto for name in runs_as):
            mine.append(layer)
            why[layer] = f"in --auto ({option})" if runs_as == [layer] else \
                f"in --auto ({option}, run as the {', '.join(runs_as)} layer)"
        else:
            theirs.append(layer)
            missing = ", ".join(name for name in runs_as if name not in auto)
            why[layer] = (f"not in --auto ({missing})" if runs_as == [layer] else
                          f"{option} runs as the {', '.join(runs_as)} layer, not in --auto ({missing})")
    return Choice(tuple(mine), tuple(theirs), why, refused)


def run_request_layers(layers: Sequence[str], options: Mapping[str, str]) -> tuple[tuple[str, ...], dict[str, str]]:
    """The ``rollback run`` layers and ``--to`` targets of ``layers`` (decision layers) with their options."""
    chosen, targets = _command_layers(list(layers), options)
    return tuple(chosen), dict(t.split("=", 1) for t in targets)


def person_command(env: str, decision: Decision, layers: Sequence[str]) -> str | None:
    """The exact ``rollback run`` a person types for ``layers`` of ``decision`` (None without any)."""
    if not layers or decision.severity is None:
        return None
    return run_command(env, decision.severity, order_layers(layers), decision.options)


# ------------------------------------------------------------------------------------------ the end


def outcome(*, acted: bool, verified: bool | None, person: bool, refused: bool = False,
            error_code: int | None = None, measured: bool = True) -> tuple[str, int]:
    """``(outcome, exit code)`` of a watch (see the module's docstring).

    ``acted``: an automatic rollback ran to its end; ``verified``: its verification passed (None: not
    verified); ``person``: something is left to a person; ``refused``: the watch was refused (paused, the
    lock or lease held); ``error_code``: an operation failed with this exit code; ``measured``: at least
    one reading measured something."""
    if error_code is not None and error_code != 0:
        return "failed", error_code
    if refused:
        return "needs_person", 4
    if acted and verified is False:
        return "needs_person", 3
    if person:
        return "needs_person", 3
    if acted:
        return "rolled_back", 0
    if not measured:
        return "failed", 1
    return "healthy", 0
