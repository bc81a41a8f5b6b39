"""What every part of ``rollback db`` shares: the step handlers' base, names, jobs, the emergency step.

:class:`DbSteps` holds what the handlers of every db plan share (one :class:`~rollback.context.Services`:
one Database, one set of pg tools, one RDS adapter) and the helpers they all use; each job's
handlers are a mixin of it in that job's module (:mod:`~rollback.commands.db.backup`,
:mod:`~rollback.commands.db.restore`, :mod:`~rollback.commands.db.salvage`,
:mod:`~rollback.commands.db.migrations`, :mod:`~rollback.commands.db.rds`,
:mod:`~rollback.commands.db.guard`), and :class:`rollback.commands.db.handlers.DbHandlers` combines them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rollback.actions import StepHandlers
from rollback.adapters.pg_restore import SPLIT_MIN_ROWS
from rollback.adapters.pg_tools import PgTools
from rollback.adapters.postgres import Database, TableCount, db_errors
from rollback.adapters.rds import RdsAdapter
from rollback.backups import SourceIdentity, load_manifest
from rollback.config import Config
from rollback.context import Services
from rollback.errors import BadInput, DatabaseError
from rollback.plan import Step
from rollback.redact import redact_text
from rollback.runner import StepContext
from rollback.setaside import Mark

__all__ = ["DEFAULT_COMPRESS", "DbSteps", "Progress", "compare_counts", "config_identity", "db_stamp", "default_jobs",
           "drop_partial", "dropped_on_failure", "emergency_step", "live_identity", "migrations_dir", "stamp"]

DEFAULT_COMPRESS = 6

Progress = Callable[[str], None]


def default_jobs() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def stamp(now: dt.datetime | None = None) -> str:
    return (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")


def db_stamp(now: dt.datetime | None = None) -> str:
    return (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%d%H%M%S")


def live_identity(db: Database) -> SourceIdentity:
    """The identity of the live database (system identifier read from the server)."""
    return SourceIdentity.from_dict(db.identity())


def config_identity(config: Config, services: Services) -> SourceIdentity:
    """The live database as the URL names it (no connection: no system identifier)."""
    target = services.database_target()
    return SourceIdentity(target.dbname, target.params.get("host"), target.params.get("port"))


def migrations_dir(config: Config) -> Path:
    return config.resolve_path(config.env.database.migrations_dir)


def emergency_step(reason: str | None, config: Config, jobs: int, *, replaced: str | None = None,
                   wait: bool = True) -> Step:
    """The emergency backup before a destructive step, or its journaled skip.

    With ``replaced`` (a swap's plan), the safety dump that follows the swap instead: the live database
    as it was until then, read from the copy the swap keeps (``<live>_replaced_<time>``), so that it
    does not compete with restoring service. ``wait=False``: the step starts that dump as a journaled
    run of its own in the background and the command returns (``--no-wait-backup``).
    """
    if reason is not None:
        if not reason.strip():
            raise BadInput("--skip-emergency-backup needs a non-empty --reason", "say why, it is journaled")
        why = redact_text(reason.strip())  # free text, journaled and printed: redacted where it enters
        return Step("emergency-backup", "db.skip_emergency_backup",
                    f"emergency backup SKIPPED (reason: {why})", params={"reason": why})
    if replaced is not None:
        where = "in the background (a journaled run of its own)" if not wait else f"into {config.backups_dir}"
        return Step("emergency-backup", "db.backup_replaced",
                    f"safety dump of the previous database (the copy the swap kept) {where}",
                    target=replaced, params={"database": replaced, "out": str(config.backups_dir), "jobs": jobs,
                                             "kind": "emergency", "wait": wait})
    return Step("emergency-backup", "db.backup", f"emergency backup of the live database into {config.backups_dir}",
                params={"out": str(config.backups_dir), "jobs": jobs, "kind": "emergency"})


def compare_counts(db: Database, name: str, manifest: Mapping[str, Any]) -> tuple[list[TableCount], list[str]]:
    """Exact row counts of database ``name`` against the manifest: ``(counts, mismatches)``."""
    expected = {(str(t["schema"]), str(t["name"])): int(t["rows"]) for t in manifest["tables"]}
    with db.connect(name) as conn, db_errors(f"checking the row counts of {name}"):
        present = db.tables(conn)
        missing = sorted(set(expected) - present)
        counts = db.table_counts(conn=conn, tables=sorted(set(expected) & present))
    mismatches = [f"{c.key}: {c.rows} rows, backup had {expected[(c.schema, c.name)]}" for c in counts
                  if c.rows != expected[(c.schema, c.name)]]
    mismatches += [f"{'.'.join(m)}: missing" for m in missing]
    return counts, mismatches


def drop_partial(db: Database, name: str, ctx: StepContext, *, what: str) -> None:
    """On resume: drop database ``name`` (a ``what``: standby, copy...) half made when the run stopped. Its
    name is unique to the plan, so whatever has it is this plan's own."""
    if ctx.resuming and db.exists(name):
        ctx.note(f"dropping the partial {what} {name} left by the stopped run")
        db.drop_database(name)


@contextlib.contextmanager
def dropped_on_failure(db: Database, name: str, *, what: str, after: str = "",
                       hint: str | None = None) -> Iterator[None]:
    """Around the filling of a database just created (a standby staged, a copy restored): when it fails
    (or is interrupted), the half-made database is dropped, and a :class:`DatabaseError` says whether it
    could be (``after`` ends its message; ``hint`` replaces the error's own)."""
    try:
        yield
    except BaseException as exc:
        dropped = False
        with contextlib.suppress(DatabaseError):
            db.drop_database(name)
            dropped = True
        if isinstance(exc, DatabaseError):
            partial = (f"the partial {what} {name} was dropped" if dropped else
                       f"the partial {what} {name} could not be dropped; remove it with 'rollback db prune'")
            raise DatabaseError(f"{exc.message}; {partial}{after}", hint or exc.hint) from exc
        raise


@dataclass
class DbSteps(StepHandlers):
    """What the step handlers of every db plan share: one Database, one set of pg tools, one RDS adapter
    (all from ``services``, built on first use)."""

    layer = "db"

    on_restore_start: Callable[[Any], None] | None = None  # test seam: receives the pg_restore process
    lock_timeout: float = 10.0
    split_min_rows: int = SPLIT_MIN_ROWS
    guard_stdout_to_stderr: bool = False  # 'db guard --json': the guarded command's output goes to stderr

    @property
    def db(self) -> Database:
        return self.services.database()

    @property
    def tools(self) -> PgTools:
        return self.services.pg_tools()

    def _rds(self) -> RdsAdapter:
        return self.services.rds()

    def _manifest(self, step: Step) -> tuple[dict[str, Any], Path]:
        return load_manifest(Path(str(step.params["manifest"]))), Path(str(step.params["dump_dir"]))

    def _mark(self, ctx: StepContext, role: str, name: str, **details: Any) -> str:
        return Mark(role, ctx.run_id or "unjournaled", self.db.target.dbname, name, details=details).to_comment()

    def _is_marked(self, name: str, role: str, **expected: Any) -> bool:
        """``name`` carries rollback's mark for ``role`` (and the ``expected`` details)."""
        mark = Mark.from_comment(self.db.comment(name))
        return mark is not None and mark.role == role and mark.is_mark_of(name, self.db.target.dbname) \
            and all(mark.get(k) == v for k, v in expected.items())
