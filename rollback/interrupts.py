"""One way to take the stop signals (SIGINT, SIGTERM, SIGHUP) for the length of a block.

The runner (a signal during a step interrupts it, between steps it is remembered), the database swap
(deferred inside its critical sections), ``db guard`` (passed on to the guarded command) and the drill
(stop as Ctrl-C does; ignore while the sandbox stops) each decide what a signal means; :func:`handling`
is how they all install that meaning and give the previous one back.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from types import FrameType
from typing import Any, NoReturn

__all__ = ["STOP_SIGNALS", "Handler", "handling", "raise_interrupt"]

STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")

Handler = Callable[[int, FrameType | None], Any] | signal.Handlers


def raise_interrupt(signum: int, frame: FrameType | None) -> NoReturn:
    """A handler that makes the signal a Ctrl-C: ``KeyboardInterrupt`` named after it."""
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextlib.contextmanager
def handling(handler: Handler, names: Sequence[str] = STOP_SIGNALS, *, keep_ignored: bool = True) -> Iterator[bool]:
    """While the block runs, ``handler`` takes the signals ``names`` (those this platform has); on the way
    out the previous handlers come back (the default one where the previous was not set from Python).

    Python runs signal handlers in the main thread only, so in any other thread nothing is installed
    (the block gets ``False``). With ``keep_ignored``, a signal ignored when the block starts stays
    ignored: ``nohup`` (SIGHUP), or a parent that wants it so (a job started with ``&`` ignores SIGINT).
    """
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for name in names:
            number = getattr(signal, name, None)
            if number is None:
                continue
            try:
                if keep_ignored and signal.getsignal(number) == signal.SIG_IGN:
                    continue
                previous[number] = signal.signal(number, handler)
            except (ValueError, OSError):
                continue
    try:
        yield bool(previous)
    finally:
        for number, old in previous.items():
            with contextlib.suppress(ValueError, OSError, TypeError):
                signal.signal(number, signal.SIG_DFL if old is None else old)
