"""Kill a real ``rollback db swap`` / ``db restore --swap`` at each point of the swap, with each signal.

The swap runs its renames in one transaction. For every point (after each statement
of that transaction, and after its COMMIT) and every signal (SIGKILL, SIGTERM, SIGHUP,
SIGINT) the test starts the real CLI in a child process (tests/db/swap_kill_child.py
stops after each statement and waits on a pipe until the test lets it go on), looks at
the catalog at each stop (pg_stat_activity: the swap's session, its state and last
statement; pg_database: which database holds the live name) and, when the swap stands at
that point, sends the signal there. No sleep widens any moment. Afterwards:

- the live database takes connections and answers with the old data (killed before
  COMMIT) or the new data (after it), nothing in between;
- no database refuses connections;
- ``db prune --dry-run`` never lists the live database's data, and a swap that did
  not happen left no set-aside copy;
- the interrupted command said what happened (exit 130 with "nothing was changed" or
  "after the swap completed"), and running it again completes the swap.

``db restore --swap`` goes on after the swap: the safety dump of the copy the swap kept (service
first, issue 20). It is killed there too, while ``pg_dump`` runs and once the dump is written and
the copy marked. Then the restored database is live and the kept copy is intact; ``db prune`` offers
that copy only once a complete dump of it exists; the command said the restored database is live
and the dump was interrupted; and ``rollback resume`` writes the dump (once) without restoring or
swapping again.

``ROLLBACK_SWAP_KILL_REPEAT=N`` runs every point with every signal N times for both commands (the
issue's figure is 20); unset, 'db swap' gets the whole matrix once and 'db restore --swap' each
point with one signal.
"""

from __future__ import annotations

import functools
import os
import select
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
# After the swap, in 'db restore --swap' only: the safety dump of the kept copy. "dumping": the child waits
# for a running pg_dump (its stop says so); "dump-marked": the kept copy's mark names its written dump.
DUMP_POINTS = {
    "dumping": "pg_dump running",
    "dump-marked": 'COMMENT ON DATABASE "{live}_replaced_%-emergency%',
}


def probe(live_db: LiveDb, dbname: str | None = None) -> str:
    return str(live_db.scalar("SELECT v FROM swap_probe", dbname=dbname))


def oid_of(live_db: LiveDb, name: str) -> int | None:
    rows = live_db.sql(f"SELECT oid FROM pg_database WHERE datname = '{name}'", dbname="postgres")
    return int(rows[0][0]) if rows else None


class Child:
    """The CLI in a child process (tests/db/swap_kill_child.py), stopping after each swap statement until
    :meth:`go_on`; ``stops`` reads where it stands now."""

    def __init__(self, args: list[str], *, under: tuple[str, ...] = ()) -> None:
        report_r, report_w = os.pipe()
        go_r, go_w = os.pipe()
        env = {**os.environ, "PGAPPNAME": "rollback-swap-kill-test",
               "SWAP_KILL_REPORT_FD": str(report_w), "SWAP_KILL_GO_FD": str(go_r)}
        self.proc = subprocess.Popen([*under, sys.executable, str(CHILD), *args], env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
                                     pass_fds=(report_w, go_r))
        os.close(report_w)
        os.close(go_r)
        self._report = os.fdopen(report_r, "r", encoding="utf-8")
        self._go: int | None = go_w
        self.seen: list[str] = []

    def next_stop(self, timeout: float = 120) -> str | None:
        """The child's next stop (``statement ...`` or ``commit``), or None once it has ended."""
        ready, _, _ = select.select([self._report], [], [], timeout)
        if not ready:
            self.proc.kill()
            pytest.fail(f"no stop and no exit within {timeout} s; stops so far: {self.seen}")
        line = self._report.readline()
        if not line:
            return None
        self.seen.append(line.strip())
        return line.strip()

    def go_on(self) -> None:
        assert self._go is not None
        os.write(self._go, b"g")

    def run_free(self) -> None:
        """No more stops: the child runs on by itself (its reads see EOF)."""
        if self._go is not None:
            os.close(self._go)
            self._go = None
        self._report.close()

    def stop_at(self, reached: Callable[[], bool], what: str, sig: str) -> None:
        """Let the child run stop by stop until ``reached()``, then send ``sig`` there."""
        while True:
            stop = self.next_stop()
            if stop is None:
                _, err = self.proc.communicate()
                pytest.fail(f"the command ended (exit {self.proc.returncode}) before point {what}; "
                            f"stops: {self.seen}; {err}")
            if stop == DUMP_POINTS.get(what) or reached():
                self.proc.send_signal(getattr(signal, sig))
                self.run_free()
                return
            self.go_on()


