"""What every command shares: the app context, common options, output, confirmation,
and what the CLI injects into :class:`rollback.runner.Run`, the one path from a plan to its
finish (:func:`terminal_run`: the journal opener, the terminal's confirmation, the live
progress; :func:`run_plan`: a single-layer command's run with them).

Presentation only: commands do their work through ``rollback.commands`` and
hand back plain data; this module turns it into JSON or tables. ``rich`` is
imported only when something is drawn on a terminal (or a table is printed).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar

import click

from rollback.cli.output import markup, plan_lines, plan_table, say
from rollback.errors import BadInput, ConfirmationRequired, Refused
from rollback.plan import LAYERS
from rollback.safetext import dumps
from rollback.units import parse_duration

if TYPE_CHECKING:

    from rollback.config import Config
    from rollback.journal import Journal
    from rollback.plan import Plan
    from rollback.runner import Confirm, Display, ExecutionResult, Handlers, JournalOpener, RunObserver

__all__ = [
    "DURATION",
    "AppContext",
    "Duration",
    "common_options",
    "confirm",
    "confirm_plan",
    "dry_run_option",
    "emit",
    "layers_option",
    "pass_app",
    "run_plan",
    "saying_the_run",
    "terminal_run",
    "yes_option",
]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class AppContext:
    """Global options, and the config loaded on first use."""

    config_path: str | None = None
    env_name: str | None = None
    traceback: bool = False
    json: bool = False
    argv: list[str] = field(default_factory=list)
    _config: Config | None = None
    journals: list[Journal] = field(default_factory=list)
    last_error: str | None = None

    def config(self) -> Config:
        if self._config is None:
            from rollback.config import load_config

            self._config = load_config(self.config_path, self.env_name)
        return self._config

    def journal_dir(self) -> Path:
        """The journal directory, even without a config file (for ``journal list``)."""
        from rollback.config import resolve_journal_dir

        return resolve_journal_dir(self.config_path)

    def start_journal(self, **details: Any) -> Journal:
        """Open the run's journal, taking the environment's run lock and the team lease
        (:func:`rollback.runner.open_journal`, the one opener); closed by :func:`rollback.cli.main` if the
        command ends without finishing it."""
        from rollback.runner import open_journal

        journal = open_journal(self.config(), command=" ".join(["rollback", *self.argv]), details=details, say=say)
        self.journals.append(journal)
        return journal

    def close_journals(self, status: str, exit_code: int, error: str | None = None) -> None:
        """Close every journal this invocation opened; one left open is finished with the outcome.

        Commands normally finish their journal themselves (``runner.execute``);
        this catches an error raised between starting a journal and running the
        plan, so that no run is left without ``run_finished`` or holding its lock.
        """
        for journal in self.journals:
            if not journal.finished:
                fields = {"error": error} if error else {}
                journal.finish(status, exit_code, **fields)
            journal.close()
        self.journals.clear()


pass_app = click.make_pass_decorator(AppContext, ensure=True)


def _set(attr: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value not in (None, False):
            setattr(ctx.ensure_object(AppContext), attr, value)
        return value

    return callback


def common_options(*, json_output: bool = True) -> Callable[[F], F]:
    """``--env``, ``--config`` (also accepted after the subcommand) and ``--json``."""

    def decorate(func: F) -> F:
        if json_output:
            func = click.option("--json", "json_", is_flag=True, expose_value=False, is_eager=True,
                                callback=_set("json"),
                                help="Print one JSON document on stdout and nothing else there.")(func)
        func = click.option("--env", "env_name", metavar="NAME", expose_value=False, callback=_set("env_name"),
                            help="Environment from rollback.toml (else $ROLLBACK_ENV, else default_env).")(func)
        func = click.option("--config", "config_path", metavar="PATH", expose_value=False,
                            callback=_set("config_path"),
                            help="Config file (else $ROLLBACK_CONFIG, else rollback.toml found upwards).")(func)
        return func

    return decorate


dry_run_option = click.option("--dry-run", is_flag=True,
                              help="Walk the same steps and print what would be done; change nothing.")
yes_option = click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")


def emit(app: AppContext, document: Any, human: Callable[[], None] | None = None) -> None:
    """Print a result: one strict JSON document with --json (no NaN/Infinity), else the human rendering."""
    if app.json or human is None:
        click.echo(dumps(document))
    else:
        human()


def _require_a_way_to_confirm(action: str, yes: bool, env: str | None = None) -> None:
    if not yes and not sys.stdin.isatty():
        where = f" (env {env})" if env and f"env {env}" not in action else ""
        raise ConfirmationRequired(f"refusing to {action}{where} without confirmation: no terminal to ask on",
                                   "pass --yes to confirm, or --dry-run to see what it would do")


def confirm(prompt: str, *, yes: bool, action: str, env: str | None = None) -> None:
    """Ask before a destructive step. Without a terminal and without --yes, refuse (exit 4), naming the
    environment it refused."""
    if yes:
        return
    _require_a_way_to_confirm(action, yes, env)
    if not click.confirm(prompt, default=False, err=True):
        raise Refused(f"{action}: cancelled at the prompt", "nothing was changed")


# --------------------------------------------------------------------------- the plan, shown one way

def show_plan(app: AppContext, plan: Plan, *, dry_run: bool) -> None:
    """Print the plan on stderr (a table on a terminal, aligned text otherwise); nothing with --json."""
    if app.json:
        return
    if sys.stderr.isatty():
        from rich.console import Console

        console = Console(stderr=True, soft_wrap=False)
        console.print(plan_table(plan, dry_run=dry_run))
        for note in plan.notes:
            console.print(f"note: {markup(note)}")
        return
    for line in plan_lines(plan, dry_run=dry_run):
        say(line)


def run_plan(
    app: AppContext,
    plan: Plan,
    handlers: Handlers,
    *,
    dry_run: bool,
    yes: bool,
    action: str,
    human: Callable[[ExecutionResult], None] | None = None,
    document: Callable[[ExecutionResult], Any] | None = None,
    confirm_first: bool | None = None,
    prompt: str | None = None,
    details: Mapping[str, Any] | None = None,
    observer: RunObserver | None = None,
    on_journal: Callable[[Journal], None] | None = None,
) -> ExecutionResult:
    """Show the plan, confirm, journal, execute: a single-layer command's :class:`~rollback.runner.Run`
    with the terminal's confirmation and progress (:func:`terminal_run`).

    ``confirm_first`` (default: when the plan is destructive) asks ``prompt`` (default
    ``"<action>?"``) unless ``yes``; with no terminal to ask on it refuses (exit 4) before
    printing anything. A real run is journaled (with ``details`` in ``run_started``) under the
    environment's run lock; a dry run walks the same steps, changes nothing and is not journaled.
    Progress goes to stderr: a live table on a terminal, plain lines otherwise. With ``document``
    (and ``human``) the outcome is also emitted: one JSON document with --json, else ``human``.

    ``observer`` sees the run besides the display; ``on_journal`` gets the run's journal as soon as it
    is open, before the first step.
    """
    from rollback.runner import Run

    run = Run(plan, handlers, dry_run=dry_run, details=dict(details or {}),
              observers=(observer,) if observer is not None else (), on_journal=on_journal,
              **terminal_run(app, dry_run=dry_run, yes=yes, action=action, confirm_first=confirm_first,
                             prompt=prompt))
    with saying_the_run(app):
        outcome = run.go()
    if document is not None or human is not None:
        body = document(outcome) if document is not None else outcome.to_dict()
        emit(app, body, (lambda: human(outcome)) if human is not None else None)
    return outcome


class TerminalRun(TypedDict):
    """The CLI's part of a :class:`~rollback.runner.Run` (``Run(plan, handlers, **terminal_run(...))``)."""

    open_journal: JournalOpener
    confirm: Confirm
    display: Display


