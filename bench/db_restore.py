"""Benchmark: the runbook's database restore recipe against rollback's backup + restore --swap.

Run by hand (it takes a few minutes)::

    python bench/db_restore.py            # pgbench scale 30, about 450 MB
    python bench/db_restore.py --scale 5  # quicker

It starts its own throwaway PostgreSQL (``rollback.sandbox.postgres``), builds
the database with ``pgbench -i``, then measures, in one run:

- the recipe (runbook option 3, "restore from manual backup"): ``pg_dump > file.sql``;
  then ``dropdb``, ``createdb``, ``psql < file.sql``. The database is absent or
  incomplete from ``dropdb`` until ``psql`` ends: its downtime is the whole restore.
- rollback: ``rollback db backup`` then ``rollback db restore NAME --swap --yes``
  (the restore loads big tables over parallel COPY streams, the rest with pg_restore;
  then, service first, the safety dump of the copy the swap kept, reported apart).
  Downtime is measured twice: by the command (block connections ->
  renamed database answers) and, for both, by an outside prober (one application
  session querying a row every 10 ms, reconnecting after failures): the longest
  window in which it got an error or no row.
- "restored (service back)": from the command's start until the live name belongs to the
  restored database, seen from outside (a session on the ``postgres`` database polling the
  live name's oid every 2 ms), against the recipe's whole procedure (its ``pg_dump``, the
  runbook's backup before a restore, plus its restore: the recipe has service back at its end).
- rollback, staged: ``rollback db backup --stage`` (the backup is restored ahead of
  time into a standby beside the live database), then ``rollback db restore NAME
  --swap --yes``, which clones the standby (``CREATE DATABASE ... TEMPLATE ...
  STRATEGY FILE_COPY``), checks the clone's row counts and swaps it in.

Every restore is followed by the same row-count check (pgbench_accounts).

Targets: downtime < 1 s; restore time <= 0.9x the recipe's; backup size <= 0.2x the plain SQL;
staged restore time <= 0.3x the recipe's with a downtime under 50 ms (outside prober); service back
at most 0.75x the recipe's whole procedure, staged at most 0.15x (issue 20).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rollback.sandbox.postgres import PostgresCluster, start_postgres  # noqa: E402

DB = "bench"


class Prober:
    """An application stand-in: one connection querying a row every ``interval`` seconds, reconnecting
    after a failure. Records the longest window in which the query failed or found no row."""

    def __init__(self, url: str, interval: float = 0.01, *, enabled: bool = True) -> None:
        self.url = url
        self.enabled = enabled
        self.interval = interval
        self.longest = 0.0
        self._conn: Any = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _probe(self) -> bool:
        import psycopg

        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(self.url, connect_timeout=2, autocommit=True)
            row = self._conn.execute("SELECT abalance FROM pgbench_accounts WHERE aid = 1").fetchone()
            return row is not None
        except psycopg.Error:
            if self._conn is not None:
                self._conn.close()
            self._conn = None
            return False

    def _run(self) -> None:
        down_since: float | None = None
        while not self._stop.is_set():
            now = time.monotonic()
            if self._probe():
                if down_since is not None:
                    self.longest = max(self.longest, time.monotonic() - down_since)
                    down_since = None
            else:
                down_since = down_since if down_since is not None else now
            time.sleep(self.interval)
        if down_since is not None:
            self.longest = max(self.longest, time.monotonic() - down_since)
        if self._conn is not None:
            self._conn.close()

    def __enter__(self) -> Prober:
        if not self.enabled:
            return self
        self._thread.start()
        time.sleep(0.2)  # connected before the measured phase starts
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self._stop.set()
            self._thread.join()


class SwapWatch:
    """From outside: when the live name starts to belong to another database (the swap's COMMIT), polling
    its oid in ``pg_database`` every ``interval`` seconds over one session on the ``postgres`` database."""

    def __init__(self, url: str, name: str, interval: float = 0.002) -> None:
        self.url, self.name, self.interval = url, name, interval
        self.seen: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            query = "SELECT oid FROM pg_database WHERE datname = %s"
            first = conn.execute(query, (self.name,)).fetchone()
            self._ready.set()
            while not self._stop.is_set() and self.seen is None:
                row = conn.execute(query, (self.name,)).fetchone()
                if row is not None and first is not None and row[0] != first[0]:
                    self.seen = time.monotonic()
                time.sleep(self.interval)

    def __enter__(self) -> SwapWatch:
        self._ready = threading.Event()
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def tool_env(cluster: PostgresCluster, user: str = "app") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(PGHOST=cluster.host, PGPORT=str(cluster.port), PGUSER=user, PGPASSWORD=cluster.passwords[user])
    return env


def run(args: list[str], env: dict[str, str], **kwargs: Any) -> float:
    started = time.monotonic()
    subprocess.run(args, env=env, check=True, **kwargs)
    return time.monotonic() - started


def count_accounts(cluster: PostgresCluster) -> int:
    return int(cluster.execute("SELECT count(*) FROM pgbench_accounts", dbname=DB)[0][0])


def checkpoint(cluster: PostgresCluster) -> None:
    """Flush dirty pages before a measured phase, so one phase's writes do not land in the next one's time."""
    cluster.execute("CHECKPOINT")


def recipe_backup(cluster: PostgresCluster, dump: Path) -> dict[str, float]:
    checkpoint(cluster)
    with open(dump, "wb") as out:
        backup_s = run([cluster.tool("pg_dump"), "-d", DB], tool_env(cluster), stdout=out)
    return {"backup_s": backup_s, "size": dump.stat().st_size}


def recipe_restore(cluster: PostgresCluster, dump: Path, *, probe: bool = False) -> dict[str, float]:
    env = tool_env(cluster)
    checkpoint(cluster)
    with Prober(cluster.url(DB, "app"), enabled=probe) as prober:
        started = time.monotonic()
        # dropdb cannot drop a database with sessions: the runbook's operator stops the app first;
        # here the prober's session is ended the same way (FORCE), and counted as downtime. As the
        # superuser: for another role FORCE refuses while autovacuum works in the database (a
        # freshly restored one attracts it).
        run([cluster.tool("dropdb"), "--force", DB], tool_env(cluster, "postgres"))
        run([cluster.tool("createdb"), DB], env)
        with open(dump, "rb") as inp:
            run([cluster.tool("psql"), "-q", "-X", "-d", DB], env, stdin=inp, stdout=subprocess.DEVNULL)
        restore_s = time.monotonic() - started
    return {"restore_s": restore_s, "downtime_s": restore_s, "probe_downtime_s": prober.longest}


class Ours:
    def __init__(self, cluster: PostgresCluster, work: Path, jobs: int) -> None:
        self.cluster = cluster
        self.jobs = jobs
        config = work / "rollback.toml"
        config.write_text(f'[journal]\ndir = "{work / "runs"}"\n[env.bench.database]\n'
                          f'backups_dir = "{work / "backups"}"\n')
        # The CLI runs as an installed package does, its bytecode compiled (pip compiles it; here the first
        # command writes it under a PYTHONPYCACHEPREFIX of the run, also when PYTHONDONTWRITEBYTECODE is set):
        # a restore's time is not the cost of compiling rollback's sources.
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PG") and k != "PYTHONDONTWRITEBYTECODE"}
        self.env.update(DATABASE_URL=cluster.url(DB, "app"), ROLLBACK_CONFIG=str(config), PYTHONPATH=str(ROOT),
                        PYTHONPYCACHEPREFIX=str(work / "pycache"))
        self.cli = [sys.executable, "-m", "rollback", "db"]

    def cli_json(self, *args: str) -> Any:
        done = subprocess.run([*self.cli, *args, "--json"], env=self.env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"rollback db {' '.join(args)} failed: {done.stderr.strip()}")
        return json.loads(done.stdout)

    def backup(self, *, stage: bool = False) -> dict[str, Any]:
        checkpoint(self.cluster)
        started = time.monotonic()
        backup = self.cli_json("backup", "--jobs", str(self.jobs), *(["--stage"] if stage else []))["backup"]
        return {"backup_s": time.monotonic() - started, "size": backup["total_bytes"], "name": backup["name"]}

    def restore(self, name: str, *, probe: bool = False) -> dict[str, float]:
        checkpoint(self.cluster)
        with Prober(self.cluster.url(DB, "app"), enabled=probe) as prober, \
                SwapWatch(self.cluster.url("postgres", "postgres"), DB) as watch:
            started = time.monotonic()
            doc = self.cli_json("restore", name, "--swap", "--yes", "--jobs", str(self.jobs))
            command_s = time.monotonic() - started
        if watch.seen is None:
            raise SystemExit("the swap was never seen from outside")
        self.cli_json("prune", "--yes")  # drops the replaced copy (its dump is written); the newest standby is kept
        steps = {s["id"]: s for s in doc["steps"]}
        return {"restore_s": sum(steps[i]["seconds"] for i in ("restore", "check-counts", "swap")),
                "downtime_s": doc["swap"]["downtime_seconds"], "probe_downtime_s": prober.longest,
                "command_s": command_s, "service_back_s": watch.seen - started,
                "emergency_backup_s": steps["emergency-backup"]["seconds"],
                "pg_restore_s": steps["restore"]["result"]["pg_restore_seconds"],
                "count_check_s": steps["check-counts"]["seconds"]}


def median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=30, help="pgbench scale (30 = about 450 MB)")
    parser.add_argument("--jobs", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--rounds", type=int, default=3, help="measurements per figure (medians are printed)")
    parser.add_argument("--probe-rounds", type=int, default=3,
                        help="rounds with the outside prober, per kind of restore (medians are printed)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rollback-bench-"))
    print(f"starting PostgreSQL; building pgbench scale {args.scale} ...", flush=True)
    cluster = start_postgres(fast=False)
    try:
        cluster.create_database(DB, owner="app")
        run([cluster.tool("pgbench"), "-i", "-q", "-s", str(args.scale), DB], tool_env(cluster),
            stderr=subprocess.DEVNULL)
        size = int(cluster.execute(f"SELECT pg_database_size('{DB}')")[0][0])
        rows = count_accounts(cluster)
        print(f"database {DB}: {size / 1e6:.0f} MB, {rows} accounts; {args.jobs} jobs, {os.cpu_count()} CPUs",
              flush=True)
        dump = work / "backup.sql"
        ours = Ours(cluster, work, args.jobs)
        base: dict[str, list[float]] = {}
        mine: dict[str, list[float]] = {}
        backup_name = ""
        for round_ in range(1, args.rounds + 1):
            print(f"round {round_}/{args.rounds}: recipe backup + restore, then rollback backup + restore --swap",
                  flush=True)
            for key, value in {**recipe_backup(cluster, dump), **recipe_restore(cluster, dump)}.items():
                if key != "probe_downtime_s":
                    base.setdefault(key, []).append(value)
            assert count_accounts(cluster) == rows
            taken = ours.backup()
            backup_name = str(taken.pop("name"))
            for key, value in {**taken, **ours.restore(backup_name)}.items():
                if key == "probe_downtime_s":
                    continue
                mine.setdefault(key, []).append(float(value))
            assert count_accounts(cluster) == rows
        # The prober costs CPU (a failed connection attempt is a fork plus SCRAM authentication, every
        # 10 ms while the database is down), so it runs in one extra round of its own, not in the timed ones.
        print("probe rounds: recipe restore, then rollback restore --swap, each with the outside prober", flush=True)
        for _ in range(args.probe_rounds):
            recipe_probe = recipe_restore(cluster, dump, probe=True)["probe_downtime_s"]
            base.setdefault("probe_downtime_s", []).append(recipe_probe)
            mine.setdefault("probe_downtime_s", []).append(ours.restore(backup_name, probe=True)["probe_downtime_s"])
        assert count_accounts(cluster) == rows
        print("staged: rollback db backup --stage, then restore --swap of that backup (clones the standby)",
              flush=True)
        staged_backup = ours.backup(stage=True)
        staged_stage_s = staged_backup["backup_s"]
        staged: dict[str, list[float]] = {}
        for round_ in range(1, args.rounds + 1):
            print(f"staged round {round_}/{args.rounds}", flush=True)
            for key, value in ours.restore(str(staged_backup["name"])).items():
                if key != "probe_downtime_s":
                    staged.setdefault(key, []).append(float(value))
            assert count_accounts(cluster) == rows
        print("staged probe rounds", flush=True)
        staged["probe_downtime_s"] = [ours.restore(str(staged_backup["name"]), probe=True)["probe_downtime_s"]
                                      for _ in range(args.probe_rounds)]
        assert count_accounts(cluster) == rows
    finally:
        cluster.stop()
        subprocess.run(["rm", "-rf", str(work)], check=False)
    b = {k: median(v) for k, v in base.items()}
    m = {k: median(v) for k, v in mine.items()}
    st = {k: median(v) for k, v in staged.items()}

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.3f}x" if b else "n/a"

    print()
    print(f"medians of {args.rounds} round(s) ({args.probe_rounds} with the prober); scale {args.scale} "
          f"({size / 1e6:.0f} MB), {args.jobs} jobs, {os.cpu_count()} CPUs")
    print(f"{'':30}{'recipe':>10}{'rollback':>10}{'ratio':>9}   target")
    rows_out = [
        ("backup time (s)", b["backup_s"], m["backup_s"], ""),
        ("backup size (MB)", b["size"] / 1e6, m["size"] / 1e6, "<= 0.2x"),
        ("restore time (s)", b["restore_s"], m["restore_s"], "<= 0.9x"),
        ("downtime (s)", b["downtime_s"], m["downtime_s"], "< 1 s"),
    ]
    for label, left, right, target in rows_out:
        print(f"{label:30}{left:10.3f}{right:10.3f}{ratio(right, left):>9}   {target}")
    print(f"{'downtime, probe rounds (s)':30}{b['probe_downtime_s']:10.3f}{m['probe_downtime_s']:10.3f}"
          f"{ratio(m['probe_downtime_s'], b['probe_downtime_s']):>9}")
    print(f"{'restore time, staged (s)':30}{b['restore_s']:10.3f}{st['restore_s']:10.3f}"
          f"{ratio(st['restore_s'], b['restore_s']):>9}   <= 0.3x")
    print(f"{'downtime, staged (s)':30}{b['downtime_s']:10.3f}{st['downtime_s']:10.3f}"
          f"{ratio(st['downtime_s'], b['downtime_s']):>9}")
    print(f"{'downtime, staged, probe (s)':30}{b['probe_downtime_s']:10.3f}{st['probe_downtime_s']:10.3f}"
          f"{ratio(st['probe_downtime_s'], b['probe_downtime_s']):>9}   < 0.05 s")
    whole_recipe = b["backup_s"] + b["restore_s"]
    print(f"{'restored (service back) (s)':30}{whole_recipe:10.3f}{m['service_back_s']:10.3f}"
          f"{ratio(m['service_back_s'], whole_recipe):>9}   <= 0.75x")
    print(f"{'restored, staged (s)':30}{whole_recipe:10.3f}{st['service_back_s']:10.3f}"
          f"{ratio(st['service_back_s'], whole_recipe):>9}   <= 0.15x")
    print(f"{'safety dump, after it (s)':30}{'':>10}{m['emergency_backup_s']:10.3f}{'':>9}   "
          f"(staged: {st['emergency_backup_s']:.3f} s)")
    print(f"{'whole procedure (s)':30}{whole_recipe:10.3f}{m['command_s']:10.3f}"
          f"{ratio(m['command_s'], whole_recipe):>9}")
    print()
    print("restore time: recipe = dropdb + createdb + psql < file.sql; rollback = load into a new database "
          f"(pg_restore by section, big tables over {args.jobs} parallel COPY streams: {m['pg_restore_s']:.2f} s) "
          f"+ exact row-count check ({m['count_check_s']:.2f} s) + swap.")
    print("restored (service back): from the command's start (process start-up, verify, rights, restore or "
          "clone, counts) to the swap's commit, seen from outside; against the recipe's whole procedure "
          "(pg_dump > file.sql, the runbook's backup before a restore, + its restore).")
    print("safety dump: written after the swap from the copy the swap kept (a verified pg_dump of the previous "
          "database), no longer before the restore; the command waits for it (--no-wait-backup: in the background).")
    print("whole procedure: recipe = pg_dump > file.sql (the runbook's emergency backup) + restore; rollback = "
          "the whole 'db restore --swap' command incl. its verified safety dump "
          f"({m['emergency_backup_s']:.2f} s).")
    print(f"probe downtimes: recipe {', '.join(f'{v:.3f}' for v in base['probe_downtime_s'])}; rollback "
          f"{', '.join(f'{v:.3f}' for v in mine['probe_downtime_s'])}; staged "
          f"{', '.join(f'{v:.3f}' for v in staged['probe_downtime_s'])} s")
    print(f"staged restore: clone of the standby + swap {st['restore_s'] - st['count_check_s']:.2f} s, "
          f"incl. swap, exact row-count check {st['count_check_s']:.2f} s; staging it took "
          f"{staged_stage_s:.2f} s (backup + restore into the standby, ahead of the incident).")
    verdict = {
        "downtime < 1 s": m["downtime_s"] < 1 and m["probe_downtime_s"] < 1,
        "restore <= 0.9x": m["restore_s"] <= 0.9 * b["restore_s"],
        "size <= 0.2x": m["size"] <= 0.2 * b["size"],
        "staged restore <= 0.3x": st["restore_s"] <= 0.3 * b["restore_s"],
        "staged downtime < 50 ms (probe)": st["probe_downtime_s"] < 0.05,
        "service back <= 0.75x": m["service_back_s"] <= 0.75 * whole_recipe,
        "staged service back <= 0.15x": st["service_back_s"] <= 0.15 * whole_recipe,
    }
    print("targets: " + ", ".join(f"{k}: {'met' if v else 'MISSED'}" for k, v in verdict.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
