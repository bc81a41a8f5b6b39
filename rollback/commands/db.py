"""``rollback db``: backups, restore-then-swap, Prisma migrations, integrity, RDS.

The runbook's database option drops the live database and then restores into
an empty one: the database is absent for the whole restore, and a bad backup
means data loss. Here a restore never touches the live database until a
complete, verified copy sits beside it:

1. the backup is verified (checksums, ``pg_restore --list``) before anything;
2. the role's rights are checked, naming the missing one;
3. an emergency backup of the live database is taken (skipping it needs a
   journaled reason);
4. the backup is restored into a new database beside the live one, with
   parallel jobs, and its row counts are checked against the manifest;
5. with ``swap``, the live database is renamed aside (kept) and the restored one
   takes its name: downtime is that rename window, measured.

Every state-changing verb is a :class:`~rollback.plan.Plan` run by
:func:`rollback.runner.execute` with the handlers built by :class:`DbHandlers`:
each a read-only check (a backup already taken, a swap already made is "already
done") and an act.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rollback.adapters.pg_restore import IN_PLACE_SESSION, SPLIT_MIN_ROWS, restore_archive
from rollback.backups import MANIFEST_FORMAT, MANIFEST_SUFFIX
from rollback.context import Services
from rollback.errors import BadInput, ChecksFailed, ConfigError, DatabaseError, RollbackError, UnsafePrecondition
from rollback.plan import Plan, Step
from rollback.redact import redact, redact_text
from rollback.runner import Check, handler, read_only

if TYPE_CHECKING:
    from rollback.adapters.pg_tools import PgTools
    from rollback.adapters.postgres import Database, TableCount, Target
    from rollback.adapters.rds import RdsAdapter
    from rollback.backups import SourceIdentity
    from rollback.config import Config
    from rollback.journal import Journal
    from rollback.runner import ExecutionResult, StepContext, StepHandler
    from rollback.standby import StandbyChoice

__all__ = [
    "DbHandlers",
    "backup",
    "list_backups",
    "migrations",
    "plan_backup",
    "plan_down",
    "plan_prune",
    "plan_rds_restore",
    "plan_resolve",
    "plan_restore",
    "plan_salvage",
    "plan_snapshot_create",
    "plan_swap",
    "rpo",
    "run",
    "salvage",
    "snapshots",
    "verify",
]

DEFAULT_COMPRESS = 6

Progress = Callable[[str], None]

def default_jobs() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def _stamp(now: dt.datetime | None = None) -> str:
    return (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")


def _db_stamp(now: dt.datetime | None = None) -> str:
    return (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%d%H%M%S")


# -- wiring ---------------------------------------------------------------------------------------------

def database_target(config: Config) -> Target:
    from rollback.adapters.postgres import Target

    url = config.database_url()
    if not url:
        raise ConfigError(f"{config.env.database.url_env} is not set",
                          f"export {config.env.database.url_env}=postgresql://USER:PASSWORD@HOST:PORT/DB",
                          key="database.url_env")
    return Target.from_url(url, config.env.database.url_env)


def open_database(config: Config) -> Database:
    from rollback.adapters.postgres import Database

    return Database(database_target(config))


def tools_for(db: Database, environ: Mapping[str, str] | None = None) -> PgTools:
    from rollback.adapters.pg_tools import PgTools

    _, number = db.server_version()
    return PgTools.for_major(number // 10000, environ)


# -- backups ----------------------------------------------------------------------------------------------

def _manifest_path(dump_dir: Path) -> Path:
    from rollback.backups import manifest_path

    return manifest_path(dump_dir)


def live_identity(db: Database) -> SourceIdentity:
    """The identity of the live database (system identifier read from the server)."""
    from rollback.backups import SourceIdentity

    return SourceIdentity.from_dict(db.identity())


def config_identity(config: Config) -> SourceIdentity:
    """The live database as the URL names it (no connection: no system identifier)."""
    from rollback.backups import SourceIdentity

    target = database_target(config)
    return SourceIdentity(target.dbname, target.params.get("host"), target.params.get("port"))


def take_backup(db: Database, tools: PgTools, out_dir: Path, *, jobs: int, kind: str = "manual",
                progress: Progress | None = None, compress: int = DEFAULT_COMPRESS) -> dict[str, Any]:
    """Dump the live database (one exported snapshot), checksum and verify it, write the manifest.

    On any failure the partial dump is removed and nothing is reported as a backup.
    While it runs, ``<name>.inprogress`` is locked: a dump directory without a
    manifest and without that lock was left by a backup that died (``db prune``
    removes it).
    """
    from rollback.adapters.pg_tools import remove_tree
    from rollback.backups import INPROGRESS_SUFFIX, backup_in_progress

    with _disk_errors(out_dir):
        out_dir.mkdir(parents=True, exist_ok=True)
    dbname = db.target.dbname
    base = f"{dbname}-{_stamp()}" + ("-emergency" if kind == "emergency" else "")
    name, n = base, 1
    while any((out_dir / (name + suffix)).exists() for suffix in ("", MANIFEST_SUFFIX, INPROGRESS_SUFFIX)):
        n += 1
        name = f"{base}-{n}"
    dump_dir = out_dir / name
    started = time.monotonic()
    created = dt.datetime.now(dt.UTC)
    try:
        with _disk_errors(out_dir), backup_in_progress(out_dir, name, {"pid": os.getpid(), "kind": kind}):
            manifest = _dump_and_describe(db, tools, dump_dir, name=name, kind=kind, created=created, jobs=jobs,
                                          compress=compress, progress=progress, started=started)
            path = _manifest_path(dump_dir)
            tmp = path.with_name(path.name + ".tmp")
            # Not redact()ed: it holds catalog names and checksums that a short password could
            # match by chance; it never holds the password (host, port and user only).
            tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
            os.replace(tmp, path)
    except BaseException:
        remove_tree(dump_dir)
        _manifest_path(dump_dir).with_name(_manifest_path(dump_dir).name + ".tmp").unlink(missing_ok=True)
        raise
    return {**manifest, "manifest_path": str(path), "path": str(dump_dir)}


def _dump_and_describe(db: Database, tools: PgTools, dump_dir: Path, *, name: str, kind: str,
                       created: dt.datetime, jobs: int, compress: int, progress: Progress | None,
                       started: float) -> dict[str, Any]:
    """pg_dump from one exported snapshot, then the manifest (counts, source, checksums), verified."""
    from rollback.adapters.pg_tools import file_checksums
    from rollback.adapters.postgres import db_errors
    from rollback.adapters.prisma import PrismaMigrations
    from rollback.backups import verify_backup

    version, _ = db.server_version()
    source = db.identity()
    with db.exported_snapshot() as (snapshot, conn):
        counts = db.table_counts(conn=conn)
        encoding = db.encoding(conn)
        with db_errors("reading the database's migrations"):
            prisma = PrismaMigrations(conn)
            managed = prisma.is_managed()
            head = prisma.head() if managed else None
        counted = time.monotonic()
        if progress:
            progress(f"counted {len(counts)} tables ({sum(c.rows for c in counts)} rows); dumping")
        dump = tools.dump(db.target, dump_dir, jobs=jobs, compress=compress, snapshot=snapshot,
                          progress=progress, total=len(counts))
    dumped = time.monotonic()
    files = file_checksums(dump_dir)
    hashed = time.monotonic()
    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "name": name,
        "kind": kind,
        "created_at": created.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "database": db.target.dbname,
        "host": db.target.params.get("host"),
        "port": db.target.params.get("port"),
        "user": db.target.user,
        "source": source,
        "server_version": version,
        "encoding": encoding,
        "pg_dump_version": tools.version("pg_dump"),
        "dump_format": "directory",
        "dump_dir": name,
        "jobs": jobs,
        "compression": compress,
        "tables": [c.to_dict() for c in counts],
        "total_rows": sum(c.rows for c in counts),
        "prisma_managed": managed,
        "prisma_migration_head": head,
        "files": files,
        "total_bytes": sum(int(str(f["bytes"])) for f in files),
    }
    check = verify_backup(manifest, dump_dir, tools)
    verified = time.monotonic()
    manifest["verified"] = {"toc_entries": check["toc_entries"], "checksums": "match"}
    manifest["durations"] = {"count_seconds": round(counted - started, 3),
                             "dump_seconds": round(dump.seconds, 3),
                             "checksum_seconds": round(hashed - dumped, 3),
                             "verify_seconds": round(verified - hashed, 3),
                             "total_seconds": round(verified - started, 3)}
    return manifest


@contextlib.contextmanager
def _disk_errors(out_dir: Path) -> Iterator[None]:
    """A full disk or a read-only directory is the environment's fault: one line, not a traceback."""
    try:
        yield
    except OSError as exc:
        raise DatabaseError(f"writing the backup to {out_dir} failed: {exc.strerror or exc}",
                            "check the free space and permissions of the backups directory") from exc


def verify_backup(manifest: Mapping[str, Any], dump_dir: Path, tools: PgTools) -> dict[str, Any]:
    """Refuse a damaged backup (see :func:`rollback.backups.verify_backup`)."""
    from rollback.backups import verify_backup as verify

    return verify(manifest, dump_dir, tools)


