"""The one JSON-lines reader and line writer behind the run journal and the incident record."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from rollback.journal import read_run
from rollback.jsonl import append_line, read_json_lines
from rollback.model.incident import IncidentLog, read_incident

# A torn write, a line that is not UTF-8, one nested past the parser's recursion limit, and blank lines.
DAMAGED = (b'{"event": "a", "ts": "2026-11-28T09:30:00Z"}\n\n  \n'
           b'{"event": "b", "ts": "2026-\n'
           b'{"event": "\xff"}\n'
           + b"[" * 5000 + b"]" * 5000 + b"\n"
           b'["not", "an", "object"]\n'
           b'{"event": "c", "ts": "2026-11-28T09:31:00Z"}\n')


def test_lines_are_numbered_and_damage_is_counted(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_bytes(DAMAGED)
    read = read_json_lines(path)
    assert [n for n, _ in read.lines] == [1, 7, 8]
    assert read.lines[1][1] == ["not", "an", "object"]
    assert read.torn == 3


def test_journal_and_incident_read_the_same_damage_alike(tmp_path: Path) -> None:
    journal = tmp_path / "20261128T093000.000000Z-abcdef.jsonl"
    incident = tmp_path / "INC-20261128T093000Z-production.jsonl"
    journal.write_bytes(DAMAGED)
    incident.write_bytes(DAMAGED)
    run, record = read_run(journal), read_incident(incident)
    assert [e["event"] for e in run.entries] == [e["event"] for e in record.events] == ["a", "c"]
    assert run.torn_lines == record.torn_lines == 4  # the three torn lines and the list


def test_a_line_after_a_torn_one_starts_on_its_own(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"event": "a", "ts": "20')
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        append_line(fd, {"event": "b"}, after_torn=True)
    finally:
        os.close(fd)
    read = read_json_lines(path)
    assert read.lines == [(2, {"event": "b"})] and read.torn == 1


def test_an_incident_event_holding_nan_is_written_as_strict_json(tmp_path: Path) -> None:
    """The incident writer used json.dumps(allow_nan=False): a NaN measurement (a p95 of an empty window)
    was a ValueError traceback in the middle of a rollback. It now writes as the journal does: null."""
    log = IncidentLog.create(tmp_path, "production", detected_at="x")
    log.write("note", message="p95 unknown", p95_ms=float("nan"))
    last = log.path.read_text().splitlines()[-1]
    assert json.loads(last, parse_constant=pytest.fail)["p95_ms"] is None
