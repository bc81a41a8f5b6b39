"""``rollback db`` refuses a URL that goes through a connection pooler, and uses the direct one.

A transaction-mode pooler hands each transaction to whichever server connection is free: a
session-level setting, an advisory lock, ``pg_dump``'s exported snapshot or ``CREATE DATABASE``
(which cannot run in a transaction block) do not survive it, and behind an RDS Proxy or Prisma
Accelerate the host in the URL is not the database at all (PgBouncer's documentation, "Feature
matrix for pooling modes"; Prisma's documentation: ``directUrl`` for Migrate, ``url`` with
``pgbouncer=true`` for the pooled client).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import CliResult
from tests.db.conftest import LiveDb
from tests.db.test_backup_restore import one_line_error

RunCli = Callable[..., CliResult]
PASSWORD = "s3cr3t-p4ss"


@pytest.mark.parametrize(("url", "why"), [
    (f"postgresql://app:{PASSWORD}@db.example.com:6543/app", "port 6543"),
    (f"postgresql://app:{PASSWORD}@db.example.com:5432/app?pgbouncer=true&connection_limit=1", "pgbouncer=true"),
    (f"prisma://accelerate.prisma-data.net/?api_key={PASSWORD}", "prisma://"),
    (f"prisma+postgres://accelerate.prisma-data.net/?api_key={PASSWORD}", "prisma+postgres://"),
    (f"postgresql://app:{PASSWORD}@app.proxy-c1a2b3.us-east-1.rds.amazonaws.com:5432/app", "RDS Proxy"),
])
@pytest.mark.parametrize("command", [("db", "backup"), ("db", "restore", "latest", "--swap", "--dry-run"),
                                     ("db", "migrations")])
def test_db_commands_refuse_a_pooled_url(run_cli: RunCli, write_config: Callable[..., Path], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch, url: str, why: str,
                                         command: tuple[str, ...]) -> None:
    path = write_config({"test": {"database": {"url_env": "APP_DB_URL"}}}, default_env="test",
                        journal_dir=str(tmp_path / "runs"))
    monkeypatch.setenv("ROLLBACK_CONFIG", str(path))
    monkeypatch.setenv("APP_DB_URL", url)
    monkeypatch.delenv("DIRECT_URL", raising=False)
    result = run_cli(*command)
    one_line_error(result, 2, "APP_DB_URL goes through a connection pooler", why, "export DIRECT_URL",
                   "database.direct_url_env")
    assert PASSWORD not in result.err + result.out


def test_the_direct_url_is_used_when_it_is_set(run_cli: RunCli, live_db: LiveDb,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Prisma's convention: DATABASE_URL through the pooler (for the app), DIRECT_URL to the database."""
    pooled = live_db.url.rsplit("@", 1)[0] + "@pooler.example.com:6543/" + live_db.name + "?pgbouncer=true"
    monkeypatch.setenv("TEST_LIVE_DATABASE_URL", pooled)
    refused = run_cli("db", "migrations")
    one_line_error(refused, 2, "TEST_LIVE_DATABASE_URL goes through a connection pooler")
    monkeypatch.setenv("DIRECT_URL", live_db.url)
    result = run_cli("db", "migrations", "--json")
    assert result.code == 0, result.err
    assert result.json()["managed"] is True
