"""``rollback infra history | diff | preview | restore | config-restore``: Pulumi stack state.

Parsing and presentation only; the verbs live in ``rollback.commands.infra.stack``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import click

from rollback.cli.output import say
from rollback.cli.support import AppContext, common_options, dry_run_option, emit, pass_app, run_plan, yes_option
from rollback.context import Services

__all__ = ["COMMANDS"]

_VIA = click.option("--via", type=click.Choice(["auto", "backend", "cli"]), default="auto", show_default=True,
                    help="History source: the self-managed backend read directly, or the Pulumi CLI "
                         "(auto: the backend when pulumi.backend_url is file:// or s3://).")


def _when(epoch: int | None) -> str:
    if epoch is None:
        return ""
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _changes(counts: dict[str, int]) -> str:
    signs = {"create": "+", "delete": "-", "update": "~", "replace": "+-", "same": "="}
    return " ".join(f"{signs.get(k, k + ':')}{v}" for k, v in counts.items() if v)


@click.command("history")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the newest N updates.")
@_VIA
@common_options()
@pass_app
def history_command(app: AppContext, limit: int | None, via: str) -> None:
    """List the stack's updates, oldest first: version, time, kind, result,
    message, git head, resource changes and the config keys each one changed.

    \b
    Example:
      rollback infra history --limit 10
    """
    from rollback.commands.infra import stack as commands

    config = app.config()
    document = commands.history(config, limit=limit, via=via, services=Services(config))

    def human() -> None:
        say(f"stack {document['stack']}: {document['count']} update(s), oldest first", err=False)
        for index, v in enumerate(document["versions"]):
            head = (v["git_head"] or "-")[:12]
            say(f"  v{v['version']:<4} {_when(v['start_time'])}  {v['kind']:<7} {v['result']:<10} {head:<12} "
                f"{_changes(v['resource_changes']):<12} {v['message']}", err=False)
            keys = v["config_changed"]
            if v["version"] == 1 or (index == 0 and document["count"] == len(document["versions"])):
                say(f"         config: {len(keys)} key(s) (first update)", err=False)
            elif keys:
                say(f"         config changed: {', '.join(keys)}", err=False)
        for note in document["notes"]:
            say(f"note: {note}", err=False)

    emit(app, document, human)


@click.command("diff")
@click.argument("from_version", metavar="FROM", type=int)
@click.argument("to_version", metavar="[TO]", type=int, required=False)
@_VIA
@common_options()
@pass_app
def diff_command(app: AppContext, from_version: int, to_version: int | None, via: str) -> None:
    """Show what separates two versions (TO defaults to the current state):
    config keys (secret values never shown, only whether they changed) and
    resources by URN: added, removed, and changed properties by path.

    \b
    Example:
      rollback infra diff 3 4
      rollback infra diff 2 --json
    """
    from rollback.commands.infra import stack as commands

    config = app.config()
    document = commands.diff(config, from_version, to_version, via=via, services=Services(config))

    def human() -> None:
        from rollback.model.stackdiff import SECRET_MASK, shorten

        to = document["to"]
        say(f"stack {document['stack']}: version {document['from']} -> {to}", err=False)
        say("config:", err=False)
        if not document["config"]:
            say("  (no differences)", err=False)
        for change in document["config"]:
            if change["secret"]:
                say(f"  ~ {change['key']}: {SECRET_MASK} {change['change']}", err=False)
            else:
                sign = {"added": "+", "removed": "-", "changed": "~"}[change["change"]]
                say(f"  {sign} {change['key']}: {shorten(change['old'], 100)} -> {shorten(change['new'], 100)}",
                    err=False)
        say("resources:", err=False)
        if document["resources"] is None:
            say("  (not compared: see the notes)", err=False)
        elif not document["resources"]:
            say("  (no differences)", err=False)
        for resource in document["resources"] or []:
            sign = {"added": "+", "removed": "-", "changed": "~"}[resource["change"]]
            say(f"  {sign} {resource['urn']}", err=False)
            for prop in resource["properties"]:
                if prop["secret"]:
                    say(f"      {prop['path']}: {SECRET_MASK} changed", err=False)
                else:
                    say(f"      {prop['path']}: {shorten(prop['old'], 100)} -> {shorten(prop['new'], 100)}", err=False)
        for note in document["notes"]:
            say(f"note: {note}", err=False)

    emit(app, document, human)


@click.command("preview")
@click.option("--to", "to_version", type=int, required=True, metavar="VERSION", help="The version to return to.")
@click.option("--plan-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to save the update plan [default: .rollback/plans/<stack>-v<VERSION>.plan.json].")
@click.option("--offline", is_flag=True,
              help="Do not call the Pulumi CLI: run the program under Pulumi's mocks (desired-state diff).")
@click.option("--message", "-m", default=None, help="Message recorded with the preview.")
@click.option("--config-only", is_flag=True,
              help="Put back VERSION's config only, with today's program (not the program it ran with).")
@click.option("--allow-db-replacement", is_flag=True,
              help="Take VERSION's database restore keys too, and keep a plan that replaces or creates the "
                   "database instance (refused otherwise).")
@click.option("--with-current-deps", is_flag=True,
              help="Run VERSION's program with today's .venv instead of an environment built from its own "
                   "requirements.txt.")
@dry_run_option
@common_options()
@pass_app
def preview_command(app: AppContext, to_version: int, plan_file: Path | None, offline: bool,
                    message: str | None, config_only: bool, allow_db_replacement: bool, with_current_deps: bool,
                    dry_run: bool) -> None:
    """Put VERSION back as it ran: its program (the commit its update ran from,
    checked out in a temporary git worktree) and its config, and preview it,
    saving the update plan for 'restore'. The previous config file is saved
    first; the output names the one command that puts it back. Refused (exit 4)
    when that commit is missing from the repository or the update ran from a
    dirty tree, unless --config-only (today's program, VERSION's config).

    Without the Pulumi CLI (or with --offline) the config is written into
    stacks/Pulumi.<stack>.yaml (comments and order kept) and the program runs
    under Pulumi's mocks: today's with the current config against VERSION's
    with its config. The result is a desired-state diff naming what the
    program change does, not a diff against the cloud; the exact 'pulumi
    preview' command to run where the CLI is installed is printed.

    \b
    Example:
      rollback infra preview --to 3 --plan-file rollback-v3.plan.json
      rollback infra preview --to 3 --offline --config-only
    """
    from rollback.commands.infra import stack as commands
    from rollback.commands.infra import stack_plan as infra_stack_plan

    config = app.config()
    chosen = plan_file or infra_stack_plan.default_plan_file(config, to_version)
    options = infra_stack_plan.PreviewOptions(to_version, chosen.resolve(), offline, message, config_only,
                                              allow_db_replacement, with_current_deps)
    prepared = commands.prepare_preview(config, Services(config), options)
    outcome = run_plan(app, prepared.plan, dict(prepared.handlers), dry_run=dry_run, yes=True, action="preview",
                       confirm_first=False, details={"version": to_version})
    report = commands.preview_document(config, prepared, outcome)

    def human() -> None:
        _print_preview(report)

    emit(app, report, human)


def _print_preview(report: dict[str, Any]) -> None:
    from rollback.model.stackdiff import SECRET_MASK, shorten

    say(f"stack {report['stack']}: pinned version {report['version']}'s config "
        f"(latest is {report['latest_version']}) in {report['config_file']}", err=False)
    for change in report["config_changes"]:
        if change["secret"]:
            say(f"  ~ {change['key']}: {SECRET_MASK} {change['change']}", err=False)
        else:
            say(f"  ~ {change['key']}: {shorten(change['old'], 100)} -> {shorten(change['new'], 100)}", err=False)
    if not report["config_changes"]:
        say("  (the config already matches)", err=False)
    for key in report.get("carried_forward") or []:
        say(f"  = {key}: kept as it is today (the database is not replaced; --allow-db-replacement takes "
            f"version {report['version']}'s)", err=False)
    say(report["program"]["describe"], err=False)
    for line in report["program"].get("environment") or []:
        say(line, err=False)
    if report["program"].get("built"):
        say(f"program environment built in {report['program']['built']}: pulumi-aws "
            f"{report['program'].get('installed_pulumi_aws') or 'not installed'}", err=False)
    if report["mode"] == "cli":
        summary = report.get("change_summary") or {}
        text = ", ".join(f"{k} {v}" for k, v in summary.items()) or "no changes"
        say(f"preview: {text}; plan saved to {report['plan_file']}", err=False)
    else:
        say(report["label"], err=False)
        rows = report.get("desired_state_diff") or []
        for r in rows:
            cause = f" [{r['cause']}]" if r.get("cause") == "program" else ""
            say(f"  ~ {r['resource']} ({r['type']}) {r['path'] or '(whole resource)'}: "
                f"{shorten(r['old'], 100)} -> {shorten(r['new'], 100)}{cause}", err=False)
        if not rows:
            say("  (no declared input differs)", err=False)
        say(f"run where the Pulumi CLI is installed:\n  {report['run_where_cli_is_installed']}", err=False)
    if report.get("dry_run"):
        say("dry run: nothing was written", err=False)
    else:
        say(f"next: {report['next']}", err=False)
        if report.get("undo"):
            say(f"to abandon this preview and put the previous config back: {report['undo']}", err=False)


@click.command("restore")
@click.option("--to", "to_version", type=int, required=True, metavar="VERSION", help="The version previewed.")
@click.option("--plan-file", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The plan saved by 'rollback infra preview'.")
@click.option("--without-plan", is_flag=True,
              help="Only after 'pulumi up --plan' refused the plan (a known Pulumi bug): apply without it, if a "
                   "fresh preview takes exactly the plan's steps with the same new inputs; only those resources.")
@click.option("--allow-db-replacement", is_flag=True,
              help="Apply a plan that replaces or creates the database instance (refused otherwise).")
@yes_option
@dry_run_option
@common_options()
@pass_app
def restore_command(app: AppContext, to_version: int, plan_file: Path, without_plan: bool,
                    allow_db_replacement: bool, yes: bool, dry_run: bool) -> None:
    """Apply exactly the plan saved by 'preview' (pulumi up --plan), with the
    program the preview used (version N's commit, from a worktree). Refuses
    (exit 4) while the stack is locked or has pending operations, or when the
    plan file is missing, was previewed for another version, or the stack
    config changed since, or the plan replaces or creates the database instance
    (unless --allow-db-replacement). When the restore changes assetsRelease, the
    paths the assets origin serves are invalidated afterwards.

    When 'pulumi up --plan' refuses a correct plan ("resource ... violates
    plan", a known Pulumi bug), it names the resource and property, compares a
    fresh 'pulumi preview --json' with the plan (operations and the new input
    values), and (exit 4) names the --without-plan command when they agree;
    --without-plan compares again and applies with 'pulumi up --target' of the
    planned resources only if they still do.

    \b
    Example:
      rollback infra restore --to 3 --plan-file rollback-v3.plan.json --yes
      rollback infra restore --to 3 --plan-file rollback-v3.plan.json --without-plan
    """
    from rollback.commands.infra import stack as commands

    config = app.config()
    plan_file = plan_file.resolve()
    # Checked first (not in a dry run): refuse before asking.
    prepared = commands.prepare_restore(config, Services(config), to_version, plan_file, without_plan=without_plan,
                                        check=not dry_run, allow_db_replacement=allow_db_replacement)
    plan = prepared.plan
    outcome = run_plan(app, plan, dict(prepared.handlers), dry_run=dry_run, yes=yes,
                       action=f"restore version {to_version}", confirm_first=True,
                       prompt=f"Apply {plan_file.name} to stack {config.require_pulumi().stack}?",
                       details={"version": to_version, "plan_file": str(plan_file)})
    document = outcome.to_dict()

    def human() -> None:
        if dry_run:
            for row in plan.rows():
                say(f"  {row[0]}. {row[1]} {row[2]}".rstrip(), err=False)
            say("dry run: nothing was applied", err=False)
            return
        up = outcome.result_of("up")
        changes = ", ".join(f"{k} {v}" for k, v in (up.get("resource_changes") or {}).items()) or "no changes"
        how = " without the refused plan (a fresh preview took exactly its steps)" if up.get("without_plan") else ""
        say(f"restored version {to_version}{how}: {up.get('result')} ({changes}); run {outcome.run_id}", err=False)
        invalidated = outcome.result_of("invalidate") if any(s.step.id == "invalidate" for s in outcome.steps) \
            else {}
        if invalidated.get("id"):
            say(f"invalidated {', '.join(invalidated.get('paths') or [])} ({invalidated['id']}): the release "
                "changed", err=False)

    emit(app, document, human)


@click.command("config-restore")
@click.argument("backup", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@yes_option
@dry_run_option
@common_options()
@pass_app
def config_restore_command(app: AppContext, backup: Path, yes: bool, dry_run: bool) -> None:
    """Put back the stack config file saved by 'preview' (undo an abandoned preview).
    The file it overwrites is saved first; the output names the command that
    puts it back in turn. Asks first (exit 4 without a terminal and without --yes).

    \b
    Example:
      rollback infra config-restore .rollback/stack-config/staging-20261128T100000123456Z.yaml --yes
    """
    from rollback.adapters import stack_config
    from rollback.commands.infra import stack_handlers as infra_stack_handlers
    from rollback.commands.infra import stack_plan as infra_stack_plan

    config = app.config()
    meta = stack_config.check_config_backup(config, backup)  # refuse a stray file before asking
    plan = infra_stack_plan.config_restore_plan(config, backup)
    handlers = infra_stack_handlers.StackHandlers(Services(config)).handlers()
    result = run_plan(app, plan, handlers, dry_run=dry_run, yes=yes,
                      action="overwrite the stack config", confirm_first=True,
                      prompt=f"Overwrite {meta['path']} with the copy saved in {backup.name}?")
    document = {"dry_run": dry_run, **result.result_of("restore"), "plan": plan.to_dict()}

    def human() -> None:
        if dry_run:
            say(f"would put back {document['would_restore']} from {document['from']}; "
                "dry run: nothing was written", err=False)
            return
        say(f"restored {document['restored']} from {document['from']} [run {result.run_id}]", err=False)
        say(f"the overwritten file was saved; to put it back: {document['undo']}", err=False)

    emit(app, document, human)


COMMANDS: list[click.Command] = [history_command, diff_command, preview_command, restore_command,
                                 config_restore_command]
