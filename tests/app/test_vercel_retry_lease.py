"""A re-sent Vercel rollback checks the team lease first (found attacking issue 18, item 1).

The runner checks the lease right before a step's act, but the Vercel client re-sends a rollback or a
promote inside that act after a transient refusal (429 with ``Retry-After``, a 5xx that did not take),
sleeping up to its 30 s budget in between. That sleep was ``time.sleep``: a run whose lease was lost
while Vercel turned its first request away (S3 cut off, ttl 5 s) re-sent the rollback afterwards, in
parallel with the colleague who had taken the expired lease over. The client the commands build now
sleeps through :func:`rollback.lock.pause`, which stops when the lease is lost.

Against the Vercel emulator (a documented 429 with ``Retry-After``); the lease is held in a strict
in-memory S3 (tests/run/test_lease_fails_closed.py) and its age moves on the test's clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rollback.config import load_config
from rollback.context import RunSettings, Services
from rollback.errors import LockHeld
from rollback.lock import RunLock, TeamLock, acquire
from rollback.sandbox.vercel import VercelEmulator
from rollback.sandbox.vercel_state import DEMO, FaultRule
from tests.run.test_lease_fails_closed import TTL, Clock, MemoryStore


@pytest.fixture
def held(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[RunLock, Clock]]:
    monkeypatch.setenv("ROLLBACK_LOCK_DIR", str(tmp_path / "locks"))
    clock, store = Clock(), MemoryStore()
    team = TeamLock("s3://team-bucket/team", ttl=TTL, store_factory=lambda bucket: store, monotonic=clock)
    run_lock = acquire("production", {"run": "run-alice", "who": "alice"}, identity=f"{tmp_path}\0production",
                       team=team)
    try:
        yield run_lock, clock
    finally:
        run_lock.release()


def test_a_rollback_turned_away_is_not_sent_again_once_the_lease_is_lost(
        app_env: Path, emulator: VercelEmulator, held: tuple[RunLock, Clock]) -> None:
    _, clock = held
    fault = FaultRule(method="POST", path="/rollback/", status=429, retry_after="1", times=1)
    emulator.state.add_fault(fault)
    tick = RunSettings(on_retry=lambda message: setattr(clock, "now", clock.now + TTL))
    client = Services(load_config(None, None), settings=tick).vercel()
    before = emulator.state.project(DEMO.project_id).production_id
    with pytest.raises(LockHeld) as lost:
        client.request_rollback(DEMO.project_id, DEMO.previous)
    assert "was not renewed for" in lost.value.message and lost.value.exit_code == 4
    assert fault.fired == 1
    assert emulator.state.alias_history == []  # sent once, turned away, never re-sent
    assert emulator.state.project(DEMO.project_id).production_id == before


def test_a_rollback_turned_away_is_sent_again_while_the_lease_is_held(
        app_env: Path, emulator: VercelEmulator, held: tuple[RunLock, Clock]) -> None:
    fault = FaultRule(method="POST", path="/rollback/", status=429, retry_after="1", times=1)
    emulator.state.add_fault(fault)
    client = Services(load_config(None, None)).vercel()
    client.request_rollback(DEMO.project_id, DEMO.previous)
    assert fault.fired == 1 and [r["type"] for r in emulator.state.alias_history] == ["rollback"]
