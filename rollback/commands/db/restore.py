"""``rollback db restore`` and ``db swap``: restore beside the live database, check, then swap.

The live database is never touched until a complete, verified copy sits beside it:
the backup is verified, the role's rights checked, an emergency backup taken, the
backup restored into a new database (or a staged standby cloned), its row counts
checked against the manifest; with ``swap`` the live database is renamed aside (kept)
and the copy takes its name in one transaction.

With ``swap`` service comes first: the emergency backup is a safety dump written after the
swap, from the copy the swap kept (the live database as it was until then, untouched by the
application since), so it no longer competes with the restore. The swap marks that copy
``dump: pending`` in its own transaction, and ``db prune`` keeps it until the dump is written.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from rollback.actions import action
from rollback.adapters.pg_restore import IN_PLACE_SESSION, restore_archive
from rollback.adapters.postgres import Database
from rollback.backups import (
    SourceIdentity,
    check_source,
    list_backups,
    manifest_path,
    resolve_backup,
    source_of,
    verify_backup,
)
from rollback.commands.db.common import (
    DbSteps,
    compare_counts,
    db_stamp,
    default_jobs,
    drop_partial,
    dropped_on_failure,
    emergency_step,
    live_identity,
)
from rollback.commands.db.guard import backups_before_migration
from rollback.config import Config
from rollback.context import Services
from rollback.errors import BadInput, ChecksFailed, DatabaseError, UnsafePrecondition
from rollback.plan import Plan, Step
from rollback.runner import Check, StepContext
from rollback.setaside import Mark, parse_set_aside_name, set_aside_name
from rollback.standby import StandbyChoice, choose_standby, needs_data_check
from rollback.units import format_duration

__all__ = ["RestoreSteps", "plan_restore", "plan_swap"]


def plan_restore(config: Config, backup_ref: str | None, *, swap: bool = False, in_place: bool = False,
                 skip_emergency_reason: str | None = None, jobs: int | None = None,
                 from_other_database: bool = False, before_migration: str | None = None,
                 services: Services, wait_backup: bool = True) -> Plan:
    """Plan a restore of ``backup_ref``: verify, rights, emergency backup, restore beside, counts, swap;
    with ``swap``: verify, rights, restore beside, counts, swap, then the safety dump of the copy the
    swap kept (``wait_backup=False``: started in the background as a journaled run of its own).

    The backup must have been taken from this environment's database (``latest``
    is the newest such backup); another database's backup is refused unless
    ``from_other_database``.
    """
    if swap and in_place:
        raise BadInput("--swap and --in-place exclude each other", "--swap restores beside, then swaps")
    if not wait_backup and (not swap or skip_emergency_reason is not None):
        raise BadInput("--no-wait-backup goes with --swap (the safety dump is written after the swap) and "
                       "without --skip-emergency-backup", "rollback db restore BACKUP --swap --no-wait-backup")
    db = services.database()
    live = db.target.dbname
    identity = live_identity(db)
    if bool(backup_ref) == bool(before_migration):
        raise BadInput("give a BACKUP or --before-migration NAME (one of them)",
                       "rollback db restore latest --swap, or rollback db restore --before-migration NAME --swap")
    if before_migration:
        backup_ref = _backup_before_migration(config, identity, before_migration)
    assert backup_ref is not None
    manifest, dump_dir = resolve_backup(config.backups_dir, backup_ref, live=identity)
    other = check_source(manifest, identity, allow_other=from_other_database)
    jobs = jobs or default_jobs()
    stamp = db_stamp()
    restored = set_aside_name(live, "restore", stamp)
    aside = set_aside_name(live, "replaced", stamp)
    name = str(manifest.get("name", dump_dir.name))
    source = source_of(manifest)
    common = {"manifest": str(manifest_path(dump_dir)), "dump_dir": str(dump_dir)}
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
    emergency = emergency_step(skip_emergency_reason, config, jobs, replaced=aside if swap else None,
                               wait=wait_backup)
    if not staged and not swap:
        steps.append(emergency)
    notes: list[str] = [f"backup {name} was taken at {manifest.get('created_at')} from database "
                        f"{source.describe()}"]
    if other:
        notes.append(other)
    if staged and choice is not None:
        notes.append(f"backup {name} is staged: the restore clones standby {choice.name} (a file copy; the "
                     "standby is kept for a second attempt)")
        if choice.check_data:
            notes.append(f"connections to standby {choice.name} were allowed since it was staged: its clone is "
                         "checked for rows written since staging (one read of each table) before anything else")
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
        if staged and not swap:
            # After the clone: the clone's checkpoint then does not have to write the pages the backup's
            # reads dirtied (hint bits), and the backup is as recent as it can be.
            steps.append(emergency)
        if swap:
            steps.append(Step("swap", "db.swap", f"swap: {live} -> {aside} (kept), {restored} -> {live}",
                              target=live, params={"restored": restored, "aside": aside},
                              destructive=True))
            steps.append(emergency)  # service first: the safety dump reads the copy the swap kept
        else:
            notes.append(f"the restored database stays beside the live one; swap with: "
                         f"rollback db swap {restored} --yes")
    notes.append("the live database is never dropped: a swap keeps it as <name>_replaced_<time> "
                 "(remove later with 'rollback db prune')")
    if swap and skip_emergency_reason is None:
        notes.append(f"service first: the emergency backup is a dump of {aside} written after the swap"
                     + (" in the background, as a journaled run of its own" if not wait_backup else "")
                     + f"; 'rollback db prune' keeps {aside} until that dump is written")
    return Plan.of(f"db restore {name}" + (" --swap" if swap else "") + (" --in-place" if in_place else ""),
                   config.env_name, steps, notes)


def _backup_before_migration(config: Config, identity: SourceIdentity, migration: str) -> str:
    """The manifest path of the newest backup of this database that 'db guard' took before ``migration``."""
    found = backups_before_migration([b for b in list_backups(config.backups_dir, identity)
                                      if b.get("this_database")], migration)
    if not found:
        raise BadInput(f"no backup of this database was taken by 'rollback db guard' before migration {migration}",
                       "list backups with 'rollback db backups --json' (their 'guard' field names the migrations)")
    return str(found[0]["manifest_path"])


def _standby_for(db: Database, manifest: Mapping[str, Any]) -> StandbyChoice:
    return choose_standby(db.databases_with_prefix(""), db.target.dbname, manifest, db.database_facts)


def plan_swap(config: Config, restored: str, *, services: Services) -> Plan:
    db = services.database()
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
    aside = set_aside_name(live, "replaced", db_stamp())
    return Plan.of(f"db swap {restored}", config.env_name, [
        Step("check-rights", "db.check_rights", f"check the role's rights on {live}",
             params={"live": live, "restored": None, "swap": True, "in_place": False, "swap_in": restored}),
        Step("swap", "db.swap", f"swap: {live} -> {aside} (kept), {restored} -> {live}", target=live,
             params={"restored": restored, "aside": aside}, destructive=True),
    ], ["the replaced database is kept; remove it later with 'rollback db prune'"])


class RestoreSteps(DbSteps):
    """Step handlers: verify, rights, restore beside or in place, row counts, standby clone, swap."""

    @action("db.verify_backup", read_only=True)
    def verify_backup(self, step: Step, ctx: StepContext) -> Check:
        manifest, dump_dir = self._manifest(step)
        note = check_source(manifest, live_identity(self.db),
                            allow_other=bool(step.params.get("from_other_database")))
        found = verify_backup(manifest, dump_dir, self.tools)
        return Check(False, {**found, "source": source_of(manifest).to_dict(), **({"note": note} if note else {})},
                     f"backup {found['backup']} verified: {found['files']} files, {found['toc_entries']} TOC entries")

    @action("db.check_rights", read_only=True)
    def check_rights(self, step: Step, ctx: StepContext) -> Check:
        return Check(False, self._rights(step, ctx), "the role's rights are sufficient")

    def _rights(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        live = str(step.params["live"])
        swap_in = step.params.get("swap_in")
        if swap_in and self._swapped_in(str(swap_in), step, ctx):
            swap_in = None  # resumed after this plan's swap: the copy is the live database now
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
                    "emergency backup first)", details={"missing": "CREATEDB"})
            for name in names:
                if not rights.owns.get(name):
                    why = ("restoring in place drops and recreates its objects" if step.params.get("in_place")
                           else "renaming it needs ownership")
                    raise UnsafePrecondition(
                        f"role {role} does not own database {name}: {why}",
                        f"ALTER DATABASE {name} OWNER TO {role} (as a superuser or the owner), or use the "
                        "owner's URL", details={"missing": "OWNER"})
            if step.params.get("swap") and not rights.createdb:
                raise UnsafePrecondition(f"role {role} lacks CREATEDB: renaming a database needs it",
                                         f"ALTER ROLE {role} CREATEDB (as a superuser)",
                                         details={"missing": "CREATEDB"})
            # The safety dump reads the kept copy after the swap: what it could not read is found now, while
            # nothing has changed, not once the previous database is only that copy.
            unreadable = [] if ctx.resuming or not any(s.action == "db.backup_replaced" for s in ctx.plan.steps) \
                else self.db.unreadable(live)
            if unreadable:
                raise UnsafePrecondition(
                    f"role {role} may not read {', '.join(unreadable[:3])}" + (
                        f" (+{len(unreadable) - 3} more)" if len(unreadable) > 3 else "")
                    + f" in {live}: the safety dump of the previous database after the swap would fail",
                    f"GRANT SELECT on them TO {role} (or USAGE on their schema), or use the owner's URL; nothing "
                    "was changed", details={"missing": "SELECT", "tables": unreadable})
        return {"role": role, **rights.to_dict()}

    def check_restore_beside(self, step: Step, ctx: StepContext) -> Check:
        name = str(step.params["database"])
        manifest, _ = self._manifest(step)
        would = f"create {name} and pg_restore {manifest['name']} into it"
        earlier = ctx.earlier.get(step.id)
        if earlier is not None and (self.db.exists(name) or self._swapped_in(name, step, ctx)):
            return Check(True, dict(earlier), would)
        if ctx.resuming and self.db.exists(name):
            would = f"drop the partial copy {name} the stopped run left, then {would}"
        return Check(False, {}, would)

    @action("db.restore_beside", check="check_restore_beside", creates_database=True)
    def restore_beside(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        name = str(step.params["database"])
        manifest, dump_dir = self._manifest(step)
        db = self.db
        started = time.monotonic()
        drop_partial(db, name, ctx, what="copy")
        db.create_database_like(name, str(step.params["like"]),
                                comment=self._mark(ctx, "restore", name, backup=manifest["name"], counts=None))
        # The half-restored copy is ours to remove; the live database was never touched.
        with dropped_on_failure(db, name, what="copy", after=f", the live database {db.target.dbname} is untouched",
                                hint="check the backup and the server log"):
            rights = db.rights()
            loaded = restore_archive(db, self.tools, name, dump_dir, manifest, jobs=int(step.params["jobs"]),
                                     no_owner=not rights.superuser, progress=ctx.progress,
                                     on_start=self.on_restore_start, split_min_rows=self.split_min_rows)
        return {"database": name, "oid": db.oid(name), "seconds": round(time.monotonic() - started, 3), **loaded}

    def check_restore_in_place(self, step: Step, ctx: StepContext) -> Check:
        name = str(step.params["database"])
        manifest, _ = self._manifest(step)
        would = f"pg_restore --clean --single-transaction {manifest['name']} into {name}"
        earlier = ctx.earlier.get(step.id)
        if earlier is not None:  # one transaction: it happened whole (the row counts are checked next)
            return Check(True, dict(earlier), would)
        return Check(False, {}, would)

    @action("db.restore_in_place", check="check_restore_in_place")
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
                self.db.exists(name) and self._is_marked(name, "restore", counts="match"))
                or self._swapped_in(name, step, ctx)):
            return Check(True, dict(earlier), would)
        return Check(False, {}, would)

    @action("db.check_counts", check="check_check_counts", read_only=True)
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

    @action("db.check_standby", read_only=True)
    def check_standby(self, step: Step, ctx: StepContext) -> Check:
        """The standby chosen at planning time is still fresh (and the backup is of this database).
        Resumed after the clone was made, what it checked then is what counts."""
        earlier = ctx.earlier.get(step.id)
        restore = next((s for s in ctx.plan.steps if s.action == "db.clone_standby"), None)
        if earlier is not None and restore is not None and restore.id in ctx.earlier:
            return Check(True, dict(earlier), f"standby {step.params['standby']} was fresh")
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
        if earlier is not None and (self.db.exists(name) or self._swapped_in(name, step, ctx)):
            return Check(True, dict(earlier), would)
        return Check(False, {}, would)

    @action("db.clone_standby", check="check_clone_standby", creates_database=True)
    def clone_standby(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        """Create the restored copy as a file copy of the standby (which is kept)."""
        name, standby = str(step.params["database"]), str(step.params["standby"])
        manifest, _ = self._manifest(step)
        drop_partial(self.db, name, ctx, what="copy")
        started = time.monotonic()
        self.db.create_database_like(name, str(step.params["like"]), template=standby,
                                     comment=self._mark(ctx, "restore", name, backup=manifest["name"], counts=None,
                                                        standby=standby))
        checked = self._check_clone(ctx, standby, name)
        return {"database": name, "oid": self.db.oid(name), "standby": standby,
                "seconds": round(time.monotonic() - started, 3), "pg_restore_seconds": 0.0, "split_tables": [],
                **checked}

    def _check_clone(self, ctx: StepContext, standby: str, clone: str) -> dict[str, Any]:
        """When connections to the standby were allowed since it was staged, the clone's data against
        staging (:mod:`rollback.standby`); a change drops the clone and marks the standby stale."""
        mark = Mark.from_comment(self.db.comment(standby))
        if mark is None or not needs_data_check(mark, self.db.database_facts(standby)):
            return {"data_checked": False}
        started = time.monotonic()
        changed = self.db.written_since(clone, int(mark.get("xid_horizon")))
        if self.db.sequence_states(clone) != mark.get("sequences"):
            changed.append("sequences")
        if not changed:
            ctx.note(f"standby {standby} took connections since it was staged; its data is as staged "
                     f"(checked in {time.monotonic() - started:.2f} s)")
            return {"data_checked": True, "data_check_seconds": round(time.monotonic() - started, 3)}
        why = "changed since staging: " + ", ".join(changed[:5]) + (" ..." if len(changed) > 5 else "")
        self.db.drop_database(clone)
        self.db.set_comment(standby, Mark(mark.role, mark.run, mark.live, mark.name, mark.at,
                                          {**dict(mark.details), "stale": why}).to_comment())
        raise ChecksFailed(f"standby {standby} was changed after it was staged ({why}): its clone {clone} was "
                           "dropped and the standby is marked stale",
                           "nothing else was changed; run the restore again: it restores from the dump",
                           checks=changed)

    def _swapped_in(self, name: str, step: Step, ctx: StepContext) -> bool:
        """Resumed: has this plan's swap put ``name`` (the plan's restored copy) in the live database's
        place? Then a step that made or checked the copy stays done although no database has its name
        any more: the copy is gone under that name, the database the swap set aside carries the mark
        naming it (``replaced_by``), and the live database is that copy (the oid its restore recorded;
        a rename keeps it)."""
        if not ctx.resuming:
            return False
        swap = next((s for s in ctx.plan.steps if s.action == "db.swap" and s.params.get("restored") == name), None)
        if swap is None or self.db.exists(name):
            return False
        aside = str(swap.params["aside"])
        if not self.db.exists(aside) or not self._is_marked(aside, "replaced", replaced_by=name):
            return False
        made = next((ctx.earlier.get(s.id) for s in ctx.plan.steps
                     if s.action in ("db.restore_beside", "db.clone_standby") and s.params.get("database") == name
                     and s.id in ctx.earlier), None)
        oid = (made or {}).get("oid")
        return oid is None or self.db.oid(self.db.target.dbname) == oid

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

    @action("db.swap", check="check_swap")
    def swap(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        restored, aside = str(step.params["restored"]), str(step.params["aside"])
        mark = Mark.from_comment(self.db.comment(restored))
        backup_name = mark.get("backup") if mark else None
        # A safety dump of the kept copy follows in this plan: the copy is marked as waiting for it in the
        # swap's own transaction, so that no moment exists where 'db prune' could drop it undumped.
        dump = any(s.action == "db.backup_replaced" and s.params.get("database") == aside for s in ctx.plan.steps)
        result = self.db.swap(restored, aside, aside_comment=self._mark(ctx, "replaced", aside, replaced_by=restored,
                                                                         backup=backup_name,
                                                                         **({"dump": "pending"} if dump else {})))
        ctx.note(f"swapped in {restored}; downtime {format_duration(result.downtime_seconds)}; "
                 f"previous database kept as {aside}", downtime_seconds=result.downtime_seconds)
        return result.to_dict()