def resolve_backup(config: Config, ref: str, *, live: SourceIdentity | None = None) -> tuple[dict[str, Any], Path]:
    """A backup given as a manifest path, a dump directory, a name in the backups dir, or ``latest``
    (the newest backup of ``live`` when given)."""
    from rollback.backups import resolve_backup as resolve

    return resolve(config.backups_dir, ref, live=live)


def list_backups(directory: Path, live: SourceIdentity | None = None) -> list[dict[str, Any]]:
    """Backups in ``directory`` with their manifests, newest first (see :func:`rollback.backups.list_backups`)."""
    from rollback.backups import list_backups as listing

    return listing(directory, live)


# -- plans ------------------------------------------------------------------------------------------------

def plan_backup(config: Config, *, out: Path | None = None, jobs: int | None = None, stage: bool = False,
                kind: str = "manual") -> Plan:
    """A verified backup; with ``stage``, also restored into a standby beside the live database
    (and standbys beyond ``database.keep_standbys`` dropped once the new one is ready)."""
    target = database_target(config)
    directory = out or config.backups_dir
    jobs = jobs or default_jobs()
    steps = [Step("backup", "db.backup", f"pg_dump (directory format, {jobs} jobs) into {directory}",
                  target=f"database {target.dbname}", params={"out": str(directory), "jobs": jobs, "kind": kind})]
    notes: list[str] = []
    if stage:
        steps += _stage_steps(config, jobs)
        notes.append("the standby uses as much disk as the database; it refuses connections and is kept until "
                     f"'rollback db prune' (the {config.env.database.keep_standbys} newest are kept)")
    return Plan.of("db backup" + (" --stage" if stage else ""), config.env_name, steps, notes)


def _stage_steps(config: Config, jobs: int, *, after: str = "backup") -> list[Step]:
    """Restore the backup that step ``after`` takes into a new standby; drop the standbys that
    then exceed ``database.keep_standbys``."""
    from rollback.setaside import set_aside_name

    db = open_database(config)
    live = db.target.dbname
    standby = set_aside_name(live, "standby", _db_stamp())
    keep = config.env.database.keep_standbys
    steps = [Step("stage", "db.stage", f"restore the new backup into standby {standby} ({jobs} jobs), check its row "
                  "counts, close it to connections", target=standby,
                  params={"database": standby, "like": live, "jobs": jobs, "backup_step": after})]
    old = [d for d in _classified(db, config, keep_standbys=max(0, keep - 1)) if d["role"] == "standby"
           and d["prunable"]]
    steps += [Step(f"drop-standby-{n}", "db.drop_set_aside", f"drop older standby {d['database']} "
                   f"(keeping the {keep} newest)", target=d["database"],
                   params={"database": d["database"], "keep_standbys": max(0, keep - 1)}, destructive=True)
              for n, d in enumerate(old, start=1)]
    return steps


def backup(config: Config, *, out: Path | None = None, jobs: int | None = None, journal: Journal | None = None,
           progress: Progress | None = None, stage: bool = False) -> dict[str, Any]:
    """Take a verified backup (and stage it); returns its manifest (plus ``manifest_path``/``path``,
    and ``standby`` when staged)."""
    outcome = run(config, plan_backup(config, out=out, jobs=jobs, stage=stage), journal=journal, progress=progress)
    result = dict(outcome.result_of("backup"))
    if stage:
        result["standby"] = outcome.result_of("stage")["database"]
    return result


def standbys(config: Config, *, connect_timeout: int = 3) -> dict[str, dict[str, Any]]:
    """Backup name -> its fresh standby (``{"standby": name}``) or why none is usable (``reason``)."""
    from rollback.adapters.postgres import Database
    from rollback.backups import list_backups as listing
    from rollback.standby import choose_standby

    db = Database(database_target(config), connect_timeout=connect_timeout)
    rows = db.databases_with_prefix("")
    out: dict[str, dict[str, Any]] = {}
    for item in listing(config.backups_dir):
        if item.get("status") != "ok":
            continue
        choice = choose_standby(rows, db.target.dbname, item, db.database_facts)
        if choice.staged or choice.reason:
            out[str(item["name"])] = {"standby": choice.name, "reason": choice.reason}
    return out


def _emergency_step(reason: str | None, config: Config, jobs: int) -> Step:
    if reason is not None:
        if not reason.strip():
            raise BadInput("--skip-emergency-backup needs a non-empty --reason", "say why, it is journaled")
        why = redact_text(reason.strip())  # free text, journaled and printed: redacted where it enters
        return Step("emergency-backup", "db.skip_emergency_backup",
                    f"emergency backup SKIPPED (reason: {why})", params={"reason": why})
    return Step("emergency-backup", "db.backup", f"emergency backup of the live database into {config.backups_dir}",
                params={"out": str(config.backups_dir), "jobs": jobs, "kind": "emergency"})


def plan_restore(config: Config, backup_ref: str | None, *, swap: bool = False, in_place: bool = False,
                 skip_emergency_reason: str | None = None, jobs: int | None = None,
                 from_other_database: bool = False, before_migration: str | None = None) -> Plan:
    """Plan a restore of ``backup_ref``: verify, rights, emergency backup, restore beside, counts, swap.

    The backup must have been taken from this environment's database (``latest``
    is the newest such backup); another database's backup is refused unless
    ``from_other_database``.
    """
    from rollback.backups import check_source, source_of
    from rollback.setaside import set_aside_name

    if swap and in_place:
        raise BadInput("--swap and --in-place exclude each other", "--swap restores beside, then swaps")
    db = open_database(config)
    live = db.target.dbname
    identity = live_identity(db)
    if bool(backup_ref) == bool(before_migration):
        raise BadInput("give a BACKUP or --before-migration NAME (one of them)",
                       "rollback db restore latest --swap, or rollback db restore --before-migration NAME --swap")
    if before_migration:
        backup_ref = _backup_before_migration(config, identity, before_migration)
    assert backup_ref is not None
    manifest, dump_dir = resolve_backup(config, backup_ref, live=identity)
    other = check_source(manifest, identity, allow_other=from_other_database)
    jobs = jobs or default_jobs()
    stamp = _db_stamp()
    restored = set_aside_name(live, "restore", stamp)
    aside = set_aside_name(live, "replaced", stamp)
    name = str(manifest.get("name", dump_dir.name))
    source = source_of(manifest)
    common = {"manifest": str(_manifest_path(dump_dir)), "dump_dir": str(dump_dir)}
    choice = None if in_place else _standby_for(db, manifest)
    staged = choice is not None and choice.staged
    if staged:
        assert choice is not None and choice.name is not None
        first = Step("check-standby", "db.check_standby",
                     f"check standby {choice.name} of backup {name} (database {source.describe()}) is still fresh",
                     params={**common, "standby": choice.name, "live": identity.to_dict(),
                             "from_other_database": from_other_database})
    else:
        first = Step("verify-backup", "db.verify_backup",
                     f"verify backup {name} of database {source.describe()} (checksums, pg_restore --list)",
                     params={**common, "live": identity.to_dict(), "from_other_database": from_other_database})
    steps = [
        first,
        Step("check-rights", "db.check_rights", f"check the role's rights on {live}",
             params={"live": live, "restored": None if in_place else restored, "swap": swap,
                     "in_place": in_place}),
    ]
    emergency = _emergency_step(skip_emergency_reason, config, jobs)
    if not staged:
        steps.append(emergency)
    notes: list[str] = [f"backup {name} was taken at {manifest.get('created_at')} from database "
                        f"{source.describe()}"]
    if other:
        notes.append(other)
    if staged and choice is not None:
        notes.append(f"backup {name} is staged: the restore clones standby {choice.name} (a file copy; the "
                     "standby is kept for a second attempt)")
    elif choice is not None and choice.reason:
        notes.append(f"{choice.reason}; restoring from the dump instead")
    if in_place:
        steps += [
            Step("restore", "db.restore_in_place",
                 f"restore {name} IN PLACE (pg_restore --clean, one transaction)", target=live,
                 params={**common, "database": live}, destructive=True),
            Step("check-counts", "db.check_counts", f"check row counts of {live} against the manifest",
                 params={**common, "database": live, "in_place": True}),
        ]
    else:
        if staged and choice is not None:
            restore = Step("restore", "db.clone_standby", f"clone standby {choice.name} into a new database "
                           "(CREATE DATABASE ... TEMPLATE, file copy)", target=restored,
                           params={**common, "database": restored, "standby": choice.name, "like": live})
        else:
            restore = Step("restore", "db.restore_beside", f"restore {name} into a new database ({jobs} jobs)",
                           target=restored, params={**common, "database": restored, "jobs": jobs, "like": live})
        steps += [
            restore,
            Step("check-counts", "db.check_counts", f"check row counts of {restored} against the manifest",
                 params={**common, "database": restored}),
        ]
        if staged:
            # After the clone, right before the swap: the clone's checkpoint then does not have to write
            # the pages the backup's reads dirtied (hint bits), and the backup is as recent as it can be.
            steps.append(emergency)
        if swap:
            steps.append(Step("swap", "db.swap", f"swap: {live} -> {aside} (kept), {restored} -> {live}",
                              target=live, params={"restored": restored, "aside": aside},
                              destructive=True))
        else:
            notes.append(f"the restored database stays beside the live one; swap with: "
                         f"rollback db swap {restored} --yes")
    notes.append("the live database is never dropped: a swap keeps it as <name>_replaced_<time> "
                 "(remove later with 'rollback db prune')")
    return Plan.of(f"db restore {name}" + (" --swap" if swap else "") + (" --in-place" if in_place else ""),
                   config.env_name, steps, notes)


