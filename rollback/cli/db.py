"""``rollback db``: backups, restore-then-swap, Prisma migrations, integrity checks, RDS.

Presentation only; the work is in :mod:`rollback.commands.db`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from rollback.cli.support import (
    AppContext,
    common_options,
    dry_run_option,
    emit,
    pass_app,
    print_table,
    say,
    yes_option,
)

if TYPE_CHECKING:
    from rollback.plan import Plan
    from rollback.runner import ExecutionResult


def _size(num: Any) -> str:
    value = float(num or 0)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def _apply(app: AppContext, plan: Plan, *, dry_run: bool, yes: bool, action: str, handlers: Any = None,
           confirm_always: bool = False) -> ExecutionResult:
    from rollback.cli.support import run_plan
    from rollback.commands import db as commands

    chosen = handlers or commands.DbHandlers(app.config())
    return run_plan(app, plan, chosen.handlers(), dry_run=dry_run, yes=yes, action=action,
                    confirm_first=plan.is_destructive or confirm_always)


def _step_lines(outcome: ExecutionResult) -> None:
    for item in outcome.steps:
        result = dict(item.result)
        detail = result.get("would") or ", ".join(
            f"{k}={v}" for k, v in result.items() if k not in ("manifest", "owns") and not isinstance(v, (dict, list)))
        say(f"{'would ' if outcome.dry_run else 'done: '}{item.step.describe()} ({item.seconds:.2f} s)"
            + (f"\n    {detail}" if detail else ""), err=False)


skip_emergency = click.option("--skip-emergency-backup", is_flag=True,
                              help="Do not take the emergency backup first (needs --reason; journaled).")
reason_option = click.option("--reason", metavar="TEXT", help="Why the emergency backup is skipped (journaled).")
jobs_option = click.option("--jobs", "-j", type=click.IntRange(min=1, max=32), default=None,
                           help="Parallel pg_dump/pg_restore jobs (default: CPUs, at most 4).")


def _skip_reason(skip: bool, reason: str | None) -> str | None:
    from rollback.errors import BadInput

    if skip and not (reason and reason.strip()):
        raise BadInput("--skip-emergency-backup needs --reason TEXT", "say why; the reason is journaled")
    if reason and not skip:
        raise BadInput("--reason only goes with --skip-emergency-backup")
    return reason.strip() if skip and reason else None


@click.group()
def db() -> None:
    """Database: verified backups, restore beside + swap, Prisma migrations, integrity, RDS.

    The live database is never dropped: restores go into a new database beside
    it and a swap renames the live one aside.
    """


@db.command("backup")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory for the backup (default: database.backups_dir).")
@jobs_option
@common_options()
@pass_app
def backup_command(app: AppContext, out: Path | None, jobs: int | None) -> None:
    """Take a verified backup: pg_dump directory format, parallel, compressed, with a manifest.

    The manifest (beside the dump) records the server version, every table's exact
    row count (from the same snapshot as the dump), the Prisma migration head, and
    the sha256 and size of every file. The dump is re-read (checksums,
    pg_restore --list) before success is reported.

    \b
    Example:
      rollback db backup --jobs 4
      rollback db backup --out /var/backups/db --json
    """
    from rollback.commands import db as commands

    config = app.config()
    plan = commands.plan_backup(config, out=out, jobs=jobs)
    outcome = _apply(app, plan, dry_run=False, yes=True, action="take a backup")
    result = dict(outcome.result_of("backup"))
    manifest = result.pop("manifest")

    def human() -> None:
        say(f"backup {manifest['name']}: {len(manifest['tables'])} tables, {manifest['total_rows']} rows, "
            f"{_size(manifest['total_bytes'])} in {manifest['durations']['total_seconds']:.1f} s; verified",
            err=False)
        say(f"  dump:     {result['path']}", err=False)
        say(f"  manifest: {result['manifest_path']}", err=False)
        if manifest.get("prisma_migration_head"):
            say(f"  prisma migration head: {manifest['prisma_migration_head']}", err=False)

    emit(app, {"ok": True, "run": outcome.run_id, "backup": {**result, **manifest}}, human)


@db.command("backups")
@common_options()
@pass_app
def backups_command(app: AppContext) -> None:
    """List backups (newest first) with their manifests.

    \b
    Example:
      rollback db backups --json
    """
    from rollback.commands import db as commands

    directory = app.config().backups_dir
    found = commands.list_backups(directory)

    def human() -> None:
        if not found:
            say(f"no backups in {directory}")
            return
        print_table(["name", "kind", "created", "tables", "rows", "size", "prisma head", "present"],
                    [(b.get("name"), b.get("kind"), b.get("created_at"), len(b.get("tables", [])),
                      b.get("total_rows"), _size(b.get("total_bytes")), b.get("prisma_migration_head") or "",
                      "yes" if b.get("present") else "MISSING") for b in found])

    emit(app, {"backups_dir": str(directory), "backups": found}, human)


@db.command("restore")
@click.argument("backup")
@click.option("--swap", is_flag=True, help="Swap the restored database in place of the live one (kept aside).")
@click.option("--in-place", is_flag=True,
              help="Restore into the live database itself (pg_restore --clean, one transaction).")
@skip_emergency
@reason_option
@jobs_option
@dry_run_option
@yes_option
@common_options()
@pass_app
def restore_command(app: AppContext, backup: str, swap: bool, in_place: bool, skip_emergency_backup: bool,
                    reason: str | None, jobs: int | None, dry_run: bool, yes: bool) -> None:
    """Restore BACKUP beside the live database, check it, and optionally swap it in.

    BACKUP is a name from 'rollback db backups', a manifest or dump path, or
    'latest'. Steps: verify the backup; check the role's rights; emergency backup
    of the live database; pg_restore into a new database; compare row counts with
    the manifest; with --swap, block connections, end sessions, rename the live
    database aside (kept) and the restored one into its place, and report the
    downtime. Exit 3 when the counts differ, 4 when refused (damaged backup,
    missing right, no confirmation); the live database exists after every failure.

    \b
    Example:
      rollback db restore app-20261128T093000Z --swap --yes
      rollback db restore latest --dry-run
    """
    from rollback.commands import db as commands

    config = app.config()
    plan = commands.plan_restore(config, backup, swap=swap, in_place=in_place,
                                 skip_emergency_reason=_skip_reason(skip_emergency_backup, reason), jobs=jobs)
    action = "swap the restored database into place" if swap else (
        "restore in place" if in_place else "restore beside the live database")
    outcome = _apply(app, plan, dry_run=dry_run, yes=yes, action=action)
    swapped = next((dict(s.result) for s in outcome.steps if s.step.id == "swap"), None)

    def human() -> None:
        _step_lines(outcome)
        if dry_run:
            return
        if swapped:
            say(f"swapped: {swapped['live']} is now the restored copy; downtime "
                f"{swapped['downtime_seconds'] * 1000:.0f} ms; previous database kept as {swapped['set_aside']}",
                err=False)
        elif not in_place:
            restored = outcome.result_of("restore")["database"]
            say(f"restored into {restored} beside the live database; to swap it in: "
                f"rollback db swap {restored} --yes", err=False)

    emit(app, {"ok": True, **outcome.to_dict(), "swap": swapped}, human)


@db.command("swap")
@click.argument("restored")
@dry_run_option
@yes_option
@common_options()
@pass_app
def swap_command(app: AppContext, restored: str, dry_run: bool, yes: bool) -> None:
    """Swap RESTORED (a database beside the live one) into the live name; the live one is kept aside.

    RESTORED must be a copy made by 'rollback db restore' (named <live>_restore_<time>) whose row
    counts matched its backup: any other name exits 2, an unchecked or mismatched copy exits 4.

    \b
    Example:
      rollback db swap app_restore_20261128093000 --yes
    """
    from rollback.commands import db as commands

    plan = commands.plan_swap(app.config(), restored)
    outcome = _apply(app, plan, dry_run=dry_run, yes=yes, action=f"swap {restored} into place")

    def human() -> None:
        _step_lines(outcome)

    emit(app, {"ok": True, **outcome.to_dict()}, human)


@db.command("prune")
@dry_run_option
@yes_option
@common_options()
@pass_app
def prune_command(app: AppContext, dry_run: bool, yes: bool) -> None:
    """Drop the databases set aside by earlier swaps (and restores never swapped in), with confirmation.

    \b
    Example:
      rollback db prune --dry-run
      rollback db prune --yes
    """
    from rollback.commands import db as commands

    plan = commands.plan_prune(app.config())
    if not plan.steps:
        emit(app, {"ok": True, "dropped": []}, lambda: say("nothing to prune", err=False))
        return
    outcome = _apply(app, plan, dry_run=dry_run, yes=yes, action=f"drop {len(plan.steps)} set-aside database(s)")
    emit(app, {"ok": True, **outcome.to_dict()}, lambda: _step_lines(outcome))


@db.command("migrations")
@common_options()
@pass_app
def migrations_command(app: AppContext) -> None:
    """Prisma migrations recorded in _prisma_migrations: applied, failed, rolled back.

    Failed = finished_at and rolled_back_at both null. No table = the database is
    not managed by Prisma Migrate.

    \b
    Example:
      rollback db migrations --json
    """
    from rollback.commands import db as commands

    report = commands.migrations(app.config())

    def human() -> None:
        if not report["managed"]:
            say(f"{report['database']}: {report['note']}", err=False)
            return
        print_table(["migration", "status", "started", "finished", "rolled back"],
                    [(m["name"], m["status"], m["started_at"], m["finished_at"] or "", m["rolled_back_at"] or "")
                     for m in report["migrations"]], title=f"{report['database']}: head {report['head']}")
        if report["failed"]:
            say(f"failed: {', '.join(report['failed'])} (resolve with 'rollback db resolve --rolled-back NAME')",
                err=False)
        if report["not_in_database"]:
            say(f"local only (never recorded): {', '.join(report['not_in_database'])}", err=False)

    emit(app, report, human)


@db.command("resolve")
@click.option("--rolled-back", "rolled_back", metavar="NAME", help="Mark a failed migration rolled back.")
@click.option("--applied", metavar="NAME", help="Record a migration as applied (checksum of local migration.sql).")
@dry_run_option
@common_options()
@pass_app
def resolve_command(app: AppContext, rolled_back: str | None, applied: str | None, dry_run: bool) -> None:
    """Do what 'prisma migrate resolve' does, under Prisma's advisory lock.

    Errors carry Prisma's codes: P3011 never applied, P3012 not in a failed state,
    P3008 already applied, P3017 no local migration directory.

    \b
    Example:
      rollback db resolve --rolled-back 20261128093000_add_stats
      rollback db resolve --applied 20261128093000_add_stats
    """
    from rollback.commands import db as commands

    plan = commands.plan_resolve(app.config(), rolled_back=rolled_back, applied=applied)
    outcome = _apply(app, plan, dry_run=dry_run, yes=True, action="resolve the migration")
    emit(app, {"ok": True, **outcome.to_dict()}, lambda: _step_lines(outcome))


@db.command("down")
@click.argument("name")
@skip_emergency
@reason_option
@dry_run_option
@yes_option
@common_options()
@pass_app
def down_command(app: AppContext, name: str, skip_emergency_backup: bool, reason: str | None, dry_run: bool,
                 yes: bool) -> None:
    """Undo migration NAME: run prisma/migrations/NAME/down.sql in one transaction, mark it rolled back.

    Takes an emergency backup first. down.sql is hand-written or produced by
    'prisma migrate diff --from-schema-datamodel <new> --to-schema-datamodel <old> --script'.

    \b
    Example:
      rollback db down 20261128093000_add_stats --yes
    """
    from rollback.commands import db as commands

    plan = commands.plan_down(app.config(), name, skip_emergency_reason=_skip_reason(skip_emergency_backup, reason))
    outcome = _apply(app, plan, dry_run=dry_run, yes=yes, action=f"run the down migration of {name}")
    emit(app, {"ok": True, **outcome.to_dict()}, lambda: _step_lines(outcome))


@db.command("verify")
@click.option("--baseline", metavar="MANIFEST", help="Backup (name, manifest path or 'latest') to compare rows with.")
@click.option("--tolerance", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Allowed row-count difference in percent for tables not marked grow-only.")
@common_options()
@pass_app
def verify_command(app: AppContext, baseline: str | None, tolerance: float) -> None:
    """Integrity checks: connection, failed migrations, row counts vs a baseline, orphans.

    Orphans are counted for every declared foreign key and for database.relations
    (Prisma's relationMode = "prisma" declares none). Exit 3 when a check fails.

    \b
    Example:
      rollback db verify --baseline latest --json
    """
    from rollback.commands import db as commands

    report = commands.verify(app.config(), baseline=baseline, tolerance=tolerance)

    def human() -> None:
        print_table(["check", "result", "value", "expected", "detail"],
                    [(c["check"], "ok" if c["ok"] else "FAIL", c["value"], c["expected"], c["detail"])
                     for c in report["checks"]], title=f"verify {report['database']}")

    emit(app, report, human)
    if not report["ok"]:
        say(f"error: {report['failed']} check(s) failed (see the table above)")
        raise click.exceptions.Exit(3)


@db.command("snapshots")
@click.option("--instance", metavar="ID", help="RDS instance (default: aws.db_instance).")
@common_options()
@pass_app
def snapshots_command(app: AppContext, instance: str | None) -> None:
    """RDS snapshots (manual and automated) and the instance's restorable window.

    \b
    Example:
      rollback db snapshots --json
    """
    from rollback.commands import db as commands

    report = commands.snapshots(app.config(), instance)

    def human() -> None:
        inst = report["instance"]
        say(f"{inst['id']} ({inst['status']}): restorable {inst['earliest_restorable_time']} .. "
            f"{inst['latest_restorable_time']}", err=False)
        print_table(["snapshot", "type", "status", "created"],
                    [(s["id"], s["type"], s["status"], s["created"]) for s in report["snapshots"]])

    emit(app, report, human)


@db.group("snapshot")
def snapshot_group() -> None:
    """Create RDS snapshots."""


@snapshot_group.command("create")
@click.option("--id", "snapshot_id", metavar="ID", help="Snapshot id (default: <instance>-rollback-<time>).")
@click.option("--instance", metavar="ID", help="RDS instance (default: aws.db_instance).")
@click.option("--wait", is_flag=True, help="Wait until the snapshot is available.")
@dry_run_option
@common_options()
@pass_app
def snapshot_create_command(app: AppContext, snapshot_id: str | None, instance: str | None, wait: bool,
                            dry_run: bool) -> None:
    """Create a manual snapshot of the RDS instance.

    \b
    Example:
      rollback db snapshot create --id before-migration --wait
    """
    from rollback.commands import db as commands

    plan = commands.plan_snapshot_create(app.config(), instance=instance, snapshot_id=snapshot_id, wait=wait)
    outcome = _apply(app, plan, dry_run=dry_run, yes=True, action="create the snapshot")
    emit(app, {"ok": True, **outcome.to_dict()}, lambda: _step_lines(outcome))


@db.command("rds-restore")
@click.option("--snapshot", metavar="ID", help="Restore this snapshot.")
@click.option("--to-time", metavar="TIME", help="Point in time (ISO-8601 UTC or '15m ago').")
@click.option("--latest", is_flag=True, help="The latest restorable time.")
@click.option("--target", required=True, metavar="NEW_ID", help="Identifier of the NEW instance.")
@click.option("--instance", metavar="ID", help="Source instance for --to-time/--latest (default: aws.db_instance).")
@click.option("--wait", is_flag=True, help="Wait until the new instance is available and print its endpoint.")
@dry_run_option
@common_options()
@pass_app
def rds_restore_command(app: AppContext, snapshot: str | None, to_time: str | None, latest: bool, target: str,
                        instance: str | None, wait: bool, dry_run: bool) -> None:
    """Restore RDS into a NEW instance from a snapshot or a point in time (the source is never touched).

    Validated before any AWS change: the time lies in the restorable window, the
    target does not exist, the snapshot is available.

    \b
    Example:
      rollback db rds-restore --to-time "15m ago" --target app-db-restored --wait
      rollback db rds-restore --snapshot before-migration --target app-db-restored
    """
    from rollback.commands import db as commands

    plan = commands.plan_rds_restore(app.config(), snapshot=snapshot, to_time=to_time, latest=latest,
                                     target=target, instance=instance, wait=wait)
    outcome = _apply(app, plan, dry_run=dry_run, yes=True, action="restore into a new RDS instance")
    result = dict(outcome.result_of("rds-restore"))

    def human() -> None:
        _step_lines(outcome)
        if not dry_run:
            say(f"new instance {result.get('id')} ({result.get('status')}): endpoint "
                f"{result.get('endpoint')}:{result.get('port')}", err=False)

    emit(app, {"ok": True, **outcome.to_dict(), "instance": result}, human)
