"""``decide --live`` against a real PostgreSQL: one legitimate deletion in a grow-only table is not data loss.

Data loss (P0, a database restore) needs a loss past the table's threshold (default >= 1 % and >= 10
rows fewer than the newest backup) and a failed migration, or a deploy or migration within the
lookback, to explain it; otherwise "rows fewer than the backup" is a P2 reason without the db layer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import CliResult
from tests.db.conftest import LiveDb

RunCli = Callable[..., CliResult]


def _decide(run_cli: RunCli) -> dict[str, Any]:
    result = run_cli("decide", "--live", "--no-incident", "--json")
    assert result.code == 0, result.err
    document: dict[str, Any] = result.json()
    return document


def test_an_account_removal_is_not_data_loss(run_cli: RunCli, live_db: LiveDb, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:
    monkeypatch.setenv("ROLLBACK_DECIDE_BUDGET", "30")  # a loaded machine; the reads themselves are quick
    assert run_cli("db", "backup", "--json").code == 0
    live_db.sql('DELETE FROM "User" WHERE id = 42', user="app")
    one = _decide(run_cli)
    assert one["severity"] == "P2" and "db" not in one["layers"], one
    reason = next(r for r in one["reasons"] if r["signal"] == "rows_fewer")
    assert "User has 299 rows, 1 fewer than backup" in reason["detail"]
    assert "below the data-loss threshold" in reason["detail"]

    # 30 more, but nothing explains them: still no restore
    live_db.sql('DELETE FROM "User" WHERE id BETWEEN 100 AND 129', user="app")
    many = _decide(run_cli)
    assert many["severity"] == "P2" and "db" not in many["layers"], many

    # and a migration that failed just now: that is data loss
    live_db.sql("INSERT INTO \"_prisma_migrations\" (id, checksum, migration_name, started_at) VALUES "
                "('00000000-0000-0000-0000-000000000009', repeat('c', 64), '20261207000000_bad', now())", user="app")
    lost = _decide(run_cli)
    # the layer that changed (the migration: db) stops it; the db layer restores
    assert lost["severity"] == "P0" and "db" in lost["layers"] and lost["options"]["db"] == "restore-backup", lost
    reason = next(r for r in lost["reasons"] if r["signal"] == "data_loss")
    assert "31 fewer" in reason["detail"] and "20261207000000_bad" in reason["detail"]
