"""One state-changing run per environment at a time.

Two on-call engineers rolling back the same environment at once is how an
incident gets worse. :func:`acquire` takes an exclusive ``flock`` on
``<journal dir>/<env>.lock`` and writes who holds it; a second run gets
:class:`~rollback.errors.LockHeld` (exit 4) naming the holder. The kernel drops
the lock when the process ends, so a crashed run never leaves a stale lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import Any

from rollback.errors import LockHeld

__all__ = ["RunLock", "acquire"]


class RunLock:
    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                os.close(self._fd)
            self._fd = None


def _holder(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def acquire(directory: Path, env: str, holder: dict[str, Any]) -> RunLock:
    """Take the environment's run lock or raise :class:`LockHeld`."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{env}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        other = _holder(path)
        who = f"{other.get('who', '?')}@{other.get('host', '?')} (pid {other.get('pid', '?')})"
        raise LockHeld(
            f"another rollback run is in progress on env {env!r}: run {other.get('run', '?')} "
            f"by {who}: {other.get('command', '?')}",
            "wait for it to finish and check 'rollback journal show last'; the lock is released when that "
            "process exits",
            holder=other,
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps(holder).encode())
    os.fsync(fd)
    return RunLock(path, fd)
