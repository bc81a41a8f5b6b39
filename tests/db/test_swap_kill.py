"""Kill a real ``rollback db swap`` / ``db restore --swap`` at each point of the swap, with each signal.

The swap runs its renames in one transaction. For every point (after each statement
of that transaction, and after its COMMIT) and every signal (SIGKILL, SIGTERM, SIGHUP,
SIGINT) the test starts the real CLI in a child process (tests/db/swap_kill_child.py
widens the moment after each statement), polls the catalog (pg_stat_activity: the
swap's session, its state and last statement; pg_database: which database holds the
live name) until the swap stands at that point, and sends the signal. Afterwards:

- the live database takes connections and answers with the old data (killed before
  COMMIT) or the new data (after it), nothing in between;
- no database refuses connections;
- ``db prune --dry-run`` never lists the live database's data, and a swap that did
  not happen left no set-aside copy;
- the interrupted command said what happened (exit 130 with "nothing was changed" or
  "after the swap completed"), and running it again completes the swap.

``ROLLBACK_SWAP_KILL_REPEAT=N`` runs every point with every signal N times for both commands (the
issue's figure is 20); unset, 'db swap' gets the whole matrix once and 'db restore --swap' each
point with one signal.
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

import pytest

from rollback.setaside import Mark
from tests.conftest import CliResult
from tests.db.conftest import LiveDb

RunCli = Callable[..., CliResult]
# Unset: every point with every signal once for 'db swap', and each point with one signal for
# 'db restore --swap' (CI time); set: the whole matrix that many times for both.
REPEAT = int(os.environ.get("ROLLBACK_SWAP_KILL_REPEAT", "0"))
CHILD = Path(__file__).with_name("swap_kill_child.py")
SIGNALS = ["SIGKILL", "SIGTERM", "SIGHUP", "SIGINT"]
# point -> the last statement the swap's session ran (pg_stat_activity.query), or "committed" (the live
# name belongs to the restored database)
POINTS = {
    "begun": "SET LOCAL statement_timeout%",
    "live-renamed": 'ALTER DATABASE "{live}" RENAME TO "{live}_replaced_%',
    "both-renamed": 'ALTER DATABASE "{restored}" RENAME TO "{live}"',
    "aside-marked": 'COMMENT ON DATABASE "{live}_replaced_%',
    "live-commented": 'COMMENT ON DATABASE "{live}" IS%',
    "committed": None,
}


def probe(live_db: LiveDb, dbname: str | None = None) -> str:
    return str(live_db.scalar("SELECT v FROM swap_probe", dbname=dbname))


def oid_of(live_db: LiveDb, name: str) -> int | None:
    rows = live_db.sql(f"SELECT oid FROM pg_database WHERE datname = '{name}'", dbname="postgres")
    return int(rows[0][0]) if rows else None


def wait_for_point(live_db: LiveDb, proc: subprocess.Popen[str], point: str, restored: str,
                   restored_oid: int | None, timeout: float = 60) -> None:
    """Poll the catalog (over one superuser session) until the swap stands at ``point``."""
    import psycopg

    pattern = POINTS[point]
    like = None if pattern is None else pattern.format(live=live_db.name, restored=restored)
    deadline = time.monotonic() + timeout
    with psycopg.connect(live_db.pg.url("postgres", "postgres"), autocommit=True) as conn:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                _, err = proc.communicate()
                pytest.fail(f"the command ended (exit {proc.returncode}) before point {point}: {err}")
            if like is None:
                row = conn.execute("SELECT oid FROM pg_database WHERE datname = %s", (live_db.name,)).fetchone()
                reached = restored_oid is not None and row is not None and int(row[0]) == restored_oid
            else:
                reached = conn.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE application_name = 'rollback-swap-kill-test' "
                    "AND state IN ('idle', 'idle in transaction') AND query LIKE %s", (like,)).fetchone() is not None
            if reached:
                return
            time.sleep(0.005)
    proc.kill()
    pytest.fail(f"point {point} not reached within {timeout} s")


def live_answers(live_db: LiveDb, timeout: float = 20) -> str:
    """The live database's data once it takes connections again (a killed client's transaction is
    rolled back as soon as the server sees the connection gone)."""
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(live_db.url, autocommit=True, connect_timeout=5) as conn:
                return str(conn.execute("SELECT v FROM swap_probe").fetchone()[0])
        except psycopg.Error:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def make_restored_copy(live_db: LiveDb, value: str, stamp: int) -> str:
    """A copy of the live database holding ``value``, marked as rollback's count-checked restore."""
    from rollback.adapters.postgres import Database, Target

    name = f"{live_db.name}_restore_2026112800{stamp:04d}"
    live_db.pg.execute(f'CREATE DATABASE "{name}" TEMPLATE "{live_db.name}" OWNER "{owner(live_db)}"')
    live_db.sql(f"UPDATE swap_probe SET v = '{value}'", dbname=name)
    mark = Mark("restore", "test", live_db.name, name, details={"counts": "match", "backup": "test"})
    Database(Target.from_url(live_db.url)).set_comment(name, mark.to_comment())
    return name