def terminal_run(app: AppContext, *, dry_run: bool, yes: bool, action: str, confirm_first: bool | None = None,
                 prompt: str | None = None) -> TerminalRun:
    """What the CLI injects into a :class:`~rollback.runner.Run`: the journal opener
    (:meth:`AppContext.start_journal`), the terminal's confirmation (:func:`confirm_plan`) and the live
    progress (:func:`rollback.cli.progress.plan_progress`)."""

    def confirm(plan: Plan) -> bool:
        return confirm_plan(app, plan, dry_run=dry_run, yes=yes, action=action, confirm_first=confirm_first,
                            prompt=prompt)

    def display(plan: Plan, asked: bool) -> contextlib.AbstractContextManager[RunObserver]:
        from rollback.cli.progress import plan_progress

        return plan_progress(plan, json_output=app.json, dry_run=dry_run, show_notes=not asked)

    return TerminalRun(open_journal=app.start_journal, confirm=confirm, display=display)


@contextlib.contextmanager
def saying_the_run(app: AppContext) -> Iterator[None]:
    """Around a run: once it is over (done or not), which run journaled it (``rollback journal show RUN``)."""
    opened = len(app.journals)
    try:
        yield
    finally:
        if len(app.journals) > opened and not app.json:
            run_id = app.journals[-1].run_id
            say(f"journaled as run {run_id} (rollback journal show {run_id})")


