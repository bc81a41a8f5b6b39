"""Break-glass commands of ``rollback infra`` (see rollback/cli/infra.py): edge, assets,
invalidate, drift. Parsing and presentation only; the work is in
``rollback.commands.infra.edge``, ``infra.assets`` and ``infra.invalidate``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from rollback.cli.output import echo, say
from rollback.cli.support import DURATION, AppContext, common_options, dry_run_option, emit, pass_app, yes_option
from rollback.context import Services

if TYPE_CHECKING:
    from rollback.plan import Plan
    from rollback.runner import ExecutionResult, Handlers

__all__ = ["COMMANDS", "assets", "drift", "edge", "invalidate"]


def _run(app: AppContext, plan: Plan, handlers: Handlers, *, dry_run: bool, yes: bool, action: str,
         details: dict[str, Any]) -> ExecutionResult:
    from rollback.cli.support import run_plan

    return run_plan(app, plan, handlers, dry_run=dry_run, yes=yes, action=action, details=details)


@click.command("edge")
@click.option("--to-version", "to_version", type=int, required=True, metavar="N",
              help="Published Lambda@Edge version to put back on the distribution.")
@click.option("--distribution", metavar="ID", help="Distribution (else aws.distribution_id, else stack outputs).")
@click.option("--function", "function", metavar="NAME",
              help="Lambda@Edge function name or ARN (else aws.edge_function, else stack outputs).")
@click.option("--timeout", type=DURATION, default="20m", show_default=True, metavar="DURATION",
              help="How long to wait for the distribution to be Deployed.")
@click.option("--poll-interval", type=DURATION, default="15s", show_default=True, metavar="DURATION",
              help="How often to check the distribution's status while waiting.")
@click.option("--no-pin", is_flag=True,
              help="Do not write rollback:edgeFunctionVersion into the stack config (pin it yourself).")
@dry_run_option
@yes_option
@common_options()
@pass_app
def edge(app: AppContext, to_version: int, distribution: str | None, function: str | None, timeout: float,
         poll_interval: float, no_pin: bool, dry_run: bool, yes: bool) -> None:
    """Put a Lambda@Edge version back on the distribution, straight through CloudFront.

    Checks the version exists, swaps every association of the function (guarded
    by the distribution's ETag; if someone else changed the distribution, re-reads
    once and retries only if the associations are still as planned), waits until
    the distribution is Deployed, then pins the version in the stack config so
    the next pulumi up keeps it. Exit 4 if someone else changed the association
    meanwhile (nothing is overwritten).

    \b
    Example:
      rollback infra edge --to-version 6 --dry-run
      rollback infra edge --to-version 6 --yes
    """
    from rollback.commands.infra import edge as infra_edge

    config = app.config()
    prepared = infra_edge.prepare_edge(config, Services(config), to_version=to_version, distribution=distribution,
                                       function=function, pin=not no_pin, timeout=timeout,
                                       interval=poll_interval)
    planned = prepared.facts
    outcome = _run(app, prepared.plan, dict(prepared.handlers), dry_run=dry_run, yes=yes,
                   action=f"move edge function {planned.function} to version {planned.to_version}",
                   details={"layer": "infra", "verb": "edge", "distribution": planned.distribution_id,
                            "function": planned.function, "to_version": planned.to_version})
    document = infra_edge.edge_document(prepared, outcome)
    emit(app, document, lambda: echo(document["summary"]))


@click.command("assets")
@click.option("--key", metavar="KEY", help="One object key.")
@click.option("--prefix", metavar="PREFIX", help="Every key under this prefix.")
@click.option("--to-version", "to_version", metavar="VERSION_ID", help="Put this version back (with --key).")
@click.option("--before", metavar="TIME", help="Restore each key to its state at TIME ('2026-11-28T09:30:00Z', "
              "'15m ago').")
@click.option("--undelete", is_flag=True, help="Remove the delete markers on top of deleted keys.")
@click.option("--keep-new", is_flag=True, help="With --before: leave keys created after TIME alone "
              "(default: delete them with a delete marker).")
@click.option("--bucket", metavar="NAME", help="Bucket (else aws.assets_bucket, else stack outputs).")
@dry_run_option
@yes_option
@common_options()
@pass_app
def assets(app: AppContext, key: str | None, prefix: str | None, to_version: str | None, before: str | None,
           undelete: bool, keep_new: bool, bucket: str | None, dry_run: bool, yes: bool) -> None:
    """Restore S3 object versions in the assets bucket.

    --to-version copies that version over the current one (content type and
    metadata come with it); --undelete removes delete markers; --before TIME
    puts every key back to its state at TIME: older content is copied back (or
    uncovered by removing later delete markers), keys created after TIME get a
    delete marker (unless --keep-new), keys deleted before TIME stay deleted.
    No version is ever deleted, so every action can itself be undone. Exit 4 if
    a key changed between plan and apply (it is left alone).

    \b
    Example:
      rollback infra assets --key index.html --to-version 3HL4kqtJlcpXroDTDmJ --yes
      rollback infra assets --prefix releases/2026-11-20.1/ --before "30m ago" --dry-run
      rollback infra assets --prefix releases/ --undelete --yes --json
    """
    from rollback.commands.infra import assets as infra_assets
    from rollback.commands.infra.resources import resolve_resources
    from rollback.units import parse_time

    config = app.config()
    services = Services(config)
    moment = parse_time(before, option="--before") if before else None
    resources = resolve_resources(config, need=("bucket",), bucket=bucket, services=services)
    assert resources.bucket
    store = services.s3()
    planned = infra_assets.plan_assets(config, store, bucket=resources.bucket, key=key, prefix=prefix,
                                       to_version=to_version, before=moment, undelete=undelete, keep_new=keep_new)
    outcome = _run(app, planned.plan, infra_assets.AssetsHandlers(services).handlers(), dry_run=dry_run, yes=yes,
                   action=f"restore {len(planned.plan.steps)} key(s) in s3://{resources.bucket}",
                   details={"layer": "infra", "verb": "assets", "bucket": resources.bucket})
    changed = len(planned.plan.steps)
    summary = (f"{'dry run: would restore' if dry_run else 'restored'} {changed} key(s) in s3://{resources.bucket}"
               f"; {len(planned.facts.actions) - changed} unchanged")
    document = {"ok": True, "dry_run": dry_run, "summary": summary, "bucket": resources.bucket,
                "actions": [a.to_dict() for a in planned.facts.actions],
                "results": [item.result for item in outcome.steps], "plan": planned.plan.to_dict(),
                "run": outcome.to_dict()}

    def human() -> None:
        for action in planned.facts.actions:
            echo(("would " if dry_run and action.changes else "") + action.describe())
        echo(summary)

    emit(app, document, human)


@click.command("invalidate")
@click.option("--paths", "paths", multiple=True, metavar="PATHS",
              help='Paths to invalidate (repeat, or space-separated); default "/*".')
@click.option("--wait", is_flag=True, help="Wait until the invalidation is Completed.")
@click.option("--timeout", type=DURATION, default="15m", show_default=True, metavar="DURATION",
              help="Longest wait with --wait.")
@click.option("--poll-interval", type=DURATION, default="10s", show_default=True, metavar="DURATION",
              help="How often to check while waiting.")
@click.option("--distribution", metavar="ID", help="Distribution (else aws.distribution_id, else stack outputs).")
@dry_run_option
@common_options()
@pass_app
def invalidate(app: AppContext, paths: tuple[str, ...], wait: bool, timeout: float, poll_interval: float,
               distribution: str | None, dry_run: bool) -> None:
    """Invalidate cached paths on the distribution (after an edge or assets restore).

    \b
    Example:
      rollback infra invalidate --paths "/*" --wait
      rollback infra invalidate --paths "/index.html /app.js"
    """
    from rollback.commands.infra import invalidate as commands
    from rollback.commands.infra.resources import resolve_resources

    config = app.config()
    services = Services(config)
    resources = resolve_resources(config, need=("distribution",), distribution=distribution, services=services)
    assert resources.distribution
    split = [p for item in (paths or ("/*",)) for p in item.split()]
    plan = commands.plan_invalidate(config, distribution_id=resources.distribution, paths=split, wait=wait,
                                    timeout=timeout)
    outcome = _run(app, plan, commands.InvalidateHandlers(services, interval=poll_interval).handlers(),
                   dry_run=dry_run, yes=True, action="invalidate",
                   details={"layer": "infra", "verb": "invalidate", "distribution": resources.distribution})
    created = outcome.result_of("invalidate")
    status = outcome.result_of("wait").get("status") if wait else created.get("status")
    summary = (f"dry run: would invalidate {', '.join(split)} on distribution {resources.distribution}" if dry_run
               else f"invalidation {created.get('id')} of {', '.join(split)} on distribution "
                    f"{resources.distribution}: {status}")
    document = {"ok": True, "dry_run": dry_run, "summary": summary, "distribution": resources.distribution,
                "paths": split, "invalidation": dict(created), "status": status, "plan": plan.to_dict(),
                "run": outcome.to_dict()}
    emit(app, document, lambda: echo(summary))


@click.command("drift")
@click.option("--checkpoint", type=click.Path(dir_okay=False, exists=True), metavar="FILE",
              help="Compare against this 'pulumi stack export' file instead of the stack's current checkpoint.")
@common_options()
@pass_app
def drift(app: AppContext, checkpoint: str | None) -> None:
    """Compare the live CloudFront distribution (edge associations, origin paths),
    Lambda@Edge versions, bucket versioning and alarms with the stack's last checkpoint.

    Exit 0 when they match, 3 when there is drift (every difference is listed),
    e.g. after a break-glass restore that was not yet applied through Pulumi.

    \b
    Example:
      rollback infra drift
      rollback infra drift --json --checkpoint stack-export.json
    """
    from pathlib import Path

    from rollback.commands.infra import invalidate as commands

    config = app.config()
    report = commands.drift(config, Services(config), checkpoint=Path(checkpoint) if checkpoint else None)
    differences = report["differences"]

    def human() -> None:
        checked = report["checked"]
        echo(f"checked against {report['checkpoint']}: {len(checked['distributions'])} distribution(s), "
                   f"{len(checked['functions'])} function(s), {len(checked['buckets'])} bucket(s), "
                   f"{len(checked['alarms'])} alarm(s)")
        for note in report["notes"]:
            echo(f"note: {note}")
        if not differences:
            echo("no drift")
        for difference in differences:
            echo(f"drift: {difference['description']}")

    emit(app, {"ok": not differences, **report}, human)
    if differences:
        say(f"{len(differences)} difference(s) between the live edge and the stack's checkpoint")
        raise click.exceptions.Exit(3)


COMMANDS: list[click.Command] = [edge, assets, invalidate, drift]
