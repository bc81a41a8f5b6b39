"""``rollback sandbox``: a local world with a bad deploy in every layer, to practise on.

Presentation only; the work is in :mod:`rollback.sandbox.world`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from rollback.cli.output import say
from rollback.cli.support import AppContext, emit, pass_app

if TYPE_CHECKING:
    from rollback.sandbox.world import SandboxInfo

__all__ = ["sandbox"]

DEFAULT_DIR = ".rollback/sandbox"

dir_option = click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
                          default=DEFAULT_DIR, show_default=True, metavar="DIR",
                          help="The sandbox's directory (config, state, logs, backups).")


rolling_option = click.option("--rolling", is_flag=True,
                              help="Seed the bad app release as the canary of a Vercel rolling release at 10 % "
                                   "(the good one, its base, serves the rest) instead of a full production "
                                   "deployment.")


def _json_option(func: Any) -> Any:
    def set_json(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
        if value:
            ctx.ensure_object(AppContext).json = True
        return value

    return click.option("--json", "json_", is_flag=True, expose_value=False, is_eager=True, callback=set_json,
                        help="Print one JSON document on stdout and nothing else there.")(func)


def _summary(info: SandboxInfo) -> list[str]:
    """Plain lines (printed with click, not rich: nothing to escape), from the sandbox's own seed."""
    world = info.world
    vercel, aws, database = world.get("vercel", {}), world.get("aws", {}), world.get("database", {})
    alarms = [a["name"] for a in aws.get("alarms", [])]
    rolling = vercel.get("rolling") or {}
    bad = (f"bad {vercel.get('bad_deployment')} is the canary of a rolling release at "
           f"{rolling.get('percentage', 0):g} %, good {vercel.get('good_deployment')} (its base) serves the rest"
           if rolling else
           f"bad {vercel.get('bad_deployment')} is live, good {vercel.get('good_deployment')} before it")
    lines = [
        f"app        {info.env.get('APP_URL')}  (answers from the deployment Vercel serves in production)",
        f"vercel     {info.env.get('VERCEL_API_URL')}  project {vercel.get('project_name')} "
        f"({vercel.get('team_slug')}): {bad}",
        f"aws        {info.env.get('AWS_ENDPOINT_URL')}  distribution {aws.get('distribution_id')}: edge "
        f"{aws.get('edge_function')} version {','.join(aws.get('edge_bad_versions', []))} (bad; "
        f"{aws.get('edge_good_version')} good); assets s3://{aws.get('assets_bucket')}/{aws.get('assets_prefix')} "
        f"overwritten by a bad release; RDS {aws.get('db_instance')}",
        f"alarms     {len(alarms)} rollback alarms + {aws.get('composite_alarm')}",
        f"database   {info.urls.get('database')}  failed migration {database.get('failed_migration')}, "
        f"damaged rows; good backup {database.get('good_backup')}",
        f"pulumi     {world.get('pulumi', {}).get('backend_url')}  stack sandbox, "
        f"{world.get('pulumi', {}).get('updates')} updates (the last one is bad)",
        f"config     {info.config_path}",
    ]
    return lines


@click.group()
def sandbox() -> None:
    """A local practice world: a bad deploy in every layer, rolled back with the real commands.

    `up` starts local stand-ins in the background (the moto server for AWS, the
    Vercel API emulator, a throwaway PostgreSQL, an app server that also plays
    the monitor) and seeds them; `status` prints the shell exports that point
    rollback, the aws CLI, psql and vercel at them; `reset` breaks the world
    again; `down` stops everything.

    \b
    Example:
      rollback sandbox up
      eval "$(rollback sandbox status)"
      rollback app rollback --yes
      rollback sandbox down
    """


@sandbox.command("up")
@dir_option
@click.option("--timeout", type=click.FloatRange(min=1), default=180, show_default=True, metavar="SECONDS",
              help="How long to wait for the sandbox to be ready.")
@click.option("--reset", "fresh", is_flag=True,
              help="If a sandbox already runs in DIR, break its world again (as 'reset'): every layer broken "
                   "either way.")
