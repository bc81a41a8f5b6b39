"""``rollback infra cdn snapshot | list | restore | release``: the whole distribution, break-glass.

Parsing and presentation only; the verbs live in ``rollback.commands.infra.cdn``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from rollback.cli.output import say
from rollback.cli.support import DURATION, AppContext, common_options, dry_run_option, emit, pass_app, yes_option
from rollback.context import Services

if TYPE_CHECKING:
    from rollback.commands.infra.cdn import CdnFacts
    from rollback.runner import Prepared

__all__ = ["cdn"]

_DISTRIBUTION = click.option("--distribution", metavar="ID",
                             help="Distribution (else aws.distribution_id, else the stack outputs).")
_TIMEOUT = click.option("--timeout", type=DURATION, default="20m", show_default=True, metavar="DURATION",
                        help="How long to wait for the distribution to be Deployed.")
_POLL = click.option("--poll-interval", type=DURATION, default="15s", show_default=True, metavar="DURATION",
                     help="How often to check the distribution's status while waiting.")
_NO_PIN = click.option("--no-pin", is_flag=True,
                       help="Do not write assetsRelease / edgeFunctionVersion into the stack config.")


@click.group("cdn")
def cdn() -> None:
    """The whole CloudFront distribution: snapshots of its config, put back under
    its ETag, and the assets release switch. Every change saves a snapshot first,
    waits until the distribution is Deployed, invalidates what it changed and pins
    the same values in the stack config."""


def _distribution(services: Services, distribution: str | None) -> str:
    from rollback.commands.infra.resources import resolve_resources

    resources = resolve_resources(services.config, need=("distribution",), distribution=distribution,
                                  services=services)
    assert resources.distribution
    return resources.distribution


@cdn.command("snapshot")
@_DISTRIBUTION
@click.option("--reason", default="", metavar="TEXT", help="Why (kept with the snapshot).")
@common_options()
@pass_app
def snapshot_command(app: AppContext, distribution: str | None, reason: str) -> None:
    """Save the distribution's whole config with its ETag (journaled).

    \b
    Example:
      rollback infra cdn snapshot --reason "before the release"
    """
    from rollback.cli.support import run_plan
    from rollback.commands.infra import cdn as commands

    services = Services(app.config())
    distribution_id = _distribution(services, distribution)
    plan = commands.plan_snapshot(services.config, distribution_id, reason)
    outcome = run_plan(app, plan, commands.cdn_handlers(services, 15.0),
                       dry_run=False, yes=True,
                       action="snapshot the distribution", confirm_first=False,
                       details={"layer": "infra", "verb": "cdn snapshot", "distribution": distribution_id})
    result = dict(outcome.result_of("snapshot"))
    document = {"ok": True, **result, "distribution": distribution_id, "run": outcome.run_id}
    shared = f", also in {result['shared']}" if result.get("shared") else ""
    emit(app, document, lambda: say(f"saved snapshot {result['snapshot']} (ETag {result['etag']}){shared}; "
                                    f"to put it back: {result['restore']}", err=False))


@cdn.command("list")
@_DISTRIBUTION
@common_options()
@pass_app
def list_command(app: AppContext, distribution: str | None) -> None:
    """List saved snapshots, newest first: id, when, ETag, release, edge versions, where
    (this machine, the shared S3 store), reason.

    \b
    Example:
      rollback infra cdn list --json
    """
    from rollback.commands.infra import cdn as commands

    services = Services(app.config())
    snapshots = commands.list_snapshots(services.config, distribution, services.cdn_snapshots())

    def human() -> None:
        if not snapshots:
            say("no snapshots", err=False)
        for item in snapshots:
            paths = ", ".join(f"{o['id']}={o['origin_path'] or '/'}" for o in item["origins"])
            versions = ", ".join(sorted({str(a["version"]) for a in item["associations"] if a["version"]})) or "-"
            where = ", ".join("here" if w == "local" else w for w in item["where"])
            edited = "  EDITED" if item.get("edited") else ""
            say(f"{item['id']}  {item['taken_at']}  ETag {item['etag']}  origins {paths}  edge {versions}  "
                f"[{where}]{edited}  {item['reason']}", err=False)

    emit(app, {"snapshots": snapshots}, human)


def _run(app: AppContext, planned: Prepared[CdnFacts], services: Services, *, dry_run: bool, yes: bool, interval: float,
         action: str, verb: str) -> None:
    from rollback.cli.support import run_plan
    from rollback.commands.infra import cdn as commands

    facts = planned.facts
    outcome = run_plan(app, planned.plan, commands.cdn_handlers(services, interval),
                       dry_run=dry_run, yes=yes, action=action,
                       details={"layer": "infra", "verb": verb, "distribution": facts.distribution_id})
    document = commands.cdn_document(planned, outcome)
    results = document["results"]

    def human() -> None:
        update = results.get("update") or {}
        if dry_run:
            for field_change in facts.changes:
                say(f"  ~ {field_change.describe()}", err=False)
            say(f"dry run: would update distribution {facts.distribution_id} ({len(facts.changes)} field(s)) "
                f"under IfMatch {facts.etag}; nothing was changed", err=False)
            return
        change = (f"ETag {update.get('etag_before')} -> {update.get('etag_after')}" if update.get("changed")
                  else "already as planned")
        parts = [f"distribution {facts.distribution_id}: {change}"]
        if results.get("invalidate", {}).get("id"):
            parts.append(f"invalidated {', '.join(facts.invalidate)} ({results['invalidate']['id']})")
        if facts.pins:
            parts.append("pinned " + ", ".join(f"{k} = {v}" for k, v in facts.pins.items()))
        saved = results.get("snapshot", {}).get("snapshot")
        say("; ".join(parts), err=False)
        if saved:
            say(f"the config before this change is snapshot {saved}: rollback infra cdn restore {saved}", err=False)

    emit(app, document, human)


@cdn.command("restore")
@click.argument("snapshot_id", metavar="SNAPSHOT")
@_TIMEOUT
@_POLL
@_NO_PIN
@dry_run_option
@yes_option
@common_options()
@pass_app
def restore_command(app: AppContext, snapshot_id: str, timeout: float, poll_interval: float, no_pin: bool,
                    dry_run: bool, yes: bool) -> None:
    """Put a saved distribution config back, whole (every field but
    CallerReference), on this environment's distribution, guarded by the ETag
    read now (IfMatch): if anyone changes the distribution in between,
    CloudFront answers 412 and nothing is overwritten (exit 4). The plan shows
    every field that differs (origin header values masked); a snapshot of
    another distribution is refused (exit 2). Saves the current config first,
    waits until Deployed, invalidates what the change serves differently, pins
    assetsRelease and edgeFunctionVersion in the stack config. SNAPSHOT comes
    from this machine, else from the shared store ([cdn] snapshots_url).

    \b
    Example:
      rollback infra cdn restore E2QWRUHAPOMQZL-20261128T093000123456Z --yes
    """
    from rollback.commands.infra import cdn as commands

    services = Services(app.config())
    planned = commands.prepare_restore(services.config, services, snapshot_id, pin=not no_pin,
                                       timeout=timeout)
    _run(app, planned, services, dry_run=dry_run, yes=yes, interval=poll_interval,
         action=f"put snapshot {snapshot_id} back on distribution {planned.facts.distribution_id}", verb="cdn restore")


@cdn.command("release")
@click.argument("release")
@_DISTRIBUTION
@click.option("--origin", default="assets", show_default=True, metavar="ID", help="The origin to switch.")
@_TIMEOUT
@_POLL
@_NO_PIN
@dry_run_option
@yes_option
@common_options()
@pass_app
def release_command(app: AppContext, release: str, distribution: str | None, origin: str, timeout: float,
                    poll_interval: float, no_pin: bool, dry_run: bool, yes: bool) -> None:
    """Serve another assets release: the origin path alone becomes
    /releases/RELEASE, under the ETag read now (412: exit 4, nothing
    overwritten). A release folder that is missing or holds no object is
    refused (exit 2, listing the releases in the bucket): serving it would
    take the site down. Saves the current config first, waits until Deployed,
    invalidates every path that origin serves (the cache key does not include
    the origin path), pins assetsRelease in the stack config.

    \b
    Example:
      rollback infra cdn release 2026-11-20.1 --yes
    """
    from rollback.commands.infra import cdn as commands

    services = Services(app.config())
    distribution_id = _distribution(services, distribution)
    planned = commands.plan_release(services.config, services.edge(), distribution_id=distribution_id,
                                    release=release, origin=origin, pin=not no_pin,
                                    timeout=timeout, store=services.s3())
    _run(app, planned, services, dry_run=dry_run, yes=yes, interval=poll_interval,
         action=f"switch distribution {distribution_id} to release {release}", verb="cdn release")
