"""rollback.interrupts.handling: the one way the runner, the swap, db guard and the drill take the stop
signals. The signals are real (``os.kill`` of this process, in the main thread where Python runs them)."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rollback.commands.drill_runner import signals_ignored, signals_interrupt
from rollback.interrupts import handling, raise_interrupt
from rollback.journal import Journal, read_run
from rollback.plan import Plan, Step
from rollback.runner import execute, handler


@pytest.fixture
def sighup_ignored() -> Iterator[None]:
    """As under ``nohup``: SIGHUP ignored when the command starts."""
    before = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGHUP, before)


def test_a_run_under_nohup_goes_on_through_a_hangup(tmp_path: Path, sighup_ignored: None) -> None:
    """An ignored SIGHUP stays ignored for the run (nohup: a dropped SSH session must not stop it), and
    the handlers of before are back after it."""
    acted: list[str] = []
    sigterm_before = signal.getsignal(signal.SIGTERM)

    def act(step: Step, ctx: Any) -> dict[str, Any]:
        if not acted:
            os.kill(os.getpid(), signal.SIGHUP)
        acted.append(step.id)
        return {}

    plan = Plan.of("test", "production", [Step("one", "test.act", "one"), Step("two", "test.act", "two")])
    journal = Journal.start(tmp_path, command="rollback test", env="production")
    execute(plan, {"test.act": handler(act)}, journal=journal)
    assert acted == ["one", "two"]
    assert read_run(journal.path).status == "succeeded"
    assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    assert signal.getsignal(signal.SIGTERM) == sigterm_before


def test_handling_installs_then_gives_back(sighup_ignored: None) -> None:
    seen: list[int] = []

    def note(signum: int, frame: object) -> None:
        seen.append(signum)

    before = signal.getsignal(signal.SIGTERM)
    with handling(note, ("SIGTERM", "SIGHUP")) as installed:
        assert installed
        assert signal.getsignal(signal.SIGTERM) is note
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN  # kept ignored
        os.kill(os.getpid(), signal.SIGTERM)
    assert seen == [signal.SIGTERM]
    assert signal.getsignal(signal.SIGTERM) == before
    with handling(note, ("SIGHUP",), keep_ignored=False):
        assert signal.getsignal(signal.SIGHUP) is note
    assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN


def test_handling_outside_the_main_thread_installs_nothing() -> None:
    results: list[bool] = []

    def other() -> None:
        with handling(raise_interrupt) as installed:
            results.append(installed)

    before = signal.getsignal(signal.SIGINT)
    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert results == [False]
    assert signal.getsignal(signal.SIGINT) == before


def test_the_drill_stops_on_sigterm_and_ignores_while_the_sandbox_stops() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"), signals_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) == before
    with signals_ignored():
        os.kill(os.getpid(), signal.SIGTERM)  # ignored: nothing happens
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    assert signal.getsignal(signal.SIGTERM) == before
