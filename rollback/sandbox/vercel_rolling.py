"""Rolling releases in the Vercel API emulator: the project's configuration, the release, its stages.

Pure Python, no I/O and no lock: :class:`~rollback.sandbox.vercel_state.EmulatorState` holds one
:class:`RollingConfig` and one :class:`SimRollingRelease` per project and calls these under its lock.

What it follows (Vercel's REST reference and its SDK's models, ``@vercel/sdk``):

- ``PATCH /v1/projects/{idOrName}/rolling-release/config`` takes what ``vercel rolling-release
  configure`` sends: ``{"enabled", "advancementType": "automatic"|"manual-approval", "stages":
  [{"targetPercentage", "duration" (minutes)}, ..., {"targetPercentage": 100}]}``; ``enabled: false``
  (or ``DELETE``) disables it. The project-level config "is simply a template that will be used for any
  future rolling release"; ``getProject`` shows it as ``rollingRelease`` (``target``, ``stages``,
  ``canaryResponseHeader``), null when disabled.
- ``GET /v1/projects/{idOrName}/rolling-release`` returns the release "regardless of whether the rollout
  is active, aborted, or completed": ``state`` ``ACTIVE``/``COMPLETE``/``ABORTED``, ``currentDeployment``
  (the base), ``canaryDeployment``, ``advancementType``, ``stages`` (``duration`` in *seconds* there),
  ``activeStage`` ("null if the rollout is aborted"), ``nextStage`` ("null if not in ACTIVE state"),
  ``startedAt``, ``updatedAt``.
- A stage with a duration advances on its own after that many minutes of the emulator's clock (which
  ``POST /_admin/clock {"advance": seconds}`` moves forward); a manual-approval stage waits for
  ``approve-stage``. Reaching the final (100 %) stage completes the release: the canary serves production.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ADVANCEMENT_TYPES", "ConfigProblem", "RollingConfig", "SimRollingRelease", "SimStage", "TrafficSplit",
           "parse_config"]

ADVANCEMENT_TYPES = ("automatic", "manual-approval")


class ConfigProblem(ValueError):
    """A configuration Vercel would refuse (400): ``str(exc)`` is its message."""


@dataclass(frozen=True)
class SimStage:
    target_percentage: float
    require_approval: bool
    duration_minutes: float | None  # automatic advancement after this long; None: approval, or the last stage

    def public(self) -> dict[str, Any]:
        """A stage as the project's config shows it (duration in minutes)."""
        body: dict[str, Any] = {"targetPercentage": _number(self.target_percentage),
                                "requireApproval": self.require_approval}
        if self.duration_minutes is not None:
            body["duration"] = _number(self.duration_minutes)
        return body


