"""Prisma Migrate's bookkeeping table, ``_prisma_migrations``, read and resolved like Prisma does.

The semantics of ``resolve`` follow prisma-engines (``mark_migration_rolled_back``
and ``mark_migration_applied`` in schema-engine's core):

- ``--rolled-back NAME``: no row with that name -> P3011; no row in a failed state
  (``finished_at`` and ``rolled_back_at`` both null) -> P3012; otherwise every
  failed row of that name gets ``rolled_back_at = now()``.
- ``--applied NAME``: no local ``migrations/NAME/migration.sql`` -> P3017; a row of
  that name already applied (finished, not rolled back) -> P3008; otherwise failed
  rows of that name are marked rolled back and a new row is recorded as applied,
  with the sha256 (hex) of the local ``migration.sql`` as its checksum.

Both run under Prisma's advisory lock so they never interleave with a running
``prisma migrate``. A database without the table is not managed by Prisma Migrate.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rollback.errors import BadInput, UnsafePrecondition

__all__ = ["Migration", "PrismaMigrations", "local_migrations", "migration_error"]

TABLE = "_prisma_migrations"

_CREATE = """
CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
    "id"                    VARCHAR(36) PRIMARY KEY NOT NULL,
    "checksum"              VARCHAR(64) NOT NULL,
    "finished_at"           TIMESTAMPTZ,
    "migration_name"        VARCHAR(255) NOT NULL,
    "logs"                  TEXT,
    "rolled_back_at"        TIMESTAMPTZ,
    "started_at"            TIMESTAMPTZ NOT NULL DEFAULT now(),
    "applied_steps_count"   INTEGER NOT NULL DEFAULT 0
)"""

_MESSAGES = {
    "P3008": "The migration `{name}` is already recorded as applied in the database.",
    "P3011": ("Migration `{name}` cannot be rolled back because it was never applied to the database. "
              "Hint: did you pass in the whole migration path? (example: \"20201207184859_initial_migration\")"),
    "P3012": "Migration `{name}` cannot be rolled back because it is not in a failed state.",
    "P3017": ("The migration {name} could not be found. Please make sure that the migration exists, and that "
              "you included the whole name of the directory. (example: \"20201207184859_initial_migration\")"),
}


def migration_error(code: str, name: str, hint: str | None = None) -> BadInput | UnsafePrecondition:
    """Prisma's error, with its code: unknown names are bad input (2), wrong states refusals (4)."""
    message = f"{code}: {_MESSAGES[code].format(name=name)}"
    if code in ("P3011", "P3017"):
        return BadInput(message, hint or "list migrations with 'rollback db migrations'", details={"code": code})
    return UnsafePrecondition(message, hint or "nothing was changed", details={"code": code})


@dataclass(frozen=True)
class Migration:
    id: str
    name: str
    checksum: str
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    rolled_back_at: dt.datetime | None
    applied_steps_count: int
    logs: str | None

    @property
    def status(self) -> str:
        if self.rolled_back_at is not None:
            return "rolled back"
        if self.finished_at is None:
            return "failed"
        return "applied"

    def to_dict(self) -> dict[str, Any]:
        def iso(value: dt.datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {"id": self.id, "name": self.name, "status": self.status, "checksum": self.checksum,
                "started_at": iso(self.started_at), "finished_at": iso(self.finished_at),
                "rolled_back_at": iso(self.rolled_back_at), "applied_steps_count": self.applied_steps_count,
                "logs": (self.logs or "")[-500:] or None}


def local_migrations(directory: Path) -> list[str]:
    """Names of the local migration directories (those with a ``migration.sql``), sorted."""
    if not directory.is_dir():
        return []
    return sorted(p.name for p in directory.iterdir() if (p / "migration.sql").is_file())


def script_checksum(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class PrismaMigrations:
    """``_prisma_migrations`` over one psycopg connection (autocommit unless told)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def is_managed(self) -> bool:
        row = self.conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f'"{TABLE}"',)).fetchone()
        return bool(row[0])

    def all(self) -> list[Migration]:
        if not self.is_managed():
            return []
        rows = self.conn.execute(
            f'SELECT id, migration_name, checksum, started_at, finished_at, rolled_back_at, '
            f'applied_steps_count, logs FROM "{TABLE}" ORDER BY started_at, migration_name').fetchall()
        return [Migration(str(r[0]), str(r[1]), str(r[2]), r[3], r[4], r[5], int(r[6]), r[7]) for r in rows]

    def head(self) -> str | None:
        """The most recently finished migration that is applied (not rolled back)."""
        applied = [m for m in self.all() if m.status == "applied"]
        if not applied:
            return None
        return max(applied, key=lambda m: (m.finished_at or dt.datetime.min.replace(tzinfo=dt.UTC), m.name)).name

    def _named(self, name: str) -> list[Migration]:
        return [m for m in self.all() if m.name == name]

    def failed_rows(self, name: str) -> list[Migration]:
        """The failed rows of ``name``, which ``resolve --rolled-back`` marks (P3011 / P3012 when none)."""
        relevant = self._named(name)
        if not relevant:
            raise migration_error("P3011", name)
        failed = [m for m in relevant if m.finished_at is None and m.rolled_back_at is None]
        if not failed:
            raise migration_error("P3012", name, "only a failed migration can be marked rolled back; "
                                  "to undo an applied one use 'rollback db down'")
        return failed

    def resolve_rolled_back(self, name: str) -> dict[str, Any]:
        failed = self.failed_rows(name)
        for migration in failed:
            self.conn.execute(f'UPDATE "{TABLE}" SET rolled_back_at = now() WHERE id = %s', (migration.id,))
        return {"migration": name, "marked_rolled_back": [m.id for m in failed]}

    def applicable(self, name: str, migrations_dir: Path) -> tuple[str, list[Migration]]:
        """``(checksum, failed rows)`` for ``resolve --applied`` (P3017 no script, P3008 already applied)."""
        script = migrations_dir / name / "migration.sql"
        if not script.is_file():
            raise migration_error("P3017", name, f"no {script}; check database.migrations_dir")
        checksum = script_checksum(script)
        relevant = self._named(name) if self.is_managed() else []
        if any(m.finished_at is not None and m.rolled_back_at is None for m in relevant):
            raise migration_error("P3008", name)
        return checksum, [m for m in relevant if m.finished_at is None and m.rolled_back_at is None]

    def resolve_applied(self, name: str, migrations_dir: Path) -> dict[str, Any]:
        checksum, failed = self.applicable(name, migrations_dir)
        new_id = str(uuid.uuid4())
        self.conn.execute(_CREATE)
        for migration in failed:
            self.conn.execute(f'UPDATE "{TABLE}" SET rolled_back_at = now() WHERE id = %s', (migration.id,))
        self.conn.execute(
            f'INSERT INTO "{TABLE}" (id, checksum, migration_name, started_at, finished_at, '
            f'applied_steps_count) VALUES (%s, %s, %s, now(), now(), 1)', (new_id, checksum, name))
        return {"migration": name, "recorded_id": new_id, "checksum": checksum,
                "marked_rolled_back": [m.id for m in failed]}

    def mark_applied_rolled_back(self, name: str) -> list[str]:
        """After a down migration: the applied row(s) of ``name`` get ``rolled_back_at``."""
        rows = self.conn.execute(
            f'UPDATE "{TABLE}" SET rolled_back_at = now() WHERE migration_name = %s AND rolled_back_at IS NULL '
            f'RETURNING id', (name,)).fetchall()
        return [str(r[0]) for r in rows]
