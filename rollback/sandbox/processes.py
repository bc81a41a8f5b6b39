"""The sandbox's background processes: identify exactly ours, stop exactly ours.

A pid alone is not an identity: after a process dies its number can be reused
by anything. Every process the sandbox records is a :class:`ProcessRef`, the
pid plus the process's start time (field 22 of ``/proc/<pid>/stat``, clock
ticks since boot), so ``rollback sandbox down`` signals a pid only while it
still names the process that was started. Where ``/proc`` does not exist the
start time is ``None`` and only the pid is checked.

Children of the supervisor call :func:`die_with_parent` (Linux
``PR_SET_PDEATHSIG``) so that a SIGKILLed supervisor does not leave its
servers running.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "ProcessRef",
    "die_with_parent",
    "free_port",
    "is_alive",
    "process_ref",
    "start_time_of",
    "stop_process",
    "wait_for_port",
]

_PROC = Path("/proc")


def start_time_of(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or ``None`` when it is gone
    (or a zombie, which is as good as gone)."""
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces or ')'.
    fields = raw[raw.rfind(")") + 2:].split()
    if not fields or fields[0] in ("Z", "X"):
        return None
    try:
        return int(fields[19])  # field 22 overall; fields[0] is field 3
    except (IndexError, ValueError):
        return None


@dataclass(frozen=True)
class ProcessRef:
    """A process we started: its name in ``sandbox.json``, pid and start time."""

    name: str
    pid: int
    start_time: int | None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "pid": self.pid, "start_time": self.start_time}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProcessRef:
        start = data.get("start_time")
        return cls(str(data["name"]), int(data["pid"]), int(start) if start is not None else None)


def process_ref(name: str, pid: int) -> ProcessRef:
    return ProcessRef(name, pid, start_time_of(pid))


def is_alive(ref: ProcessRef) -> bool:
    """Whether ``ref``'s process is still running (and is still the same process)."""
    if _PROC.is_dir():
        current = start_time_of(ref.pid)
        return current is not None and (ref.start_time is None or current == ref.start_time)
    try:
        os.kill(ref.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _reap(pid: int) -> None:
    # A child of ours stays a zombie (and looks alive to kill(0)) until waited for.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def stop_process(ref: ProcessRef, *, timeout: float = 5.0, sig: int = signal.SIGTERM) -> bool:
    """Send ``sig`` to ``ref`` if it is still ours, wait up to ``timeout``, then SIGKILL.

    Returns True when a signal was sent (the process was alive).
    """
    if not is_alive(ref):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(ref.pid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(ref.pid)
        if not is_alive(ref):
            return True
        time.sleep(0.05)
    if is_alive(ref):
        with contextlib.suppress(ProcessLookupError):
            os.kill(ref.pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while is_alive(ref) and time.monotonic() < deadline:
            _reap(ref.pid)
            time.sleep(0.05)
    return True


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent dies (Linux only).

    Used as a ``preexec_fn``: it runs in the child between fork and exec. The
    parent must start children from a thread that lives as long as it does (the
    signal follows the thread that forked, not the process).
    """
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, int(sig), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), sig)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, *, timeout: float = 30.0, alive: Any = None) -> bool:
    """Wait until something accepts connections on 127.0.0.1:``port``.

    ``alive`` (a callable) is polled too: when it returns False the wait ends early.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return True
        if alive is not None and not alive():
            return False
        time.sleep(0.03)
    return False
