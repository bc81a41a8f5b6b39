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
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rollback.errors import BadInput, ChecksFailed, ConfigError, DatabaseError, UnsafePrecondition
from rollback.plan import Plan, Step
from rollback.redact import redact, redact_text
from rollback.runner import Check, handler, read_only

if TYPE_CHECKING:
    from rollback.adapters.pg_tools import PgTools
    from rollback.adapters.postgres import Database, Target
    from rollback.adapters.rds import RdsAdapter
    from rollback.config import Config
    from rollback.journal import Journal
    from rollback.runner import ExecutionResult, StepContext, StepHandler

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
    "plan_snapshot_create",
    "plan_swap",
    "run",
    "snapshots",
    "verify",
]

MANIFEST_FORMAT = "rollback-db-backup/1"
# check_counts marks a restored copy whose row counts match its backup; swap accepts only those.
COUNTS_MATCH_MARK = "rollback: row counts match backup "
MANIFEST_SUFFIX = ".manifest.json"
DEFAULT_COMPRESS = 6

Progress = Callable[[str], None]

# Settings for pg_restore's own sessions. Index and constraint builds sort in
# memory instead of spilling to disk. Commits into the new database need not
# wait for WAL flushes: nobody uses it until the row counts have been checked
# after pg_restore ends, and a crash in between fails that check. Both are
# user-settable, so a non-superuser role may set them.
RESTORE_SESSION = {"maintenance_work_mem": "256MB", "synchronous_commit": "off"}
IN_PLACE_SESSION = {"maintenance_work_mem": "256MB"}


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
    return dump_dir.with_name(dump_dir.name + MANIFEST_SUFFIX)