def at_point(live_db: LiveDb, point: str, restored: str, restored_oid: int | None) -> bool:
    """Whether the swap stands at ``point`` now (one look at the catalog, over a superuser session)."""
    import psycopg

    pattern = POINTS.get(point, DUMP_POINTS.get(point))
    if point == "dumping":
        return False  # a stop of its own (Child.stop_at)
    with psycopg.connect(live_db.pg.url("postgres", "postgres"), autocommit=True) as conn:
        if pattern is None:
            row = conn.execute("SELECT oid FROM pg_database WHERE datname = %s", (live_db.name,)).fetchone()
            return restored_oid is not None and row is not None and int(row[0]) == restored_oid
        like = pattern.format(live=live_db.name, restored=restored)
        return conn.execute(
            "SELECT 1 FROM pg_stat_activity WHERE application_name = 'rollback-swap-kill-test' "
            "AND state IN ('idle', 'idle in transaction') AND query LIKE %s", (like,)).fetchone() is not None


def restore_at_point(live_db: LiveDb, point: str, found: dict[str, Any]) -> bool:
    """:func:`at_point` for a ``db restore --swap``, whose restored copy is named when it plans (``found``
    keeps its name and oid once it exists)."""
    if "name" not in found:
        restored = next((d for d in live_db.databases() if "_restore_" in d), "")
        if not restored:
            return False
        found.update(name=restored, oid=oid_of(live_db, restored))
    return at_point(live_db, point, found["name"], found["oid"])


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


def dumps_of(live_db: LiveDb, aside: str) -> list[str]:
    """The complete backups read from ``aside`` (the safety dumps of the copy a swap kept)."""
    from rollback.backups import list_backups

    return [str(b["name"]) for b in list_backups(live_db.backups_dir) if b.get("status") == "ok"
            and b.get("dumped_from") == aside]


