"""The incident record (Contract B): events, read model, timeline and metrics, ids, torn lines."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from rollback.errors import BadInput
from rollback.model.incident import (
    DEFAULT_TARGETS,
    IncidentLog,
    find_incident,
    incidents_dir,
    list_incidents,
    open_incident_of,
    read_incident,
)

T0 = dt.datetime(2026, 11, 28, 9, 30, tzinfo=dt.UTC)


def _at(path: Path, event: str, ts: dt.datetime, **fields: object) -> None:
    """Append an event with a chosen timestamp (the writer stamps 'now')."""
    entry = {"ts": ts.isoformat().replace("+00:00", "Z"), "incident": path.stem, "event": event, **fields}
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry) + "\n")


def test_incidents_live_beside_the_journals(tmp_path: Path) -> None:
    assert incidents_dir(tmp_path / ".rollback" / "runs") == tmp_path / ".rollback" / "incidents"


def test_ids_are_unique_within_a_second(tmp_path: Path) -> None:
    first = IncidentLog.create(tmp_path, "production", now=T0, detected_at="x")
    second = IncidentLog.create(tmp_path, "production", now=T0, detected_at="x")
    assert first.id == "INC-20261128T093000Z-production"
    assert second.id.startswith("INC-20261128T093000Z-production-") and len(second.id) == len(first.id) + 5


def test_timeline_metrics_and_targets(tmp_path: Path) -> None:
    path = tmp_path / "INC-20261128T093000Z-production.jsonl"
    _at(path, "opened", T0 + dt.timedelta(minutes=4), env="production", drill=False,
        detected_at=(T0 + dt.timedelta(minutes=3)).isoformat(), detected_from="alarm",
        deployment_initiated_at=T0.isoformat(), deployment={"id": "dpl_1"})
    _at(path, "decided", T0 + dt.timedelta(minutes=4), severity="P2", reasons=[], layers=["app"],
        options={"app": "vercel-instant-rollback"}, command="first", seconds=0.1)
    _at(path, "decided", T0 + dt.timedelta(minutes=5), severity="P1",
        reasons=[{"signal": "error_rate", "value": 7, "threshold": "> 5", "unit": "%", "detail": ""}],
        layers=["app"], options={"app": "vercel-instant-rollback"}, command="rollback run --layers app", seconds=0.1)
    _at(path, "run_started", T0 + dt.timedelta(minutes=5, seconds=10), run="r1", layers=["app"], plan_title="run")
    _at(path, "initiated", T0 + dt.timedelta(minutes=5, seconds=11), run="r1")
    _at(path, "restored", T0 + dt.timedelta(minutes=7), run="r1", layer="app", health=[])
    _at(path, "run_finished", T0 + dt.timedelta(minutes=7, seconds=5), run="r1", status="succeeded", exit_code=0)
    _at(path, "verified", T0 + dt.timedelta(minutes=8), ok=False, strict=False, document={"ok": False})
    _at(path, "verified", T0 + dt.timedelta(minutes=10), ok=True, strict=False, document={"ok": True})
    record = read_incident(path)
    document = record.to_dict({"total": 600})
    assert document["timeline"] == {
        "deployment_initiated": "2026-11-28T09:30:00+00:00", "detected": "2026-11-28T09:33:00+00:00",
        "decided": "2026-11-28T09:34:00Z", "initiated": "2026-11-28T09:35:11Z", "restored": "2026-11-28T09:37:00Z",
        "verified": "2026-11-28T09:40:00Z", "closed": None}
    assert document["metrics"] == {"detect": 180.0, "decide": 60.0, "rollback": 180.0, "verify": 180.0,
                                   "total": 420.0}
    assert document["targets"] == {**DEFAULT_TARGETS, "total": 600}
    assert document["severity"] == "P1" and document["command"] == "rollback run --layers app"  # the latest decision
    assert document["runs"] == ["r1"]
    assert document["verifications"] == [{"ok": False}, {"ok": True}]
    assert document["status"] == "open" and document["drill"] is False
    json.dumps(document, allow_nan=False)


def test_missing_moments_give_null_metrics(tmp_path: Path) -> None:
    log = IncidentLog.create(tmp_path, "staging", detected_at=T0.isoformat(), detected_from="flag", drill=True)
    document = read_incident(log.path).to_dict()
    assert document["metrics"] == {"detect": None, "decide": None, "rollback": None, "verify": None, "total": None}
    assert document["drill"] is True and document["severity"] is None


def test_events_are_redacted(tmp_path: Path) -> None:
    log = IncidentLog.create(tmp_path, "production", detected_at="x")
    log.write("note", message="db at postgresql://app:hunter2secret@db:5432/app", token="abcdefgh")
    text = log.path.read_text()
    assert "hunter2secret" not in text and "abcdefgh" not in text


def test_torn_last_line_and_lookup(tmp_path: Path) -> None:
    first = IncidentLog.create(tmp_path, "production", now=T0, detected_at="x")
    first.write("closed", by="me", resolution="done")
    second = IncidentLog.create(tmp_path, "production", now=T0 + dt.timedelta(hours=1), detected_at="y")
    other = IncidentLog.create(tmp_path, "staging", now=T0 + dt.timedelta(hours=2), detected_at="z")
    with second.path.open("ab") as handle:
        handle.write(b'{"ts": "2026-')  # killed mid-write
    assert read_incident(second.path).torn_lines == 1
    assert [r.id for r in list_incidents(tmp_path)] == [other.id, second.id, first.id]
    assert [r.id for r in list_incidents(tmp_path, env="production")] == [second.id, first.id]
    record = open_incident_of(tmp_path, "production")
    assert record is not None and record.id == second.id
    assert find_incident(tmp_path, "open", env="staging").id == other.id
    assert find_incident(tmp_path, "last", env="production").id == second.id
    assert find_incident(tmp_path, first.id).status == "closed"
    with pytest.raises(BadInput, match="ambiguous"):
        find_incident(tmp_path, "INC-2026")
    with pytest.raises(BadInput, match="no incident"):
        find_incident(tmp_path, "INC-1999")
    with pytest.raises(BadInput, match="no open incident of env 'dev'"):
        find_incident(tmp_path, "open", env="dev")
