"""``rollback watch``: parsing and presentation. The loop is :func:`rollback.commands.watch.run_watch`."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from rollback.cli.output import echo, say
from rollback.cli.support import DURATION, AppContext, Duration, common_options, emit, pass_app
from rollback.errors import BadInput
from rollback.safetext import printable

if TYPE_CHECKING:
    from rollback.commands.watch import Reading, WatchResult

__all__ = ["watch"]

OFF_OR_DURATION = Duration(off_words=("none", "off"))  # --baseline none, --cooldown 0 or off


class _Lines:
    """The status lines: on a terminal one live line, rewritten each reading and kept whenever the verdict
    changes (and before anything else is said); one line per reading otherwise (a CI log, a pipe)."""

    def __init__(self, live: bool) -> None:
        self.live = live
        self.open = False
        self.last: str | None = None

    def reading(self, reading: Reading) -> None:
        text = printable(reading.line())
        if not self.live:
            say(text)
            return
        if self.open and reading.verdict != self.last:
            sys.stderr.write("\n")
        sys.stderr.write(f"\r\x1b[K{text}")
        sys.stderr.flush()
        self.open = True
        self.last = reading.verdict

    def close(self) -> None:
        """End the live line (what follows starts on a line of its own)."""
        if self.open:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self.open = False

    def say(self, message: str) -> None:
        self.close()
        say(message)


def _human(result: WatchResult) -> None:
    document = result.to_dict()
    echo(f"watch {result.id} of env {result.env}: {result.outcome.replace('_', ' ')} (exit {result.exit_code})")
    readings = document["readings"]
    echo(f"  readings: {readings['readings']} ({readings['bad']} bad, {readings['good']} good, "
         f"{readings['not_measured']} not measured)")
    if result.incident:
        echo(f"  incident: {result.incident}")
    since = document["since_start"]
    for key, label in (("detected", "first bad reading"), ("decided", "decision"), ("restored", "service restored"),
                       ("verified", "verified")):
        if since.get(key) is not None:
            echo(f"  {label}: {since[key]:.1f} s after the watch started")
    if result.acted:
        acted = result.acted
        echo(printable(f"  rolled back automatically: {', '.join(acted['layers'])} (run {acted.get('run') or '-'}, "
                       f"{acted.get('status')})"))
    if result.refused:
        echo(printable(f"  refused: {result.refused.get('reason')}: {result.refused.get('detail')}"))
    if result.person:
        echo(printable(f"  a person must act: {result.person.get('why')}"))
        if result.person.get("command"):
            echo(printable(f"  run: {result.person['command']}"))
    if result.error and result.outcome == "failed":
        echo(printable(f"  error: {result.error}"))


def _switch(app: AppContext, pause: bool, resume: bool, reason: str | None) -> None:
    from rollback.watchstate import WatchState

    config = app.config()
    state = WatchState.of(config)
    where = f"here and for the team ({config.lock_settings.url})" if config.lock_settings.url else "on this machine"
    if pause:
        set_ = state.pause(reason or "")
        document: dict[str, Any] = {"ok": True, "env": config.env_name, "paused": set_.to_dict()}
        emit(app, document, lambda: echo(printable(
            f"env {config.env_name} {set_.line()} ({where}): a watch reads and posts, and rolls nothing back; "
            "'rollback watch --resume' lifts it")))
        return
    removed = state.resume()
    document = {"ok": True, "env": config.env_name, "paused": None, "removed": removed}
    emit(app, document, lambda: echo(
        f"env {config.env_name}: the kill switch is lifted ({where}); watches act again" if removed else
        f"env {config.env_name} was not paused"))


@click.command("watch")
@click.option("--for", "period", default="15m", show_default=True, type=DURATION, metavar="DURATION",
              help="How long to watch after the deploy.")
@click.option("--interval", default="10s", show_default=True, type=DURATION, metavar="DURATION",
              help="Time between readings.")
@click.option("--auto", "auto", default="app,edge,assets", show_default=True, metavar="LAYERS|none",
              help="Layers the watch rolls back by itself (never db).")
@click.option("--no-abort-canary", is_flag=True,
              help="Do not abort an active Vercel rolling release by itself (it does even with --auto none).")
@click.option("--min-bad", type=click.IntRange(min=1), default=3, show_default=True, metavar="N",
              help="Consecutive bad (P0/P1) readings before it acts (twice as many after a flap).")
@click.option("--baseline", default="10m", show_default=True, type=OFF_OR_DURATION, metavar="DURATION|none",
              help="Judge the rates on their rise over this long before the release (CloudWatch history).")
@click.option("--cooldown", default="1h", show_default=True, type=OFF_OR_DURATION, metavar="DURATION",
              help="At most one automatic rollback per environment this often; later ones page.")
@click.option("--deployed-at", metavar="TIME", help="When the deploy happened (default: when the watch starts).")
@click.option("--drill", is_flag=True, help="Mark an incident it opens as a drill.")
@click.option("--pause", is_flag=True, help="Set the environment's kill switch: watches act on nothing.")
@click.option("--reason", metavar="TEXT", help="With --pause: why (shown to whoever is paged).")
@click.option("--resume", "resume_", is_flag=True, help="Lift the kill switch.")
@common_options()
@pass_app
def watch(app: AppContext, period: float, interval: float, auto: str, no_abort_canary: bool, min_bad: int,
          baseline: float, cooldown: float, deployed_at: str | None, drill: bool, pause: bool, reason: str | None,
          resume_: bool) -> None:
    """Watch a release and roll it back by itself when it goes bad.

    Started right after a deploy (by CI, after pulumi up, or by hand), it
    reads the live signals every --interval (as 'decide --live' does, the
    rates judged on their rise over the --baseline before the release) and
    prints one status line per reading. After --min-bad bad (P0/P1)
    readings in a row it opens the incident and rolls back the recommended
    layers that are in --auto through the same code as 'rollback run
    --yes' (lock, team lease, journal, posts, verification), then ends. It
    never restores the database: for db, or any layer it will not roll
    back, it posts the exact 'rollback run' command to the incident channel
    and prints it. An active Vercel rolling release is aborted even with
    --auto none (unless --no-abort-canary).

    It acts on nothing while the environment is paused (--pause; the switch
    is kept beside the lock, and in S3 with [lock] url), within --cooldown
    of its last automatic rollback, when a migration the app's target does
    not know was applied since, or when another run holds the lock or
    lease: then it pages instead. A killed watch's rollback is completed by
    'rollback resume'.

    \b
    Examples:
      rollback watch --for 15m
      rollback watch --for 3m --interval 1s --auto app,edge,assets
      rollback watch --auto none --json
      rollback watch --pause --reason "migration in progress"
      rollback watch --resume

    Exit codes: 0 nothing to do, or rolled back and verified; 1 an
    operation failed; 2 bad input; 3 a person must act (or the
    verification failed); 4 refused (paused, or the lock or lease held);
    130 interrupted.
    """
    if pause or resume_:
        if pause and resume_:
            raise BadInput("--pause and --resume exclude each other", "give one")
        _switch(app, pause, resume_, reason)
        return
    if reason is not None:
        raise BadInput("--reason goes with --pause", "rollback watch --pause --reason TEXT")
    from rollback.cli.progress import plan_progress
    from rollback.commands.drill_runner import signals_interrupt
    from rollback.commands.watch import WatchHooks, WatchOptions, run_watch
    from rollback.context import Services
    from rollback.model.watch import parse_auto
    from rollback.units import parse_time

    config = app.config()
    options = WatchOptions(period=float(period), interval=float(interval), auto=parse_auto(auto),
                           abort_canary=not no_abort_canary, min_bad=min_bad, baseline=float(baseline),
                           cooldown=float(cooldown), drill=drill,
                           deployed_at=parse_time(deployed_at, option="--deployed-at") if deployed_at else None)
    options.check()
    lines = _Lines(live=not app.json and sys.stderr.isatty())
    hooks = WatchHooks.real(Services(config), options, line=lines.reading, say=lines.say,
                            start_journal=app.start_journal,
                            display=lambda plan: plan_progress(plan, json_output=app.json, dry_run=False),
                            command="rollback " + " ".join(app.argv))
    # SIGTERM and SIGHUP stop the watch as Ctrl-C does (between readings; a rollback under way is stopped
    # by the runner's own handling, journaled, for 'rollback resume').
    with signals_interrupt():
        result = run_watch(config, options, hooks)
    lines.close()
    emit(app, result.to_dict(), lambda: _human(result))
    if result.exit_code:
        raise click.exceptions.Exit(result.exit_code)
