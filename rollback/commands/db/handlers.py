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
   takes its name: downtime is that rename window, measured. Service comes first:
   with ``swap`` step 3 moves after the swap and dumps the kept copy instead.

Every state-changing verb is a :class:`~rollback.plan.Plan` run by
:func:`rollback.runner.execute` with the handlers built by :class:`DbHandlers`:
each a read-only check (a backup already taken, a swap already made is "already
done") and an act.

Each job lives in its own module (:mod:`~rollback.commands.db.backup`,
:mod:`~rollback.commands.db.restore`, :mod:`~rollback.commands.db.salvage`,
:mod:`~rollback.commands.db.migrations`, :mod:`~rollback.commands.db.rds`,
:mod:`~rollback.commands.db.guard`, :mod:`~rollback.commands.db.rpo`); this module combines their handlers
and holds the library entry points (:func:`run`, :func:`backup`, :func:`resolve_backup`). Backups on disk
are :mod:`rollback.backups`, the restore of an archive :mod:`rollback.adapters.pg_restore`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rollback import backups
from rollback.backups import SourceIdentity
from rollback.commands.db.backup import BackupSteps, plan_backup
from rollback.commands.db.common import Progress
from rollback.commands.db.guard import GuardSteps
from rollback.commands.db.migrations import MigrationSteps
from rollback.commands.db.rds import RdsSteps
from rollback.commands.db.restore import RestoreSteps
from rollback.commands.db.salvage import SalvageSteps
from rollback.config import Config
from rollback.context import Services
from rollback.journal import Journal
from rollback.plan import Plan
from rollback.runner import ExecutionResult, Run, as_observer

__all__ = [
    "DbHandlers",
    "backup",
    "resolve_backup",
    "run",
]


@dataclass
class DbHandlers(BackupSteps, RestoreSteps, SalvageSteps, GuardSteps, MigrationSteps, RdsSteps, combines=True):
    """The step handlers of every db plan (each declared in its job's module), sharing one Services (one
    Database, one set of pg tools)."""


def run(config: Config, plan: Plan, *, handlers: DbHandlers, journal: Journal | None = None, dry_run: bool = False,
        progress: Progress | None = None) -> ExecutionResult:
    """Execute a db plan with the db handlers (``DbHandlers(services)``, the Services the plan was made with)."""
    return Run(plan, handlers.handlers(), journal=journal, dry_run=dry_run, observers=(as_observer(progress),)).go()


def backup(config: Config, *, out: Path | None = None, jobs: int | None = None, journal: Journal | None = None,
           progress: Progress | None = None, stage: bool = False, services: Services) -> dict[str, Any]:
    """Take a verified backup (and stage it); returns its manifest (plus ``manifest_path``/``path``,
    and ``standby`` when staged)."""
    outcome = run(config, plan_backup(config, out=out, jobs=jobs, stage=stage, services=services),
                  handlers=DbHandlers(services), journal=journal, progress=progress)
    result = dict(outcome.result_of("backup"))
    if stage:
        result["standby"] = outcome.result_of("stage")["database"]
    return result


def resolve_backup(config: Config, ref: str, *, live: SourceIdentity | None = None) -> tuple[dict[str, Any], Path]:
    """A backup given as a manifest path, a dump directory, a name in the backups dir, or ``latest``
    (the newest backup of ``live`` when given)."""
    return backups.resolve_backup(config.backups_dir, ref, live=live)

