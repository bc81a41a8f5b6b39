"""``rollback status``: what is live in every layer and whether it is healthy, on one screen."""

from __future__ import annotations

import click

from rollback.cli.output import echo
from rollback.cli.support import AppContext, common_options, emit, pass_app
from rollback.safetext import printable


@click.command("status")
@common_options()
@pass_app
def status(app: AppContext) -> None:
    """Show what is live in every layer and whether it is healthy: the Vercel
    production deployment (and a rollback or rolling release in effect), the
    edge function version per behaviour, the assets release served, the
    Prisma migration head, the stack's last update and pins, the rollback
    alarms, the open incident and the run in progress, the newest backup
    and standby against the RPO.

    Every source is read at the same time within a budget (2.5 s,
    $ROLLBACK_DECIDE_BUDGET replaces it); one that cannot be read is shown
    as 'not read' with why.

    \b
    Examples:
      rollback status
      rollback status --env staging --json

    Exit codes: 0 every source was read (or is not configured) and no
    section is BAD; 1 a source could not be read (timed out, failed), so
    healthy cannot be said; 2 bad input; 3 a section is BAD.
    """
    from rollback.commands.status import read_status
    from rollback.context import Services

    config = app.config()
    report = read_status(config, services=Services(config))

    def human() -> None:
        for line in report.lines():
            echo(printable(line))

    emit(app, report.to_dict(), human)
    if report.exit_code:
        raise click.exceptions.Exit(report.exit_code)
