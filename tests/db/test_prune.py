"""``db prune`` drops only what rollback set aside, and removes interrupted backups.

A database is rollback's when its name has the form ``<live>_restore_/<live>_replaced_<YYYYmmddHHMMSS>``
and its comment carries rollback's mark for that role and name (or a journaled run created it and
was killed before marking it). Look-alikes are listed and kept; while the live database is missing,
the newest replaced copy (possibly the only copy of the live data) is kept.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rollback.setaside import Mark
from tests.conftest import CliResult
from tests.db.conftest import LiveDb

RunCli = Callable[..., CliResult]


def prune_targets(run_cli: RunCli) -> tuple[list[str], list[str]]:
    result = run_cli("db", "prune", "--dry-run", "--json")
    assert result.code == 0, result.err
    doc = result.json()
    if "plan" not in doc:
        return [], doc["notes"]
    return [s["target"] for s in doc["plan"]["steps"]], doc["plan"]["notes"]


def mark(live_db: LiveDb, name: str, role: str, **details: Any) -> None:
    comment = Mark(role, "20261128T093512.048213Z-1a2b3c", live_db.name, name, details=details).to_comment()
    live_db.sql(f"COMMENT ON DATABASE \"{name}\" IS '{comment}'", dbname="postgres")


def test_look_alikes_without_the_mark_are_kept(run_cli: RunCli, live_db: LiveDb) -> None:
    points = f"{live_db.name}_restore_points"
    unmarked = f"{live_db.name}_restore_20260101000000"
    foreign = f"{live_db.name}_replaced_20260101000000"
    for name in (points, unmarked, foreign):
        live_db.pg.create_database(name, owner="app")
    live_db.sql(f"COMMENT ON DATABASE \"{foreign}\" IS 'rollback:{{\"role\": \"replaced\"}}'", dbname="postgres")
    renamed = f"{live_db.name}_replaced_20260101000001"  # marked for another name: renamed by hand
    live_db.pg.create_database(renamed, owner="app")
    mark(live_db, renamed, "replaced")
    live_db.sql(f'ALTER DATABASE "{renamed}" RENAME TO "{renamed[:-1]}2"', dbname="postgres")
    targets, notes = prune_targets(run_cli)
    assert targets == []
    for name in (points, unmarked, foreign, renamed[:-1] + "2"):
        assert any(note.startswith(f"kept {name}:") for note in notes), notes
    pruned = run_cli("db", "prune", "--yes", "--json")
    assert pruned.code == 0, pruned.err
    assert set(live_db.databases()) == {live_db.name, points, unmarked, foreign, renamed[:-1] + "2"}


def test_copies_rollback_made_are_pruned(run_cli: RunCli, live_db: LiveDb) -> None:
    backup = run_cli("db", "backup", "--json").json()["backup"]
    restored = run_cli("db", "restore", backup["name"], "--skip-emergency-backup", "--reason", "test", "--json")
    assert restored.code == 0, restored.err
    copy = restored.json()["plan"]["steps"][3]["target"]
    comment = live_db.scalar(f"SELECT shobj_description(oid, 'pg_database') FROM pg_database "
                             f"WHERE datname = '{copy}'", dbname="postgres")
    parsed = Mark.from_comment(comment)
    assert parsed is not None and parsed.role == "restore" and parsed.get("counts") == "match"
    assert parsed.run == restored.json()["run"]
    swapped = run_cli("db", "swap", copy, "--yes", "--json")
    assert swapped.code == 0, swapped.err
    aside = next(d for d in live_db.databases() if "_replaced_" in d)
    aside_mark = Mark.from_comment(live_db.scalar(
        f"SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = '{aside}'",
        dbname="postgres"))
    assert aside_mark is not None and aside_mark.is_mark_of(aside, live_db.name)
    assert aside_mark.get("replaced_by") == copy and aside_mark.run == swapped.json()["run"]
    assert prune_targets(run_cli)[0] == [aside]
    assert run_cli("db", "prune", "--yes").code == 0
    assert live_db.databases() == [live_db.name]


def test_a_copy_killed_before_its_mark_is_proved_by_the_journal(run_cli: RunCli, live_db: LiveDb) -> None:
    backup = run_cli("db", "backup", "--json").json()["backup"]
    restored = run_cli("db", "restore", backup["name"], "--skip-emergency-backup", "--reason", "test", "--json")
    copy = restored.json()["plan"]["steps"][3]["target"]
    live_db.sql(f'COMMENT ON DATABASE "{copy}" IS NULL', dbname="postgres")  # as if killed before the mark
    assert prune_targets(run_cli)[0] == [copy]
    for journal in live_db.journal_dir.glob("*.jsonl"):
        journal.unlink()
    targets, notes = prune_targets(run_cli)
    assert targets == [] and any(n.startswith(f"kept {copy}:") for n in notes)


def test_the_newest_replaced_copy_is_kept_while_the_live_database_is_missing(run_cli: RunCli,
                                                                            live_db: LiveDb) -> None:
    older = f"{live_db.name}_replaced_20260101000000"
    live_db.pg.create_database(older, owner="app")
    mark(live_db, older, "replaced")
    newest = f"{live_db.name}_replaced_20260102000000"
    # What a swap of an older version left when killed between its two renames: no live database.
    live_db.sql(f'ALTER DATABASE "{live_db.name}" RENAME TO "{newest}"', dbname="postgres")
    mark(live_db, newest, "replaced")
    try:
        targets, notes = prune_targets(run_cli)
        assert targets == [older]
        kept = next(n for n in notes if n.startswith(f"kept {newest}:"))
        assert "the live database" in kept and "only copy" in kept and f'RENAME TO "{live_db.name}"' in kept
        assert run_cli("db", "prune", "--yes").code == 0
        assert newest in live_db.pg.databases() and older not in live_db.pg.databases()
    finally:
        live_db.sql(f'ALTER DATABASE "{newest}" RENAME TO "{live_db.name}"', dbname="postgres")


def test_an_interrupted_backup_is_listed_as_incomplete_and_pruned(run_cli: RunCli, live_db: LiveDb,
                                                                  tmp_path: Path) -> None:
    """A real ``rollback db backup`` is SIGKILLed while pg_dump writes: the dump directory stays
    without a manifest. While the backup runs it is "in progress" (its lock is held) and prune
    leaves it alone; after the kill it is "incomplete" and prune removes it."""
    real = Path(str(live_db.pg.bin_dir)) if hasattr(live_db.pg, "bin_dir") else Path(
        f"/usr/lib/postgresql/{live_db.pg.major}/bin")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "pg_restore").symlink_to(real / "pg_restore")
    # writes part of a dump, then keeps "dumping"
    (fake / "pg_dump").write_text('#!/bin/sh\nfor a in "$@"; do case "$a" in --file=*) d="${a#--file=}";; esac; done\n'
                                  'mkdir -p "$d" && echo partial > "$d/3001.dat.gz"\nexec sleep 60\n')
    (fake / "pg_dump").chmod(0o755)
    proc = subprocess.Popen([sys.executable, "-m", "rollback", "db", "backup"], env={**os.environ,
                            "PG_BIN_DIR": str(fake)}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not list(live_db.backups_dir.glob("*/3001.dat.gz")):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.02)
        running = run_cli("db", "backups", "--json").json()["backups"]
        assert [b["status"] for b in running] == ["in progress"]
        assert prune_targets(run_cli)[0] == []
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the fake pg_dump outlives its parent
    listed = run_cli("db", "backups", "--json").json()["backups"]
    assert [b["status"] for b in listed] == ["incomplete"]
    human = run_cli("db", "backups")
    assert human.code == 0 and "incomplete" in human.out
    dump_dir = Path(listed[0]["path"])
    assert prune_targets(run_cli)[0] == [str(dump_dir)]
    pruned = run_cli("db", "prune", "--yes")
    assert pruned.code == 0, pruned.err
    assert not dump_dir.exists() and not list(live_db.backups_dir.iterdir())
    assert run_cli("db", "backups", "--json").json()["backups"] == []


def test_a_standby_killed_before_its_mark_is_proved_by_the_journal(run_cli: RunCli, live_db: LiveDb) -> None:
    staged = run_cli("db", "backup", "--stage", "--json")
    assert staged.code == 0, staged.err
    standby = staged.json()["backup"]["standby"]
    assert prune_targets(run_cli)[0] == []  # the newest standby is kept (keep_standbys = 1)
    live_db.sql(f'COMMENT ON DATABASE "{standby}" IS NULL', dbname="postgres")  # as if killed before marking
    targets, _ = prune_targets(run_cli)
    assert targets == [standby]  # an unfinished standby: the journal proves rollback created it
