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

The store is tests/unit/test_lease_fails_closed.py's in-memory S3 (conditional writes, 412 -> None);
``AnswerLost`` stores a write and then fails as the network does after S3 has acted.
"""

from __future__ import annotations

import sys
import time

from rollback import lock
from rollback.lock import Lease, TeamLock
from tests.unit.test_lease_fails_closed import TTL, MemoryStore

KEY = "team/locks/production.json"


# ------------------------------------------------------------------------------------ the clock


def test_the_lease_age_is_read_on_a_clock_that_counts_a_suspend() -> None:
    assert TeamLock("s3://team-bucket/team").monotonic is lock.elapsed
    assert Lease(MemoryStore(), KEY, {}, TTL, "production").monotonic is lock.elapsed
    if sys.platform.startswith("linux"):
        # CLOCK_BOOTTIME: CLOCK_MONOTONIC plus the time the system spent suspended
        assert abs(lock.elapsed() - time.clock_gettime(time.CLOCK_BOOTTIME)) < 1.0
    first = lock.elapsed()
    assert lock.elapsed() >= first