def check_after(live_db: LiveDb, run_cli: RunCli, child: Child, sig: str, point: str, old: str, new: str) -> str:
    proc = child.proc
    _, err = proc.communicate(timeout=120)
    after_commit = point == "committed" or point in DUMP_POINTS
    if sig == "SIGKILL":
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == 130, (proc.returncode, err)
        errors = [line for line in err.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and "Traceback" not in err, err
        said = ("the restored database is live" if point in DUMP_POINTS else
                "after the swap completed" if after_commit else "nothing was changed")
        assert said in errors[0], errors[0]
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
    for name in replaced:  # and a copy waiting for its safety dump only once a complete dump of it exists
        mark = Mark.from_comment(live_db.scalar(
            f"SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = '{name}'",
            dbname="postgres"))
        waits = mark is not None and mark.get("dump") is not None
        assert waits == (point in DUMP_POINTS), (point, mark)
        if waits:
            assert (name in listed) == bool(dumps_of(live_db, name)), (point, sig, name, listed)
    return data


def resume_writes_the_dump(live_db: LiveDb, run_cli: RunCli, point: str, sig: str) -> None:
    """After a kill in the safety dump: ``rollback resume`` writes it, once, restoring and swapping nothing again."""
    aside = next(d for d in live_db.databases() if "_replaced_" in d)
    resumed = run_cli("resume", "--yes", "--json")
    assert resumed.code == 0, (point, sig, resumed.err)
    steps = {s["id"]: s for s in resumed.json()["steps"]}
    assert all(steps[i]["already_done"] for i in ("restore", "check-counts", "swap")), steps
    written = dumps_of(live_db, aside)
    assert len(written) == 1, written
    mark = Mark.from_comment(live_db.scalar(
        f"SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = '{aside}'", dbname="postgres"))
    assert mark is not None and mark.get("dump") == written[0]
    assert [d for d in live_db.databases() if "_replaced_" in d] == [aside]
    assert live_answers(live_db) == "backup" and probe(live_db, aside).startswith("live")


# The inner loop (tests/run.sh --fast) keeps one case per command: a kill in the middle of the transaction;
# and, for 'db restore --swap', one in its safety dump.
FAST_CASE = ("both-renamed", "SIGTERM")
FAST_DUMP_CASE = ("dumping", "SIGTERM")


def cases(*, full: bool, dump: bool = False) -> list[Any]:
    points = [*POINTS, *(DUMP_POINTS if dump else ())]
    if not full and not REPEAT:
        pairs = [(point, SIGNALS[i % len(SIGNALS)]) for i, point in enumerate(points)]
        fast = ("both-renamed", SIGNALS[points.index("both-renamed") % len(SIGNALS)])
    else:
        pairs, fast = [(point, sig) for point in points for sig in SIGNALS], FAST_CASE
    # The safety dump is killed with every signal whatever the setting: it is the new step (issue 20).
    pairs += [(point, sig) for point in DUMP_POINTS for sig in SIGNALS if dump and (point, sig) not in pairs]
    return [pytest.param(point, sig, id=f"{point}-{sig}",
                         marks=() if (point, sig) in (fast, FAST_DUMP_CASE) else pytest.mark.slow)
            for point, sig in pairs]


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
            child = Child(["db", "swap", restored, "--yes"])
            child.stop_at(functools.partial(at_point, live_db, point, restored, restored_oid), point, sig)
            data = check_after(live_db, run_cli, child, sig, point, old, new)
        finally:
            app_session.close()
        if data == old:  # the swap did not happen: running it again does it
            again = run_cli("db", "swap", restored, "--yes", "--json")
            assert again.code == 0, again.err
            assert live_answers(live_db) == new
        drop_leftovers(live_db)


@pytest.mark.parametrize(("point", "sig"), cases(full=False, dump=True))
def test_db_restore_swap_killed_at_each_point(live_db: LiveDb, run_cli: RunCli, point: str, sig: str) -> None:
    live_db.sql("CREATE TABLE swap_probe (v text); INSERT INTO swap_probe VALUES ('backup')", user="app")
    backup = run_cli("db", "backup", "--json")
    assert backup.code == 0, backup.err
    name = backup.json()["backup"]["name"]
    # The swap's own points skip the safety dump (time); the dump's points need it.
    skip = [] if point in DUMP_POINTS else ["--skip-emergency-backup", "--reason", "kill test"]
    for n in range(max(1, REPEAT)):
        live_db.sql(f"UPDATE swap_probe SET v = 'live{n}'")
        child = Child(["db", "restore", name, "--swap", "--yes", *skip])
        # The restored copy's name is chosen when the command plans: it exists by the swap's first stop.
        reached = functools.partial(restore_at_point, live_db, point, {})
        child.stop_at(reached, point, sig)
        data = check_after(live_db, run_cli, child, sig, point, f"live{n}", "backup")
        if point in DUMP_POINTS:
            resume_writes_the_dump(live_db, run_cli, point, sig)
        drop_leftovers(live_db)
        if data == f"live{n}":
            again = run_cli("db", "restore", name, "--swap", "--yes", "--skip-emergency-backup", "--reason",
                            "again")
            assert again.code == 0, again.err
            assert live_answers(live_db) == "backup"
            drop_leftovers(live_db)


def test_db_swap_under_nohup_goes_on_through_a_hangup(live_db: LiveDb) -> None:
    """Under ``nohup`` (SIGHUP ignored when the command starts: a dropped SSH session must not stop it) a
    hangup in the middle of the swap's transaction is ignored there, as at every other step of a run. The
    swap's guard used to take SIGHUP even when ignored, so the hangup rolled the swap back (exit 130)."""
    live_db.sql("CREATE TABLE swap_probe (v text); INSERT INTO swap_probe VALUES ('v0')", user="app")
    restored = make_restored_copy(live_db, "v1", 0)
    child = Child(["db", "swap", restored, "--yes"], under=("nohup",))
    reached = functools.partial(at_point, live_db, "both-renamed", restored, oid_of(live_db, restored))
    child.stop_at(reached, "both-renamed", "SIGHUP")
    _, err = child.proc.communicate(timeout=120)
    assert child.proc.returncode == 0, err
    assert live_answers(live_db) == "v1"
    assert [d for d in live_db.databases() if "_replaced_" in d]  # the swap kept the old copy, as it does
    drop_leftovers(live_db)
