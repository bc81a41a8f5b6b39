"""``rollback journal``: read run journals back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rollback.journal import find_run, list_runs

__all__ = ["list_", "show"]


def list_(directory: Path, *, limit: int | None = None, skipped: list[str] | None = None) -> list[dict[str, Any]]:
    """Summaries of the journaled runs, newest first; files that are not journals are left out
    (and described in ``skipped`` when a list is given)."""
    runs = list_runs(directory, skipped)
    return [run.summary() for run in (runs[:limit] if limit else runs)]


def show(directory: Path, run: str) -> dict[str, Any]:
    """One run, whole: its summary, the state of each step, and every entry."""
    return find_run(directory, run).to_dict()
