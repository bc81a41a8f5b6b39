"""Two ways the team lease misjudged itself (found attacking issue 18, item 1).

1. **A suspended laptop.** The lease's age was read on ``time.monotonic``, which is ``CLOCK_MONOTONIC`` on
   Linux: clock_gettime(2) says it "does not count time that the system is suspended" (``CLOCK_BOOTTIME``
   does), and on macOS ``time.monotonic`` is ``mach_absolute_time``, which stops while the machine sleeps.
   A laptop whose lid was closed for an hour woke up judging its lease seconds old and could act until its
   next renewal (up to ttl/4 later) found the lease taken over. A suspend cannot be made in a test, so
   the test checks which clock the lease reads.
2. **A write that S3 stored but whose answer was lost.** botocore retries a ``PutObject`` after a read
   timeout (standard retry mode); when the first attempt had been stored, the retry's ``If-Match`` no
   longer matches our own new ETag, S3 answers 412, and the run stopped (exit 4) saying the lease "was
   taken over" by... itself, then had to wait a whole ttl before ``resume``. The lease's body carries a
   nonce per write: an object holding one of our own nonces is our write, still ours.

The store is tests/run/test_lease_fails_closed.py's in-memory S3 (conditional writes, 412 -> None);
``AnswerLost`` stores a write and then fails as the network does after S3 has acted.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from rollback import lock
from rollback.errors import LockHeld
from rollback.lock import Lease, TeamLock
from tests.run.test_lease_fails_closed import TTL, Clock, MemoryStore

KEY = "team/locks/production.json"


class AnswerLost(MemoryStore):
    """S3 stores the next ``lose`` writes, but their answers never arrive: ``mode = "raise"`` as a read
    timeout that exhausted the retries, ``mode = "retried"`` as botocore's retry getting 412."""

    def __init__(self) -> None:
        super().__init__()
        self.lose = 0
        self.mode = "raise"

    def _lost(self, etag: str | None) -> str | None:
        if self.lose and etag is not None:
            self.lose -= 1
            if self.mode == "raise":
                raise TimeoutError("Read timeout on endpoint URL")
            return None  # the retry of the same conditional write: 412 against our own new ETag
        return etag

    def create(self, key: str, body: bytes) -> str | None:
        return self._lost(super().create(key, body))

    def replace(self, key: str, body: bytes, etag: str) -> str | None:
        return self._lost(super().replace(key, body, etag))


def lease(store: MemoryStore, clock: Clock, run: str = "run-alice") -> Lease:
    team = TeamLock("s3://team-bucket/team", ttl=TTL, store_factory=lambda bucket: store, monotonic=clock)
    return team.lease("production", {"run": run, "who": "alice", "host": "laptop-a", "pid": 1, "command": "x"})


def on_s3(store: MemoryStore) -> dict[str, object]:
    return dict(json.loads(store.objects[KEY][0]))


# ------------------------------------------------------------------------------------ the clock


def test_the_lease_age_is_read_on_a_clock_that_counts_a_suspend() -> None:
    assert TeamLock("s3://team-bucket/team").monotonic is lock.elapsed
    assert Lease(MemoryStore(), KEY, {}, TTL, "production").monotonic is lock.elapsed
    if sys.platform.startswith("linux"):
        # CLOCK_BOOTTIME: CLOCK_MONOTONIC plus the time the system spent suspended
        assert abs(lock.elapsed() - time.clock_gettime(time.CLOCK_BOOTTIME)) < 1.0
    first = lock.elapsed()
    assert lock.elapsed() >= first


# ------------------------------------------------------------------------------------ lost answers


def test_a_renewal_stored_without_its_answer_is_still_ours_when_botocore_retries_it() -> None:
    store, clock = AnswerLost(), Clock()
    held = lease(store, clock)
    held.take()
    clock.now += 5
    store.lose, store.mode = 1, "retried"
    assert held.renew() is True  # not "taken over" by itself
    assert held.lost is None and held.etag == store.objects[KEY][1]
    assert held.renewed_at == clock.now  # the stored write's own sending moment
    clock.now += 5
    assert held.renew() is True and on_s3(store)["run"] == "run-alice"
    held.check()


def test_a_renewal_that_timed_out_after_s3_stored_it_is_recognised_on_the_next_one() -> None:
    store, clock = AnswerLost(), Clock()
    held = lease(store, clock)
    held.take()
    clock.now += 5
    sent = clock.now
    store.lose, store.mode = 1, "raise"
    with pytest.raises(TimeoutError):
        held.renew()
    clock.now += 5
    assert held.renew() is True and held.lost is None  # If-Match on the old ETag: 412, but the body is ours
    assert held.renewed_at == sent
    held.release()
    assert KEY not in store.objects  # released with the ETag on S3, not left to expire


def test_taking_the_lease_when_the_answer_was_lost_takes_it() -> None:
    store, clock = AnswerLost(), Clock()
    store.lose, store.mode = 1, "retried"
    held = lease(store, clock)
    held.take()  # not "another rollback run holds the team lock: run run-alice" (its own)
    assert held.etag == store.objects[KEY][1] and on_s3(store)["run"] == "run-alice"
    held.release()


def test_someone_elses_write_is_still_a_take_over(tmp_path: Path) -> None:
    store, clock = AnswerLost(), Clock()
    held = lease(store, clock)
    held.take()
    other = {**on_s3(store), "run": "run-bob", "nonce": "0123456789abcdef"}
    data = json.dumps(other).encode()
    store.objects[KEY] = (data, "bob-etag")
    assert held.renew() is False
    assert held.lost is not None and "run run-bob" in held.lost
    with pytest.raises(LockHeld):
        held.check()
