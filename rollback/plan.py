"""Plans and steps: what a command is about to do, as data.

Building a plan is pure and read-only; :func:`rollback.runner.execute` applies
it, journaling each step before the next starts. A dry run walks the very same
steps through the same handlers, which branch only at the final side effect.

A :class:`Step` describes itself in one line (``describe()``), e.g.
``edge function sec-headers: version 7 -> 6``, so that the plan prints as a
table, serialises to JSON and reads well in the journal. ``Plan.from_dict`` and
``Step.from_dict`` are the exact inverses of ``to_dict``: a plan printed by
``--dry-run --json`` (or journaled in ``step_planned``) can be executed as is.

Every step belongs to a *layer* (:data:`LAYERS`): the app on Vercel, the edge,
the assets bucket, the Pulumi stack, the database, a verification, or the core
(anything else). A step built without one gets it from its action's prefix.
The layer names are defined here and nowhere else: :data:`SERVICE_LAYERS` are the
ones a rollback restores (``--layers``, ``decide``, the drill), in the order
``rollback run`` restores them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rollback.errors import BadInput

__all__ = ["LAYERS", "SERVICE_LAYERS", "Plan", "Step", "finished_word", "is_wait", "layer_of"]

SERVICE_LAYERS = ("app", "edge", "assets", "infra", "db")  # what a rollback restores, in run order
LAYERS = (*SERVICE_LAYERS, "verify", "core")  # a step's layer

# action prefix -> layer, for steps built without an explicit layer
_LAYER_OF_PREFIX = {
    "vercel": "app", "git": "app", "edge": "edge", "cloudfront": "edge", "cdn": "edge", "s3": "assets",
    "infra": "infra", "stack": "infra", "db": "db", "rds": "db", "health": "verify", "verify": "verify",
}


def layer_of(action: str) -> str:
    """The layer an action belongs to, from its prefix (``"vercel.rollback"`` -> ``"app"``)."""
    return _LAYER_OF_PREFIX.get(action.split(".", 1)[0], "core")


def is_wait(action: str) -> bool:
    """Whether an action waits for something to finish (``vercel.wait_alias_job``, ``edge.wait``,
    ``cloudfront.wait_invalidation``...): its name says so, after the family."""
    return action.split(".", 1)[-1].startswith("wait")


def finished_word(action: str) -> str:
    """What a step whose check found its effect already there is called: a wait that found its work
    finished *finished* (it did not skip anything), any other step *already done*."""
    return "finished" if is_wait(action) else "already done"


def _bad(where: str, problem: str) -> BadInput:
    return BadInput(f"plan document: {where}: {problem}",
                    "pass a plan printed by '--dry-run --json' (its \"plan\" object), unchanged")


@dataclass(frozen=True)
class Step:
    """One unit of work.

    ``action`` names the handler that runs it (``"vercel.rollback"``);
    ``summary`` is the one-line description; ``params`` hold everything the
    handler needs (JSON-serialisable, never a secret); ``destructive`` marks
    steps that change or remove something that exists; ``layer`` is one of
    :data:`LAYERS` (default: from the action's prefix).
    """

    id: str
    action: str
    summary: str
    target: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)
    destructive: bool = False
    layer: str = ""

    def __post_init__(self) -> None:
        if not self.layer:
            object.__setattr__(self, "layer", layer_of(self.action))
        elif self.layer not in LAYERS:
            raise ValueError(f"step {self.id!r}: unknown layer {self.layer!r} (one of {', '.join(LAYERS)})")

    @property
    def group(self) -> str:
        """The part of the id before its first ``.`` (``"edge"`` for ``"edge.associate"``), or ``""``.

        A cross-layer ``rollback run`` prefixes each layer's step ids with the layer
        (``app.vercel-rollback``, ``db.swap``) so that they stay unique."""
        return self.id.partition(".")[0] if "." in self.id else ""

    def sibling(self, step_id: str) -> str:
        """The id of step ``step_id`` of this step's plan, in the same group: a handler that reads an
        earlier step's result (``ctx.results[step.sibling("associate")]``) finds it whether the plan
        is a layer's own (``associate``) or part of a cross-layer run (``edge.associate``)."""
        return f"{self.group}.{step_id}" if self.group else step_id

    def describe(self) -> str:
        """One line for tables, prompts and the journal."""
        prefix = f"{self.target}: " if self.target and not self.summary.startswith(self.target) else ""
        return f"{prefix}{self.summary}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "action": self.action,
            "target": self.target,
            "summary": self.summary,
            "description": self.describe(),
            "params": dict(self.params),
            "destructive": self.destructive,
            "layer": self.layer,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "step") -> Step:
        """The inverse of :meth:`to_dict` (``description`` is derived, so it is not read back)."""
        if not isinstance(data, Mapping):
            raise _bad(where, "is not an object")
        for key in ("id", "action", "summary"):
            if not isinstance(data.get(key), str) or not data[key]:
                raise _bad(where, f"{key!r} must be a non-empty string")
        target = data.get("target", "")
        params = data.get("params", {})
        destructive = data.get("destructive", False)
        layer = data.get("layer", "")
        if not isinstance(target, str):
            raise _bad(where, "'target' must be a string")
        if not isinstance(params, Mapping):
            raise _bad(where, "'params' must be an object")
        if not isinstance(destructive, bool):
            raise _bad(where, "'destructive' must be true or false")
        if not isinstance(layer, str) or (layer and layer not in LAYERS):
            raise _bad(where, f"'layer' must be one of {', '.join(LAYERS)}")
        return cls(id=data["id"], action=data["action"], summary=data["summary"], target=target,
                   params=dict(params), destructive=destructive, layer=layer)


