"""A ``*.jsonl`` in the journal directory that is a device or a pipe is skipped, never read: reading
/dev/zero or /dev/full never ends (``app rollback`` reads the journals for database switches)."""

from __future__ import annotations

import os
from pathlib import Path

from rollback.journal import list_runs


def test_a_device_or_pipe_in_the_journal_dir_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "20261128T090000.000000Z-aaaaaa.jsonl").write_text('{"event": "run_started"}\n')
    (tmp_path / "20261128T090001.000000Z-bbbbbb.jsonl").symlink_to("/dev/zero")
    os.mkfifo(tmp_path / "20261128T090002.000000Z-cccccc.jsonl")
    skipped: list[str] = []
    runs = list_runs(tmp_path, skipped)
    assert [r.run_id for r in runs] == ["20261128T090000.000000Z-aaaaaa"]
    assert sorted(skipped) == ["20261128T090001.000000Z-bbbbbb.jsonl: not a regular file",
                               "20261128T090002.000000Z-cccccc.jsonl: not a regular file"]
