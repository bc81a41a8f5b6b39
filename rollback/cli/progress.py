"""How a running plan shows its progress: a live table on a terminal, plain lines otherwise.

Both are :class:`~rollback.runner.RunObserver` objects given to
:func:`rollback.runner.execute` by :func:`rollback.cli.support.run_plan`.
Imported only when a plan runs (``rich`` only on a terminal).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from rollback.cli.output import markup, plan_table, say
from rollback.plan import finished_word
from rollback.runner import RunObserver
from rollback.safetext import printable

if TYPE_CHECKING:
    from rich.console import Console
    from rich.live import Live

    from rollback.plan import Plan, Step
    from rollback.runner import StepResult

__all__ = ["LiveProgress", "PlainProgress", "plan_progress"]


class PlainProgress(RunObserver):
    """One line per event on stderr: for logs, pipes and --json runs."""

    def __init__(self, total: int) -> None:
        self.total = total

    def note(self, message: str) -> None:
        say(f"      {printable(message)}")

    def step_started(self, number: int, step: Step, *, dry_run: bool) -> None:
        say(f"[{number}/{self.total}] {'would ' if dry_run else ''}{printable(step.describe())}")

    def step_finished(self, number: int, item: StepResult) -> None:
        if item.already_done:
            say(f"[{number}/{self.total}] {finished_word(item.step.action)}")
        elif not item.dry_run:
            say(f"[{number}/{self.total}] done ({item.seconds:.2f} s)")


class LiveProgress(RunObserver):
    """The plan as a live table on a terminal: a spinner and the elapsed time on the running step,
    the outcome on each finished one; notes print above it."""

    def __init__(self, plan: Plan, *, dry_run: bool, show_notes: bool = True) -> None:
        from rich.console import Console

        self.plan = plan
        self.dry_run = dry_run
        self.show_notes = show_notes
        self.console: Console = Console(stderr=True, soft_wrap=False)
        self.states: dict[int, Any] = {}
        self.running: tuple[int, float] | None = None
        self.live: Live | None = None

    def _render(self) -> Any:
        from rich.spinner import Spinner

        states = dict(self.states)
        if self.running is not None:
            number, started = self.running
            states[number] = Spinner("dots", text=f"{time.monotonic() - started:.1f} s", style="cyan")
        return plan_table(self.plan, states, dry_run=self.dry_run)

    def __enter__(self) -> LiveProgress:
        from rich.live import Live

        for note in self.plan.notes if self.show_notes else ():
            self.console.print(f"note: {markup(note)}")
        self.live = Live(console=self.console, get_renderable=self._render, refresh_per_second=10,
                         transient=False, redirect_stdout=False, redirect_stderr=False)
        self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.running = None
            self.live.refresh()
            self.live.stop()

    def note(self, message: str) -> None:
        self.console.print(f"  {markup(message)}")

    def step_started(self, number: int, step: Step, *, dry_run: bool) -> None:
        self.running = (number, time.monotonic())

    def step_finished(self, number: int, item: StepResult) -> None:
        self.running = None
        if item.already_done:
            self.states[number] = f"[green]{finished_word(item.step.action)}[/]"
        elif item.dry_run:
            self.states[number] = "[yellow]would[/]"
        else:
            self.states[number] = f"[green]done[/] {item.seconds:.1f} s"

    def step_failed(self, number: int, step: Step, error: BaseException) -> None:
        self.running = None
        interrupted = isinstance(error, KeyboardInterrupt)
        self.states[number] = "[red]interrupted[/]" if interrupted else "[red]failed[/]"


@contextlib.contextmanager
def plan_progress(plan: Plan, *, json_output: bool, dry_run: bool, show_notes: bool = True) -> Iterator[RunObserver]:
    """The display of a running plan: a live table on a terminal, plain lines on stderr otherwise (and with
    ``--json``, whose stdout is the document)."""
    if not json_output and sys.stderr.isatty():
        with LiveProgress(plan, dry_run=dry_run, show_notes=show_notes) as display:
            yield display
    else:
        yield PlainProgress(len(plan.steps))