def owner(live_db: LiveDb) -> str:
    return str(getattr(live_db.pg, "app_role", "app"))


def drop_leftovers(live_db: LiveDb) -> None:
    for name in live_db.databases():
        if name != live_db.name:
            live_db.pg.drop_database(name)


def start(args: list[str], pause: float = 0.25) -> subprocess.Popen[str]:
    env = {**os.environ, "SWAP_KILL_PAUSE": str(pause), "PGAPPNAME": "rollback-swap-kill-test"}
    return subprocess.Popen([sys.executable, str(CHILD), *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)


def check_after(live_db: LiveDb, run_cli: RunCli, proc: subprocess.Popen[str], sig: str, point: str,
                old: str, new: str) -> str:
    _, err = proc.communicate(timeout=60)
    after_commit = point == "committed"
    if sig == "SIGKILL":
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == 130, (proc.returncode, err)
        errors = [line for line in err.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and "Traceback" not in err, err
        assert ("after the swap completed" if after_commit else "nothing was changed") in errors[0], errors[0]
    data = live_answers(live_db)
    assert data == (new if after_commit else old), (point, sig, data)
    refusing = live_db.sql("SELECT datname FROM pg_database WHERE NOT datallowconn AND datname <> 'template0'",
                           dbname="postgres")
    assert refusing == []
    replaced = [d for d in live_db.databases() if "_replaced_" in d]
    if after_commit:
        assert len(replaced) == 1 and probe(live_db, replaced[0]) == old
    else:
        assert replaced == []
    pruned = run_cli("db", "prune", "--dry-run", "--json")
    assert pruned.code == 0, pruned.err
    listed = [s["target"] for s in pruned.json().get("plan", {}).get("steps", [])] if pruned.json().get("plan") \
        else []
    assert live_db.name not in listed
    for name in listed:  # whatever prune offers holds a copy, never the data the live name serves
        assert oid_of(live_db, name) != oid_of(live_db, live_db.name)
    return data


def cases(*, full: bool) -> list[Any]:
    if not full and not REPEAT:
        return [pytest.param(point, SIGNALS[i % len(SIGNALS)], id=f"{point}-{SIGNALS[i % len(SIGNALS)]}")
                for i, point in enumerate(POINTS)]
    return [pytest.param(point, sig, id=f"{point}-{sig}") for point in POINTS for sig in SIGNALS]


@pytest.mark.parametrize(("point", "sig"), cases(full=True))
def test_db_swap_killed_at_each_point(live_db: LiveDb, run_cli: RunCli, point: str, sig: str) -> None:
    import psycopg

    live_db.sql("CREATE TABLE swap_probe (v text); INSERT INTO swap_probe VALUES ('v0')", user="app")
    for n in range(max(1, REPEAT)):  # each round starts from what the last one left under the live name
        old, new = probe(live_db), f"v{n + 1}"
        restored = make_restored_copy(live_db, new, n)
        restored_oid = oid_of(live_db, restored)
        app_session = psycopg.connect(live_db.url, autocommit=True)  # an application on the live database
        try:
            proc = start(["db", "swap", restored, "--yes"])
            wait_for_point(live_db, proc, point, restored, restored_oid)
            proc.send_signal(getattr(signal, sig))
            data = check_after(live_db, run_cli, proc, sig, point, old, new)
        finally:
            app_session.close()
        if data == old:  # the swap did not happen: running it again does it
            again = run_cli("db", "swap", restored, "--yes", "--json")
            assert again.code == 0, again.err
            assert live_answers(live_db) == new
        drop_leftovers(live_db)


@pytest.mark.parametrize(("point", "sig"), cases(full=False))
def test_db_restore_swap_killed_at_each_point(live_db: LiveDb, run_cli: RunCli, point: str, sig: str) -> None:
    live_db.sql("CREATE TABLE swap_probe (v text); INSERT INTO swap_probe VALUES ('backup')", user="app")
    backup = run_cli("db", "backup", "--json")
    assert backup.code == 0, backup.err
    name = backup.json()["backup"]["name"]
    for n in range(max(1, REPEAT)):
        live_db.sql(f"UPDATE swap_probe SET v = 'live{n}'")
        proc = start(["db", "restore", name, "--swap", "--yes", "--skip-emergency-backup", "--reason", "kill test"])
        # The restored copy's name is chosen when the command plans: wait for it to appear.
        deadline = time.monotonic() + 60
        restored = ""
        while not restored and time.monotonic() < deadline:
            restored = next((d for d in live_db.databases() if "_restore_" in d), "")
            time.sleep(0.01)
        assert restored, "the restore never created its copy"
        restored_oid = oid_of(live_db, restored)
        wait_for_point(live_db, proc, point, restored, restored_oid)
        proc.send_signal(getattr(signal, sig))
        data = check_after(live_db, run_cli, proc, sig, point, f"live{n}", "backup")
        drop_leftovers(live_db)
        if data == f"live{n}":
            again = run_cli("db", "restore", name, "--swap", "--yes", "--skip-emergency-backup", "--reason",
                            "again")
            assert again.code == 0, again.err
            assert live_answers(live_db) == "backup"
            drop_leftovers(live_db)
