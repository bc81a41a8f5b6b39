"""Plans and steps: what a command is about to do, as data.

Building a plan is pure and read-only; :func:`rollback.runner.execute` applies
it, journaling each step before the next starts. A dry run walks the very same
steps through the same handlers, which branch only at the final side effect.

A :class:`Step` describes itself in one line (``describe()``), e.g.
``edge function sec-headers: version 7 -> 6``, so that the plan prints as a
table, serialises to JSON and reads well in the journal.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Plan", "Step"]


@dataclass(frozen=True)
class Step:
    """One unit of work.

    ``action`` names the handler that runs it (``"vercel.rollback"``);
    ``summary`` is the one-line description; ``params`` hold what the handler
    needs (JSON-serialisable, never a secret); ``destructive`` marks steps that
    change or remove something that exists.
    """

    id: str
    action: str
    summary: str
    target: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)
    destructive: bool = False

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
        }


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

    def rows(self) -> list[tuple[str, str, str]]:
        """``(number, description, flag)`` rows for a table."""
        return [
            (str(number), step.describe(), "destructive" if step.destructive else "")
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
