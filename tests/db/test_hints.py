"""Hints match the cause: "check the database URL" only where the URL can be the cause.

It used to be every DatabaseError's default hint, so a full disk and a missing schema both
told the operator to check the database URL.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from rollback.errors import DatabaseError
from tests.conftest import CliResult, SmallDisk
from tests.db.conftest import LiveDb

RunCli = Callable[..., CliResult]
URL = "database URL"


def _database(live_db: LiveDb, url: str | None = None):  # type: ignore[no-untyped-def]
    from rollback.adapters.postgres import Database, Target

    return Database(Target.from_url(url or live_db.url), connect_timeout=3)


@pytest.mark.parametrize(("sql", "needle"), [
    ('SELECT count(*) FROM nosuchschema."User"', "schema"),
    ('SELECT count(*) FROM "NoSuchTable"', "database.tables"),
])
def test_a_missing_schema_or_table_is_not_blamed_on_the_url(live_db: LiveDb, sql: str, needle: str) -> None:
    with pytest.raises(DatabaseError) as info:
        _database(live_db).query(sql)
    assert needle in info.value.hint and URL not in info.value.hint


def test_connection_failures_point_at_the_url(live_db: LiveDb) -> None:
    with pytest.raises(DatabaseError) as info:
        _database(live_db, f"postgresql://app:pw-long-enough@127.0.0.1:1/{live_db.name}").query("SELECT 1")
    assert URL in info.value.hint
    with pytest.raises(DatabaseError) as wrong:
        _database(live_db, live_db.url.replace("@", "x@", 1)).query("SELECT 1")
    assert "password" in wrong.value.hint


def test_a_full_disk_under_the_backups_is_called_a_full_disk(run_cli: RunCli, live_db: LiveDb,
                                                            small_disk: SmallDisk, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    backups = small_disk.path / "backups"
    backups.mkdir()
    config = live_db.config_path.read_text()
    live_db.config_path.write_text(config.replace('backups_dir = "backups"', f'backups_dir = "{backups}"'))
    if small_disk.mode == "tmpfs":
        small_disk.fill()
    else:
        # No tmpfs: pg_dump's own words when its disk fills, from a stand-in pg_dump.
        real = Path(subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True,
                                   check=False).stdout.strip() or f"/usr/lib/postgresql/{live_db.pg.major}/bin")
        fake = tmp_path / "bin"
        fake.mkdir()
        (fake / "pg_dump").write_text('#!/bin/sh\necho "pg_dump: error: could not write to file '
                                      '\\"toc.dat\\": No space left on device" >&2\nexit 1\n')
        (fake / "pg_dump").chmod(0o755)
        os.symlink(real / "pg_restore", fake / "pg_restore")
        monkeypatch.setenv("PG_BIN_DIR", str(fake))
    result = run_cli("db", "backup")
    assert result.code == 1, (small_disk.note, result.err)
    errors = [line for line in result.err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and result.err.strip().splitlines()[-1] == errors[0], result.err
    assert "Traceback" not in result.err
    assert "disk is full" in errors[0] and "No space left on device" in errors[0], errors[0]
    assert URL not in errors[0]