@dataclass(frozen=True)
class Plan:
    """An ordered list of steps for one environment, plus notes for the operator."""

    title: str
    env: str
    steps: tuple[Step, ...]
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for step in self.steps:
            if step.id in seen:
                raise ValueError(f"duplicate step id {step.id!r} in plan {self.title!r}")
            seen.add(step.id)

    @classmethod
    def of(cls, title: str, env: str, steps: Iterable[Step], notes: Iterable[str] = ()) -> Plan:
        return cls(title=title, env=env, steps=tuple(steps), notes=tuple(notes))

    @property
    def is_destructive(self) -> bool:
        return any(step.destructive for step in self.steps)

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    def after(self, step_id: str) -> tuple[Step, ...]:
        """The steps that follow ``step_id`` (for resuming)."""
        ids = [step.id for step in self.steps]
        return self.steps[ids.index(step_id) + 1 :]

    @property
    def actions(self) -> tuple[str, ...]:
        """The actions of the plan's steps, each once, in order (what its handlers must cover)."""
        return tuple(dict.fromkeys(step.action for step in self.steps))

    @property
    def layers(self) -> tuple[str, ...]:
        """The layers of the plan's steps, in order of first appearance."""
        return tuple(dict.fromkeys(step.layer for step in self.steps))

    def rows(self) -> list[tuple[str, str, str]]:
        """``(number, description, flag)`` rows for a table."""
        return [
            (str(number), step.describe(), "destructive" if step.destructive else "")
            for number, step in enumerate(self.steps, start=1)
        ]

    def table_rows(self) -> list[tuple[str, str, str, str]]:
        """``(number, layer, description, flag)``: the one table every plan prints as."""
        return [
            (str(number), step.layer, step.describe(), "destructive" if step.destructive else "")
            for number, step in enumerate(self.steps, start=1)
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "env": self.env,
            "destructive": self.is_destructive,
            "steps": [step.to_dict() for step in self.steps],
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Plan:
        """The inverse of :meth:`to_dict` (``destructive`` is derived, so it is not read back)."""
        if not isinstance(data, Mapping):
            raise _bad("plan", "is not an object")
        title, env, steps, notes = data.get("title"), data.get("env"), data.get("steps"), data.get("notes", [])
        if not isinstance(title, str):
            raise _bad("plan", "'title' must be a string")
        if not isinstance(env, str) or not env:
            raise _bad("plan", "'env' must be a non-empty string")
        if not isinstance(steps, list):
            raise _bad("plan", "'steps' must be a list")
        if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
            raise _bad("plan", "'notes' must be a list of strings")
        parsed = [Step.from_dict(step, where=f"step {number}") for number, step in enumerate(steps, start=1)]
        try:
            return cls.of(title, env, parsed, notes)
        except ValueError as exc:
            raise _bad("plan", str(exc)) from exc


# The format of a serialised plan (``Step.to_dict``: action names, params), recorded with the plan where
# it is written to be read back later (the journal's ``step_planned``, ``rollback run --dry-run --json``).
# 1: before the version was recorded (``infra.backup-config``-style names); 2: ``family.snake_case``.
# A reader translates older formats (:func:`rollback.runner.steps_in_format`); bump it when a change
# makes an older plan read differently, and add the translation there.
PLAN_FORMAT = 2

