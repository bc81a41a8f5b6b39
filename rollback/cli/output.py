"""Text is text: the one way a line, a table or a plan reaches the terminal.

Every string printed goes through :func:`rollback.safetext.printable` (control characters escaped), and
anything handed to ``rich`` through :func:`markup` (``[/api/pay]`` prints as written). Human lines go to
stderr (:func:`say`) so stdout stays clean for results (:func:`echo`) and ``--json``. ``rich`` is imported
only when a table is drawn.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import click

from rollback.safetext import printable

if TYPE_CHECKING:
    from rich.console import RenderableType

    from rollback.plan import Plan

__all__ = ["PLAN_COLUMNS", "echo", "markup", "plan_lines", "plan_table", "print_table", "say"]


def say(message: str, *, err: bool = True) -> None:
    """Human progress and notes: stderr, so stdout stays clean for results and --json.

    Control characters in the message (an ESC from a ``--reason``...) are shown escaped.
    """
    click.echo(printable(message, keep_newlines=True), err=err)


def echo(message: str) -> None:
    """A human result line on stdout (``say(message, err=False)``)."""
    say(message, err=False)


def print_table(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, title: str | None = None) -> None:
    """A table on stdout. Every cell is text: rich markup in it is shown as written
    (``rich.text.Text`` is never parsed as markup) and control characters escaped."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(printable(title)) if title is not None else None, title_justify="left",
                  show_lines=False, header_style="bold")
    for column in columns:
        table.add_column(Text(printable(column)), overflow="fold")
    for row in rows:
        table.add_row(*(Text("" if cell is None else printable(cell)) for cell in row))
    # Piped or captured output (a log, an incident channel) must not wrap ids and URLs at 80 columns.
    width = None if sys.stdout.isatty() else 240
    Console(soft_wrap=False, width=width).print(table)


# --------------------------------------------------------------------------- text is text


def markup(value: Any) -> str:
    """Printable text, safe to hand to rich (``[/api/pay]`` prints as written)."""
    from rich.markup import escape

    return escape(printable(value))


PLAN_COLUMNS = ("#", "layer", "step", "destructive")


def plan_lines(plan: Plan, *, dry_run: bool = False) -> list[str]:
    """The plan as plain text: its title, one aligned row per step (number, layer, step,
    destructive flag), then its notes. What a terminal shows as a table, a log gets as text."""
    rows = [tuple(printable(cell) for cell in row) for row in plan.table_rows()]
    lines = [printable(f"{'dry run: ' if dry_run else ''}{plan.title} (env {plan.env})")]
    if not rows:
        lines.append("  nothing to do")
    else:
        widths = [max(len(row[i]) for row in rows) for i in range(2)]
        for number, layer, step, flag in rows:
            lines.append(f"  {number.rjust(widths[0])}  {layer.ljust(widths[1])}  {step}"
                         + (f"  [{flag}]" if flag else ""))
    lines.extend(f"  note: {printable(note)}" for note in plan.notes)
    return lines


def plan_table(plan: Plan, states: Mapping[int, RenderableType] | None = None, *, dry_run: bool = False) -> Any:
    from rich.table import Table

    table = Table(title=markup(f"{'dry run: ' if dry_run else ''}{plan.title} (env {plan.env})"),
                  title_justify="left", header_style="bold", show_lines=False)
    for column in PLAN_COLUMNS:
        table.add_column(column, overflow="fold", no_wrap=column != "step")
    if states is not None:
        table.add_column("status", no_wrap=True)
    for index, (number, layer, step, flag) in enumerate(plan.table_rows(), start=1):
        cells: list[Any] = [number, markup(layer), markup(step), "[bold red]yes[/]" if flag else ""]
        if states is not None:
            cells.append(states.get(index, ""))
        table.add_row(*cells)
    return table
