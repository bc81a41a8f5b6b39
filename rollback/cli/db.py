"""``rollback db``: backups, restore-then-swap, Prisma migrations, integrity checks, RDS.

Presentation only; the work is in :mod:`rollback.commands.db`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from rollback.cli.output import print_table, say
from rollback.cli.support import AppContext, common_options, dry_run_option, emit, pass_app, run_plan, yes_option
from rollback.context import Services

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
           confirm_always: bool = False, services: Services) -> ExecutionResult:
    from rollback.commands.db import handlers as commands

    chosen = handlers or commands.DbHandlers(services)
    return run_plan(app, plan, chosen.handlers(), dry_run=dry_run, yes=yes, action=action,
                    confirm_first=plan.is_destructive or confirm_always)


def _step_lines(outcome: ExecutionResult) -> None:
    from rollback.model.report import result_text

    for item in outcome.steps:
        detail = result_text(item.result)
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
    """Database: verified backups, restore beside + swap, salvage, RPO, Prisma migrations, RDS.

    The live database is never dropped: restores go into a new database beside
    it and a swap renames the live one aside, in one transaction. Staged backups
    restore as a file copy; 'salvage' brings back what was written after the
    backup; 'guard' pairs each migration with the backup taken before it.
    """


@db.command("backup")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory for the backup (default: database.backups_dir).")
@click.option("--stage", is_flag=True,
              help="Also restore it into a standby beside the live database: a later restore is a file copy.")
@jobs_option
@common_options()
@pass_app
def backup_command(app: AppContext, out: Path | None, stage: bool, jobs: int | None) -> None:
    """Take a verified backup: pg_dump directory format, parallel, compressed, with a manifest.

    The manifest (beside the dump) records the source database, the server version,
    every table's exact row count (from the same snapshot as the dump), the Prisma
    migration head, and the sha256 and size of every file. The dump is re-read
    (checksums, pg_restore --list) before success is reported.

    With --stage the backup is also restored into <db>_standby_<time> (row counts
    checked, connections refused): 'rollback db restore' of this backup then clones
    it (CREATE DATABASE ... TEMPLATE, a file copy) instead of loading the dump. It
    costs disk equal to the database; database.keep_standbys (default 1) bounds how
    many are kept.

    \b
    Example:
      rollback db backup --jobs 4
      rollback db backup --stage
      rollback db backup --out /var/backups/db --json
    """
    from rollback.commands.db import backup as db_backup
    from rollback.commands.db import handlers as commands

    services = Services(app.config())
    config = services.config
    plan = db_backup.plan_backup(config, out=out, jobs=jobs, stage=stage, services=services)
    # Not confirmed: a backup changes nothing, and with --stage the only drops are standbys beyond
    # database.keep_standbys (copies of backups, which the setting says not to keep).
    outcome = run_plan(app, plan, commands.DbHandlers(services).handlers(), dry_run=False, yes=True,
                       action="take a backup", confirm_first=False)
    result = dict(outcome.result_of("backup"))
    manifest = result.pop("manifest")
    if stage:
        result["standby"] = outcome.result_of("stage")["database"]
        result["dropped_standbys"] = [s.result.get("dropped") for s in outcome.steps
                                      if s.step.id.startswith("drop-standby-")]

    def human() -> None:
        say(f"backup {manifest['name']}: {len(manifest['tables'])} tables, {manifest['total_rows']} rows, "
            f"{_size(manifest['total_bytes'])} in {manifest['durations']['total_seconds']:.1f} s; verified",
            err=False)
        say(f"  dump:     {result['path']}", err=False)
        say(f"  manifest: {result['manifest_path']}", err=False)
        if manifest.get("prisma_migration_head"):
            say(f"  prisma migration head: {manifest['prisma_migration_head']}", err=False)
        if result.get("standby"):
            say(f"  staged as: {result['standby']} (connections refused; a restore of this backup clones it)",
                err=False)
        for dropped in result.get("dropped_standbys") or []:
            say(f"  dropped older standby {dropped}", err=False)

    emit(app, {"ok": True, "run": outcome.run_id, "backup": {**result, **manifest}}, human)


@db.command("backups")
@common_options()
@pass_app
def backups_command(app: AppContext) -> None:
    """List backups (newest first) with their manifests and the database each was taken from.

    STATUS is ok, damaged (a manifest that is unreadable or of the wrong shape),
    missing dump, incomplete (a backup that died before writing its manifest;
    'rollback db prune' removes it) or in progress. THIS DB says whether the
    backup was taken from this environment's database (by name, host and port;
    a restore also compares the server's system identifier).

    \b
    Example:
      rollback db backups --json
    """
    from rollback import backups
    from rollback.commands.db import backup as db_backup
    from rollback.commands.db import common as db_common
    from rollback.errors import RollbackError

    services = Services(app.config())
    config = services.config
    directory = config.backups_dir
    found = backups.list_backups(directory, db_common.config_identity(config, services))
    staged_note = None
    try:
        staged = db_backup.standbys(config, services=services)
    except RollbackError as exc:  # no database: the files are still listed
        staged, staged_note = None, f"staged standbys unknown: {exc.message}"
    for item in found:
        if item.get("status") == "ok":
            entry = (staged or {}).get(str(item["name"])) or {}
            item["staged"] = None if staged is None else entry.get("standby")
            if entry.get("reason"):
                item["standby_problem"] = entry["reason"]

    def source(b: dict[str, Any]) -> str:
        src = b.get("source") or {}
        return f"{src.get('database')}@{src.get('host') or 'localhost'}:{src.get('port') or 5432}" if src else ""

    def this_db(b: dict[str, Any]) -> str:
        return {True: "yes", False: "no"}.get(b.get("this_database"), "")  # type: ignore[arg-type]

    def human() -> None:
        if not found:
            say(f"no backups in {directory}")
            return
        print_table(["name", "kind", "created", "database", "this db", "tables", "rows", "size", "prisma head",
                     "staged", "status"],
                    [(b.get("name"), b.get("kind"), b.get("created_at"), source(b), this_db(b),
                      len(b.get("tables", [])) if b.get("status") == "ok" else "",
                      b.get("total_rows"), _size(b.get("total_bytes", b.get("bytes"))),
                      b.get("prisma_migration_head") or "",
                      b.get("staged") or ("stale" if b.get("standby_problem") else "?" if staged is None and
                                          b.get("status") == "ok" else ""), b.get("status")) for b in found])
        for b in found:
            if b.get("standby_problem"):
                say(f"note: {b['name']}: {b['standby_problem']}")
        if staged_note:
            say(f"note: {staged_note}")

    emit(app, {"backups_dir": str(directory), "backups": found,
               **({"note": staged_note} if staged_note else {})}, human)


@db.command("restore")
@click.argument("backup", required=False)
@click.option("--swap", is_flag=True, help="Swap the restored database in place of the live one (kept aside).")
@click.option("--in-place", is_flag=True,
              help="Restore into the live database itself (pg_restore --clean, one transaction).")
@click.option("--from-other-database", is_flag=True,
              help="Accept a backup taken from another database (another environment or server).")
@click.option("--before-migration", metavar="NAME",
              help="The backup 'rollback db guard' took just before migration NAME (instead of BACKUP).")
@skip_emergency
@reason_option
@click.option("--no-wait-backup", is_flag=True,
              help="With --swap: return once the database is restored; the safety dump of the previous database "
                   "is written in the background, as a journaled run of its own.")
@jobs_option
@dry_run_option
@yes_option
@common_options()
@pass_app
def restore_command(app: AppContext, backup: str | None, swap: bool, in_place: bool, from_other_database: bool,
                    before_migration: str | None, skip_emergency_backup: bool, reason: str | None,
                    no_wait_backup: bool, jobs: int | None, dry_run: bool, yes: bool) -> None:
    """Restore BACKUP beside the live database, check it, and optionally swap it in.

    BACKUP is a name from 'rollback db backups', a manifest or dump path, or
    'latest' (the newest backup of THIS database). Steps: verify the backup;
    check the role's rights; emergency backup of the live database; pg_restore
    into a new database; compare row counts with the manifest; with --swap, end
    the sessions and rename the live database aside (kept) and the restored one
    into its place in one transaction, and report the downtime. With --swap,
    service comes first: the emergency backup is a safety dump of the kept
    previous database, written after the swap (the command waits for it and
    prints both times; --no-wait-backup leaves it to a background run, and
    'rollback db prune' keeps the copy until it is written). A backup taken
    from another database is refused unless --from-other-database.
    --before-migration NAME restores the backup 'rollback db guard' took just
    before migration NAME. A backup staged with 'db backup --stage' is restored by
    cloning its standby (a file copy) while the standby is fresh. Exit 3 when
    the counts differ, 4 when refused (damaged backup, another database's backup,
    missing right, no confirmation); the live database exists after every failure.

    \b
    Example:
      rollback db restore app-20261128T093000Z --swap --yes
      rollback db restore latest --dry-run
      rollback db restore --before-migration 20261128093000_add_stats --swap --yes
    """
    from rollback.commands.db import restore as db_restore

    services = Services(app.config())
    config = services.config
    plan = db_restore.plan_restore(config, backup, swap=swap, in_place=in_place,
                                 skip_emergency_reason=_skip_reason(skip_emergency_backup, reason), jobs=jobs,
                                 from_other_database=from_other_database, before_migration=before_migration,
                                 services=services, wait_backup=not no_wait_backup)
    action = "swap the restored database into place" if swap else (
        "restore in place" if in_place else "restore beside the live database")
    outcome = _apply(app, plan, dry_run=dry_run, yes=yes, action=action, services=services)
    swapped = next((dict(s.result) for s in outcome.steps if s.step.id == "swap"), None)
    timeline = _restore_timeline(outcome) if swapped and not dry_run else None

    def human() -> None:
        from rollback.units import format_duration

        _step_lines(outcome)
        if dry_run:
            return
        if swapped:
            say(f"swapped: {swapped['live']} is now the restored copy; downtime "
                f"{format_duration(swapped['downtime_seconds'])}; previous database kept as "
                f"{swapped['set_aside']}", err=False)
            if timeline is not None:
                say(timeline["line"], err=False)
        elif not in_place:
            restored = outcome.result_of("restore")["database"]
            say(f"restored into {restored} beside the live database; to swap it in: "
                f"rollback db swap {restored} --yes", err=False)

    emit(app, {"ok": True, **outcome.to_dict(), "swap": swapped,
               **({"restored_after_seconds": timeline["restored_after_seconds"],
                   "safety_dump": timeline["safety_dump"]} if timeline is not None else {})}, human)


def _restore_timeline(outcome: ExecutionResult) -> dict[str, Any]:
    """When service came back (the swap) and when the safety dump was written, counted from the run's
    start: "database restored after X s; safety dump written after Y s"."""
    elapsed, restored, dump = 0.0, 0.0, None
    for item in outcome.steps:
        elapsed += item.seconds
        if item.step.action == "db.swap":
            restored = elapsed
        elif item.step.id.endswith("emergency-backup"):
            dump = (item, elapsed)
    line = f"database restored after {restored:.1f} s"
    document: dict[str, Any] = {}
    if dump is not None:
        item, after = dump
        result = dict(item.result)
        if result.get("skipped"):
            line += f"; safety dump skipped (reason: {result.get('reason')})"
            document = {"skipped": True, "reason": result.get("reason")}
        elif result.get("background"):
            line += (f"; safety dump of {result['database']} being written in the background by run {result['run']} "
                     f"(pid {result['pid']}): 'rollback journal show {result['run']}' says when it is done; if it "
                     f"stops, 'rollback resume {result['run']}' finishes it")
            document = {"background": True, "run": result["run"], "pid": result["pid"], "of": result["database"]}
        else:
            line += f"; safety dump written after {after:.1f} s ({result.get('name')}, of {result.get('of')})"
            document = {"after_seconds": round(after, 3), "name": result.get("name"), "of": result.get("of")}
    return {"line": line, "restored_after_seconds": round(restored, 3), "safety_dump": document or None}


@db.command("swap")
@click.argument("restored")
@dry_run_option
@yes_option
@common_options()
@pass_app
def swap_command(app: AppContext, restored: str, dry_run: bool, yes: bool) -> None:
    """Swap RESTORED (a database beside the live one) into the live name; the live one is kept aside.

    RESTORED must be a copy made by 'rollback db restore' (named <live>_restore_<YYYYmmddHHMMSS>)
    whose row counts matched its backup: any other name, or no such database, exits 2; an
    unchecked or mismatched copy exits 4. Both renames run in one transaction: an interruption
    at any moment (Ctrl-C, SIGTERM, SIGHUP, even SIGKILL) leaves the old state or the new one.

    \b
    Example:
      rollback db swap app_restore_20261128093000 --yes
    """
    from rollback.commands.db import restore as db_restore

    services = Services(app.config())
    plan = db_restore.plan_swap(services.config, restored, services=services)
    outcome = _apply(app, plan, dry_run=dry_run, yes=yes, action=f"swap {restored} into place", services=services)

    def human() -> None:
        _step_lines(outcome)

    emit(app, {"ok": True, **outcome.to_dict()}, human)


@db.command("prune")
@click.option("--keep-standbys", type=click.IntRange(min=0), default=None, metavar="N",
              help="Staged standbys to keep, newest first (default: database.keep_standbys).")
@dry_run_option
@yes_option
@common_options()
@pass_app
def prune_command(app: AppContext, keep_standbys: int | None, dry_run: bool, yes: bool) -> None:
    """Drop what rollback set aside: databases replaced by swaps, restores never swapped in,
    staged standbys beyond the newest N, and interrupted backups (dump directories without a
    manifest), with confirmation.

    Only databases that carry rollback's mark (a COMMENT naming the run and role) and a name
    of the form <live>_restore_/_replaced_/_standby_<YYYYmmddHHMMSS> are dropped; look-alikes
    are listed and kept. While the live database is missing, the newest replaced copy is kept;
    so is a replaced copy whose safety dump ('db restore --swap' writes it after the swap) is
    not written yet.

    \b
    Example:
      rollback db prune --dry-run
      rollback db prune --keep-standbys 0 --yes
    """
    from rollback.commands.db import backup as db_backup

    services = Services(app.config())
    plan = db_backup.plan_prune(services.config, keep_standbys=keep_standbys, services=services)
    if not plan.steps:
        def nothing() -> None:
            for note in plan.notes:
                say(f"note: {note}")
            say("nothing to prune", err=False)

        emit(app, {"ok": True, "dropped": [], "notes": list(plan.notes)}, nothing)
        return
    outcome = _apply(app, plan, dry_run=dry_run, yes=yes, action=f"drop {len(plan.steps)} set-aside database(s)",
                     services=services)
    emit(app, {"ok": True, **outcome.to_dict()}, lambda: _step_lines(outcome))


@db.command("salvage")
@click.argument("replaced", required=False)
@click.option("--tables", "tables", multiple=True, metavar="T[,T...]",
              help="Only these tables (Table or schema.Table; repeat or separate with commas).")
@click.option("--apply", "apply_", is_flag=True,
              help="Copy the rows only in the kept copy into the live database (one transaction).")
@skip_emergency
@reason_option
@dry_run_option
@yes_option
@common_options()
@pass_app
def salvage_command(app: AppContext, replaced: str | None, tables: tuple[str, ...], apply_: bool,
                    skip_emergency_backup: bool, reason: str | None, dry_run: bool, yes: bool) -> None:
    """Recover what users wrote after the backup: compare the copy a swap kept with the live database.

    REPLACED is a <db>_replaced_<time> copy set aside by 'rollback db restore --swap'
    (default: the newest). Table by table, by primary key, parents first, it reports
    the rows only in the kept copy (written after the backup), the rows in both that
    differ, and the rows only in the live database. --apply copies the rows only in
    the kept copy into the live database in one transaction, after an emergency
    backup: a row that violates a constraint is skipped and named by its key, rows
    that differ are never overwritten (listed for a person to judge), and sequences
    move past the copied ids. Only keys and counts are printed, never row contents.
    Tables without a primary key are reported as not salvageable; _prisma_migrations
    is never salvaged. Exit 2 unknown copy or table; 4 the copy is not one a swap of
    this database set aside, or no confirmation.

    \b
    Example:
      rollback db salvage
      rollback db salvage app_replaced_20261128094500 --tables User,Integration --apply --yes
    """
    from rollback.commands.db import salvage as db_salvage

    services = Services(app.config())
    config = services.config
    chosen = [t.strip() for item in tables for t in item.split(",") if t.strip()] or None
    if not apply_:
        if skip_emergency_backup or reason:
            raise click.UsageError("--skip-emergency-backup and --reason go with --apply")
        report = db_salvage.salvage(config, replaced, tables=chosen, services=services)
        emit(app, {"ok": True, **report}, lambda: _salvage_human(report))
        return
    plan = db_salvage.plan_salvage(config, replaced, tables=chosen,
                                 skip_emergency_reason=_skip_reason(skip_emergency_backup, reason), services=services)
    outcome = _apply(app, plan, dry_run=dry_run, yes=yes, action=f"copy rows from {plan.steps[0].params['kept']}",
                     services=services)
    result = dict(outcome.result_of("apply" if not dry_run else "compare"))

    def human() -> None:
        _step_lines(outcome)
        _salvage_human(result)

    emit(app, {"ok": True, **outcome.to_dict(), "salvage": result}, human)


def _salvage_human(report: dict[str, Any]) -> None:
    def keys(values: list[Any]) -> str:
        shown = ", ".join(str(v) for v in values[:10])
        return shown + (f" (+{len(values) - 10} more)" if len(values) > 10 else "")

    print_table(["table", "only in kept copy", "differ", "only in live", "copied", "skipped", "note"],
                [(t["table"], t["only_in_kept"], t["differ"], t["only_in_live"], t.get("copied", ""),
                  len(t.get("skipped", [])) or "", t["reason"] or "") for t in report.get("tables", [])],
                title=f"salvage: {report.get('kept')} -> {report.get('live')}")
    for table in report.get("tables", []):
        if table["keys_only_in_kept"] and not report.get("applied"):
            say(f"{table['table']}: only in the kept copy: {keys(table['keys_only_in_kept'])}", err=False)
        if table["keys_differ"]:
            say(f"{table['table']}: differ (not overwritten; judge by hand): {keys(table['keys_differ'])}",
                err=False)
        for skipped in table.get("skipped", []):
            say(f"{table['table']}: skipped {skipped['key']}: {skipped['reason']}", err=False)
        for seq in table.get("sequences", []):
            say(f"{table['table']}: sequence {seq['sequence']} advanced {seq['from']} -> {seq['to']}", err=False)


@db.command("rpo")
@common_options()
@pass_app
def rpo_command(app: AppContext) -> None:
    """Recovery points available now and their age against targets.rpo (minutes, default 5).

    The newest verified logical backup of this database, and with aws.db_instance
    the newest RDS manual and automated snapshot and the instance's latest
    restorable time (point-in-time restore). Exit 3 when none is within the target.

    \b
    Example:
      rollback db rpo
      rollback db rpo --json
    """
    from rollback.commands.db.rpo import rpo
    from rollback.units import format_duration

    services = Services(app.config())
    report = rpo(services.config, services=services)

    def human() -> None:
        print_table(["recovery point", "name", "at", "age", "within target"],
                    [(p["kind"], p["name"] or "-", p["at"] or "-",
                      format_duration(p["age_seconds"]) if p["age_seconds"] is not None else p["detail"],
                      "yes" if p["within_target"] else "no") for p in report["points"]],
                    title=f"RPO target {format_duration(report['target_seconds'])} ({report['env']})")

    emit(app, report, human)
    if not report["ok"]:
        say(f"error: no recovery point is within the RPO target of {format_duration(report['target_seconds'])}")
        raise click.exceptions.Exit(3)


@db.command("guard", context_settings={"allow_interspersed_args": False})
@click.option("--snapshot", is_flag=True, help="Take an RDS snapshot (aws.db_instance) instead of a logical backup.")
@click.option("--stage", is_flag=True, help="Also stage the backup (a later restore of it is a file copy).")
@click.option("--instance", metavar="ID", help="RDS instance for --snapshot (default: aws.db_instance).")
@jobs_option
@common_options()
@click.argument("command", nargs=-1, type=click.UNPROCESSED, required=True)
@pass_app
def guard_command(app: AppContext, snapshot: bool, stage: bool, instance: str | None, jobs: int | None,
                  command: tuple[str, ...]) -> None:
    """Run a migration COMMAND with a verified backup taken just before it, and remember the pair.

    Takes a verified backup (or with --snapshot an RDS snapshot, waited for), reads
    _prisma_migrations, runs COMMAND, reads it again, and records which migrations
    COMMAND applied (or left failed) in the backup's manifest and the journal:
    'rollback db restore --before-migration NAME' later picks exactly that backup.
    COMMAND's exit status is rollback's; when it fails, the output says which backup
    to restore. With --json, COMMAND's output goes to stderr. Exit 2 when COMMAND
    cannot be found (nothing is done).

    \b
    Example:
      rollback db guard -- npx prisma migrate deploy
      rollback db guard --stage -- ./scripts/migrate.sh
      rollback db guard --snapshot -- npx prisma migrate deploy
    """
    from rollback.commands.db import handlers as commands
    from rollback.commands.db.guard import plan_guard, restore_hint
    from rollback.redact import redact

    services = Services(app.config())
    config = services.config
    plan = plan_guard(config, list(command), snapshot=snapshot, stage=stage, instance=instance, jobs=jobs,
                      services=services)
    handlers = commands.DbHandlers(services, guard_stdout_to_stderr=app.json)
    # A failing command fails the 'outcome' step with the command's exit status (the error names the backup).
    outcome = run_plan(app, plan, handlers.handlers(), dry_run=False, yes=True, action="guard the command",
                       confirm_first=False)
    record = dict(outcome.result_of("record"))

    def human() -> None:
        what = f"backup {record.get('backup')}" if record.get("backup") else f"snapshot {record.get('snapshot')}"
        say(f"guard: {what} taken before the command; the command exited with 0")
        say(f"guard: migrations applied: {', '.join(record.get('applied') or []) or 'none'}"
            + (f"; failed: {', '.join(record['failed'])}" if record.get("failed") else ""))
        say(f"guard: to go back to before it: {restore_hint(record)}")

    emit(app, redact({"ok": True, **outcome.to_dict(), "record": record, "exit_code": 0,
                      "restore_with": restore_hint(record)}), human)


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
    from rollback.commands.db import migrations as db_migrations

    services = Services(app.config())
    report = db_migrations.migrations(services.config, services=services)

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
@yes_option
@common_options()
@pass_app
def resolve_command(app: AppContext, rolled_back: str | None, applied: str | None, dry_run: bool,
                    yes: bool) -> None:
    """Do what 'prisma migrate resolve' does, under Prisma's advisory lock.

    Errors carry Prisma's codes: P3011 never applied, P3012 not in a failed state,
    P3008 already applied, P3017 no local migration directory.

    \b
    Example:
      rollback db resolve --rolled-back 20261128093000_add_stats --yes
      rollback db resolve --applied 20261128093000_add_stats --yes
    """
    from rollback.commands.db import migrations as db_migrations

    services = Services(app.config())
    plan = db_migrations.plan_resolve(services.config, rolled_back=rolled_back, applied=applied, services=services)
    outcome = _apply(app, plan, dry_run=dry_run, yes=yes, action="resolve the migration", confirm_always=True,
                     services=services)
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
    from rollback.commands.db import migrations as db_migrations

    services = Services(app.config())
    plan = db_migrations.plan_down(services.config, name,
                                   skip_emergency_reason=_skip_reason(skip_emergency_backup, reason), services=services)
    outcome = _apply(app, plan, dry_run=dry_run, yes=yes, action=f"run the down migration of {name}", services=services)
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
    from rollback.commands.db import migrations as db_migrations

    services = Services(app.config())
    report = db_migrations.verify(services.config, baseline=baseline, tolerance=tolerance, services=services)

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
    from rollback.commands.db import rds as db_rds

    services = Services(app.config())
    report = db_rds.snapshots(services.config, instance, services=services)

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
@yes_option
@common_options()
@pass_app
def snapshot_create_command(app: AppContext, snapshot_id: str | None, instance: str | None, wait: bool,
                            dry_run: bool, yes: bool) -> None:
    """Create a manual snapshot of the RDS instance.

    \b
    Example:
      rollback db snapshot create --id before-migration --wait --yes
    """
    from rollback.commands.db import rds as db_rds

    services = Services(app.config())
    plan = db_rds.plan_snapshot_create(services.config, instance=instance, snapshot_id=snapshot_id, wait=wait,
                                         services=services)
    outcome = _apply(app, plan, dry_run=dry_run, yes=yes, action="create the snapshot", confirm_always=True,
                     services=services)
    emit(app, {"ok": True, **outcome.to_dict()}, lambda: _step_lines(outcome))


@db.command("rds-restore")
@click.option("--snapshot", metavar="ID", help="Restore this snapshot.")
@click.option("--to-time", metavar="TIME", help="Point in time (ISO-8601 UTC or '15m ago').")
@click.option("--latest", is_flag=True, help="The latest restorable time.")
@click.option("--target", required=True, metavar="NEW_ID", help="Identifier of the NEW instance.")
@click.option("--instance", metavar="ID", help="Source instance for --to-time/--latest (default: aws.db_instance).")
@click.option("--wait", is_flag=True, help="Wait until the new instance is available (and has applied what a restore "
              "cannot set) and print its endpoint.")
@dry_run_option
@yes_option
@common_options()
@pass_app
def rds_restore_command(app: AppContext, snapshot: str | None, to_time: str | None, latest: bool, target: str,
                        instance: str | None, wait: bool, dry_run: bool, yes: bool) -> None:
    """Restore RDS into a NEW instance from a snapshot or a point in time (the source is never touched).

    Validated before any AWS change: the time lies in the restorable window, the
    target does not exist, the snapshot is available. The new instance copies the
    source's settings; what no restore call can set (the managed master password,
    Performance Insights, enhanced monitoring) is turned on once it is available.

    \b
    Example:
      rollback db rds-restore --to-time "15m ago" --target app-db-restored --wait --yes
      rollback db rds-restore --snapshot before-migration --target app-db-restored --yes
    """
    from rollback.commands.db import rds as db_rds

    services = Services(app.config())
    plan = db_rds.plan_rds_restore(services.config, snapshot=snapshot, to_time=to_time, latest=latest,
                                     target=target, instance=instance, wait=wait, services=services)
    outcome = _apply(app, plan, dry_run=dry_run, yes=yes, action="restore into a new RDS instance",
                     confirm_always=True, services=services)
    result = dict(outcome.result_of("rds-restore"))
    if any(item.step.id == "rds-settings" for item in outcome.steps):
        result = dict(outcome.result_of("rds-settings").get("instance") or result)

    def human() -> None:
        _step_lines(outcome)
        if not dry_run:
            secret = f"; master password in Secrets Manager: {result['master_secret_arn']}" \
                if result.get("master_secret_arn") else ""
            say(f"new instance {result.get('id')} ({result.get('status')}): endpoint "
                f"{result.get('endpoint')}:{result.get('port')}{secret}", err=False)

    emit(app, {"ok": True, **outcome.to_dict(), "instance": result}, human)
