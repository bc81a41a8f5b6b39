"""The backup's and the restore's progress count each table once (issue 18, item 7).

With parallel jobs pg_dump and pg_restore print two lines per table (a worker starts it, the leader
reports the finished item): the emergency backup read ``5/4 tables ... 8/4 tables``. Real pg_dump and
pg_restore, 2 jobs, against a real PostgreSQL."""

from __future__ import annotations

import re
from pathlib import Path

from rollback.commands.db import handlers as commands
from rollback.commands.db import restore as db_restore
from rollback.context import Services
from tests.db.conftest import LiveDb

COUNTED = re.compile(r": (\d+)/(\d+) tables$")


def _counts(lines: list[str], action: str) -> list[tuple[int, int]]:
    return [(int(m.group(1)), int(m.group(2))) for line in lines if line.startswith(action)
            and (m := COUNTED.search(line))]


def test_each_table_is_counted_once(live_db: LiveDb, tmp_path: Path) -> None:
    config = live_db.config()
    services = Services(config)
    lines: list[str] = []
    backup = commands.backup(config, jobs=2, progress=lines.append, services=services)
    dumped = _counts(lines, "pg_dump")
    tables = int(backup["tables"])
    assert dumped == [(n, tables) for n in range(1, tables + 1)], lines

    lines.clear()
    plan = db_restore.plan_restore(config, str(backup["manifest_path"]), jobs=2,
                                 skip_emergency_reason="progress test", services=services)
    commands.run(config, plan, handlers=commands.DbHandlers(services), progress=lines.append)
    restored = _counts(lines, "pg_restore")
    assert restored == [(n, tables) for n in range(1, tables + 1)], lines
