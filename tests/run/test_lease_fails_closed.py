"""The team lease fails closed, judged on the local monotonic clock (the fast half of issue 18, item 1;
tests/incident/test_lease_fails_closed.py is the real-process half, against the moto server).

The store here is in memory and answers as S3's conditional writes do (``If-None-Match: *`` refuses an
existing key, ``If-Match`` refuses another ETag, both with 412, which the store reports as ``None``);
``reachable = False`` makes every call raise, as a cut network path does. The clock is a number the
test moves.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rollback.errors import LockHeld
from rollback.journal import Journal, read_run
from rollback.leasestore import LeaseObject
from rollback.lock import TeamLock, ensure_held, pause
from rollback.plan import Plan, Step
from rollback.runner import Check, execute, handler

TTL = 20.0  # lost once not renewed for 15 s (ttl minus a quarter)


class Unreachable(OSError):
    pass


class MemoryStore:
    """S3's conditional writes on one dict: ETag = MD5 of the body, 412 -> None."""

    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, str]] = {}
        self.reachable = True

    def _up(self) -> None:
        if not self.reachable:
            raise Unreachable("connect timeout")

    def create(self, key: str, body: bytes) -> str | None:
        self._up()
        if key in self.objects:
            return None
        etag = hashlib.md5(body).hexdigest()
        self.objects[key] = (body, etag)
        return etag

    def replace(self, key: str, body: bytes, etag: str) -> str | None:
        self._up()
        if key not in self.objects or self.objects[key][1] != etag:
            return None
        new = hashlib.md5(body).hexdigest()
        self.objects[key] = (body, new)
        return new

    def read(self, key: str) -> LeaseObject | None:
        self._up()
        if key not in self.objects:
            return None
        body, etag = self.objects[key]
        return LeaseObject(json.loads(body), etag, None, None)

    def delete(self, key: str, etag: str) -> bool:
        self._up()
        if key not in self.objects or self.objects[key][1] != etag:
            return False
        del self.objects[key]
        return True

    def upload(self, key: str, path: Path) -> None:
        self._up()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def journal(tmp_path: Path, store: MemoryStore, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> Iterator[Journal]:
    """A journaled run holding the local lock and the team lease (renewals come every 5 s of real time:
    none during a test; the test's clock decides the lease's age)."""
    monkeypatch.setenv("ROLLBACK_LOCK_DIR", str(tmp_path / "locks"))
    team = TeamLock("s3://team-bucket/team", ttl=TTL, store_factory=lambda bucket: store, monotonic=clock)
    opened = Journal.start(tmp_path / "runs", command="rollback test", env="production", lock=True,
                           lock_identity=f"{tmp_path}\0production", team_lock=team)
    yield opened
    opened.close()


def someone_else_takes_it(store: MemoryStore) -> None:
    key = "team/locks/production.json"
    body, _ = store.objects[key]
    other = {**json.loads(body), "run": "run-bob", "who": "bob", "host": "laptop-b", "pid": 7,
             "command": "rollback run"}
    data = json.dumps(other).encode()
    store.objects[key] = (data, hashlib.md5(data).hexdigest())


def test_a_lease_not_renewed_for_ttl_minus_the_margin_is_lost_and_names_the_holder_now(
        journal: Journal, store: MemoryStore, clock: Clock) -> None:
    assert journal.lock is not None and journal.lock.lease is not None
    lease = journal.lock.lease
    store.reachable = False
    with pytest.raises(Unreachable):
        lease.renew()  # a renewal that cannot reach S3 raises: the loop tries again next tick
    clock.now += TTL * 0.75 - 0.1
    ensure_held()  # still within ttl minus the margin
    pause(0)
    someone_else_takes_it(store)  # the lease expired on S3's clock and bob took it over
    store.reachable = True
    clock.now += 0.2
    with pytest.raises(LockHeld) as lost:
        ensure_held()
    message = lost.value.one_line()
    assert "was not renewed for 15 s (ttl 20 s; the last renewal failed: Unreachable: connect timeout)" in message
    assert "run run-bob by bob@laptop-b (pid 7): rollback run holds it now" in message
    assert lost.value.exit_code == 4 and lost.value.holder["run"] == "run-bob"
    with pytest.raises(LockHeld):
        pause(0)  # a long wait stops at its next poll
    before = store.objects["team/locks/production.json"]
    assert lease.renew() is False  # never written again: bob holds it
    journal.close()
    assert store.objects["team/locks/production.json"] == before  # nor deleted at release


def test_who_holds_it_now_may_be_unreadable(journal: Journal, store: MemoryStore, clock: Clock) -> None:
    store.reachable = False
    clock.now += TTL
    with pytest.raises(LockHeld, match=r"who holds it now could not be read \(Unreachable: connect timeout\)"):
        ensure_held()


def test_a_renewal_keeps_it_and_a_successful_one_resets_the_age(journal: Journal, store: MemoryStore,
                                                                clock: Clock) -> None:
    assert journal.lock is not None and journal.lock.lease is not None
    clock.now += TTL * 0.7
    assert journal.lock.lease.renew() is True
    clock.now += TTL * 0.7  # 1.4 ttl since the lease was taken, 0.7 since it was renewed
    ensure_held()


def _step(step_id: str, *, destructive: bool = False) -> Step:
    return Step(step_id, f"test.{step_id}", f"step {step_id}", destructive=destructive)


def test_the_run_stops_before_the_next_step_and_the_journal_says_so(journal: Journal, store: MemoryStore,
                                                                   clock: Clock) -> None:
    acted: list[str] = []

    def act(step: Step, ctx: Any) -> dict[str, Any]:
        acted.append(step.id)
        if step.id == "restore":
            clock.now += TTL  # a long step, cut off from S3 all along
            store.reachable = False
        return {}

    plan = Plan.of("test", "production", [_step("restore"), _step("swap", destructive=True)])
    with pytest.raises(LockHeld):
        execute(plan, {"test.restore": handler(act), "test.swap": handler(act)}, journal=journal)
    assert acted == ["restore"]
    run = read_run(journal.path)
    assert run.status == "refused" and run.finished is not None and run.finished["exit_code"] == 4
    assert run.finished["stopped_before"] == "swap" and "once the lease is free" in run.finished["resume"]
    note = next(e for e in run.entries if e.get("event") == "note" and e.get("lease_lost"))
    assert "was not renewed" in note["message"]


def test_the_lease_is_checked_again_right_before_the_act(journal: Journal, store: MemoryStore,
                                                        clock: Clock) -> None:
    acted: list[str] = []

    def check(step: Step, ctx: Any) -> Check:
        clock.now += TTL  # the check itself took long (or the process was stopped there)
        return Check(False, {}, "swap")

    def act(step: Step, ctx: Any) -> dict[str, Any]:
        acted.append(step.id)
        return {}

    plan = Plan.of("test", "production", [_step("swap", destructive=True)])
    with pytest.raises(LockHeld):
        execute(plan, {"test.swap": handler(act, check)}, journal=journal)
    assert acted == []
    run = read_run(journal.path)
    failed = next(e for e in run.entries if e.get("event") == "step_failed")
    assert failed["step"] == "swap" and failed["error_type"] == "LockHeld"
    assert run.status == "refused"
