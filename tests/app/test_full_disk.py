"""A full disk under the journal is one line, and a finished step stays finished.

The journal directory is on a small disk (a real tmpfs where one can be mounted, else the
journal's descriptor is pointed at /dev/full: ENOSPC from the kernel either way; see
``tests.conftest.SmallDisk``). Filled after Vercel has accepted the rollback, the run must
say "journal could not be written: disk full" once, finish the rollback, report it and exit
0 (it used to turn a completed rollback into a traceback and exit 1). Full before the run
starts, nothing is done: exit 4, one line.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rollback.sandbox.vercel import VercelEmulator
from rollback.sandbox.vercel_state import DEMO
from tests.app.test_app_cli import production
from tests.conftest import CliResult, SmallDisk

RunCli = Callable[..., CliResult]
MESSAGE = "journal could not be written: disk full"


def _point_journal_at(disk: SmallDisk, monkeypatch: pytest.MonkeyPatch) -> Path:
    runs = disk.path / "runs"
    monkeypatch.setenv("ROLLBACK_JOURNAL_DIR", str(runs))
    return runs


def test_a_disk_that_fills_after_the_rollback_does_not_undo_its_report(
        run_cli: RunCli, app_env: Path, emulator: VercelEmulator, small_disk: SmallDisk,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from rollback.journal import Journal

    runs = _point_journal_at(small_disk, monkeypatch)
    real_write = Journal.write
    filled: list[str] = []

    def write(self: Journal, event: str, **fields: Any) -> Any:
        # The moment that hurt: Vercel has rolled back, the journal is about to say so.
        if event == "step_finished" and fields.get("step") == "vercel-rollback" and not filled:
            small_disk.fill(self)
            filled.append(event)
        return real_write(self, event, **fields)

    monkeypatch.setattr(Journal, "write", write)
    before = production(emulator)
    result = run_cli("app", "rollback", "--yes")
    assert filled, "the disk was never filled: the step id changed?"
    assert result.code == 0, (small_disk.note, result.err)
    assert "Traceback" not in result.out + result.err
    assert result.err.count(MESSAGE) == 1, result.err
    assert production(emulator) == DEMO.previous != before  # the rollback happened...
    assert DEMO.previous in result.out  # ...and is reported
    small_disk.free()
    shown = run_cli("journal", "show", "last", "--json")
    assert shown.code == 0, shown.err
    record = shown.json()
    # What the journal holds is true, as far as it goes: the rollback step started, the run did
    # not finish in the journal. The output above is the rest of the record.
    assert record["status"] in ("unfinished", "succeeded")
    assert any(s["id"] == "vercel-rollback" for s in record["steps"])
    assert list(runs.glob("*.jsonl"))


def test_a_full_disk_before_the_run_refuses_it(run_cli: RunCli, app_env: Path, emulator: VercelEmulator,
                                               small_disk: SmallDisk, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = _point_journal_at(small_disk, monkeypatch)
    if small_disk.mode == "tmpfs":
        small_disk.fill()
    else:
        runs.mkdir()
        monkeypatch.setattr("rollback.journal.new_run_id", lambda now=None: "20261128T090000.000000Z-f00f00")
        (runs / "20261128T090000.000000Z-f00f00.jsonl").symlink_to("/dev/full")
    before = production(emulator)
    result = run_cli("app", "rollback", "--yes")
    assert result.code == 4, (small_disk.note, result.err)
    # the plan may be shown first (stderr); then exactly one error line, the last
    errors = [line for line in result.err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and result.err.strip().splitlines()[-1] == errors[0], result.err
    assert errors[0].startswith(f"error: {MESSAGE}"), result.err
    assert "nothing was changed" in errors[0] and "ROLLBACK_JOURNAL_DIR" in errors[0]
    assert "Traceback" not in result.err
    assert production(emulator) == before
    assert not [r for r in emulator.state.alias_history if r["type"] == "rollback"]
