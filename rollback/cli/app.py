"""``rollback app``: Vercel instant rollback, promote and undo, and git revert.

Parsing and presentation only; the work is done by :mod:`rollback.commands.app`
(imported lazily, with httpx, so ``rollback --help`` stays fast).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from rollback.cli.output import echo, say
from rollback.cli.support import DURATION, AppContext, common_options, dry_run_option, emit, pass_app, yes_option
from rollback.context import RunSettings, Services

if TYPE_CHECKING:
    from rollback.commands.app.plan import AppFacts
    from rollback.runner import Handlers, Prepared


@click.group()
def app() -> None:
    """The app on Vercel: instant rollback, promote, undo, git revert (runbook options 1 and 2).

    Needs VERCEL_TOKEN in the environment and [env.<name>.vercel] project (and team) in rollback.toml.
    """


timeout_option = click.option("--timeout", type=DURATION, default="3m", show_default=True, metavar="DURATION",
                              help="How long to wait for Vercel's alias job (90s, 5m...).")
no_verify_option = click.option("--no-verify", is_flag=True,
                                help="Skip the closing health and version checks of [env.<name>.health].")


def _short(sha: str | None) -> str:
    return sha[:7] if sha else "-"


def _run_change(app_ctx: AppContext, planned: Prepared[AppFacts], step_handlers: Handlers, *, dry_run: bool,
                yes: bool, action: str, human: Callable[[dict[str, Any]], None], needs_confirm: bool = True) -> None:
    from rollback.cli.support import run_plan
    from rollback.commands.app import handlers as app_handlers

    noop = planned.facts.noop
    if noop:
        document = {**planned.to_dict(), "ok": True, "dry_run": dry_run}
        emit(app_ctx, document, lambda: say(f"nothing to do: {noop}", err=False))
        return
    outcome = run_plan(app_ctx, planned.plan, step_handlers, dry_run=dry_run, yes=yes, action=action,
                       confirm_first=needs_confirm, prompt=f"{planned.plan.title}: go ahead?")
    document = app_handlers.result_document(planned, outcome)
    emit(app_ctx, document, lambda: human(document))


@app.command("status")
@click.option("--limit", type=click.IntRange(1, 100), default=10, show_default=True,
              help="How many recent production deployments to list.")
@common_options()
@pass_app
def status_command(app_ctx: AppContext, limit: int) -> None:
    """Show production now, the last rollback/promote and its job status, and recent
    production deployments (marking the rollback candidates).

    \b
    Example:
      rollback app status --json
    """
    from rollback.commands.app import plan as commands

    config = app_ctx.config()
    client = Services(config, settings=RunSettings(on_retry=say)).vercel()
    result = commands.status(config, client, limit=limit)

    def human() -> None:
        from rollback.cli.output import print_table

        project = result["project"]
        current = result["current"]
        echo(f"project {project['name']} ({project['id']}), env {result['env']}")
        if current:
            echo(f"production: {current['url']} ({current['id']}), commit {_short(current['commit'])}, "
                       f"created {current['created']}")
        else:
            echo("production: none")
        last = result["last_alias_request"]
        if last:
            echo(f"last alias request: {last['type']} {last['from_deployment_id'] or '-'} -> "
                       f"{last['to_deployment_id']}: {last['job_status']} (requested {last['requested']})")
            for alias in result["failed_aliases"]:
                echo(f"  failed alias: {alias['alias']} ({alias['status']})")
        else:
            echo("last alias request: none")
        if result["rollback_active"]:
            echo("note: a rollback is in effect; new production deployments are not assigned the production "
                       "domains until 'rollback app undo' (or a promote)")
        release = result.get("rolling_release")
        if release:
            echo(f"rolling release: {release['line']}")
            if release["state"] == "ACTIVE":
                following = release.get("next_percentage")
                echo(f"  next stage: {following:g} %" if following is not None else "  next stage: none")
                echo("  'rollback app rollback' aborts it (all traffic back to the base)")
        print_table(["", "id", "url", "commit", "created (UTC)", "state", "candidate"],
                    [("*" if d["current"] else "c" if d.get("canary") else "", d["id"], d["url"], _short(d["commit"]),
                      (d["created"] or "")[:16].replace("T", " "), d["state"],
                      "yes" if d["rollback_candidate"] else "") for d in result["deployments"]],
                    title="recent production deployments (* serves production, c: the rolling release's canary; "
                          "candidate: a rollback target)")

    emit(app_ctx, result, human)


def _alias_human(kind: str) -> Callable[[dict[str, Any]], None]:
    def human(document: dict[str, Any]) -> None:
        from rollback.commands.app.plan import AUTO_ASSIGN_NOTE

        target = document.get("to") or {}
        if document.get("dry_run"):
            for step in document.get("steps", []):
                result = step.get("result", {})
                for key in ("would_send", "would_poll"):
                    if key in result:
                        echo(f"would: {result[key]}")
            echo("dry run: nothing was changed")
            return
        verb = {"rollback": "rolled back", "promote": "promoted", "undo": "undid the rollback:"}[kind]
        status = document.get("job_status")
        project = (document.get("project") or {}).get("name", "")
        release = document.get("rolling_release")
        if release:
            canary, base = release.get("canary") or {}, release.get("base") or {}
            echo(f"aborted the rolling release of {project}: canary {canary.get('url')} ({canary.get('id')}) was at "
                 f"{release.get('percentage'):g} %; all traffic is on the base {base.get('url')} ({base.get('id')}), "
                 f"rolling release {document.get('rolling_release_state')} [run {document.get('run')}]")
            if not document.get("past_rolling_release"):
                health = document.get("health")
                if health is not None:
                    echo(f"health: {len(health)} check(s) passed")
                from rollback.commands.app.rolling import ABORT_NOTE

                echo(f"note: {ABORT_NOTE}")
                return
        echo(f"{verb} {project}: production is now {target.get('url')} ({target.get('id')}, commit "
                   f"{_short(target.get('commit'))}), job {status} in {document.get('seconds')} s "
                   f"[run {document.get('run')}]")
        health = document.get("health")
        if health is not None:
            echo(f"health: {len(health)} check(s) passed")
        if kind == "rollback":
            echo(f"note: {AUTO_ASSIGN_NOTE}")
        else:
            echo("note: production domains follow new production deployments again.")

    return human


@app.command("rollback")
@click.option("--to", "to", metavar="DEPLOYMENT", help="Deployment id or URL (default: the previous stable "
              "production deployment; during a rolling release, its base).")
@click.option("--reason", metavar="TEXT", help="Why (sent to Vercel as the rollback's description, and journaled).")
@click.option("--past-rolling-release", "past_rolling_release", is_flag=True,
              help="During a rolling release: abort it, then roll back further than its base (to --to, or the "
                   "deployment before the base).")
@click.option("--yes-old-database", is_flag=True, help="Roll back to a deployment built before a recorded database "
              "switch (run --switch-database): it connects to the database of before.")
@timeout_option
@no_verify_option
@dry_run_option
@yes_option
@common_options()
@pass_app
def rollback_command(app_ctx: AppContext, to: str | None, reason: str | None, past_rolling_release: bool,
                     yes_old_database: bool, timeout: float, no_verify: bool, dry_run: bool, yes: bool) -> None:
    """Instant rollback of production to an earlier deployment, and wait until Vercel confirms it.

    By default the target is the previous stable production deployment (READY, served production, older than
    the current one). Then, unless --no-verify, the health and version checks of [env.<name>.health] run
    (the version must be the target's commit): exit 3 if one fails (the rollback stays done and journaled).
    Exits 1 if the alias job fails (listing the failed aliases) or the timeout passes, or if a request failed
    and whether it took cannot be read (check 'rollback app status' before re-running). Without --to, exits 4
    right after a rollback (production is its target): pass --to to go further back. Exits 4 when the target
    was built before a recorded database switch (Vercel bakes the variables into each deployment: it would
    connect to the old database) unless --yes-old-database.

    During a Vercel rolling release it aborts the release instead (as 'vercel rolling-release abort' does):
    all traffic goes back to the release's base, and the step checks that the release reads ABORTED and
    the base serves production. It never targets an older deployment than the base: --to naming another
    one is refused (exit 2) unless --past-rolling-release, which aborts first and then rolls back further.

    \b
    Example:
      rollback app rollback --reason "checkout 500s" --yes
      rollback app rollback --to dpl_8NfTAmBDz... --dry-run
      rollback app rollback --past-rolling-release --dry-run
    """
    from rollback.commands.app import handlers as app_handlers
    from rollback.commands.app import plan as commands

    config = app_ctx.config()
    services = Services(config, settings=RunSettings(on_retry=say))
    client = services.vercel()
    planned = commands.plan_rollback(config, client, to=to, reason=reason, timeout=timeout, verify=not no_verify,
                                     past_rolling_release=past_rolling_release, yes_old_database=yes_old_database)
    _run_change(app_ctx, planned, app_handlers.handlers(services), dry_run=dry_run,
                yes=yes, action="roll back production", human=_alias_human("rollback"))


@app.command("undo")
@timeout_option
@no_verify_option
@dry_run_option
@yes_option
@common_options()
@pass_app
def undo_command(app_ctx: AppContext, timeout: float, no_verify: bool, dry_run: bool, yes: bool) -> None:
    """Undo the last rollback: promote back the deployment that was live before it
    (from the journal, else Vercel's lastAliasRequest). Production domains then follow new deployments again.
    Ends with the health and version checks (exit 3 if one fails) unless --no-verify.
    Exits 4 if production is not the target of a rollback (nothing to undo).

    \b
    Example:
      rollback app undo --yes
    """
    from rollback.commands.app import handlers as app_handlers
    from rollback.commands.app import plan as commands

    config = app_ctx.config()
    services = Services(config, settings=RunSettings(on_retry=say))
    client = services.vercel()
    planned = commands.plan_undo(config, client, timeout=timeout, verify=not no_verify)
    _run_change(app_ctx, planned, app_handlers.handlers(services), dry_run=dry_run,
                yes=yes, action="undo the rollback", human=_alias_human("undo"))


@app.command("promote")
@click.argument("deployment")
@timeout_option
@no_verify_option
@dry_run_option
@yes_option
@common_options()
@pass_app
def promote_command(app_ctx: AppContext, deployment: str, timeout: float, no_verify: bool, dry_run: bool,
                    yes: bool) -> None:
    """Promote a READY production deployment (id or URL) to serve production, and wait until it does;
    then run the health and version checks (exit 3 if one fails) unless --no-verify.

    \b
    Example:
      rollback app promote demo-m5aejtrhn-demo-team.vercel.app --yes
    """
    from rollback.commands.app import handlers as app_handlers
    from rollback.commands.app import plan as commands

    config = app_ctx.config()
    services = Services(config, settings=RunSettings(on_retry=say))
    client = services.vercel()
    planned = commands.plan_promote(config, client, deployment, timeout=timeout, verify=not no_verify)
    _run_change(app_ctx, planned, app_handlers.handlers(services), dry_run=dry_run,
                yes=yes, action="promote a deployment", human=_alias_human("promote"))


@app.command("revert")
@click.argument("commit", metavar="COMMIT|A..B")
@click.option("--push", is_flag=True, help="Push the revert (what triggers Vercel's production deploy).")
@click.option("--remote", default="origin", show_default=True, metavar="R", help="Remote to push to.")
@click.option("--branch", metavar="B", help="Branch to push to (default: the current branch).")
@click.option("--wait", is_flag=True, help="Wait until a READY production deployment of the revert commit is live, "
              "then run the health and version checks from rollback.toml (needs --push).")
@click.option("--timeout", type=DURATION, default="10m", show_default=True, metavar="DURATION",
              help="How long --wait waits for the deployment.")
@click.option("--repo", default=".", show_default=True, type=click.Path(file_okay=False),
              help="The git work tree.")
@dry_run_option
@yes_option
@common_options()
@pass_app
def revert_command(app_ctx: AppContext, commit: str, push: bool, remote: str, branch: str | None, wait: bool,
                   timeout: float, repo: str, dry_run: bool, yes: bool) -> None:
    """git revert --no-edit a commit or a range A..B (refuses a dirty work tree); with --push push it,
    with --wait wait for its production deployment and check health. Exits 3 if a check fails; with --wait,
    exits 4 before any git step while a rollback is in effect (undo it first).

    \b
    Example:
      rollback app revert abc1234 --push --wait --yes
      rollback app revert abc1234..HEAD --dry-run
    """
    from rollback.commands.app import handlers as app_handlers
    from rollback.commands.app import plan as commands

    config = app_ctx.config()
    services = Services(config, settings=RunSettings(on_retry=say))
    git_repo = services.git(Path(repo))
    client = None
    project = None
    if wait and push:  # check the token, team and project before changing anything
        client = services.vercel()
        project = commands.project_of(config, client)
    planned = commands.plan_revert(config, git_repo, commit, push=push, remote=remote, branch=branch, wait=wait,
                                   timeout=timeout, project=project)

    def human(document: dict[str, Any]) -> None:
        if document.get("dry_run"):
            for step in document.get("steps", []):
                for key, value in step.get("result", {}).items():
                    if key.startswith("would"):
                        echo(f"would: {value}")
            echo("dry run: nothing was changed")
            return
        results = {s["id"]: s["result"] for s in document.get("steps", [])}
        head = results.get("git-revert", {}).get("head", "")
        echo(f"reverted {commit}: HEAD is {head[:12]}")
        if "git-push" in results:
            echo(f"pushed to {results['git-push'].get('pushed')}")
        if "wait-deploy" in results:
            live = results["wait-deploy"]
            echo(f"live: {live.get('url')} ({live.get('deployment_id')}) after {live.get('seconds')} s")
        if "health" in results:
            echo(f"health: {len(results['health'].get('checks', []))} check(s) passed")

    _run_change(app_ctx, planned, app_handlers.handlers(services), dry_run=dry_run,
                yes=yes, action="push a revert", human=human, needs_confirm=push)