@dataclass(frozen=True)
class RollingConfig:
    """A project's rolling-release configuration (the template of its next releases)."""

    advancement_type: str
    stages: tuple[SimStage, ...]
    canary_response_header: bool = False

    def public(self) -> dict[str, Any]:
        return {"target": "production", "stages": [s.public() for s in self.stages],
                "canaryResponseHeader": self.canary_response_header}


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def _positive(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        return None
    return float(value)


def parse_config(body: Any) -> RollingConfig | None:
    """The configuration a ``PATCH .../rolling-release/config`` body asks for (None: disabled).

    Raises :class:`ConfigProblem` for what Vercel refuses: an unknown advancement type, stages that do
    not rise, a last stage that is not 100 %, an automatic stage without a duration."""
    if not isinstance(body, dict):
        raise ConfigProblem("Invalid request: the body must be an object")
    if not body.get("enabled"):
        return None
    kind = body.get("advancementType")
    if kind not in ADVANCEMENT_TYPES:
        raise ConfigProblem(f"Invalid request: `advancementType` must be one of {', '.join(ADVANCEMENT_TYPES)}")
    raw = body.get("stages")
    if not isinstance(raw, list) or len(raw) < 2:
        raise ConfigProblem("Invalid request: `stages` needs two or more stages, the last one at 100 %")
    stages: list[SimStage] = []
    previous = 0.0
    for index, item in enumerate(raw):
        last = index == len(raw) - 1
        percentage = _positive(item.get("targetPercentage")) if isinstance(item, dict) else None
        if percentage is None or percentage > 100 or percentage <= previous:
            raise ConfigProblem("Invalid request: each stage's `targetPercentage` must be above the previous "
                                "one's, at most 100")
        if last and percentage != 100:
            raise ConfigProblem("Invalid request: the final stage must always have targetPercentage: 100")
        if not last and percentage == 100:
            raise ConfigProblem("Invalid request: only the final stage may have targetPercentage: 100")
        duration = _positive(item.get("duration")) if isinstance(item, dict) else None
        if last:
            stages.append(SimStage(percentage, False, None))
        elif kind == "automatic":
            if duration is None:
                raise ConfigProblem(f"Invalid request: stage {index} needs a `duration` (minutes) when the "
                                    "advancement type is automatic")
            stages.append(SimStage(percentage, False, duration))
        else:
            stages.append(SimStage(percentage, True, None))
        previous = percentage
    return RollingConfig(str(kind), tuple(stages), bool(body.get("canaryResponseHeader", False)))


@dataclass
class SimRollingRelease:
    """One rolling release: ``canary_id`` takes a growing share of production from ``base_id``."""

    project_id: str
    canary_id: str
    base_id: str
    config: RollingConfig
    started_at: int  # ms since the epoch
    updated_at: int
    stage_started: float  # the emulator's clock when the current stage began
    stage_index: int = 0
    state: str = "ACTIVE"  # ACTIVE | COMPLETE | ABORTED
    queued_id: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def stages(self) -> tuple[SimStage, ...]:
        return self.config.stages

    @property
    def stage(self) -> SimStage:
        return self.stages[self.stage_index]

    @property
    def is_active(self) -> bool:
        return self.state == "ACTIVE"

    @property
    def canary_share(self) -> float:
        """The fraction of production traffic the canary serves now (0 unless active)."""
        return self.stage.target_percentage / 100 if self.is_active else 0.0

    def due(self, clock: float) -> bool:
        """Whether the current stage's time is up (an automatic stage that is not the last)."""
        stage = self.stage
        if not self.is_active or stage.require_approval or stage.duration_minutes is None:
            return False
        return clock - self.stage_started >= stage.duration_minutes * 60

    def advance(self, clock: float, stamp: int, *, by: str) -> None:
        """On to the next stage (the caller completes the release when that is the last)."""
        finished = self.stage
        if finished.duration_minutes is not None and by == "clock":
            self.stage_started += finished.duration_minutes * 60  # exact: a late read does not stretch a stage
        else:
            self.stage_started = clock
        self.stage_index += 1
        self.updated_at = stamp
        self.history.append({"stage": self.stage_index, "percentage": _number(self.stage.target_percentage),
                             "by": by, "at": stamp})

    def body(self, deployments: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """``GET /v1/projects/{idOrName}/rolling-release``'s ``rollingRelease`` (``deployments``: the brief
        shape of the base and the canary, by id)."""
        stages = [self._stage_body(i) for i in range(len(self.stages))]
        active = None if self.state == "ABORTED" else stages[self.stage_index]
        following = stages[self.stage_index + 1] if self.is_active and self.stage_index + 1 < len(stages) else None
        return {
            "state": self.state,
            "substate": None,
            "currentDeployment": deployments.get(self.base_id),
            "canaryDeployment": deployments.get(self.canary_id),
            "queuedDeploymentId": self.queued_id,
            "advancementType": self.config.advancement_type,
            "stages": stages,
            "activeStage": active,
            "nextStage": following,
            "startedAt": self.started_at,
            "updatedAt": self.updated_at,
        }

    def _stage_body(self, index: int) -> dict[str, Any]:
        stage = self.stages[index]
        final = index == len(self.stages) - 1
        return {"index": index, "isFinalStage": final, "targetPercentage": _number(stage.target_percentage),
                "requireApproval": stage.require_approval,
                # Seconds here (the release document), minutes in the project's config.
                "duration": None if stage.duration_minutes is None else _number(stage.duration_minutes * 60),
                "linearShift": False}


class TrafficSplit:
    """Which deployment serves a request while a canary takes ``share`` of the traffic.

    Vercel draws a random number per first-time visitor; a stand-in that tests count on must be exact, so
    this one spreads the canary's requests evenly, per path: of any ``n`` consecutive requests to one path,
    ``round(n * share)`` (give or take one) go to the canary. Per path, so that a client cycling through
    several paths (the sandbox's monitor) still sends each of them to the canary its share of the time;
    the ``spread`` paths start out of phase, so that such a client's canary requests do not all fall in
    the same round. Thread-safe."""

    def __init__(self, spread: tuple[str, ...] = ()) -> None:
        import threading

        self._lock = threading.Lock()
        self._owed: dict[str, float] = {path: index / len(spread) for index, path in enumerate(spread)}

    def to_canary(self, path: str, share: float) -> bool:
        if share <= 0:
            return False
        if share >= 1:
            return True
        with self._lock:
            owed = self._owed.get(path, 0.0) + share
            chosen = owed >= 1.0 - 1e-9
            self._owed[path] = owed - 1.0 if chosen else owed
            return chosen
