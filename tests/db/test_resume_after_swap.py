"""A run killed just after its database swap committed is resumed, not repeated (issue 18, item 2).

``resume`` re-checks the steps the stopped run finished. The restore and row-count steps used to look
for ``<db>_restore_<time>``; after the swap that copy is the live database, so the re-check said "not
done" and ``resume`` refused (exit 4), advising a new run that would restore and swap a second time.
Now a step's check stays true after the plan's own swap: the copy is gone under its name, the set-aside
database carries the swap's mark naming it, and the live database has the copy's oid.

Real processes against a real PostgreSQL: the CLI runs in a child (tests/db/pause_after_commit.py holds
it just after the swap's COMMIT) and is killed there with SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import CliResult
from tests.db.conftest import LiveDb

RunCli = Callable[..., CliResult]
ROOT = Path(__file__).resolve().parents[2]


def _replaced(live_db: LiveDb) -> list[str]:
    return [d for d in live_db.databases() if "_replaced_" in d]


def _kill_after_commit(args: list[str], marker: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PAUSE_AFTER_COMMIT_FILE": str(marker)}
    proc = subprocess.Popen([sys.executable, "-m", "tests.db.pause_after_commit", *args], cwd=ROOT, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not marker.exists():
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"the command ended (exit {proc.returncode}) before the swap committed: {err}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the swap never committed")
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return proc


def _acted(live_db: LiveDb, known: set[Path]) -> dict[str, int]:
    """How many times each step acted in the runs journaled since ``known`` (the killed one and its resume)."""
    import json

    counts: dict[str, int] = {}
    for path in set(live_db.journal_dir.glob("*.jsonl")) - known:
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            if entry.get("event") == "step_finished" and not entry.get("already_done"):
                counts[entry["step"]] = counts.get(entry["step"], 0) + 1
    return counts


@pytest.mark.parametrize("command", ["restore --swap", "swap"])
def test_sigkill_just_after_the_swap_committed_then_resume(run_cli: RunCli, live_db: LiveDb, tmp_path: Path,
                                                           command: str) -> None:
    live_db.sql("CREATE TABLE probe (v text); INSERT INTO probe VALUES ('backup')", user="app")
    backup = run_cli("db", "backup", "--json")
    assert backup.code == 0, backup.err
    name = backup.json()["backup"]["name"]
    live_db.sql("UPDATE probe SET v = 'live'")
    if command == "swap":
        restored = run_cli("db", "restore", name, "--yes", "--json")
        assert restored.code == 0, restored.err
        copy = next(d for d in live_db.databases() if "_restore_" in d)
        args = ["db", "swap", copy, "--yes"]
    else:
        args = ["db", "restore", name, "--swap", "--yes"]
    before = len(_replaced(live_db))
    known = set(live_db.journal_dir.glob("*.jsonl"))
    _kill_after_commit(args, tmp_path / "committed")
    assert live_db.scalar("SELECT v FROM probe") == "backup"  # the swap committed
    assert len(_replaced(live_db)) == before + 1

    resumed = run_cli("resume", "--yes", "--json")
    assert resumed.code == 0, resumed.err
    steps = {s["id"]: s for s in resumed.json()["steps"]}
    assert steps["swap"]["already_done"] is True
    assert len(_replaced(live_db)) == before + 1  # exactly one swap: nothing was restored or swapped again
    assert [d for d in live_db.databases() if "_restore_" in d] == []
    assert live_db.scalar("SELECT v FROM probe") == "backup"
    assert set(_acted(live_db, known).values()) == {1}  # no step acted twice across the runs
