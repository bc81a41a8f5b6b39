"""``rollback verify``: the post-rollback checklist, measured."""

from __future__ import annotations

import click

from rollback.cli.output import print_table, say
from rollback.cli.support import DURATION, AppContext, common_options, emit, pass_app
from rollback.errors import EXIT_CHECKS_FAILED
from rollback.safetext import printable

_VERDICT = {"pass": "pass", "fail": "FAIL", "not measured": "not measured"}


@click.command("verify")
@click.option("--baseline", metavar="MANIFEST",
              help="Compare row counts with this backup (a manifest, a name in backups_dir, or 'latest').")
@click.option("--expect-version", metavar="SHA",
              help="The commit (or deployment id) the version endpoint must report (else Vercel's production).")
@click.option("--wait", "wait", type=DURATION, metavar="DURATION", default="0",
              help="Re-check until every item passes or this much time is up (e.g. 5m): alarms take minutes "
                   "to clear.")
@click.option("--interval", type=DURATION, metavar="DURATION", default="10s", show_default=True,
              help="Pause between checks.")
@click.option("--strict", is_flag=True, help="Items that cannot be measured fail the verification too.")
@click.option("--incident", "incident_ref", metavar="ID",
              help="Record the result on this incident (else the environment's open one, if any).")
@common_options()
@pass_app
def verify(app: AppContext, baseline: str | None, expect_version: str | None, wait: float, interval: float,
           strict: bool, incident_ref: str | None) -> None:
    """Check the runbook's post-rollback checklist: every item measured, with value, threshold and verdict.

    Service health (health URLs, version, CloudFront 5xx rate), critical flows
    ([[env.X.verify.flows]], verify.smoke), data integrity (database, failed
    migrations, row counts vs --baseline, orphans), performance (API p95,
    page load, cache hit rate) and monitoring (rollback alarms OK, metrics
    arriving). An item whose source is not configured is listed as "not
    measured" with the reason; it fails the run only with --strict.

    \b
    Examples:
      rollback verify
      rollback verify --wait 5m --baseline latest --json

    Exit codes: 0 every measured item passes, 2 bad input, 3 an item failed.
    """
    from rollback.commands import verify as commands
    from rollback.context import Services

    config = app.config()
    result = commands.verify(config, services=Services(config), baseline=baseline, expect_version=expect_version,
                             strict=strict, wait=wait, interval=max(1.0, interval), progress=say,
                             incident=incident_ref)
    document = result.document
    summary = document["summary"]
    if not result.ok:
        failing = summary["fail"] + (summary["not_measured"] if strict else 0)
        message = f"verification failed: {failing} checklist item(s) did not pass"
        hint = "see the items marked FAIL" + (" or not measured (--strict)" if strict else "")
        document["error"] = {"error": "ChecksFailed", "message": message, "hint": hint,
                             "exit_code": EXIT_CHECKS_FAILED}

    def human() -> None:
        print_table(["group", "item", "value", "threshold", "verdict", "detail"],
                    [(i["group"], i["name"], i["value"], i["threshold"], _VERDICT[i["status"]], i["detail"])
                     for i in document["items"]],
                    title=f"post-rollback checklist: env {document['env']} at {document['checked_at']}")
        click.echo(f"{summary['pass']} passed, {summary['fail']} failed, {summary['not_measured']} not measured "
                   f"({document['seconds']:.1f} s, {document['rounds']} round(s))")
        for note in document.get("notes") or []:
            click.echo(f"note: {printable(note)}")
        if summary["pass"] + summary["fail"] == 0:
            click.echo("note: nothing could be measured; configure the sources named above (or use --strict to "
                       "fail on this)")
        if document["incident"]:
            click.echo(f"recorded on incident {document['incident']}")

    emit(app, document, human)
    if not result.ok:
        say(f"error: {document['error']['message']} ({document['error']['hint']})")
        raise click.exceptions.Exit(EXIT_CHECKS_FAILED)