def take_backup(db: Database, tools: PgTools, out_dir: Path, *, jobs: int, kind: str = "manual",
                progress: Progress | None = None, compress: int = DEFAULT_COMPRESS) -> dict[str, Any]:
    """Dump the live database (one exported snapshot), checksum and verify it, write the manifest.

    On any failure the partial dump is removed and nothing is reported as a backup.
    """
    from rollback.adapters.pg_tools import file_checksums, remove_tree
    from rollback.adapters.postgres import db_errors
    from rollback.adapters.prisma import PrismaMigrations

    with _disk_errors(out_dir):
        out_dir.mkdir(parents=True, exist_ok=True)
    dbname = db.target.dbname
    base = f"{dbname}-{_stamp()}" + ("-emergency" if kind == "emergency" else "")
    name, n = base, 1
    while (out_dir / name).exists() or (out_dir / (name + MANIFEST_SUFFIX)).exists():
        n += 1
        name = f"{base}-{n}"
    dump_dir = out_dir / name
    started = time.monotonic()
    created = dt.datetime.now(dt.UTC)
    try:
        version, _ = db.server_version()
        with db.exported_snapshot() as (snapshot, conn):
            counts = db.table_counts(conn=conn)
            with db_errors("reading the database's encoding and migrations"):
                encoding = str(conn.execute("SELECT pg_encoding_to_char(encoding) FROM pg_database "
                                            "WHERE datname = current_database()").fetchone()[0])
                prisma = PrismaMigrations(conn)
                managed = prisma.is_managed()
                head = prisma.head() if managed else None
            counted = time.monotonic()
            if progress:
                progress(f"counted {len(counts)} tables ({sum(c.rows for c in counts)} rows); dumping")
            dump = tools.dump(db.target, dump_dir, jobs=jobs, compress=compress, snapshot=snapshot,
                              progress=progress, total=len(counts))
        dumped = time.monotonic()
        with _disk_errors(out_dir):
            files = file_checksums(dump_dir)
        hashed = time.monotonic()
        manifest: dict[str, Any] = {
            "format": MANIFEST_FORMAT,
            "name": name,
            "kind": kind,
            "created_at": created.isoformat(timespec="seconds").replace("+00:00", "Z"),
            "database": dbname,
            "host": db.target.params.get("host"),
            "port": db.target.params.get("port"),
            "user": db.target.user,
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
        # Not redact()ed: it holds catalog names and checksums that a short password could
        # match by chance; it never holds the password (host, port and user only).
        path = _manifest_path(dump_dir)
        tmp = path.with_name(path.name + ".tmp")
        with _disk_errors(out_dir):
            tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
            os.replace(tmp, path)
    except BaseException:
        remove_tree(dump_dir)
        _manifest_path(dump_dir).with_name(_manifest_path(dump_dir).name + ".tmp").unlink(missing_ok=True)
        raise
    return {**manifest, "manifest_path": str(path), "path": str(dump_dir)}


@contextlib.contextmanager
def _disk_errors(out_dir: Path) -> Iterator[None]:
    """A full disk or a read-only directory is the environment's fault: one line, not a traceback."""
    try:
        yield
    except OSError as exc:
        raise DatabaseError(f"writing the backup to {out_dir} failed: {exc.strerror or exc}",
                            "check the free space and permissions of the backups directory") from exc


def verify_backup(manifest: Mapping[str, Any], dump_dir: Path, tools: PgTools) -> dict[str, Any]:
    """Refuse a damaged backup: every file present with its size and sha256, and a readable TOC."""
    from rollback.adapters.pg_tools import sha256_file

    name = str(manifest.get("name", dump_dir.name))
    if manifest.get("format") != MANIFEST_FORMAT:
        raise UnsafePrecondition(f"backup {name}: not a rollback backup manifest (format "
                                 f"{manifest.get('format')!r})", "nothing was touched; use another backup")
    if not dump_dir.is_dir():
        raise UnsafePrecondition(f"backup {name}: dump directory {dump_dir} is missing",
                                 "nothing was touched; use another backup")
    expected = {str(f["path"]): f for f in manifest.get("files", [])}
    actual = {p.relative_to(dump_dir).as_posix() for p in dump_dir.rglob("*") if p.is_file()}
    problems: list[str] = []
    for missing in sorted(set(expected) - actual):
        problems.append(f"{missing} is missing")
    for extra in sorted(actual - set(expected)):
        problems.append(f"{extra} is not in the manifest")
    for rel in sorted(set(expected) & actual):
        path = dump_dir / rel
        if path.stat().st_size != int(expected[rel]["bytes"]):
            problems.append(f"{rel} has {path.stat().st_size} bytes, the manifest says {expected[rel]['bytes']} "
                            "(truncated?)")
        elif sha256_file(path) != expected[rel]["sha256"]:
            problems.append(f"{rel} checksum does not match")
    if problems:
        more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        raise UnsafePrecondition(f"backup {name} is damaged: {'; '.join(problems[:3])}{more}",
                                 "nothing was touched; use another backup", problems=problems)
    try:
        toc = tools.list_archive(dump_dir)
    except DatabaseError as exc:
        raise UnsafePrecondition(f"backup {name} is damaged: {exc.message}",
                                 "nothing was touched; use another backup") from exc
    return {"backup": name, "files": len(expected), "toc_entries": len(toc), "ok": True}


def resolve_backup(config: Config, ref: str) -> tuple[dict[str, Any], Path]:
    """A backup given as a manifest path, a dump directory, a name in the backups dir, or ``latest``."""
    backups_dir = config.backups_dir
    if ref in ("latest", "latest-emergency"):
        # "latest" skips emergency backups: a restore takes one, and restoring that
        # one again by accident would undo nothing.
        found = [b for b in list_backups(backups_dir) if "error" not in b
                 and (b.get("kind") == "emergency") == (ref == "latest-emergency")]
        if not found:
            raise BadInput(f"no {'emergency ' if ref != 'latest' else ''}backups in {backups_dir}",
                           "take one with 'rollback db backup'")
        ref = str(found[0]["manifest_path"])
    path = Path(ref).expanduser()
    candidates = [path, backups_dir / ref] if not path.is_absolute() else [path]
    for candidate in candidates:
        manifest_path = candidate if candidate.name.endswith(MANIFEST_SUFFIX) else _manifest_path(candidate)
        if manifest_path.is_file():
            try:
                manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise UnsafePrecondition(f"backup manifest {manifest_path} is unreadable: {exc}",
                                         "nothing was touched; use another backup") from exc
            dump_dir = manifest_path.parent / str(manifest.get("dump_dir") or
                                                  manifest_path.name[: -len(MANIFEST_SUFFIX)])
            return manifest, dump_dir
    raise BadInput(f"no backup {ref!r} (looked for its manifest in {backups_dir})",
                   "list backups with 'rollback db backups'")


def list_backups(directory: Path) -> list[dict[str, Any]]:
    """Backups in ``directory`` with their manifests, newest first."""
    out: list[dict[str, Any]] = []
    if not directory.is_dir():
        return out
    for path in directory.glob("*" + MANIFEST_SUFFIX):
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            out.append({"name": path.name[: -len(MANIFEST_SUFFIX)], "manifest_path": str(path),
                        "created_at": "", "error": "unreadable manifest"})
            continue
        dump_dir = path.parent / str(manifest.get("dump_dir", ""))
        out.append({**manifest, "manifest_path": str(path), "path": str(dump_dir),
                    "present": dump_dir.is_dir()})
    out.sort(key=lambda m: (str(m.get("created_at", "")), str(m.get("name", ""))), reverse=True)
    return out


# -- plans ------------------------------------------------------------------------------------------------

def plan_backup(config: Config, *, out: Path | None = None, jobs: int | None = None) -> Plan:
    target = database_target(config)
    directory = out or config.backups_dir
    step = Step("backup", "db.backup", f"pg_dump (directory format, {jobs or default_jobs()} jobs) into {directory}",
                target=f"database {target.dbname}", params={"out": str(directory), "jobs": jobs or default_jobs(),
                                                            "kind": "manual"})
    return Plan.of("db backup", config.env_name, [step])


def backup(config: Config, *, out: Path | None = None, jobs: int | None = None, journal: Journal | None = None,
           progress: Progress | None = None) -> dict[str, Any]:
    """Take a verified backup; returns its manifest (plus ``manifest_path``/``path``)."""
    outcome = run(config, plan_backup(config, out=out, jobs=jobs), journal=journal, progress=progress)
    return dict(outcome.result_of("backup"))


def _emergency_step(reason: str | None, config: Config, jobs: int) -> Step:
    if reason is not None:
        if not reason.strip():
            raise BadInput("--skip-emergency-backup needs a non-empty --reason", "say why, it is journaled")
        why = redact_text(reason.strip())  # free text, journaled and printed: redacted where it enters
        return Step("emergency-backup", "db.skip_emergency_backup",
                    f"emergency backup SKIPPED (reason: {why})", params={"reason": why})
    return Step("emergency-backup", "db.backup", f"emergency backup of the live database into {config.backups_dir}",
                params={"out": str(config.backups_dir), "jobs": jobs, "kind": "emergency"})


def plan_restore(config: Config, backup_ref: str, *, swap: bool = False, in_place: bool = False,
                 skip_emergency_reason: str | None = None, jobs: int | None = None) -> Plan:
    """Plan a restore of ``backup_ref``: verify, rights, emergency backup, restore beside, counts, swap."""
    from rollback.adapters.postgres import set_aside_name

    if swap and in_place:
        raise BadInput("--swap and --in-place exclude each other", "--swap restores beside, then swaps")
    target = database_target(config)
    manifest, dump_dir = resolve_backup(config, backup_ref)
    live = target.dbname
    jobs = jobs or default_jobs()
    stamp = _db_stamp()
    restored = set_aside_name(live, "restore", stamp)
    aside = set_aside_name(live, "replaced", stamp)
    name = str(manifest.get("name", dump_dir.name))
    common = {"manifest": manifest.get("_path") or str(_manifest_path(dump_dir)), "dump_dir": str(dump_dir)}
    steps = [
        Step("verify-backup", "db.verify_backup", f"verify backup {name} (checksums, pg_restore --list)",
             params=common),
        Step("check-rights", "db.check_rights", f"check the role's rights on {live}",
             params={"live": live, "restored": None if in_place else restored, "swap": swap,
                     "in_place": in_place}),
        _emergency_step(skip_emergency_reason, config, jobs),
    ]
    notes: list[str] = []
    if in_place:
        steps += [
            Step("restore", "db.restore_in_place",
                 f"restore {name} IN PLACE (pg_restore --clean, one transaction)", target=live,
                 params={**common, "database": live}, destructive=True),
            Step("check-counts", "db.check_counts", f"check row counts of {live} against the manifest",
                 params={**common, "database": live, "in_place": True}),
        ]
    else:
        steps += [
            Step("restore", "db.restore_beside", f"restore {name} into a new database ({jobs} jobs)",
                 target=restored, params={**common, "database": restored, "jobs": jobs,
                                                        "like": live}),
            Step("check-counts", "db.check_counts", f"check row counts of {restored} against the manifest",
                 params={**common, "database": restored}),
        ]
        if swap:
            steps.append(Step("swap", "db.swap", f"swap: {live} -> {aside} (kept), {restored} -> {live}",
                              target=live, params={"restored": restored, "aside": aside},
                              destructive=True))
        else:
            notes.append(f"the restored database stays beside the live one; swap with: "
                         f"rollback db swap {restored} --yes")
    if manifest.get("database") and manifest.get("database") != live:
        notes.append(f"this backup was taken from database {manifest.get('database')}, not {live}")
    notes.append("the live database is never dropped: a swap keeps it as <name>_replaced_<time> "
                 "(remove later with 'rollback db prune')")
    return Plan.of(f"db restore {name}" + (" --swap" if swap else "") + (" --in-place" if in_place else ""),
                   config.env_name, steps, notes)


def plan_swap(config: Config, restored: str) -> Plan:
    from rollback.adapters.postgres import set_aside_name

    live = database_target(config).dbname
    if restored == live:
        raise BadInput(f"{restored} is the live database", "name the restored database to swap in")
    if not restored.startswith(f"{live}_restore_"):
        # Only a copy that 'rollback db restore' made (and count-checked) may take the live name.
        raise BadInput(f"{restored} was not restored by rollback (its name does not start with {live}_restore_)",
                       "swap in a database listed by 'rollback db prune --dry-run', or run "
                       "'rollback db restore BACKUP --swap'")
    aside = set_aside_name(live, "replaced", _db_stamp())
    return Plan.of(f"db swap {restored}", config.env_name, [
        Step("check-rights", "db.check_rights", f"check the role's rights on {live}",
             params={"live": live, "restored": None, "swap": True, "in_place": False, "swap_in": restored}),
        Step("swap", "db.swap", f"swap: {live} -> {aside} (kept), {restored} -> {live}", target=live,
             params={"restored": restored, "aside": aside}, destructive=True),
    ], ["the replaced database is kept; remove it later with 'rollback db prune'"])


def set_aside_databases(config: Config) -> list[dict[str, Any]]:
    db = open_database(config)
    live = db.target.dbname
    out = []
    for kind in ("replaced", "restore"):
        for name, size in db.databases_like(f"{live}_{kind}_"):
            out.append({"database": name, "kind": "replaced by a swap" if kind == "replaced" else
                        "restored, never swapped in", "bytes": size})
    return out


def plan_prune(config: Config) -> Plan:
    found = set_aside_databases(config)
    steps = [Step(f"drop-{n}", "db.drop_set_aside", f"drop {d['database']} ({d['kind']}, {d['bytes']} bytes)",
                  target=d["database"], params={"database": d["database"]}, destructive=True)
             for n, d in enumerate(found, start=1)]
    return Plan.of("db prune", config.env_name, steps,
                   [] if steps else ["nothing to prune: no databases set aside by earlier swaps"])


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

SPLIT_MIN_ROWS = 200_000


def restore_archive(db: Database, tools: PgTools, dbname: str, dump_dir: Path, manifest: Mapping[str, Any], *,
                    jobs: int, no_owner: bool, progress: Progress | None = None,
                    on_start: Callable[[Any], None] | None = None,
                    split_min_rows: int = SPLIT_MIN_ROWS) -> dict[str, Any]:
    """Restore a backup into the (new, empty) database ``dbname``.

    Tables of at least ``split_min_rows`` rows are loaded by us over ``jobs``
    parallel COPY streams, while pg_restore loads the rest (``--use-list`` without
    them) with ``jobs`` workers; schema before (``pre-data``), indexes and
    constraints after (``post-data``, parallel). Without such tables, or with one
    job, it is one ``pg_restore --jobs``.
    """
    import tempfile
    import threading

    from rollback.adapters.pg_tools import copy_blocks, table_data_entries

    started = time.monotonic()
    common: dict[str, Any] = {"no_owner": no_owner, "on_start": on_start, "session": RESTORE_SESSION,
                              "progress": progress}
    toc = tools.list_archive(dump_dir)
    entries = table_data_entries(toc)
    big: list[tuple[str, str, str, Path]] = []
    encoding = manifest.get("encoding")
    if jobs > 1 and encoding:
        for table in manifest.get("tables", []):
            key = (str(table["schema"]), str(table["name"]))
            if int(table["rows"]) >= split_min_rows and key in entries:
                dump_id = entries[key]
                path = next((p for p in (dump_dir / f"{dump_id}.dat.gz", dump_dir / f"{dump_id}.dat")
                             if p.is_file()), None)
                if path is not None:
                    big.append((key[0], key[1], dump_id, path))
    if not big:
        run = tools.restore(db.target, dbname, dump_dir, jobs=jobs,
                            total=len(manifest.get("tables", [])), **common)
        return {"pg_restore_seconds": round(run.seconds, 3), "split_tables": []}
    tools.restore(db.target, dbname, dump_dir, jobs=1, section="pre-data", **common)
    skip = {dump_id for *_, dump_id, _ in big}
    procs: list[Any] = []
    outcome: dict[str, Any] = {}

    def remember(proc: Any) -> None:
        procs.append(proc)
        if on_start is not None:
            on_start(proc)

    with tempfile.TemporaryDirectory(prefix="rollback-restore-") as scratch:
        use_list = Path(scratch) / "toc.list"
        use_list.write_text("\n".join((";" if line.split(";", 1)[0] in skip else "") + line for line in toc) + "\n",
                            encoding="utf-8")

        def other_tables() -> None:
            try:
                outcome["run"] = tools.restore(db.target, dbname, dump_dir, jobs=jobs, section="data",
                                               use_list=use_list, **{**common, "on_start": remember})
            except BaseException as exc:  # re-raised in the calling thread
                outcome["error"] = exc

        worker = threading.Thread(target=other_tables, daemon=True)
        worker.start()
        try:
            for schema, table, _, path in big:
                if progress:
                    progress(f"loading {schema}.{table} over {jobs} parallel COPY streams")
                db.copy_in(dbname, schema, table, copy_blocks(path), streams=jobs, encoding=str(encoding),
                           session=RESTORE_SESSION)
        except BaseException:
            for proc in procs:
                proc.terminate()
            worker.join()
            raise
        worker.join()
    if "error" in outcome:
        raise outcome["error"]
    tools.restore(db.target, dbname, dump_dir, jobs=jobs, section="post-data", **common)
    return {"pg_restore_seconds": round(time.monotonic() - started, 3),
            "split_tables": [f"{schema}.{table}" for schema, table, *_ in big]}


# -- handlers -------------------------------------------------------------------------------------------------

@dataclass
class DbHandlers:
    """The step handlers of every db plan, sharing one Database and one set of pg tools."""

    config: Config
    rds: RdsAdapter | None = None
    on_restore_start: Callable[[Any], None] | None = None  # test seam: receives the pg_restore process
    lock_timeout: float = 10.0
    split_min_rows: int = SPLIT_MIN_ROWS
    _db: Database | None = field(default=None, init=False)
    _tools: PgTools | None = field(default=None, init=False)

    @property
    def db(self) -> Database:
        if self._db is None:
            self._db = open_database(self.config)
        return self._db

    @property
    def tools(self) -> PgTools:
        if self._tools is None:
            self._tools = tools_for(self.db, self.config.environ)
        return self._tools

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
        path = Path(str(step.params["manifest"]))
        return json.loads(path.read_text(encoding="utf-8")), Path(str(step.params["dump_dir"]))

    def verify_backup(self, step: Step, ctx: StepContext) -> Check:
        manifest, dump_dir = self._manifest(step)
        found = verify_backup(manifest, dump_dir, self.tools)
        return Check(False, found, f"backup {found['backup']} verified: {found['files']} files, "
                                   f"{found['toc_entries']} TOC entries")

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
        db.create_database_like(name, str(step.params["like"]))
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
                self.db.exists(name) and (self.db.comment(name) or "").startswith(COUNTS_MATCH_MARK))):
            return Check(True, dict(earlier), would)
        return Check(False, {}, would)

    def check_counts(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        name = str(step.params["database"])
        manifest, _ = self._manifest(step)
        from rollback.adapters.postgres import db_errors

        expected = {(str(t["schema"]), str(t["name"])): int(t["rows"]) for t in manifest.get("tables", [])}
        with self.db.connect(name) as conn, db_errors(f"checking the row counts of {name}"):
            present = {(str(s), str(t)) for s, t in conn.execute(
                "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind = 'r'").fetchall()}
            missing = sorted(set(expected) - present)
            counts = self.db.table_counts(conn=conn, tables=sorted(set(expected) & present))
        mismatches = [f"{c.key}: {c.rows} rows, backup had {expected[(c.schema, c.name)]}" for c in counts
                      if c.rows != expected[(c.schema, c.name)]]
        mismatches += [f"{'.'.join(m)}: missing" for m in missing]
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
            self.db.set_comment(name, f"{COUNTS_MATCH_MARK}{manifest.get('name', '')}")
        return {"database": name, "tables": len(counts), "rows": sum(c.rows for c in counts), "match": True}

    def check_swap(self, step: Step, ctx: StepContext) -> Check:
        restored, aside = str(step.params["restored"]), str(step.params["aside"])
        live = self.db.target.dbname
        would = f"rename {live} -> {aside}, {restored} -> {live}"
        if self.db.exists(aside) and not self.db.exists(restored):  # swapped: the copy has the live name
            return Check(True, {"live": live, "restored": restored, "set_aside": aside, "downtime_seconds": 0.0,
                                "terminated_sessions": 0}, would)
        # In a dry run of 'restore --swap' the copy does not exist yet: its check-counts step only said
        # what it would do.
        pending = "would" in (ctx.results.get(step.sibling("check-counts")) or {})
        if not pending and not (self.db.comment(restored) or "").startswith(COUNTS_MATCH_MARK):
            raise UnsafePrecondition(f"the row counts of {restored} were not checked against its backup, or did "
                                     "not match", "nothing was changed; restore again with 'rollback db restore "
                                     "BACKUP --swap'")
        return Check(False, {}, would)

    def swap(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        restored, aside = str(step.params["restored"]), str(step.params["aside"])
        result = self.db.swap(restored, aside)
        ctx.note(f"swapped in {restored}; downtime {result.downtime_seconds * 1000:.0f} ms; "
                 f"previous database kept as {aside}", downtime_seconds=result.downtime_seconds)
        return result.to_dict()

    def check_drop_set_aside(self, step: Step, ctx: StepContext) -> Check:
        name = str(step.params["database"])
        live = self.db.target.dbname
        if not (name.startswith(f"{live}_replaced_") or name.startswith(f"{live}_restore_")):
            raise UnsafePrecondition(f"{name} was not set aside by rollback", "nothing was dropped")
        if not self.db.exists(name):
            return Check(True, {"dropped": name}, f"drop {name}")
        return Check(False, {}, f"drop {name}")

    def drop_set_aside(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        name = str(step.params["database"])
        self.db.drop_database(name)
        return {"dropped": name}

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
            conn.execute(sql.encode())
            ids = PrismaMigrations(conn).mark_applied_rolled_back(name)
        return {"migration": name, "script": str(script), "marked_rolled_back": ids}

    # rds
    def _rds(self) -> RdsAdapter:
        if self.rds is None:
            from rollback.adapters.rds import open_rds

            self.rds = open_rds(self.config)
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
    """Integrity checks; ``ok`` is False when one fails (the CLI exits 3)."""
    from rollback.adapters.postgres import ForeignKey, db_errors
    from rollback.adapters.prisma import PrismaMigrations

    settings = config.env.database
    db = open_database(config)
    checks: list[dict[str, Any]] = []
    started = time.monotonic()
    conn = db.connect()
    with conn, db_errors("verifying the database"):
        version = conn.execute("SELECT current_setting('server_version')").fetchone()[0]
        checks.append(_check("connect", True, f"{(time.monotonic() - started) * 1000:.0f} ms",
                             detail=f"PostgreSQL {str(version).split()[0]}"))
        prisma = PrismaMigrations(conn)
        if prisma.is_managed():
            failed_names = [m.name for m in prisma.all() if m.status == "failed"]
            checks.append(_check("migrations.failed", not failed_names, len(failed_names), 0,
                                 ", ".join(failed_names)))
        else:
            checks.append(_check("migrations.failed", True, 0, 0, "not managed by Prisma Migrate"))
        existing = {str(r[0]) for r in conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY(current_schemas(false))").fetchall()}
        base: dict[str, int] = {}
        if baseline:
            manifest, _ = resolve_backup(config, baseline)
            base = {str(t["name"]) if t["schema"] == "public" else f"{t['schema']}.{t['name']}": int(t["rows"])
                    for t in manifest.get("tables", [])}
        watched = list(settings.tables) or sorted(base)
        for table in watched:
            if table.split(".")[-1] not in existing and table not in existing:
                checks.append(_check(f"rows.{table}", False, None, base.get(table), "table missing"))
                continue
            schema, _, name = table.rpartition(".")
            count = db.table_counts(conn=conn, tables=[(schema or "public", name)])[0].rows
            if table not in base:
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
                with conn.transaction():
                    orphans = db.count_orphans(conn, fk)
            except Exception as exc:
                checks.append(_check(f"orphans.{fk.label}", False, None, 0,
                                     f"cannot check: {' '.join(str(exc).split())[:200]}"))
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
    return Plan.of("db rds-restore", config.env_name,
                   [Step("rds-restore", "rds.restore", summary, target=f"rds {target}", params=params)],
                   ["the source instance is never modified or deleted; point the app at the new endpoint"])
