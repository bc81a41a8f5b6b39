"""A full disk under the incident record: one line, never a traceback, and a rollback that worked
stays reported.

The failing writes are the kernel's: the incident file is a symlink to ``/dev/full`` (every write
fails with ENOSPC), or the incidents directory lives on a 256 kB tmpfs filled by the test
(``tests.conftest.SmallDisk``). Events written while a rollback runs (``run_started``,
``restored``...) warn once and are counted; commands whose only job is the record (``incident
note``/``close``, ``decide``) fail with one line and exit 1; a new incident on a full disk is
refused (exit 4) and leaves no empty file behind.
"""

from __future__ import annotations

import io
import json
import types
from collections.abc import Callable
from pathlib import Path

import pytest

from rollback.errors import OperationFailed, Refused
from rollback.model.incident import IncidentLog, read_incident
from tests.conftest import CliResult, SmallDisk

RunCli = Callable[..., CliResult]


def test_a_failed_event_warns_once_and_the_next_one_says_how_many_were_lost(tmp_path: Path) -> None:
    log = IncidentLog.create(tmp_path, "staging")
    path = log.path
    warnings: list[str] = []
    log.warn = warnings.append
    good = path.read_bytes()
    path.unlink()
    path.symlink_to("/dev/full")
    log.write("run_started", run="r1")
    log.write("restored", run="r1", layer="app")
    assert len(warnings) == 1 and "disk full" in warnings[0] and log.id in warnings[0], warnings
    assert log.lost_events == 2
    with pytest.raises(OperationFailed) as failed:
        log.must_write("note", message="paged the owner")
    assert "could not be written: disk full" in failed.value.one_line()
    path.unlink()
    path.write_bytes(good)  # the disk has room again
    log.write("run_finished", run="r1", status="succeeded", exit_code=0)
    record = read_incident(path)
    events = [e["event"] for e in record.events]
    assert events == ["opened", "run_finished"]
    assert record.events[-1]["lost_events"] == 2  # the note raised instead: its caller knows
    assert record.torn_lines == 0


def test_a_new_incident_on_a_full_disk_is_refused_and_leaves_no_file(
        small_disk: SmallDisk, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = small_disk.path / "incidents"
    directory.mkdir()
    if small_disk.mode == "tmpfs":
        small_disk.fill()
    else:
        monkeypatch.setattr(IncidentLog, "_append", _dev_full_append)
    with pytest.raises(Refused) as refused:
        IncidentLog.create(directory, "staging")
    assert "incident record could not be written: disk full" in refused.value.one_line(), small_disk.note
    assert refused.value.exit_code == 4
    assert [p.name for p in directory.iterdir()] == []


def test_note_and_close_on_a_full_disk_are_one_line_and_the_record_is_whole(
        run_cli: RunCli, tmp_path: Path, small_disk: SmallDisk, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "rollback.toml"
    config.write_text('[env.staging.vercel]\nproject = "demo"\n')
    monkeypatch.setenv("ROLLBACK_CONFIG", str(config))
    monkeypatch.setenv("ROLLBACK_JOURNAL_DIR", str(small_disk.path / "runs"))
    decided = run_cli("decide", "--error-rate", "7", "--json")
    assert decided.code == 0, decided.err
    incident = decided.json()["incident"]
    path = small_disk.path / "incidents" / f"{incident}.jsonl"
    before = path.read_bytes()
    if small_disk.mode == "tmpfs":
        small_disk.fill(types.SimpleNamespace(path=path))  # pads the file's last page, fills the rest
    else:
        monkeypatch.setattr(IncidentLog, "_append", _dev_full_append)
    for args in (("incident", "note", "--incident", incident, "paged the database owner"),
                 ("incident", "close", incident, "--resolution", "rolled back")):
        result = run_cli(*args)
        assert result.code == 1, (small_disk.note, result.err)
        assert "Traceback" not in result.out + result.err
        lines = [line for line in result.err.splitlines() if line.strip()]
        assert len(lines) == 1 and "could not be written: disk full" in lines[0], result.err
    small_disk.free()
    record = read_incident(path)
    assert [e["event"] for e in record.events] == [e["event"] for e in _events(before)]
    assert record.status == "open"
    shown = run_cli("incident", "show", incident, "--json")
    assert shown.code == 0 and json.loads(shown.out)["status"] == "open"


def _events(raw: bytes) -> list[dict[str, object]]:
    return [json.loads(line) for line in io.BytesIO(raw).read().splitlines() if line.strip()]


def _dev_full_append(self: IncidentLog, entry: object) -> None:
    """Every write of this incident fails in the kernel with ENOSPC (``/dev/full``)."""
    import os

    fd = os.open("/dev/full", os.O_WRONLY)
    try:
        os.write(fd, json.dumps(entry).encode() + b"\n")
    finally:
        os.close(fd)