def confirm_plan(app: AppContext, plan: Plan, *, dry_run: bool, yes: bool, action: str,
                 confirm_first: bool | None = None, prompt: str | None = None) -> bool:
    """Show the plan and, when it asks (``confirm_first``, default: a destructive plan, never a dry run),
    confirm unless ``yes``; with no terminal to ask on, refuse (exit 4) before printing anything. On a
    terminal the plan is shown here only when a question follows (the live table shows it otherwise).
    Returns whether a question was asked."""
    asks = (plan.is_destructive if confirm_first is None else confirm_first) and not dry_run
    if asks:
        _require_a_way_to_confirm(action, yes, plan.env)
    live = not app.json and sys.stderr.isatty()
    if not live:
        show_plan(app, plan, dry_run=dry_run)
    if asks and not yes:
        if live:
            show_plan(app, plan, dry_run=dry_run)
        confirm(prompt or f"{action}?", yes=yes, action=action, env=plan.env)
        return True
    return False




def layers_option(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    """Click callback of a repeatable ``--layers app,edge`` style option: the layers as given (each once);
    an unknown name is a usage error (exit 2)."""
    chosen: list[str] = []
    for item in value:
        for part in item.split(","):
            name = part.strip().lower()
            if not name:
                continue
            if name not in LAYERS:
                raise click.BadParameter(f"{name!r} is not a layer (use {', '.join(LAYERS)})")
            chosen.append(name)
    return tuple(dict.fromkeys(chosen))


if TYPE_CHECKING:
    _FloatType = click.ParamType[float]
else:
    _FloatType = click.ParamType  # a generic only in recent click: subscripted for the type checker alone


class Duration(_FloatType):
    """The value of every ``--timeout 90s`` style option: seconds as a float (``90``, ``90s``, ``5m``,
    ``1h30m``, ``500ms``; ``0.0`` for one of ``off_words``, such as ``none``). A value that is not a
    duration is a usage error (exit 2), raised while click parses, as every other bad option value is;
    a default given as text goes through the same conversion."""

    name = "duration"

    def __init__(self, *, off_words: Sequence[str] = ()) -> None:
        self.off_words = tuple(off_words)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        text = str(value)
        if text.strip().lower() in self.off_words:
            return 0.0
        try:
            return parse_duration(text)
        except BadInput as exc:
            self.fail(f"{text!r} is not a duration ({exc.hint})", param, ctx)


DURATION = Duration()
