"""Which bad deploy an open incident is about (issue 18, item 6): once restored, a bad deploy that began
after the restore, or after the deploy the incident was opened for, is a new incident."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from rollback.commands.incident import superseded
from rollback.model.incident import IncidentRecord


def _record(*, restored: str | None, initiated: str | None) -> IncidentRecord:
    events = [{"event": "opened", "ts": "2026-11-28T09:30:00Z", "env": "production",
               "deployment_initiated_at": initiated}]
    if restored:
        events.append({"event": "restored", "ts": restored, "run": "r1", "layer": "app"})
    return IncidentRecord("INC-20261128T093000Z-production", Path("/dev/null"), events)


def _at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.mark.parametrize(("restored", "initiated", "now", "new"), [
    (None, "2026-11-28T09:20:00Z", "2026-11-28T10:00:00Z", False),               # not restored yet: same incident
    ("2026-11-28T09:40:00Z", "2026-11-28T09:20:00Z", "2026-11-28T09:20:00Z", False),  # the same bad deploy
    ("2026-11-28T09:40:00Z", "2026-11-28T09:20:00Z", "2026-11-28T09:10:00Z", False),  # going further back
    ("2026-11-28T09:40:00Z", "2026-11-28T09:20:00Z", "2026-11-28T09:50:00Z", True),   # deployed after the restore
    ("2026-11-28T09:40:00Z", "2026-11-28T09:20:00Z", "2026-11-28T09:38:00Z", True),   # sandbox reset: 3 min old
    ("2026-11-28T09:40:00Z", None, "2026-11-28T09:38:00Z", False),
    ("2026-11-28T09:40:00Z", None, "2026-11-28T09:41:00Z", True),
])
def test_superseded(restored: str | None, initiated: str | None, now: str, new: bool) -> None:
    why = superseded(_record(restored=restored, initiated=initiated), _at(now))
    assert (why is not None) == new
    if why:
        assert why.startswith("the open incident INC-20261128T093000Z-production was restored at 2026-11-28T09:40")
        assert "--incident INC-20261128T093000Z-production" in why
    assert superseded(_record(restored=restored, initiated=initiated), None) is None