def _backup_before_migration(config: Config, identity: SourceIdentity, migration: str) -> str:
    """The manifest path of the newest backup of this database that 'db guard' took before ``migration``."""
    from rollback.commands.db_guard import backups_before_migration

    found = backups_before_migration([b for b in list_backups(config.backups_dir, identity)
                                      if b.get("this_database")], migration)
    if not found:
        raise BadInput(f"no backup of this database was taken by 'rollback db guard' before migration {migration}",
                       "list backups with 'rollback db backups --json' (their 'guard' field names the migrations)")
    return str(found[0]["manifest_path"])


def _standby_for(db: Database, manifest: Mapping[str, Any]) -> StandbyChoice:
    from rollback.standby import choose_standby

    return choose_standby(db.databases_with_prefix(""), db.target.dbname, manifest, db.database_facts)


def plan_swap(config: Config, restored: str) -> Plan:
    from rollback.setaside import parse_set_aside_name, set_aside_name

    db = open_database(config)
    live = db.target.dbname
    if restored == live:
        raise BadInput(f"{restored} is the live database", "name the restored database to swap in")
    parsed = parse_set_aside_name(restored, live)
    if parsed is None or parsed[0] != "restore":
        # Only a copy that 'rollback db restore' made (and count-checked) may take the live name.
        raise BadInput(f"{restored} was not restored by rollback (its name is not {live}_restore_<YYYYmmddHHMMSS>)",
                       "swap in a database listed by 'rollback db prune --dry-run', or run "
                       "'rollback db restore BACKUP --swap'")
    if not db.exists(restored):
        raise BadInput(f"no database {restored}", "list the restored copies with 'rollback db prune --dry-run'")
    aside = set_aside_name(live, "replaced", _db_stamp())
    return Plan.of(f"db swap {restored}", config.env_name, [
        Step("check-rights", "db.check_rights", f"check the role's rights on {live}",
             params={"live": live, "restored": None, "swap": True, "in_place": False, "swap_in": restored}),
        Step("swap", "db.swap", f"swap: {live} -> {aside} (kept), {restored} -> {live}", target=live,
             params={"restored": restored, "aside": aside}, destructive=True),
    ], ["the replaced database is kept; remove it later with 'rollback db prune'"])


COPY_ACTIONS = ("db.restore_beside", "db.clone_standby", "db.stage")  # the steps that create a database


def _journaled_copies(config: Config) -> dict[str, str]:
    """Databases that journaled runs planned to create beside the live one: name -> run id.

    A copy is marked right after ``CREATE DATABASE``; a kill between the two leaves it
    unmarked, and the journal is then the proof that rollback made it.
    """
    from rollback.journal import list_runs

    out: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for run in list_runs(config.journal_dir):
            for entry in run.entries:
                if entry.get("event") != "step_planned" or not isinstance(entry.get("steps"), list):
                    continue
                for step in entry["steps"]:
                    params = step.get("params") if isinstance(step, dict) else None
                    if isinstance(params, dict) and step.get("action") in COPY_ACTIONS \
                            and isinstance(params.get("database"), str):
                        out.setdefault(params["database"], run.run_id)
    return out


def set_aside_databases(config: Config) -> list[dict[str, Any]]:
    """Databases beside the live one that rollback set aside (``prunable``), and look-alikes it did not
    make or must keep (``prunable`` false, with the reason)."""
    return _classified(open_database(config), config)


def _classified(db: Database, config: Config, *, keep_standbys: int | None = None) -> list[dict[str, Any]]:
    from rollback.setaside import classify_set_aside

    live = db.target.dbname
    rows = db.databases_with_prefix("")
    keep = config.env.database.keep_standbys if keep_standbys is None else keep_standbys
    return classify_set_aside(rows, live, live_exists=any(r["name"] == live for r in rows),
                              journaled=_journaled_copies(config), keep_standbys=keep)


def plan_prune(config: Config, *, keep_standbys: int | None = None) -> Plan:
    """Drop the databases rollback set aside (standbys beyond the ``keep_standbys`` newest, default
    ``database.keep_standbys``) and remove interrupted backups of this database."""
    from rollback.backups import incomplete_backups

    db = open_database(config)
    keep = config.env.database.keep_standbys if keep_standbys is None else keep_standbys
    found = _classified(db, config, keep_standbys=keep)
    live = db.target.dbname
    steps = [Step(f"drop-{n}", "db.drop_set_aside", f"drop {d['database']} ({d['kind']}, {d['bytes']} bytes)",
                  target=d["database"], params={"database": d["database"], "evidence": d["evidence"],
                                                "keep_standbys": keep},
                  destructive=True)
             for n, d in enumerate((d for d in found if d["prunable"]), start=1)]
    incomplete = [b for b in incomplete_backups(config.backups_dir, live) if not b["in_progress"]]
    steps += [Step(f"remove-{n}", "db.remove_incomplete_backup",
                   f"remove incomplete backup {b['name']} (no manifest: interrupted; {b['bytes']} bytes)",
                   target=b["path"], params={"directory": str(config.backups_dir), "name": b["name"]},
                   destructive=True)
              for n, b in enumerate(incomplete, start=1)]
    notes = [f"kept {d['database']}: {d['reason']}" for d in found if not d["prunable"]]
    if not steps:
        notes.append("nothing to prune: no databases set aside by earlier restores or swaps, no interrupted backups")
    return Plan.of("db prune", config.env_name, steps, notes)


def migrations_dir(config: Config) -> Path:
    return config.resolve_path(config.env.database.migrations_dir)


def plan_resolve(config: Config, *, rolled_back: str | None, applied: str | None) -> Plan:
    if bool(rolled_back) == bool(applied):
        raise BadInput("give exactly one of --rolled-back NAME or --applied NAME")
    target = database_target(config)
    if rolled_back:
        step = Step("resolve", "db.resolve", f"mark migration {rolled_back} rolled back",
                    target=f"database {target.dbname}", params={"rolled_back": rolled_back})
    else:
        step = Step("resolve", "db.resolve", f"mark migration {applied} applied (checksum of local migration.sql)",
                    target=f"database {target.dbname}", params={"applied": applied,
                                                                 "migrations_dir": str(migrations_dir(config))})
    return Plan.of("db resolve", config.env_name, [step])


def plan_down(config: Config, name: str, *, skip_emergency_reason: str | None = None,
              jobs: int | None = None) -> Plan:
    script = migrations_dir(config) / name / "down.sql"
    if not script.is_file():
        raise BadInput(f"no down migration {script}",
                       "write it by hand or with 'prisma migrate diff --from-schema-datamodel ... --script'")
    target = database_target(config)
    return Plan.of(f"db down {name}", config.env_name, [
        Step("check-migration", "db.check_migration", f"check that {name} is applied", params={"name": name}),
        _emergency_step(skip_emergency_reason, config, jobs or default_jobs()),
        Step("down", "db.down", f"run {script.name} of {name} in one transaction and mark it rolled back",
             target=f"database {target.dbname}", params={"name": name, "script": str(script)}, destructive=True),
    ])


# -- restore -----------------------------------------------------------------------------------------------

def compare_counts(db: Database, name: str, manifest: Mapping[str, Any]) -> tuple[list[TableCount], list[str]]:
    """Exact row counts of database ``name`` against the manifest: ``(counts, mismatches)``."""
    from rollback.adapters.postgres import db_errors

    expected = {(str(t["schema"]), str(t["name"])): int(t["rows"]) for t in manifest["tables"]}
    with db.connect(name) as conn, db_errors(f"checking the row counts of {name}"):
        present = db.tables(conn)
        missing = sorted(set(expected) - present)
        counts = db.table_counts(conn=conn, tables=sorted(set(expected) & present))
    mismatches = [f"{c.key}: {c.rows} rows, backup had {expected[(c.schema, c.name)]}" for c in counts
                  if c.rows != expected[(c.schema, c.name)]]
    mismatches += [f"{'.'.join(m)}: missing" for m in missing]
    return counts, mismatches


# -- handlers -------------------------------------------------------------------------------------------------

