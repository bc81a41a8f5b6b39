"""``rollback drill``: a timed rollback drill, in the sandbox or in a real (staging) environment."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from rollback.cli.output import echo, say
from rollback.cli.support import DURATION, AppContext, emit, layers_option, pass_app
from rollback.safetext import printable

if TYPE_CHECKING:
    from rollback.commands.drill import DrillResult



def _set_json(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    if value:
        ctx.ensure_object(AppContext).json = True
    return value


def _lines(result: DrillResult) -> list[str]:
    """The timeline, the metrics table and the drill's phases, as plain aligned text."""
    from rollback.model.report import metric_lines, timeline_lines

    report = result.report or {}
    lines = []
    what = f"drill {result.id} of env {result.env}"
    if result.incident:
        what += f": incident {result.incident} ({result.severity}, layers {', '.join(result.layers)})"
    lines.append(printable(what))
    timeline = report.get("timeline") or []
    if timeline:
        lines += ["", "timeline (UTC)", *(printable(line) for line in timeline_lines(timeline))]
    metrics = report.get("metrics") or []
    if metrics:
        lines += ["", "rollback metrics (from the incident record) against the targets",
                  *(printable(line) for line in metric_lines(metrics))]
    lines.append("")
    lines.append("drill phases (wall time)")
    for phase in result.phases:
        seconds = "-" if phase.seconds is None else f"{phase.seconds:.1f} s"
        mark = "" if phase.ok else "  FAILED"
        lines.append(printable(f"  {phase.name:<9} {seconds:>8}{mark}"))
    lines.append(f"  {'total':<9} {result.seconds:>6.1f} s")
    if result.report_path:
        lines.append("")
        lines.append(printable(f"report: {result.report_path}"))
        lines.append("  (run 'rollback report' in this directory to render it again; --format html for one page)")
    if result.log_path:
        lines.append(printable(f"log: {result.log_path}"))
    if result.sandbox.get("kept") and result.sandbox.get("dir"):
        lines.append(printable(f"sandbox still running in {result.sandbox['dir']} "
                               f"(rollback sandbox down --dir {result.sandbox['dir']})"))
    return lines


@click.command("drill")
@click.option("--sandbox", "use_sandbox", is_flag=True,
              help="Drill in the local sandbox (started here in .rollback/sandbox, stopped at the end).")
@click.option("--env", "env_name", metavar="NAME", help="Drill a real environment from rollback.toml (staging).")
@click.option("--config", "config_path", metavar="PATH", help="Config file (with --env).")
@click.option("--layers", "layers", multiple=True, callback=layers_option, metavar="LAYER[,LAYER]",
              help="The layers the drill's bad change touched (decide's --changed; db = data was lost). "
                   "Default: app,edge,assets,db in the sandbox, app elsewhere.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Write the Markdown report here (default .rollback/reports/<incident>.md).")
@click.option("--keep", is_flag=True, help="Leave the sandbox running at the end.")
@click.option("--dir", "sandbox_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path(".rollback") / "sandbox", show_default=True, metavar="DIR",
              help="The sandbox's directory.")
@click.option("--detect-timeout", type=DURATION, metavar="DURATION",
              help="How long to wait for the alarms and health checks to see the bad deploy "
                   "(default 60s in the sandbox, the detect target elsewhere).")
@click.option("--verify-wait", type=DURATION, metavar="DURATION",
              help="How long verification may re-check (default: the verify target).")
@click.option("--rolling", is_flag=True,
              help="With --sandbox: the bad app release is the canary of a Vercel rolling release at 10 % "
                   "(sandbox up --rolling), so the rollback aborts it.")
@click.option("--auto", "auto", is_flag=True,
              help="Detect and decide with 'rollback watch', which rolls back all but the database itself; "
                   "then run the command it posts for the database.")
@click.option("--i-know-this-is-production", "production_ok", is_flag=True,
              help="Allow --env to name a protected environment (protected = true, a name starting with "
                   "prod or live, or no sandbox = true).")
@click.option("--json", "json_", is_flag=True, expose_value=False, is_eager=True, callback=_set_json,
              help="Print one JSON document on stdout and nothing else there.")
@pass_app
def drill(app: AppContext, use_sandbox: bool, env_name: str | None, config_path: str | None,
          layers: tuple[str, ...], out: Path | None, keep: bool, sandbox_dir: Path, detect_timeout: float | None,
          verify_wait: float | None, rolling: bool, auto: bool, production_ok: bool) -> None:
    """Run a timed rollback drill: bad deploy, detect, decide, roll back, verify, report.

    With --sandbox (no configuration needed), it starts the local sandbox
    (or re-breaks the one running in this directory), waits until the
    rollback alarms and the health probe see the bad deploy, runs
    'rollback decide --live', the 'rollback run' command decide recommends,
    'rollback verify --wait', and writes the incident report (marked as a
    drill). Prints the timeline, the rollback metrics against the targets
    (detect 5, decide 2, rollback 10, verify 5, total 15 minutes) and where
    the report is. Config, journals, the incident and the report stay in
    .rollback/ here.

    With --sandbox --rolling the sandbox's bad app release is the canary of a
    Vercel rolling release at 10 %: decide judges it on its share and the
    rollback aborts it; the timeline and the report name the canary and the
    abort.

    With --auto the detect and decide phases are 'rollback watch --interval
    1s': it opens the incident at its first bad reading, decides after three
    in a row and rolls back every layer but the database itself; the drill
    then runs the 'rollback run' command the watch posted for the database,
    as the person it paged would. The timeline shows detection and decision
    in seconds.

    With --env NAME it drills a real environment after someone deployed a
    bad change there; it refuses a protected environment without
    --i-know-this-is-production: one marked protected = true or, unset, one
    whose name starts with prod or live, or that is not marked sandbox = true.

    \b
    Examples:
      rollback drill --sandbox
      rollback drill --sandbox --json --out drill.md
      rollback drill --sandbox --rolling
      rollback drill --sandbox --auto
      rollback drill --env staging --layers app

    Exit codes: 0 rolled back and verified, 1 a phase failed, 2 bad input,
    3 verification failed, 4 refused (a protected environment, another drill running),
    130 interrupted (the sandbox it started is stopped).
    """
    from rollback.commands.drill import DrillOptions, run_drill

    env_name = env_name or (None if use_sandbox else app.env_name)
    config_path = config_path or app.config_path
    options = DrillOptions(sandbox=use_sandbox, env=env_name, config_path=config_path, layers=layers, out=out,
                           keep=keep, i_know_this_is_production=production_ok, sandbox_dir=sandbox_dir,
                           detect_timeout=detect_timeout, verify_wait=verify_wait, rolling=rolling, auto=auto)
    stream = None if app.json else (lambda line: say(f"    {printable(line)}"))
    result = run_drill(options, progress=say, echo=stream)
    document: dict[str, Any] = result.to_dict()

    def human() -> None:
        for line in _lines(result):
            echo(line)

    emit(app, document, human)
    if not result.ok:
        say(f"error: {printable(result.error or 'the drill failed')} (see {result.log_path or 'the output above'})")
        raise click.exceptions.Exit(result.exit_code)
