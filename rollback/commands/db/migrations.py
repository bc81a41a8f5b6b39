"""``rollback db migrations``, ``db resolve``, ``db down`` and ``db verify``: Prisma's migrations and integrity.

``resolve`` and ``down`` run under Prisma Migrate's advisory lock, in one transaction;
``verify`` runs each integrity check on its own (one that cannot run fails alone).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rollback.actions import action
from rollback.adapters.postgres import ForeignKey, StatementFailed, db_errors, savepoint
from rollback.adapters.prisma import PrismaMigrations, local_migrations, migration_error
from rollback.backups import resolve_backup
from rollback.commands.db.common import (
    DbSteps,
    default_jobs,
    emergency_step,
    live_identity,
    migrations_dir,
)
from rollback.config import Config
from rollback.context import Services
from rollback.errors import BadInput, UnsafePrecondition
from rollback.plan import Plan, Step
from rollback.redact import redact
from rollback.runner import Check, StepContext

__all__ = ["MigrationSteps", "migrations", "plan_down", "plan_resolve", "verify"]


def migrations(config: Config, *, services: Services) -> dict[str, Any]:
    """The ``_prisma_migrations`` rows by status, plus local migrations never recorded."""
    db = services.database()
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


def plan_resolve(config: Config, *, rolled_back: str | None, applied: str | None,
                 services: Services) -> Plan:
    if bool(rolled_back) == bool(applied):
        raise BadInput("give exactly one of --rolled-back NAME or --applied NAME")
    target = services.database_target()
    if rolled_back:
        step = Step("resolve", "db.resolve", f"mark migration {rolled_back} rolled back",
                    target=f"database {target.dbname}", params={"rolled_back": rolled_back})
    else:
        step = Step("resolve", "db.resolve", f"mark migration {applied} applied (checksum of local migration.sql)",
                    target=f"database {target.dbname}", params={"applied": applied,
                                                                 "migrations_dir": str(migrations_dir(config))})
    return Plan.of("db resolve", config.env_name, [step])


def plan_down(config: Config, name: str, *, skip_emergency_reason: str | None = None,
              jobs: int | None = None, services: Services) -> Plan:
    script = migrations_dir(config) / name / "down.sql"
    if not script.is_file():
        raise BadInput(f"no down migration {script}",
                       "write it by hand or with 'prisma migrate diff --from-schema-datamodel ... --script'")
    target = services.database_target()
    return Plan.of(f"db down {name}", config.env_name, [
        Step("check-migration", "db.check_migration", f"check that {name} is applied", params={"name": name}),
        emergency_step(skip_emergency_reason, config, jobs or default_jobs()),
        Step("down", "db.down", f"run {script.name} of {name} in one transaction and mark it rolled back",
             target=f"database {target.dbname}", params={"name": name, "script": str(script)}, destructive=True),
    ])


def _check(name: str, ok: bool, value: Any, expected: Any = None, detail: str = "") -> dict[str, Any]:
    return {"check": name, "ok": ok, "value": value, "expected": expected, "detail": detail}


def verify(config: Config, *, baseline: str | None = None, tolerance: float = 0.0,
           services: Services) -> dict[str, Any]:
    """Integrity checks; ``ok`` is False when one fails (the CLI exits 3). Each check runs on its own:
    one that cannot run (a missing schema or table, a missing privilege) is reported as failed."""
    settings = config.env.database
    db = services.database()
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
            manifest, _ = resolve_backup(config.backups_dir, baseline, live=live_identity(db))
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


class MigrationSteps(DbSteps):
    """Step handlers: resolve a migration, check one is applied, run its down script."""

    def check_resolve(self, step: Step, ctx: StepContext) -> Check:
        """What ``resolve`` would change (Prisma's errors when it cannot: P3011, P3012, P3008, P3017)."""
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

    @action("db.resolve", check="check_resolve")
    def resolve(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        with self.db.connect() as conn, self.db.advisory_lock(conn, timeout=self.lock_timeout), \
                db_errors("resolving the migration"), conn.transaction():
            prisma = PrismaMigrations(conn)
            if step.params.get("rolled_back"):
                return prisma.resolve_rolled_back(str(step.params["rolled_back"]))
            return prisma.resolve_applied(str(step.params["applied"]), Path(str(step.params["migrations_dir"])))

    @action("db.check_migration", read_only=True)
    def check_migration(self, step: Step, ctx: StepContext) -> Check:
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

    @action("db.down", check="check_down")
    def down(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        name, script = str(step.params["name"]), Path(str(step.params["script"]))
        sql = script.read_text(encoding="utf-8")
        failed = f"running {script.name} of {name}"
        with self.db.connect() as conn, self.db.advisory_lock(conn, timeout=self.lock_timeout), \
                db_errors(failed, "the transaction was rolled back: the schema is as it was"), conn.transaction():
            self.db.run_script(conn, sql)
            ids = PrismaMigrations(conn).mark_applied_rolled_back(name)
        return {"migration": name, "script": str(script), "marked_rolled_back": ids}