@dataclass
class DbHandlers:
    """The step handlers of every db plan, sharing one Database and one set of pg tools."""

    config: Config
    rds: RdsAdapter | None = None
    on_restore_start: Callable[[Any], None] | None = None  # test seam: receives the pg_restore process
    lock_timeout: float = 10.0
    split_min_rows: int = SPLIT_MIN_ROWS
    guard_stdout_to_stderr: bool = False  # 'db guard --json': the guarded command's output goes to stderr
    services: Services | None = None  # where the database, the pg tools and RDS come from (built on first use)

    def __post_init__(self) -> None:
        if self.services is None:
            self.services = Services(self.config, rds=self.rds)

    @property
    def _services(self) -> Services:
        assert self.services is not None  # set in __post_init__
        return self.services

    @property
    def db(self) -> Database:
        return self._services.database()

    @property
    def tools(self) -> PgTools:
        return self._services.pg_tools()

    def handlers(self) -> dict[str, StepHandler]:
        return {
            "db.backup": handler(self.backup, self.check_backup),
            "db.skip_emergency_backup": handler(self.skip_emergency_backup, self.check_skip_emergency_backup),
            "db.verify_backup": read_only(self.verify_backup),
            "db.check_rights": read_only(self.check_rights),
            "db.restore_beside": handler(self.restore_beside, self.check_restore_beside),
            "db.restore_in_place": handler(self.restore_in_place, self.check_restore_in_place),
            "db.check_counts": handler(self.check_counts, self.check_check_counts),
            "db.swap": handler(self.swap, self.check_swap),
            "db.drop_set_aside": handler(self.drop_set_aside, self.check_drop_set_aside),
            "db.remove_incomplete_backup": handler(self.remove_incomplete_backup,
                                                   self.check_remove_incomplete_backup),
            "db.stage": handler(self.stage, self.check_stage),
            "db.check_standby": read_only(self.check_standby),
            "db.clone_standby": handler(self.clone_standby, self.check_clone_standby),
            "db.salvage_compare": read_only(self.salvage_compare),
            "db.salvage_apply": handler(self.salvage_apply, self.check_salvage_apply),
            "db.guard_migrations": handler(self.guard_migrations, self.check_guard_migrations),
            "db.guard_run": handler(self.guard_run, self.check_guard_run),
            "db.guard_record": handler(self.guard_record, self.check_guard_record),
            "db.guard_outcome": read_only(self.guard_outcome),
            "db.resolve": handler(self.resolve, self.check_resolve),
            "db.check_migration": read_only(self.check_migration),
            "db.down": handler(self.down, self.check_down),
            "rds.create_snapshot": handler(self.rds_create_snapshot, self.check_rds_create_snapshot),
            "rds.restore": handler(self.rds_restore, self.check_rds_restore),
        }

    mapping = handlers  # the name callers used before the handlers were split into check and act

    # backups
    def check_backup(self, step: Step, ctx: StepContext) -> Check:
        out = Path(str(step.params["out"]))
        would = f"dump {self.db.target.dbname} into {out}"
        earlier = ctx.earlier.get(step.id)
        if earlier is not None and earlier.get("manifest_path") and Path(str(earlier["manifest_path"])).is_file() \
                and Path(str(earlier.get("path"))).is_dir():
            return Check(True, dict(earlier), would)
        return Check(False, {"kind": step.params["kind"]}, would)

    def backup(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        out = Path(str(step.params["out"]))
        manifest = take_backup(self.db, self.tools, out, jobs=int(step.params["jobs"]),
                               kind=str(step.params["kind"]), progress=ctx.progress)
        ctx.note(f"backup {manifest['name']}: {manifest['total_bytes']} bytes, {len(manifest['tables'])} tables, "
                 f"verified")
        return {"name": manifest["name"], "manifest_path": manifest["manifest_path"], "path": manifest["path"],
                "total_bytes": manifest["total_bytes"], "total_rows": manifest["total_rows"],
                "tables": len(manifest["tables"]), "prisma_migration_head": manifest["prisma_migration_head"],
                "seconds": manifest["durations"]["total_seconds"], "manifest": manifest}

    def check_skip_emergency_backup(self, step: Step, ctx: StepContext) -> Check:
        return Check(False, {"skipped": True, "reason": step.params["reason"]},
                     f"skip the emergency backup (reason: {step.params['reason']})")

    def skip_emergency_backup(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        ctx.note(f"emergency backup skipped: {step.params['reason']}", reason=step.params["reason"])
        return {"skipped": True, "reason": step.params["reason"]}

    def _manifest(self, step: Step) -> tuple[dict[str, Any], Path]:
        from rollback.backups import load_manifest

        return load_manifest(Path(str(step.params["manifest"]))), Path(str(step.params["dump_dir"]))

    def verify_backup(self, step: Step, ctx: StepContext) -> Check:
        from rollback.backups import check_source, source_of

        manifest, dump_dir = self._manifest(step)
        note = check_source(manifest, live_identity(self.db),
                            allow_other=bool(step.params.get("from_other_database")))
        found = verify_backup(manifest, dump_dir, self.tools)
        return Check(False, {**found, "source": source_of(manifest).to_dict(), **({"note": note} if note else {})},
                     f"backup {found['backup']} verified: {found['files']} files, {found['toc_entries']} TOC entries")

    def _mark(self, ctx: StepContext, role: str, name: str, **details: Any) -> str:
        from rollback.setaside import Mark

        return Mark(role, ctx.run_id or "unjournaled", self.db.target.dbname, name, details=details).to_comment()

    def _is_marked(self, name: str, role: str, **expected: Any) -> bool:
        """``name`` carries rollback's mark for ``role`` (and the ``expected`` details)."""
        from rollback.setaside import Mark

        mark = Mark.from_comment(self.db.comment(name))
        return mark is not None and mark.role == role and mark.is_mark_of(name, self.db.target.dbname) \
            and all(mark.get(k) == v for k, v in expected.items())

    def check_rights(self, step: Step, ctx: StepContext) -> Check:
        return Check(False, self._rights(step, ctx), "the role's rights are sufficient")

    def _rights(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        live = str(step.params["live"])
        swap_in = step.params.get("swap_in")
        names = [live] + ([str(swap_in)] if swap_in else [])
        rights = self.db.rights(names)
        role = rights.role
        for name in names:
            if not self.db.exists(name):
                raise UnsafePrecondition(f"database {name} does not exist", "check the name and the database URL")
        restored = step.params.get("restored")
        # Resumed, the copy may be there from the run that stopped: the restore step deals with it.
        if restored and self.db.exists(str(restored)) and not ctx.resuming:
            raise UnsafePrecondition(f"database {restored} already exists", "wait a second and run it again")
        if not rights.superuser:
            if not step.params.get("in_place") and not rights.createdb:
                raise UnsafePrecondition(
                    f"role {role} lacks CREATEDB: it cannot create the database to restore into beside {live}",
                    f"ALTER ROLE {role} CREATEDB (as a superuser), or pass --in-place (still takes the "
                    "emergency backup first)", missing="CREATEDB")
            for name in names:
                if not rights.owns.get(name):
                    why = ("restoring in place drops and recreates its objects" if step.params.get("in_place")
                           else "renaming it needs ownership")
                    raise UnsafePrecondition(
                        f"role {role} does not own database {name}: {why}",
                        f"ALTER DATABASE {name} OWNER TO {role} (as a superuser or the owner), or use the "
                        "owner's URL", missing="OWNER")
            if step.params.get("swap") and not rights.createdb:
                raise UnsafePrecondition(f"role {role} lacks CREATEDB: renaming a database needs it",
                                         f"ALTER ROLE {role} CREATEDB (as a superuser)", missing="CREATEDB")
        return {"role": role, **rights.to_dict()}

    def check_restore_beside(self, step: Step, ctx: StepContext) -> Check:
        name = str(step.params["database"])
        manifest, _ = self._manifest(step)
        would = f"create {name} and pg_restore {manifest['name']} into it"
        earlier = ctx.earlier.get(step.id)
        if earlier is not None and self.db.exists(name):
            return Check(True, dict(earlier), would)
        if ctx.resuming and self.db.exists(name):
            would = f"drop the partial copy {name} the stopped run left, then {would}"
        return Check(False, {}, would)

    def restore_beside(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        name = str(step.params["database"])
        manifest, dump_dir = self._manifest(step)
        db = self.db
        started = time.monotonic()
        if ctx.resuming and db.exists(name):
            # This plan's own copy (its name is unique to the plan), half restored when the run stopped.
            ctx.note(f"dropping the partial copy {name} left by the stopped run")
            db.drop_database(name)
        db.create_database_like(name, str(step.params["like"]),
                                comment=self._mark(ctx, "restore", name, backup=manifest["name"], counts=None))
        try:
            rights = db.rights()
            loaded = restore_archive(db, self.tools, name, dump_dir, manifest, jobs=int(step.params["jobs"]),
                                     no_owner=not rights.superuser, progress=ctx.progress,
                                     on_start=self.on_restore_start, split_min_rows=self.split_min_rows)
        except BaseException as exc:
            # The half-restored copy is ours to remove; the live database was never touched.
            dropped = False
            with contextlib.suppress(DatabaseError):
                db.drop_database(name)
                dropped = True
            if isinstance(exc, DatabaseError):
                partial = (f"the partial copy {name} was dropped" if dropped else
                           f"the partial copy {name} could not be dropped; remove it with 'rollback db prune'")
                raise DatabaseError(f"{exc.message}; {partial}, the live database {db.target.dbname} is untouched",
                                    "check the backup and the server log") from exc
            raise
        return {"database": name, "seconds": round(time.monotonic() - started, 3), **loaded}

    def check_restore_in_place(self, step: Step, ctx: StepContext) -> Check:
        name = str(step.params["database"])
        manifest, _ = self._manifest(step)
        would = f"pg_restore --clean --single-transaction {manifest['name']} into {name}"
        earlier = ctx.earlier.get(step.id)
        if earlier is not None:  # one transaction: it happened whole (the row counts are checked next)
            return Check(True, dict(earlier), would)
        return Check(False, {}, would)

    def restore_in_place(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        name = str(step.params["database"])
        _, dump_dir = self._manifest(step)
        rights = self.db.rights()
        try:
            run = self.tools.restore(self.db.target, name, dump_dir, jobs=1, clean=True, single_transaction=True,
                                     no_owner=not rights.superuser, progress=ctx.progress,
                                     on_start=self.on_restore_start, session=IN_PLACE_SESSION)
        except DatabaseError as exc:
            raise DatabaseError(f"{exc.message}; the restore ran in one transaction and was rolled back, "
                                f"{name} is as it was", "check the backup and the server log") from exc
        return {"database": name, "seconds": round(run.seconds, 3)}

    def check_check_counts(self, step: Step, ctx: StepContext) -> Check:
        name = str(step.params["database"])
        manifest, _ = self._manifest(step)
        would = f"compare row counts of {len(manifest.get('tables', []))} tables in {name}"
        earlier = ctx.earlier.get(step.id)
        if earlier is not None and (step.params.get("in_place") or (
                self.db.exists(name) and self._is_marked(name, "restore", counts="match"))):
            return Check(True, dict(earlier), would)
        return Check(False, {}, would)

    def check_counts(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        name = str(step.params["database"])
        manifest, _ = self._manifest(step)
        counts, mismatches = compare_counts(self.db, name, manifest)
        if mismatches:
            if step.params.get("in_place"):
                emergency = ctx.results.get(step.sibling("emergency-backup")) or {}
                source = (f"the emergency backup {emergency['name']}" if emergency.get("name")
                          else "your latest backup (the emergency backup was skipped)")
                hint = (f"the live database {name} WAS restored in place and does not match; restore it from "
                        f"{source}: rollback db restore {emergency.get('name') or 'BACKUP'} --in-place")
            else:
                hint = (f"the live database {self.db.target.dbname} is untouched; {name} is kept for inspection "
                        "(remove it with 'rollback db prune')")
            raise ChecksFailed(
                f"row counts of {name} do not match the backup: {'; '.join(mismatches[:3])}"
                + (f" (+{len(mismatches) - 3} more)" if len(mismatches) > 3 else ""), hint, checks=mismatches)
        if not step.params.get("in_place"):
            self.db.set_comment(name, self._mark(ctx, "restore", name, backup=manifest["name"], counts="match",
                                                 **({"standby": step.params["standby"]}
                                                    if step.params.get("standby") else {})))
        return {"database": name, "tables": len(counts), "rows": sum(c.rows for c in counts), "match": True}

    # staged standbys
    def check_stage(self, step: Step, ctx: StepContext) -> Check:
        name = str(step.params["database"])
        would = f"restore the new backup into {name}, check its row counts, refuse connections to it"
        earlier = ctx.earlier.get(step.id)
        if earlier is not None and self._is_marked(name, "standby", counts="match"):
            return Check(True, dict(earlier), would)
        return Check(False, {}, would)

    def stage(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        """Restore the backup just taken into a standby, check its counts, close it, mark it complete."""
        from rollback.backups import load_manifest
        from rollback.standby import standby_details

        name = str(step.params["database"])
        taken = ctx.results[step.sibling(str(step.params.get("backup_step", "backup")))]
        manifest_path = Path(str(taken["manifest_path"]))
        manifest = load_manifest(manifest_path)
        dump_dir = manifest_path.parent / str(manifest["dump_dir"])
        db = self.db
        started = time.monotonic()
        if ctx.resuming and db.exists(name):  # this plan's own standby, half made when the run stopped
            ctx.note(f"dropping the partial standby {name} left by the stopped run")
            db.drop_database(name)
        db.create_database_like(name, str(step.params["like"]),
                                comment=self._mark(ctx, "standby", name, backup=manifest["name"], counts=None))
        try:
            loaded = restore_archive(db, self.tools, name, dump_dir, manifest, jobs=int(step.params["jobs"]),
                                     no_owner=not db.rights().superuser, progress=ctx.progress,
                                     on_start=self.on_restore_start, split_min_rows=self.split_min_rows)
            counts, mismatches = compare_counts(db, name, manifest)
            if mismatches:
                raise ChecksFailed(f"row counts of standby {name} do not match the backup: "
                                   f"{'; '.join(mismatches[:3])}", "the backup itself is kept; stage it again "
                                   "with 'rollback db backup --stage'", checks=mismatches)
            db.set_allow_connections(name, False)
            db.end_sessions(name)
            facts = db.database_facts(name) or {}
            db.set_comment(name, self._mark(ctx, "standby", name,
                                            **standby_details(manifest, int(facts.get("bytes") or 0))))
        except BaseException as exc:
            dropped = False
            with contextlib.suppress(DatabaseError):
                db.drop_database(name)
                dropped = True
            if isinstance(exc, DatabaseError):
                raise DatabaseError(f"{exc.message}; the standby {name} was "
                                    f"{'dropped' if dropped else 'left (remove it with rollback db prune)'}; the "
                                    f"backup {manifest['name']} itself is complete", exc.hint) from exc
            raise
        ctx.note(f"backup {manifest['name']} staged as {name} ({len(counts)} tables checked)")
        return {"database": name, "backup": manifest["name"], "seconds": round(time.monotonic() - started, 3),
                "bytes": facts.get("bytes"), **loaded}

    def check_standby(self, step: Step, ctx: StepContext) -> Check:
        """The standby chosen at planning time is still fresh (and the backup is of this database)."""
        from rollback.backups import check_source, source_of

        manifest, _ = self._manifest(step)
        note = check_source(manifest, live_identity(self.db), allow_other=bool(step.params.get("from_other_database")))
        name = str(step.params["standby"])
        choice = _standby_for(self.db, manifest)
        if choice.name != name:
            why = choice.reason or f"standby {name} is gone"
            raise UnsafePrecondition(f"the standby chosen when planning is no longer usable: {why}",
                                     f"nothing was changed; plan again: rollback db restore {manifest['name']}")
        return Check(False, {"standby": name, "backup": manifest["name"], "source": source_of(manifest).to_dict(),
                             **({"note": note} if note else {})}, f"standby {name} is fresh")

    def check_clone_standby(self, step: Step, ctx: StepContext) -> Check:
        name, standby = str(step.params["database"]), str(step.params["standby"])
        would = f"CREATE DATABASE {name} TEMPLATE {standby} STRATEGY FILE_COPY"
        earlier = ctx.earlier.get(step.id)
        if earlier is not None and self.db.exists(name):
            return Check(True, dict(earlier), would)
        return Check(False, {}, would)

    def clone_standby(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        """Create the restored copy as a file copy of the standby (which is kept)."""
        name, standby = str(step.params["database"]), str(step.params["standby"])
        manifest, _ = self._manifest(step)
        if ctx.resuming and self.db.exists(name):
            self.db.drop_database(name)
        started = time.monotonic()
        self.db.create_database_like(name, str(step.params["like"]), template=standby,
                                     comment=self._mark(ctx, "restore", name, backup=manifest["name"], counts=None,
                                                        standby=standby))
        return {"database": name, "standby": standby, "seconds": round(time.monotonic() - started, 3),
                "pg_restore_seconds": 0.0, "split_tables": []}

    def check_swap(self, step: Step, ctx: StepContext) -> Check:
        restored, aside = str(step.params["restored"]), str(step.params["aside"])
        live = self.db.target.dbname
        would = f"rename {live} -> {aside}, {restored} -> {live} (one transaction)"
        # Swapped already (resumed after the COMMIT): the copy has the live name, the old one is marked aside.
        if not self.db.exists(restored) and self.db.exists(aside) \
                and self._is_marked(aside, "replaced", replaced_by=restored):
            return Check(True, {"live": live, "restored": restored, "set_aside": aside, "downtime_seconds": 0.0,
                                "terminated_sessions": 0}, would)
        # In a dry run of 'restore --swap' the copy does not exist yet: its check-counts step only said
        # what it would do.
        pending = "would" in (ctx.results.get(step.sibling("check-counts")) or {})
        if not pending and not self._is_marked(restored, "restore", counts="match"):
            raise UnsafePrecondition(f"the row counts of {restored} were not checked against its backup, or did "
                                     "not match", "nothing was changed; restore again with 'rollback db restore "
                                     "BACKUP --swap'")
        return Check(False, {}, would)

    def swap(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        from rollback.setaside import Mark
        from rollback.units import format_duration

        restored, aside = str(step.params["restored"]), str(step.params["aside"])
        mark = Mark.from_comment(self.db.comment(restored))
        backup_name = mark.get("backup") if mark else None
        result = self.db.swap(restored, aside, aside_comment=self._mark(ctx, "replaced", aside, replaced_by=restored,
                                                                         backup=backup_name))
        ctx.note(f"swapped in {restored}; downtime {format_duration(result.downtime_seconds)}; "
                 f"previous database kept as {aside}", downtime_seconds=result.downtime_seconds)
        return result.to_dict()

    def check_drop_set_aside(self, step: Step, ctx: StepContext) -> Check:
        name = str(step.params["database"])
        if not self.db.exists(name):
            return Check(True, {"dropped": name}, f"drop {name}")
        keep = step.params.get("keep_standbys")
        found = next((d for d in _classified(self.db, self.config, keep_standbys=None if keep is None else int(keep))
                      if d["database"] == name), None)
        if found is None or not found["prunable"]:
            why = found["reason"] if found else "no such database beside the live one"
            raise UnsafePrecondition(f"{name} was not set aside by rollback, or must be kept: {why}",
                                     "nothing was dropped")
        return Check(False, {"evidence": found["evidence"]}, f"drop {name}")

    def drop_set_aside(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        name = str(step.params["database"])
        found = dict(ctx.checked.result) if ctx.checked is not None else {}
        self.db.drop_database(name)
        return {"dropped": name, "evidence": found.get("evidence")}

    def check_remove_incomplete_backup(self, step: Step, ctx: StepContext) -> Check:
        from rollback.backups import incomplete_backups

        directory, name = Path(str(step.params["directory"])), str(step.params["name"])
        would = f"remove the interrupted backup {directory / name}"
        found = next((b for b in incomplete_backups(directory, self.db.target.dbname) if b["name"] == name), None)
        if found is None and not (directory / name).exists():
            return Check(True, {"removed": str(directory / name)}, would)
        if found is None or found["in_progress"]:
            raise UnsafePrecondition(f"{name} is not an interrupted backup of {self.db.target.dbname} (complete, "
                                     "or still being written)", "nothing was removed")
        return Check(False, {}, would)

    def remove_incomplete_backup(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        from rollback.backups import remove_incomplete

        directory, name = Path(str(step.params["directory"])), str(step.params["name"])
        with _disk_errors(directory):
            return remove_incomplete(directory, name)

    # salvage
    def salvage_compare(self, step: Step, ctx: StepContext) -> Check:
        """Read-only: what the kept copy holds that the live database does not (keys and counts)."""
        report = salvage_report(self.db, str(step.params["kept"]), step.params.get("tables"))
        return Check(False, report, f"{report['summary']['only_in_kept']} row(s) only in {report['kept']}, "
                                    f"{report['summary']['differ']} differ")

    def check_salvage_apply(self, step: Step, ctx: StepContext) -> Check:
        kept = str(step.params["kept"])
        earlier = ctx.earlier.get(step.id)
        would = (f"copy the rows only in {kept} into {self.db.target.dbname} in one transaction, parents first, "
                 "skipping (and naming) rows that violate a constraint")
        if earlier is not None:  # one transaction: it happened whole
            return Check(True, dict(earlier), would)
        return Check(False, {}, would)

    def salvage_apply(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        """Copy the rows only in the kept copy into the live database, in one transaction."""
        return salvage_report(self.db, str(step.params["kept"]), step.params.get("tables"), apply=True)

    # guard (see rollback.commands.db_guard)
    def check_guard_migrations(self, step: Step, ctx: StepContext) -> Check:
        from rollback.commands.db_guard import migrations_step

        if step.id in ctx.earlier:  # resumed: the state before the command is the one read then
            return Check(True, dict(ctx.earlier[step.id]), "read _prisma_migrations")
        return Check(False, migrations_step(self, step, ctx), "read _prisma_migrations")

    def guard_migrations(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        return dict(ctx.checked.result) if ctx.checked is not None else {}

    def check_guard_run(self, step: Step, ctx: StepContext) -> Check:
        from rollback.redact import redact_text

        would = f"run {redact_text(' '.join(str(c) for c in step.params['command']))}"
        earlier = ctx.earlier.get(step.id)
        # Resumed after the command ran: never run a migration twice.
        return Check(True, dict(earlier), would) if earlier is not None else Check(False, {}, would)

    def guard_run(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        from rollback.commands.db_guard import run_step

        return run_step(self, step, ctx)

    def check_guard_record(self, step: Step, ctx: StepContext) -> Check:
        would = "compare _prisma_migrations with its state before the command and record the difference"
        earlier = ctx.earlier.get(step.id)
        return Check(True, dict(earlier), would) if earlier is not None else Check(False, {}, would)

    def guard_record(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        from rollback.commands.db_guard import record_step

        return record_step(self, step, ctx)

    def guard_outcome(self, step: Step, ctx: StepContext) -> Check:
        from rollback.commands.db_guard import outcome_step

        return outcome_step(self, step, ctx)

    # migrations
    def check_resolve(self, step: Step, ctx: StepContext) -> Check:
        """What ``resolve`` would change (Prisma's errors when it cannot: P3011, P3012, P3008, P3017)."""
        from rollback.adapters.postgres import db_errors
        from rollback.adapters.prisma import PrismaMigrations

        earlier = ctx.earlier.get(step.id)
        if earlier is not None:  # one transaction, under Prisma's lock: it happened whole
            return Check(True, dict(earlier), step.describe())
        with self.db.connect() as conn, db_errors("reading the migration"):
            prisma = PrismaMigrations(conn)
            if step.params.get("rolled_back"):
                name = str(step.params["rolled_back"])
                failed = prisma.failed_rows(name)
                return Check(False, {"migration": name, "marked_rolled_back": [m.id for m in failed]},
                             f"mark {len(failed)} failed row(s) of {name} rolled back")
            name = str(step.params["applied"])
            checksum, failed = prisma.applicable(name, Path(str(step.params["migrations_dir"])))
            return Check(False, {"migration": name, "checksum": checksum,
                                 "marked_rolled_back": [m.id for m in failed]},
                         f"record {name} as applied (checksum {checksum[:12]})")

    def resolve(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        from rollback.adapters.postgres import db_errors
        from rollback.adapters.prisma import PrismaMigrations

        with self.db.connect() as conn, self.db.advisory_lock(conn, timeout=self.lock_timeout), \
                db_errors("resolving the migration"), conn.transaction():
            prisma = PrismaMigrations(conn)
            if step.params.get("rolled_back"):
                return prisma.resolve_rolled_back(str(step.params["rolled_back"]))
            return prisma.resolve_applied(str(step.params["applied"]), Path(str(step.params["migrations_dir"])))

    def check_migration(self, step: Step, ctx: StepContext) -> Check:
        from rollback.adapters.postgres import db_errors
        from rollback.adapters.prisma import PrismaMigrations, migration_error

        name = str(step.params["name"])
        with self.db.connect() as conn, db_errors(f"reading migration {name}"):
            prisma = PrismaMigrations(conn)
            if not prisma.is_managed():
                raise UnsafePrecondition("the database is not managed by Prisma Migrate (no _prisma_migrations)")
            rows = [m for m in prisma.all() if m.name == name]
        if not rows:
            raise migration_error("P3011", name)
        live = [m for m in rows if m.status != "rolled back"]
        if not live:
            if step.id in ctx.earlier:  # resumed: rolled back since by this run's own down step
                return Check(True, dict(ctx.earlier[step.id]), f"migration {name} is applied")
            raise UnsafePrecondition(f"migration {name} is already rolled back", "nothing was changed")
        return Check(False, {"migration": name, "status": [m.status for m in live]}, f"migration {name} is applied")

    def check_down(self, step: Step, ctx: StepContext) -> Check:
        from rollback.adapters.postgres import db_errors
        from rollback.adapters.prisma import PrismaMigrations

        name, script = str(step.params["name"]), Path(str(step.params["script"]))
        sql = script.read_text(encoding="utf-8")
        would = f"run {script} ({len(sql)} bytes) in one transaction, then mark {name} rolled back"
        if ctx.resuming:  # the transaction either committed (and marked the migration) or left no trace
            with self.db.connect() as conn, db_errors(f"reading migration {name}"):
                rows = [m for m in PrismaMigrations(conn).all() if m.name == name]
            if rows and all(m.status == "rolled back" for m in rows):
                return Check(True, {"migration": name, "script": str(script),
                                    **dict(ctx.earlier.get(step.id) or {})}, would)
        return Check(False, {}, would)

    def down(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        from rollback.adapters.postgres import db_errors
        from rollback.adapters.prisma import PrismaMigrations

        name, script = str(step.params["name"]), Path(str(step.params["script"]))
        sql = script.read_text(encoding="utf-8")
        failed = f"running {script.name} of {name}"
        with self.db.connect() as conn, self.db.advisory_lock(conn, timeout=self.lock_timeout), \
                db_errors(failed, "the transaction was rolled back: the schema is as it was"), conn.transaction():
            self.db.run_script(conn, sql)
            ids = PrismaMigrations(conn).mark_applied_rolled_back(name)
        return {"migration": name, "script": str(script), "marked_rolled_back": ids}

    # rds
    def _rds(self) -> RdsAdapter:
        if self.rds is None:
            self.rds = self._services.rds()
        return self.rds

    def check_rds_create_snapshot(self, step: Step, ctx: StepContext) -> Check:
        instance, snapshot_id = str(step.params["instance"]), str(step.params["snapshot"])
        would = f"create snapshot {snapshot_id} of {instance}"
        if ctx.resuming:  # the planning refused an existing id: one there now is this run's
            snap = self._rds().snapshot(snapshot_id)
            if snap is not None and (snap.status == "available" or not step.params.get("wait")):
                return Check(True, snap.to_dict(), would)
        return Check(False, {}, would)

    def rds_create_snapshot(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        rds = self._rds()
        instance, snapshot_id = str(step.params["instance"]), str(step.params["snapshot"])
        existing = rds.snapshot(snapshot_id) if ctx.resuming else None
        snap = existing if existing is not None else rds.create_snapshot(instance, snapshot_id)
        if step.params.get("wait"):
            ctx.note(f"waiting for snapshot {snapshot_id} to become available")
            snap = rds.wait_snapshot(snapshot_id)
        return snap.to_dict()

    def check_rds_restore(self, step: Step, ctx: StepContext) -> Check:
        target = str(step.params["target"])
        if ctx.resuming and self._rds().instance_exists(target):  # the planning refused an existing target
            inst = self._rds().instance(target)
            if inst.status == "available" or not step.params.get("wait"):
                return Check(True, inst.to_dict(), step.summary)
        return Check(False, {}, step.summary)

    def rds_restore(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        rds = self._rds()
        p = step.params
        target = str(p["target"])
        if ctx.resuming and rds.instance_exists(target):
            inst = rds.instance(target)  # created by the stopped run: only the wait is left
        elif p.get("snapshot"):
            inst = rds.restore_from_snapshot(str(p["snapshot"]), target, like=str(p["source"]))
        else:
            when = dt.datetime.fromisoformat(str(p["time"])) if p.get("time") else None
            inst = rds.restore_to_time(str(p["source"]), target, when)
        if p.get("wait"):
            ctx.note(f"waiting for {target} to become available")
            inst = rds.wait_instance(target)
        return inst.to_dict()


# -- salvage --------------------------------------------------------------------------------------------------

def salvage_target(db: Database, kept: str | None) -> tuple[str, dict[str, Any]]:
    """The kept copy to salvage from: ``kept``, or the newest copy a swap set aside; refused unless
    rollback's swap made it from THIS database (its mark says so)."""
    from rollback.setaside import Mark, parse_set_aside_name

    live = db.target.dbname
    rows = {str(r["name"]): r for r in db.databases_with_prefix("")}
    if kept is None:
        candidates = sorted((n for n in rows if (parse_set_aside_name(n, live) or ("",))[0] == "replaced"),
                            reverse=True)
        marked = [n for n in candidates if (m := Mark.from_comment(rows[n]["comment"])) and m.is_mark_of(n, live)]
        if not marked:
            raise BadInput(f"no copy of {live} set aside by a swap ({live}_replaced_<time>)",
                           "name one: rollback db salvage NAME")
        kept = marked[0]
    if kept not in rows:
        raise BadInput(f"no database {kept}", "list the set-aside copies with 'rollback db prune --dry-run'")
    parsed = parse_set_aside_name(kept, live)
    mark = Mark.from_comment(rows[kept]["comment"])
    if parsed is None or parsed[0] != "replaced" or mark is None or not mark.is_mark_of(kept, live):
        raise UnsafePrecondition(
            f"{kept} is not a copy of {live} that 'rollback db restore --swap' set aside (its name or its rollback "
            "mark does not say so)", "nothing was read or changed; salvage only from this database's "
            f"{live}_replaced_<time> copies")
    if not rows[kept]["allows_connections"]:
        raise UnsafePrecondition(f"{kept} refuses connections", f"ALTER DATABASE \"{kept}\" ALLOW_CONNECTIONS true "
                                 "(as its owner), then run it again")
    return kept, {"run": mark.run, "at": mark.at, "backup": mark.get("backup")}


def salvage_report(db: Database, kept: str, tables: Any = None, *, apply: bool = False) -> dict[str, Any]:
    """Compare (and with ``apply`` copy, in one transaction) the kept copy against the live database."""
    from rollback.adapters.postgres import db_errors
    from rollback.adapters.salvage import compare, copy_missing, summary

    live_name = db.target.dbname
    wanted = [str(t) for t in tables] if tables else None
    with db.connect(kept, autocommit=False) as old, db.connect(autocommit=False) as new, \
            db_errors(f"comparing {kept} with {live_name}", "nothing was changed" if apply else None):
        db.begin_read_only_snapshot(old)
        diffs = compare(old, new, wanted)
        if wanted is not None:
            found = {d.name for d in diffs} | {f"{d.schema}.{d.name}" for d in diffs}
            unknown = sorted(set(wanted) - found)
            if unknown:
                raise BadInput(f"no table {', '.join(unknown)} in {kept} or {live_name}",
                               "name tables as Table or schema.Table")
        if apply:
            copy_missing(old, new, diffs)
            new.commit()
        else:
            new.rollback()
    return {"kept": kept, "live": live_name, "applied": apply, "summary": dict(summary(diffs)),
            "tables": [d.to_dict() for d in diffs]}


def plan_salvage(config: Config, kept: str | None = None, *, tables: list[str] | None = None,
                 skip_emergency_reason: str | None = None, jobs: int | None = None) -> Plan:
    """Compare, emergency backup, copy the rows only in the kept copy (one transaction)."""
    db = open_database(config)
    name, mark = salvage_target(db, kept)
    live = db.target.dbname
    params: dict[str, Any] = {"kept": name, "tables": tables}
    return Plan.of(f"db salvage {name}", config.env_name, [
        Step("compare", "db.salvage_compare", f"compare {name} with {live} by primary key, parents first",
             params=params),
        _emergency_step(skip_emergency_reason, config, jobs or default_jobs()),
        Step("apply", "db.salvage_apply", f"copy the rows only in {name} into {live} (one transaction; rows that "
             "violate a constraint are skipped and named; rows that differ are never overwritten)", target=live,
             params=params, destructive=True),
    ], [f"{name} was set aside by run {mark['run']}" + (f" (swapping in backup {mark['backup']})"
                                                          if mark.get("backup") else ""),
        "row contents are never printed: keys and counts only"])


def salvage(config: Config, kept: str | None = None, *, tables: list[str] | None = None) -> dict[str, Any]:
    """The read-only salvage report (``db salvage`` without ``--apply``)."""
    db = open_database(config)
    name, mark = salvage_target(db, kept)
    return {**salvage_report(db, name, tables), "set_aside_by": mark}


def rpo(config: Config, **kwargs: Any) -> dict[str, Any]:
    """Recovery points and their age against ``targets.rpo`` (see :mod:`rollback.commands.db_rpo`)."""
    from rollback.commands.db_rpo import rpo as recovery_points

    return recovery_points(config, **kwargs)


def run(config: Config, plan: Plan, *, journal: Journal | None = None, dry_run: bool = False,
        progress: Progress | None = None, handlers: DbHandlers | None = None) -> ExecutionResult:
    """Execute a db plan with the db handlers."""
    from rollback.runner import execute

    chosen = handlers or DbHandlers(config)
    return execute(plan, chosen.handlers(), journal=journal, dry_run=dry_run, progress=progress)


# -- read-only verbs ---------------------------------------------------------------------------------------------

def migrations(config: Config) -> dict[str, Any]:
    """The ``_prisma_migrations`` rows by status, plus local migrations never recorded."""
    from rollback.adapters.postgres import db_errors
    from rollback.adapters.prisma import PrismaMigrations, local_migrations

    db = open_database(config)
    with db.connect() as conn, db_errors("reading _prisma_migrations"):
        prisma = PrismaMigrations(conn)
        managed = prisma.is_managed()
        rows = prisma.all() if managed else []
        head = prisma.head() if managed else None
    local = local_migrations(migrations_dir(config))
    recorded = {m.name for m in rows}
    return {
        "database": db.target.dbname,
        "managed": managed,
        "note": None if managed else "not managed by Prisma Migrate (no _prisma_migrations table)",
        "head": head,
        "migrations": [m.to_dict() for m in rows],
        "failed": [m.name for m in rows if m.status == "failed"],
        "rolled_back": [m.name for m in rows if m.status == "rolled back"],
        "not_in_database": [n for n in local if n not in recorded],
        "migrations_dir": str(migrations_dir(config)),
    }


def _check(name: str, ok: bool, value: Any, expected: Any = None, detail: str = "") -> dict[str, Any]:
    return {"check": name, "ok": ok, "value": value, "expected": expected, "detail": detail}


def verify(config: Config, *, baseline: str | None = None, tolerance: float = 0.0) -> dict[str, Any]:
    """Integrity checks; ``ok`` is False when one fails (the CLI exits 3). Each check runs on its own:
    one that cannot run (a missing schema or table, a missing privilege) is reported as failed."""
    from rollback.adapters.postgres import ForeignKey, StatementFailed, db_errors, savepoint
    from rollback.adapters.prisma import PrismaMigrations

    settings = config.env.database
    db = open_database(config)
    checks: list[dict[str, Any]] = []
    started = time.monotonic()
    conn = db.connect()
    with conn, db_errors("verifying the database"):
        version, _ = db.server_version(conn)
        checks.append(_check("connect", True, f"{(time.monotonic() - started) * 1000:.0f} ms",
                             detail=f"PostgreSQL {version}"))
        try:
            with savepoint(conn):
                prisma = PrismaMigrations(conn)
                managed = prisma.is_managed()
                failed_names = [m.name for m in prisma.all() if m.status == "failed"] if managed else []
            checks.append(_check("migrations.failed", not failed_names, len(failed_names), 0,
                                 ", ".join(failed_names) if managed else "not managed by Prisma Migrate"))
        except StatementFailed as exc:
            checks.append(_check("migrations.failed", False, None, 0, f"cannot check: {exc.detail}"))
        base: dict[str, int] = {}
        if baseline:
            manifest, _ = resolve_backup(config, baseline, live=live_identity(db))
            base = {str(t["name"]) if t["schema"] == "public" else f"{t['schema']}.{t['name']}": int(t["rows"])
                    for t in manifest["tables"]}
        watched = list(settings.tables) or sorted(base)
        for table in watched:
            # One check per table, each on its own: a missing schema, a missing table or a
            # table the role may not read fails that check, and the others still run.
            schema, _, name = table.rpartition(".")
            try:
                with savepoint(conn):
                    found = db.find_table(conn, schema, name)
                    count = None if found is None else db.table_counts(conn=conn, tables=[found])[0].rows
            except StatementFailed as exc:
                checks.append(_check(f"rows.{table}", False, None, base.get(table), f"cannot count: {exc.detail}"))
                continue
            if count is None:
                checks.append(_check(f"rows.{table}", False, None, base.get(table), "table missing"))
            elif table not in base:
                checks.append(_check(f"rows.{table}", True, count, None, "no baseline"))
            elif table in settings.grow_only:
                checks.append(_check(f"rows.{table}", count >= base[table], count, f">= {base[table]}",
                                     "grow-only"))
            else:
                allowed = base[table] * tolerance / 100
                checks.append(_check(f"rows.{table}", abs(count - base[table]) <= allowed, count, base[table],
                                     f"tolerance {tolerance:g}%" if tolerance else "exact"))
        fks = db.foreign_keys(conn)
        for rel in settings.relations:
            child_table, child_column = rel.child.split(".")
            parent_table, parent_column = rel.parent.split(".")
            fks.append(ForeignKey(f"config:{rel.child}", child_table, (child_column,), parent_table,
                                  (parent_column,), declared=False))
        for fk in fks:
            try:
                with savepoint(conn):
                    orphans = db.count_orphans(conn, fk)
            except StatementFailed as exc:
                checks.append(_check(f"orphans.{fk.label}", False, None, 0, f"cannot check: {exc.detail}"))
                continue
            checks.append(_check(f"orphans.{fk.label}", orphans == 0, orphans, 0,
                                 "foreign key" if fk.declared else "relation from config"))
    failed = [c for c in checks if not c["ok"]]
    report: dict[str, Any] = redact({"database": db.target.dbname, "baseline": baseline, "ok": not failed,
                                     "checks": checks, "failed": len(failed)})
    return report


def snapshots(config: Config, instance: str | None = None) -> dict[str, Any]:
    from rollback.adapters.rds import open_rds, resolve_instance

    rds = open_rds(config)
    name = resolve_instance(config, instance)
    inst = rds.instance(name)
    snaps = rds.snapshots(name)
    return {"instance": inst.to_dict(), "snapshots": [s.to_dict() for s in snaps]}


def plan_snapshot_create(config: Config, *, instance: str | None = None, snapshot_id: str | None = None,
                         wait: bool = False, rds: RdsAdapter | None = None) -> Plan:
    from rollback.adapters.rds import open_rds, resolve_instance

    adapter = rds or open_rds(config)
    name = resolve_instance(config, instance)
    adapter.instance(name)
    chosen = snapshot_id or f"{name}-rollback-{_stamp().lower().replace('t', '-').rstrip('z')}"
    if adapter.snapshot(chosen) is not None:
        raise UnsafePrecondition(f"snapshot {chosen} already exists", "pass another --id")
    return Plan.of("db snapshot create", config.env_name, [
        Step("snapshot", "rds.create_snapshot", f"create manual snapshot {chosen} of {name}",
             target=f"rds {name}", params={"instance": name, "snapshot": chosen, "wait": wait})])


def plan_rds_restore(config: Config, *, snapshot: str | None = None, to_time: str | None = None,
                     latest: bool = False, target: str, instance: str | None = None, wait: bool = False,
                     rds: RdsAdapter | None = None, now: dt.datetime | None = None) -> Plan:
    """Validate everything before any AWS call that changes state; the source is never modified."""
    from rollback.adapters.rds import open_rds, resolve_instance
    from rollback.units import parse_time

    if sum(bool(x) for x in (snapshot, to_time, latest)) != 1:
        raise BadInput("give exactly one of --snapshot ID, --to-time TIME or --latest")
    adapter = rds or open_rds(config)
    if adapter.instance_exists(target):
        raise UnsafePrecondition(f"DB instance {target} already exists",
                                 "choose a new --target; the source is never overwritten")
    params: dict[str, Any] = {"target": target, "wait": wait}
    if snapshot:
        snap = adapter.snapshot(snapshot)
        if snap is None:
            raise BadInput(f"no DB snapshot {snapshot}", "list them with 'rollback db snapshots'")
        if snap.status != "available":
            raise UnsafePrecondition(f"snapshot {snapshot} is {snap.status}, not available",
                                     "wait for it, or pick another snapshot")
        params.update(snapshot=snapshot, source=snap.instance)
        summary = f"restore snapshot {snapshot} into new instance {target}"
    else:
        source = resolve_instance(config, instance)
        inst = adapter.instance(source)
        if inst.latest_restorable is None or inst.earliest_restorable is None:
            raise UnsafePrecondition(f"{source} has no point-in-time restore window (automated backups off?)",
                                     "restore from a snapshot instead")
        if latest:
            params.update(source=source, time=None)
            summary = (f"restore {source} at its latest restorable time "
                       f"({inst.latest_restorable.isoformat()}) into new instance {target}")
        else:
            assert to_time is not None
            when = parse_time(to_time)
            if not (inst.earliest_restorable <= when <= inst.latest_restorable):
                raise BadInput(f"{when.isoformat()} is outside {source}'s restorable window "
                               f"{inst.earliest_restorable.isoformat()} .. {inst.latest_restorable.isoformat()}",
                               "pick a time inside the window, or use --latest")
            params.update(source=source, time=when.isoformat())
            summary = f"restore {source} as of {when.isoformat()} into new instance {target}"
    notes = ["the source instance is never modified or deleted; point the app at the new endpoint"]
    notes += _restore_notes(config, adapter, str(params["source"]) if params.get("source") else None, target)
    return Plan.of("db rds-restore", config.env_name,
                   [Step("rds-restore", "rds.restore", summary, target=f"rds {target}", params=params)], notes)


def _restore_notes(config: Config, adapter: RdsAdapter, source: str | None, target: str) -> list[str]:
    """What the new instance copies from its source, and how to point the rollback alarms at it."""
    from rollback.adapters.rds import alarm_pin_lines

    notes: list[str] = []
    copied = adapter.copied_settings(source) if source else {}
    if copied:
        shown = {"DBParameterGroupName": "parameter group", "OptionGroupName": "option group",
                 "MultiAZ": "Multi-AZ", "DeletionProtection": "deletion protection",
                 "BackupRetentionPeriod": "backup retention (days)", "DBSubnetGroupName": "subnet group",
                 "DBInstanceClass": "class"}
        parts = [f"{label} {copied[key]}" for key, label in shown.items() if key in copied]
        parts.append(f"{len(copied.get('Tags', [])) - 1} tag(s) plus rollback:restored-from={source}")
        notes.append(f"copied from {source}: " + ", ".join(parts))
    pulumi = config.env.pulumi
    project = "rollback"
    if pulumi is not None:
        from rollback.commands.infra_stack import stack_ref

        try:
            project = stack_ref(config).project
        except RollbackError:
            project = pulumi.project or project
    lines = alarm_pin_lines(target, stack=pulumi.stack if pulumi else None, project=project)
    notes.append("to point the stack's rollback alarms at the new instance: " + "; ".join(lines))
    return notes
