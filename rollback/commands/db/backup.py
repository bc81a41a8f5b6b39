"""``rollback db backup`` and ``db prune``: verified backups, staged standbys, what rollback set aside.

A backup is ``pg_dump`` (directory format, parallel) from one exported snapshot, so the
row counts in its manifest (:mod:`rollback.backups`) are exactly the dump's; it is
re-read (checksums, ``pg_restore --list``) before it is reported. ``--stage`` also
restores it into a standby beside the live database, which a later restore clones.
``prune`` drops the copies rollback set aside and removes interrupted backups.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import time
from pathlib import Path
from typing import Any

from rollback.actions import action
from rollback.adapters.pg_restore import restore_archive
from rollback.adapters.pg_tools import PgTools, file_checksums, remove_tree
from rollback.adapters.postgres import Database, db_errors
from rollback.adapters.prisma import PrismaMigrations
from rollback.backups import (
    INPROGRESS_SUFFIX,
    MANIFEST_SUFFIX,
    backup_in_progress,
    disk_errors,
    incomplete_backups,
    list_backups,
    load_manifest,
    manifest_path,
    new_manifest,
    remove_incomplete,
    verify_backup,
    write_manifest,
)
from rollback.commands.db.common import (
    DEFAULT_COMPRESS,
    DbSteps,
    Progress,
    compare_counts,
    db_stamp,
    default_jobs,
    drop_partial,
    dropped_on_failure,
    stamp,
)
from rollback.config import Config
from rollback.context import Services
from rollback.errors import ChecksFailed, DatabaseError, Interrupted, UnsafePrecondition
from rollback.journal import list_runs
from rollback.plan import Plan, Step
from rollback.runner import Check, StepContext
from rollback.setaside import Mark, classify_set_aside, set_aside_name
from rollback.standby import choose_standby, standby_details

__all__ = ["BackupSteps", "classified", "plan_backup", "plan_prune", "set_aside_databases",
           "stage_steps", "standbys", "take_backup"]


def take_backup(db: Database, tools: PgTools, out_dir: Path, *, jobs: int, kind: str = "manual",
                progress: Progress | None = None, compress: int = DEFAULT_COMPRESS,
                of: str | None = None) -> dict[str, Any]:
    """Dump the live database (one exported snapshot), checksum and verify it, write the manifest.

    With ``of``, dump that database instead: the copy a swap kept (``<live>_replaced_<time>``), which
    holds the live database as it was until the swap. The backup is still the live database's (its
    name, its identity: restoring it needs no ``--from-other-database``), and its manifest says which
    copy it was read from (``dumped_from``).

    On any failure the partial dump is removed and nothing is reported as a backup.
    While it runs, ``<name>.inprogress`` is locked: a dump directory without a
    manifest and without that lock was left by a backup that died (``db prune``
    removes it).
    """
    with disk_errors(out_dir):
        out_dir.mkdir(parents=True, exist_ok=True)
    dbname = db.target.dbname
    base = f"{dbname}-{stamp()}" + ("-emergency" if kind == "emergency" else "")
    name, n = base, 1
    while any((out_dir / (name + suffix)).exists() for suffix in ("", MANIFEST_SUFFIX, INPROGRESS_SUFFIX)):
        n += 1
        name = f"{base}-{n}"
    dump_dir = out_dir / name
    started = time.monotonic()
    created = dt.datetime.now(dt.UTC)
    try:
        with disk_errors(out_dir), backup_in_progress(out_dir, name, {"pid": os.getpid(), "kind": kind,
                                                                       "database": of or dbname}):
            manifest = _dump_and_describe(db, tools, dump_dir, name=name, kind=kind, created=created, jobs=jobs,
                                          compress=compress, progress=progress, started=started, of=of)
            path = manifest_path(dump_dir)
            write_manifest(path, manifest)
    except BaseException:
        remove_tree(dump_dir)
        manifest_path(dump_dir).with_name(manifest_path(dump_dir).name + ".tmp").unlink(missing_ok=True)
        raise
    return {**manifest, "manifest_path": str(path), "path": str(dump_dir)}


def _dump_and_describe(db: Database, tools: PgTools, dump_dir: Path, *, name: str, kind: str,
                       created: dt.datetime, jobs: int, compress: int, progress: Progress | None,
                       started: float, of: str | None = None) -> dict[str, Any]:
    """pg_dump from one exported snapshot (of the live database, or of ``of``), then the manifest
    (counts, source, checksums), verified."""
    version, _ = db.server_version()
    source = db.identity()
    with db.exported_snapshot(of) as (snapshot, conn):
        counts = db.table_counts(conn=conn)
        encoding = db.encoding(conn)
        with db_errors("reading the database's migrations"):
            prisma = PrismaMigrations(conn)
            managed = prisma.is_managed()
            head = prisma.head() if managed else None
        counted = time.monotonic()
        if progress:
            progress(f"counted {len(counts)} tables ({sum(c.rows for c in counts)} rows); dumping")
        dump = tools.dump(db.target.for_db(of) if of else db.target, dump_dir, jobs=jobs, compress=compress,
                          snapshot=snapshot, progress=progress, total=len(counts))
    dumped = time.monotonic()
    files = file_checksums(dump_dir)
    hashed = time.monotonic()
    manifest = new_manifest(
        name=name, kind=kind, created=created.isoformat(timespec="seconds").replace("+00:00", "Z"),
        target={"database": db.target.dbname, "host": db.target.params.get("host"),
                "port": db.target.params.get("port"), "user": db.target.user},
        source=source, server_version=version, encoding=encoding, pg_dump_version=tools.version("pg_dump"),
        jobs=jobs, compression=compress, tables=[c.to_dict() for c in counts], prisma_managed=managed,
        prisma_migration_head=head, files=files)
    check = verify_backup(manifest, dump_dir, tools)
    verified = time.monotonic()
    manifest["verified"] = {"toc_entries": check["toc_entries"], "checksums": "match"}
    if of:
        manifest["dumped_from"] = of
    manifest["durations"] = {"count_seconds": round(counted - started, 3),
                             "dump_seconds": round(dump.seconds, 3),
                             "checksum_seconds": round(hashed - dumped, 3),
                             "verify_seconds": round(verified - hashed, 3),
                             "total_seconds": round(verified - started, 3)}
    return manifest


def plan_backup(config: Config, *, out: Path | None = None, jobs: int | None = None, stage: bool = False,
                kind: str = "manual", services: Services) -> Plan:
    """A verified backup; with ``stage``, also restored into a standby beside the live database
    (and standbys beyond ``database.keep_standbys`` dropped once the new one is ready)."""
    chosen = services
    target = chosen.database_target()
    directory = out or config.backups_dir
    jobs = jobs or default_jobs()
    steps = [Step("backup", "db.backup", f"pg_dump (directory format, {jobs} jobs) into {directory}",
                  target=f"database {target.dbname}", params={"out": str(directory), "jobs": jobs, "kind": kind})]
    notes: list[str] = []
    if stage:
        steps += stage_steps(config, chosen.database(), jobs)
        notes.append("the standby uses as much disk as the database; it refuses connections and is kept until "
                     f"'rollback db prune' (the {config.env.database.keep_standbys} newest are kept)")
    return Plan.of("db backup" + (" --stage" if stage else ""), config.env_name, steps, notes)


def stage_steps(config: Config, db: Database, jobs: int, *, after: str = "backup") -> list[Step]:
    """Restore the backup that step ``after`` takes into a new standby; drop the standbys that
    then exceed ``database.keep_standbys``."""
    live = db.target.dbname
    standby = set_aside_name(live, "standby", db_stamp())
    keep = config.env.database.keep_standbys
    steps = [Step("stage", "db.stage", f"restore the new backup into standby {standby} ({jobs} jobs), check its row "
                  "counts, close it to connections", target=standby,
                  params={"database": standby, "like": live, "jobs": jobs, "backup_step": after})]
    old = [d for d in classified(db, config, keep_standbys=max(0, keep - 1)) if d["role"] == "standby"
           and d["prunable"]]
    steps += [Step(f"drop-standby-{n}", "db.drop_set_aside", f"drop older standby {d['database']} "
                   f"(keeping the {keep} newest)", target=d["database"],
                   params={"database": d["database"], "keep_standbys": max(0, keep - 1)}, destructive=True)
              for n, d in enumerate(old, start=1)]
    return steps


def standbys(config: Config, *, connect_timeout: int = 3,
             services: Services) -> dict[str, dict[str, Any]]:
    """Backup name -> its fresh standby (``{"standby": name}``) or why none is usable (``reason``)."""
    # The short-timeout profile's Database: a listing of the files must not wait for a down server.
    db = services.quick(float(connect_timeout)).database()
    rows = db.databases_with_prefix("")
    out: dict[str, dict[str, Any]] = {}
    for item in list_backups(config.backups_dir):
        if item.get("status") != "ok":
            continue
        choice = choose_standby(rows, db.target.dbname, item, db.database_facts)
        if choice.staged or choice.reason:
            out[str(item["name"])] = {"standby": choice.name, "reason": choice.reason}
    return out


# Journals written before ``step_planned`` named the steps that create a database (its ``creates_database``)
# are read by these action names: the steps that did so then. A new such step is declared with
# ``@action(..., creates_database=True)`` and its journals name it; this set never grows.
EARLIER_COPY_ACTIONS = frozenset({"db.restore_beside", "db.clone_standby", "db.stage"})


def journaled_copies(config: Config) -> dict[str, str]:
    """Databases that journaled runs planned to create beside the live one: name -> run id.

    A copy is marked right after ``CREATE DATABASE``; a kill between the two leaves it
    unmarked, and the journal is then the proof that rollback made it: its ``step_planned`` names the steps
    whose handlers create a database (``creates_database``).
    """
    out: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for run in list_runs(config.journal_dir):
            for entry in run.entries:
                if entry.get("event") != "step_planned" or not isinstance(entry.get("steps"), list):
                    continue
                named = entry.get("creates_database")
                for step in entry["steps"]:
                    params = step.get("params") if isinstance(step, dict) else None
                    if not isinstance(params, dict) or not isinstance(params.get("database"), str):
                        continue
                    creates = (step.get("id") in named if isinstance(named, list)
                               else step.get("action") in EARLIER_COPY_ACTIONS)
                    if creates:
                        out.setdefault(params["database"], run.run_id)
    return out


def set_aside_databases(config: Config, services: Services) -> list[dict[str, Any]]:
    """Databases beside the live one that rollback set aside (``prunable``), and look-alikes it did not
    make or must keep (``prunable`` false, with the reason)."""
    return classified(services.database(), config)


def classified(db: Database, config: Config, *, keep_standbys: int | None = None) -> list[dict[str, Any]]:
    live = db.target.dbname
    rows = db.databases_with_prefix("")
    keep = config.env.database.keep_standbys if keep_standbys is None else keep_standbys
    dumped = {str(b["dumped_from"]) for b in list_backups(config.backups_dir)
              if b.get("status") == "ok" and b.get("dumped_from") and b.get("database") == live}
    return classify_set_aside(rows, live, live_exists=any(r["name"] == live for r in rows),
                              journaled=journaled_copies(config), keep_standbys=keep, dumped=dumped)


def plan_prune(config: Config, *, keep_standbys: int | None = None, services: Services) -> Plan:
    """Drop the databases rollback set aside (standbys beyond the ``keep_standbys`` newest, default
    ``database.keep_standbys``) and remove interrupted backups of this database."""
    db = services.database()
    keep = config.env.database.keep_standbys if keep_standbys is None else keep_standbys
    found = classified(db, config, keep_standbys=keep)
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


class BackupSteps(DbSteps):
    """Step handlers: backups, staged standbys, prune."""

    def check_backup(self, step: Step, ctx: StepContext) -> Check:
        out = Path(str(step.params["out"]))
        would = f"dump {self.db.target.dbname} into {out}"
        earlier = ctx.earlier.get(step.id)
        if earlier is not None and earlier.get("manifest_path") and Path(str(earlier["manifest_path"])).is_file() \
                and Path(str(earlier.get("path"))).is_dir():
            return Check(True, dict(earlier), would)
        return Check(False, {"kind": step.params["kind"]}, would)

    @action("db.backup", check="check_backup")
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

    # -- the safety dump after a swap: the copy the swap kept, dumped as a backup of the live database

    def _dump_of(self, out: Path, aside: str) -> dict[str, Any] | None:
        """The complete backup in ``out`` read from ``aside`` (a kill after its manifest, before the mark)."""
        return next((b for b in list_backups(out) if b.get("status") == "ok" and b.get("dumped_from") == aside
                     and b.get("database") == self.db.target.dbname), None)

    def _dumping(self, out: Path, aside: str) -> dict[str, Any] | None:
        """The dump of ``aside`` another process is writing now (its ``.inprogress`` lock is held)."""
        for item in incomplete_backups(out, self.db.target.dbname):
            if item["in_progress"]:
                with contextlib.suppress(OSError, ValueError):
                    details = json.loads((out / (item["name"] + INPROGRESS_SUFFIX)).read_text())
                    if isinstance(details, dict) and details.get("database") == aside:
                        return {"name": item["name"], **details}
        return None

    def check_backup_replaced(self, step: Step, ctx: StepContext) -> Check:
        aside, out = str(step.params["database"]), Path(str(step.params["out"]))
        if not step.params.get("wait", True):
            # Its only effect is the background run it starts, which has a journal of its own.
            earlier = ctx.earlier.get(step.id)
            return Check(earlier is not None, dict(earlier or {}),
                         f"start the dump of {aside} into {out} as a run of its own, in the background")
        would = f"dump {aside} (the previous database, kept by the swap) into {out}, as an emergency backup"
        kept = self.db.exists(aside)
        mark = Mark.from_comment(self.db.comment(aside)) if kept else None
        written = mark.get("dump") if mark is not None and mark.role == "replaced" else None
        if isinstance(written, str) and written != "pending":
            earlier = ctx.earlier.get(step.id)
            return Check(True, dict(earlier) if earlier is not None else {"name": written, "of": aside}, would)
        running = self._dumping(out, aside)
        if running is not None:
            raise UnsafePrecondition(f"the dump of {aside} is being written by another process (pid "
                                     f"{running.get('pid')}, backup {running['name']})",
                                     "wait for it: 'rollback db backups' lists it as in progress until it is done")
        if not kept and "would" not in (ctx.results.get(step.sibling("swap")) or {}):  # a dry run: no swap yet
            raise UnsafePrecondition(f"{aside}, the copy the swap kept, is gone: there is nothing to dump",
                                     "the restored database is live; take a backup of it if you need one")
        return Check(False, {}, would)

    @action("db.backup_replaced", check="check_backup_replaced")
    def backup_replaced(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        """Dump the copy the swap kept (waiting for it, or as a background run), then mark it dumped."""
        aside, out = str(step.params["database"]), Path(str(step.params["out"]))
        if not step.params.get("wait", True):
            from rollback.commands.db.background import start_safety_dump

            started = start_safety_dump(self.config, step, parent_run=ctx.run_id)
            ctx.note(f"safety dump of {aside}: run {started['run']} writes it in the background (pid "
                     f"{started['pid']})", **started)
            return {"background": True, "database": aside, **started}
        manifest = self._dump_of(out, aside)
        try:
            if manifest is None:
                manifest = take_backup(self.db, self.tools, out, jobs=int(step.params["jobs"]),
                                       kind=str(step.params["kind"]), progress=ctx.progress, of=aside)
            else:
                ctx.note(f"{aside} was dumped completely by the stopped run ({manifest['name']}): marking it")
            mark = Mark.from_comment(self.db.comment(aside))
            details = dict(mark.details) if mark is not None else {}
            self.db.set_comment(aside, self._mark(ctx, "replaced", aside, **{**details, "dump": manifest["name"]}))
        except (KeyboardInterrupt, Interrupted) as exc:
            raise Interrupted(f"the safety dump of {aside} was interrupted; the restored database is live and "
                              f"{aside} (the previous one) is kept until its dump is written",
                              "'rollback resume' writes it") from exc
        except DatabaseError as exc:
            raise DatabaseError(f"the safety dump of {aside} failed: {exc.message}; the restored database is live and "
                                f"{aside} (the previous one) is kept until its dump is written",
                                f"{exc.hint + '; then ' if exc.hint else ''}'rollback resume' writes it") from exc
        ctx.note(f"safety dump {manifest['name']} of {aside}: {manifest['total_bytes']} bytes, verified")
        return {"name": manifest["name"], "of": aside, "manifest_path": manifest["manifest_path"],
                "path": manifest["path"], "total_bytes": manifest["total_bytes"],
                "total_rows": manifest["total_rows"], "tables": len(manifest["tables"]),
                "seconds": manifest.get("durations", {}).get("total_seconds")}

    def check_skip_emergency_backup(self, step: Step, ctx: StepContext) -> Check:
        would = f"skip the emergency backup (reason: {step.params['reason']})"
        earlier = ctx.earlier.get(step.id)
        if earlier is not None:  # journaled as skipped by the run being resumed: nothing to redo
            return Check(True, dict(earlier), would)
        return Check(False, {"skipped": True, "reason": step.params["reason"]}, would)

    @action("db.skip_emergency_backup", check="check_skip_emergency_backup")
    def skip_emergency_backup(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        ctx.note(f"emergency backup skipped: {step.params['reason']}", reason=step.params["reason"])
        return {"skipped": True, "reason": step.params["reason"]}

    def check_stage(self, step: Step, ctx: StepContext) -> Check:
        name = str(step.params["database"])
        would = f"restore the new backup into {name}, check its row counts, refuse connections to it"
        earlier = ctx.earlier.get(step.id)
        if earlier is not None and self._is_marked(name, "standby", counts="match"):
            return Check(True, dict(earlier), would)
        return Check(False, {}, would)

    @action("db.stage", check="check_stage", creates_database=True)
    def stage(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        """Restore the backup just taken into a standby, check its counts, close it, mark it complete."""
        name = str(step.params["database"])
        taken = ctx.results[step.sibling(str(step.params.get("backup_step", "backup")))]
        manifest_path = Path(str(taken["manifest_path"]))
        manifest = load_manifest(manifest_path)
        dump_dir = manifest_path.parent / str(manifest["dump_dir"])
        db = self.db
        started = time.monotonic()
        drop_partial(db, name, ctx, what="standby")
        db.create_database_like(name, str(step.params["like"]),
                                comment=self._mark(ctx, "standby", name, backup=manifest["name"], counts=None))
        with dropped_on_failure(db, name, what="standby", after=f"; the backup {manifest['name']} itself is complete"):
            loaded = restore_archive(db, self.tools, name, dump_dir, manifest, jobs=int(step.params["jobs"]),
                                     no_owner=not db.rights().superuser, progress=ctx.progress,
                                     on_start=self.on_restore_start, split_min_rows=self.split_min_rows)
            counts, mismatches = compare_counts(db, name, manifest)
            if mismatches:
                raise ChecksFailed(f"row counts of standby {name} do not match the backup: "
                                   f"{'; '.join(mismatches[:3])}", "the backup itself is kept; stage it again "
                                   "with 'rollback db backup --stage'", checks=mismatches)
            # What its freshness is judged by later (rollback.standby): the sequences' states, the transaction
            # horizon (every row written after it has an xmin past it) and its catalog row once closed.
            sequences = db.sequence_states(name)
            horizon = db.xid_horizon()
            db.set_allow_connections(name, False)
            db.end_sessions(name)
            facts = db.database_facts(name) or {}
            db.set_comment(name, self._mark(ctx, "standby", name, **standby_details(
                manifest, int(facts.get("bytes") or 0), xid_horizon=horizon, sequences=sequences,
                db_row=facts.get("row_version"))))
        ctx.note(f"backup {manifest['name']} staged as {name} ({len(counts)} tables checked)")
        return {"database": name, "backup": manifest["name"], "seconds": round(time.monotonic() - started, 3),
                "bytes": facts.get("bytes"), **loaded}

    def check_drop_set_aside(self, step: Step, ctx: StepContext) -> Check:
        name = str(step.params["database"])
        if not self.db.exists(name):
            return Check(True, {"dropped": name}, f"drop {name}")
        keep = step.params.get("keep_standbys")
        found = next((d for d in classified(self.db, self.config, keep_standbys=None if keep is None else int(keep))
                      if d["database"] == name), None)
        if found is None or not found["prunable"]:
            why = found["reason"] if found else "no such database beside the live one"
            raise UnsafePrecondition(f"{name} was not set aside by rollback, or must be kept: {why}",
                                     "nothing was dropped")
        return Check(False, {"evidence": found["evidence"]}, f"drop {name}")

    @action("db.drop_set_aside", check="check_drop_set_aside")
    def drop_set_aside(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        name = str(step.params["database"])
        found = dict(ctx.checked.result) if ctx.checked is not None else {}
        self.db.drop_database(name)
        return {"dropped": name, "evidence": found.get("evidence")}

    def check_remove_incomplete_backup(self, step: Step, ctx: StepContext) -> Check:
        directory, name = Path(str(step.params["directory"])), str(step.params["name"])
        would = f"remove the interrupted backup {directory / name}"
        found = next((b for b in incomplete_backups(directory, self.db.target.dbname) if b["name"] == name), None)
        if found is None and not (directory / name).exists():
            return Check(True, {"removed": str(directory / name)}, would)
        if found is None or found["in_progress"]:
            raise UnsafePrecondition(f"{name} is not an interrupted backup of {self.db.target.dbname} (complete, "
                                     "or still being written)", "nothing was removed")
        return Check(False, {}, would)

    @action("db.remove_incomplete_backup", check="check_remove_incomplete_backup")
    def remove_incomplete_backup(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        directory, name = Path(str(step.params["directory"])), str(step.params["name"])
        with disk_errors(directory):
            return remove_incomplete(directory, name)
