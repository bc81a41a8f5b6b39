"""What changed recently, per layer: the facts the live sources found, judged against the detection time.

Pure: no I/O, no clock. ``rollback decide --live`` reads the recent changes of
each layer (:mod:`rollback.commands.signals`): the Vercel production
deployment, the latest Pulumi update of the stack and the config keys it
changed, the Lambda@Edge version the distribution serves and the
distribution's last modification, the newest object written under the served
assets release, the newest Prisma migration. Each becomes a :class:`Change`
(layer, source, what, when); :func:`judge` measures each against the moment
the problem was detected, and a layer *changed* when one of its changes
happened within the lookback window before detection (default 60 min). Those
layers fill the decision matrix's ``@changed`` slot
(:data:`rollback.model.decide.CHANGED`), unless the operator names them with
``--changed``.

Pulumi config keys name their layer (:func:`layer_of_config_key`):
``edgeFunctionVersion`` (or any key naming a Lambda) is the edge,
``assetsRelease`` the assets, ``db*`` the database, anything else the infra.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rollback.plan import SERVICE_LAYERS

__all__ = [
    "CLOCK_SKEW",
    "LOOKBACK_MINUTES",
    "Change",
    "Deployed",
    "Finding",
    "app_change",
    "changed_layers",
    "judge",
    "layer_of_config_key",
    "stack_changes",
]

LOOKBACK_MINUTES = 60.0
# A change stamped up to this long after detection still counts: the clocks of Vercel, AWS and the
# database are not ours, and an alarm's state time trails the first bad datapoint.
CLOCK_SKEW = dt.timedelta(minutes=1)
_ORDER = SERVICE_LAYERS


@dataclass(frozen=True)
class Change:
    """Something a live source saw change, and when. ``counted`` False: seen, but not a change of the
    layer by itself (production serving an older deployment than the newest: a rollback in effect)."""

    layer: str  # app | edge | assets | infra | db
    source: str  # vercel | pulumi | cloudfront | lambda | s3 | prisma
    what: str
    at: dt.datetime
    counted: bool = True


@dataclass(frozen=True)
class Finding:
    """A :class:`Change` measured against the detection time."""

    change: Change
    minutes_before: float  # before detection (negative: after it)
    lookback: float  # minutes

    @property
    def within(self) -> bool:
        """Whether this change marks its layer as changed: counted, and within the lookback window."""
        skew = CLOCK_SKEW.total_seconds() / 60
        return self.change.counted and -skew <= self.minutes_before <= self.lookback

    def line(self) -> str:
        when = _relative(self.minutes_before)
        verdict = "" if self.within else (
            " (not counted)" if not self.change.counted else
            f" (outside the {self.lookback:g} min window)")
        return f"{self.change.layer}: {self.change.what} {when}{verdict}"

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.change.layer, "signal": f"changed.{self.change.layer}", "source": self.change.source,
                "value": round(self.minutes_before, 1), "unit": "min before detection",
                "threshold": f"<= {self.lookback:g} min before detection",
                "at": self.change.at.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
                "changed": self.within, "detail": self.line()}


def _relative(minutes: float) -> str:
    amount = abs(minutes)
    text = f"{amount:.0f} min" if amount >= 1 else f"{amount * 60:.0f} s"
    if amount >= 120:
        text = f"{amount / 60:.1f} h"
    return f"{text} before detection" if minutes >= 0 else f"{text} after detection"


def judge(changes: Iterable[Change], detected: dt.datetime,
          lookback: float = LOOKBACK_MINUTES) -> tuple[Finding, ...]:
    """Each change measured against ``detected``, newest first."""
    findings = [Finding(c, (detected - c.at).total_seconds() / 60, lookback) for c in changes]
    return tuple(sorted(findings, key=lambda f: f.minutes_before))


def changed_layers(findings: Iterable[Finding]) -> tuple[str, ...]:
    """The layers with a change within the window, in the order ``rollback run`` restores them."""
    found = {f.change.layer for f in findings if f.within}
    return tuple(layer for layer in _ORDER if layer in found)


# ------------------------------------------------------------------------------------------ app


@dataclass(frozen=True)
class Deployed:
    """A READY production deployment: its id, a label for people, and when it went live."""

    id: str
    label: str
    live_at: dt.datetime


def app_change(serving: Deployed | None, recent: Sequence[Deployed]) -> Change | None:
    """The app's latest change: the deployment production serves, when it is the newest one.

    ``recent`` are the newest READY production deployments. Production serving
    an older one than the newest means a rollback is in effect: that is seen,
    not counted as a change of the app.
    """
    current = serving or (max(recent, key=lambda d: d.live_at) if recent else None)
    if current is None:
        return None
    others = [d for d in recent if d.id != current.id]
    newer = sorted((d for d in others if d.live_at > current.live_at), key=lambda d: d.live_at, reverse=True)
    older = sorted((d for d in others if d.live_at <= current.live_at), key=lambda d: d.live_at, reverse=True)
    if newer:
        return Change("app", "vercel", f"production serves {current.label}, older than the newest "
                                       f"{newer[0].label} (a rollback is in effect)", current.live_at, counted=False)
    previous = f" (previous: {older[0].label})" if older else ""
    return Change("app", "vercel", f"deployment {current.label} went live{previous}", current.live_at)


# ------------------------------------------------------------------------------------------ stack


def layer_of_config_key(key: str) -> str:
    """``rollback:edgeFunctionVersion`` -> ``edge``; ``assetsRelease`` -> ``assets``; ``db*`` -> ``db``;
    anything else -> ``infra``."""
    name = key.split(":", 1)[-1]
    lowered = name.lower()
    if name == "edgeFunctionVersion" or "lambda" in lowered:
        return "edge"
    if name == "assetsRelease":
        return "assets"
    if name.startswith("db"):
        return "db"
    return "infra"


def stack_changes(number: int, message: str, at: dt.datetime, changed_keys: Sequence[str] | None,
                  resource_changes: Mapping[str, int]) -> list[Change]:
    """The layers a stack update changed: one :class:`Change` per layer its config keys name.

    ``changed_keys`` None: the previous update is unknown, so only the
    resources say something changed (the infra). An update that changed no
    config key but some resources changed the infra.
    """
    label = f"pulumi update {number}" + (f" ({message!r})" if message else "")
    by_layer: dict[str, list[str]] = {}
    for key in changed_keys or ():
        by_layer.setdefault(layer_of_config_key(key), []).append(key)
    changes = [Change(layer, "pulumi", f"{label} changed {', '.join(keys)}", at)
               for layer, keys in sorted(by_layer.items(), key=lambda item: _ORDER.index(item[0]))]
    touched = sum(count for kind, count in resource_changes.items() if kind not in ("same", "read"))
    if not changes and touched:
        changes.append(Change("infra", "pulumi", f"{label} changed {touched} resource(s)", at))
    return changes