@rolling_option
@_json_option
@pass_app
def up_command(app: AppContext, directory: Path, timeout: float, fresh: bool, rolling: bool) -> None:
    """Start the sandbox in DIR and seed its world (or reuse the one already running there).

    Runs in the background until 'rollback sandbox down'. Exit 1 when it cannot start
    (the supervisor's log is named), 2 when the sandbox extra is not installed. With --rolling
    the bad app release is a Vercel rolling release's canary at 10 % (a running sandbox seeded
    without it is re-seeded, and the other way round).

    \b
    Example:
      rollback sandbox up
      rollback sandbox up --reset         # started, or re-broken if it was running
      rollback sandbox up --rolling       # the bad release as a canary at 10 %
      rollback sandbox up --dir /tmp/practice --json
    """
    from rollback.sandbox import world

    info = world.up(directory, timeout=timeout, progress=None if app.json else (lambda m: say(m)), fresh=fresh,
                    rolling=rolling)

    def human() -> None:
        verb = ("already running, re-seeded" if fresh else "already running") if info.reused else \
            f"up in {info.seconds_to_ready:.1f} s"
        say(f"sandbox {verb} in {info.dir}", err=False)
        for line in _summary(info):
            say(f"  {line}", err=False)
        say(f'next: eval "$(rollback sandbox status{_dir_arg(directory)})"; rollback sandbox down'
            f"{_dir_arg(directory)} when done", err=False)

    emit(app, {"ok": True, **info.to_dict()}, human)


def _dir_arg(directory: Path) -> str:
    import shlex

    return "" if str(directory) == DEFAULT_DIR else f" --dir {shlex.quote(str(directory))}"


@sandbox.command("status")
@dir_option
@_json_option
@pass_app
def status_command(app: AppContext, directory: Path) -> None:
    """Print `export NAME=value` lines for the running sandbox, ready to eval.

    ROLLBACK_CONFIG, AWS_ENDPOINT_URL and test credentials, DATABASE_URL,
    VERCEL_API_URL, VERCEL_TOKEN, VERCEL_ORG_ID/VERCEL_PROJECT_ID/VERCEL_SCOPE,
    VERCEL_ARGS (for the vercel CLI), APP_URL, APP_REPO, DISTRIBUTION_ID,
    EDGE_FUNCTION, ASSETS_BUCKET, DB_GOOD_BACKUP, SANDBOX_WEBHOOK_URL. Exit 3 when
    no sandbox runs in DIR (the status check found none).

    \b
    Example:
      eval "$(rollback sandbox status)"
      rollback sandbox status --json
    """
    from rollback.errors import ChecksFailed
    from rollback.sandbox import world

    info = world.status(directory)
    if info is None:
        raise ChecksFailed(f"no sandbox runs in {directory}", "start one with 'rollback sandbox up"
                           f"{_dir_arg(directory)}'")
    emit(app, {"ok": True, **info.to_dict()}, lambda: click.echo(info.shell(), nl=False))


@sandbox.command("reset")
@dir_option
@rolling_option
@_json_option
@pass_app
def reset_command(app: AppContext, directory: Path, rolling: bool) -> None:
    """Break the running sandbox's world again (re-seed every layer), to practise once more
    (with --rolling: the bad app release as a rolling release's canary at 10 %).

    \b
    Example:
      rollback sandbox reset
      rollback sandbox reset --rolling
    """
    from rollback.sandbox import world

    info = world.reset(directory, rolling=rolling)
    seconds = info.world.get("seconds")
    emit(app, {"ok": True, **info.to_dict()},
         lambda: say(f"sandbox in {info.dir} re-seeded in {seconds} s: the bad deploy is back", err=False))


@sandbox.command("down")
@dir_option
@_json_option
@pass_app
def down_command(app: AppContext, directory: Path) -> None:
    """Stop the sandbox in DIR: its processes and its PostgreSQL cluster (safe to repeat).

    Journals, incidents, backups and logs stay.

    \b
    Example:
      rollback sandbox down
    """
    from rollback.sandbox import world

    result = world.down(directory)

    def human() -> None:
        if not result.was_running and not result.stopped:
            say(f"no sandbox was running in {result.dir}", err=False)
        else:
            say(f"sandbox in {result.dir} stopped", err=False)

    emit(app, {"ok": True, **result.to_dict()}, human)
