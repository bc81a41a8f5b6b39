"""The team lease fails closed (issue 18, item 1): a run that cannot renew its lease stops.

Before this, a renewal that raised (S3 unreachable) was retried for ever without marking the lease lost,
and the run only stopped when a renewal *succeeded* in finding someone else's ETag: a run cut off from
S3 for longer than ``ttl`` kept acting after another run took the expired lease over (two swaps). Now a
lease whose last successful write is older than ``ttl`` minus a margin (on the local monotonic clock) is
lost: the run checks it before every step and right before each destructive act, stops with exit 4
naming the run that holds the lease now, journals it, and ``rollback resume`` continues once the lease is
free. Long waits keep renewing, and stop at their next poll when renewing fails.

Real processes against the moto server (S3 conditional writes, the documented ``If-Match`` /
``If-None-Match`` semantics), the Vercel emulator and PostgreSQL; alice's path to S3 runs through a TCP
proxy (tests/incident/cut_proxy.py) that the test cuts, as a network partition would. The lease's ttl is
the config's smallest, 5 s; no fixed sleeps: every wait polls a condition with a deadline.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.incident.conftest import World
from tests.incident.cut_proxy import CutProxy, cut_proxy
from tests.incident.test_lock import _team_world, bucket, procs  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parents[2]
TTL = 5

pytestmark = pytest.mark.slow


@pytest.fixture
def proxy(aws_env: str) -> Iterator[CutProxy]:
    with cut_proxy(aws_env) as made:
        yield made


def laptop(world: World, tmp_path: Path, bucket: str, name: str, **env: str) -> dict[str, str]:  # noqa: F811
    """One engineer's copy of the config (its own path, journal and local lock) sharing the team lease."""
    return {**_team_world(world, tmp_path, bucket, name, ttl=TTL), **env}


def spawn(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rollback", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=180)


def until(what: str, condition: Callable[[], Any], timeout: float = 60.0, every: float = 0.05) -> Any:
    """Poll ``condition`` until it returns something true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(every)


def stopped(proc: subprocess.Popen[str]) -> bool:
    if proc.poll() is not None:
        raise AssertionError(f"the process ended (exit {proc.returncode}): {proc.communicate()}")
    state = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state == "T"


def hold_lease(env: dict[str, str], procs: list[subprocess.Popen[str]]) -> str:  # noqa: F811
    """Start tests.incident.hold_lock for ``env`` until it takes the team lease (the last holder's must
    expire first, on S3's clock); returns the holder's run id."""

    def attempt() -> str | None:
        proc = spawn(env, "-m", "tests.incident.hold_lock", "120")
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.startswith("held "):
            procs.append(proc)
            return line.split()[1]
        proc.communicate(timeout=30)
        assert proc.returncode == 4, proc.returncode  # refused: the lease is still held
        return None

    return str(until("the lease was taken over", attempt, timeout=60, every=0.2))


def lease_object(bucket: str) -> dict[str, Any]:  # noqa: F811
    import boto3

    s3 = boto3.client("s3", region_name="us-east-1")
    answer = s3.get_object(Bucket=bucket, Key="team/locks/production.json")
    return {"etag": answer["ETag"], **json.loads(answer["Body"].read())}


def journal(env: dict[str, str], run_id: str | None = None) -> list[dict[str, Any]]:
    runs = Path(env["ROLLBACK_CONFIG"]).parent / "runs"
    path = runs / f"{run_id}.jsonl" if run_id else max(runs.glob("*.jsonl"))
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def resume_when_free(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``rollback resume --yes``, again while it is refused because the last holder's lease has not expired."""

    def attempt() -> subprocess.CompletedProcess[str] | None:
        result = cli(env, "resume", "--yes", "--json")
        if result.returncode == 4 and "holds the team lock" in result.stderr:
            return None
        return result

    return until("the lease was free for the resume", attempt, timeout=60, every=0.5)  # type: ignore[no-any-return]


def backup(env: dict[str, str]) -> str:
    """``rollback db backup`` on that laptop (backups are kept on each one): the backup's name."""
    result = cli(env, "db", "backup", "--json")
    assert result.returncode == 0, result.stderr
    return str(json.loads(result.stdout)["backup"]["name"])


def restore_stopped_before_swap(env: dict[str, str], name: str, procs: list[Any],  # noqa: F811
                                reason: str) -> subprocess.Popen[str]:
    """``db restore NAME --swap``, stopped (SIGSTOP, sent to itself) right after the swap's check."""
    restore = spawn({**env, "STOP_IN_SWAP_CHECK": "1"}, "-m", "tests.incident.stop_in_swap_check", "db", "restore",
                    name, "--swap", "--yes", "--skip-emergency-backup", "--reason", reason)
    procs.append(restore)
    until("the restore stopped in the swap's check", lambda: stopped(restore), timeout=120)
    return restore


def replaced(world: World) -> list[str]:
    rows = world.pg.execute(f"SELECT datname FROM pg_database WHERE datname LIKE '{world.db_name}_replaced_%'")
    return [str(r[0]) for r in rows]


def test_a_run_cut_off_from_s3_stops_before_its_swap_and_names_who_took_over(
        world: World, bucket: str, procs: list[Any], proxy: CutProxy, tmp_path: Path) -> None:  # noqa: F811
    alice = laptop(world, tmp_path, bucket, "alice", AWS_ENDPOINT_URL=proxy.url)
    bob = laptop(world, tmp_path, bucket, "bob")
    name = backup(alice)
    world.sql("""INSERT INTO "User"(email) VALUES ('written-after-the-backup@example.com')""")

    # alice restores and stops (SIGSTOP) inside the db layer, right before her swap; her path to S3 is cut
    restore = restore_stopped_before_swap(alice, name, procs, "lease test")
    proxy.cut()
    first = journal(alice)[0]["run"]
    # bob's run takes the lease over once it has expired (alice renews no more)
    bob_run = hold_lease(bob, procs)
    assert lease_object(bucket)["run"] == bob_run

    proxy.mend()
    os.kill(restore.pid, signal.SIGCONT)
    _, err = restore.communicate(timeout=120)
    assert restore.returncode == 4, err
    error = next(line for line in err.splitlines() if line.startswith("error: "))
    assert "was not renewed for" in error and f"run {bob_run} by" in error and "holds it now" in error, error
    assert "Traceback" not in err
    # alice did not swap: one run acts at a time
    assert replaced(world) == []
    assert world.sql("""SELECT count(*) FROM "User" WHERE email = 'written-after-the-backup@example.com'""") == [(1,)]
    # the journal says so, and where it stopped
    entries = journal(alice, first)
    failed = next(e for e in entries if e["event"] == "step_failed")
    assert failed["step"] == "swap" and "was not renewed" in failed["error"] and failed["error_type"] == "LockHeld"
    finished = next(e for e in entries if e["event"] == "run_finished")
    assert finished["status"] == "refused" and finished["exit_code"] == 4
    assert lease_object(bucket)["run"] == bob_run  # alice never wrote the lease again

    # once bob is gone, having done nothing (SIGTERM ends his run: journal finished, lease released), alice's
    # run resumes and swaps, once (had bob acted, the resume would be refused: tests/incident/test_resume_overtaken.py)
    holder = procs[-1]
    holder.terminate()
    holder.communicate(timeout=30)
    resumed = resume_when_free(alice)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["resumes"] == first
    assert len(replaced(world)) == 1
    assert world.sql("""SELECT count(*) FROM "User" WHERE email = 'written-after-the-backup@example.com'""") == [(0,)]


def test_a_long_wait_keeps_renewing_and_stops_at_its_next_poll_when_renewing_fails(
        world: World, bucket: str, procs: list[Any], proxy: CutProxy, tmp_path: Path) -> None:  # noqa: F811
    from rollback.sandbox.vercel_state import DEMO

    alice = laptop(world, tmp_path, bucket, "alice", AWS_ENDPOINT_URL=proxy.url)
    # The alias job outlasts the lease several times over: the run can only end by finishing it (exit 0) or
    # by stopping its wait when the lease is lost (exit 4). (The resume below waits for what is left of it.)
    world.emulator.state.configure(job_seconds=25)
    run = spawn(alice, "-m", "rollback", "app", "rollback", "--yes", "--no-verify")
    procs.append(run)
    runs = Path(alice["ROLLBACK_CONFIG"]).parent / "runs"
    until("the watch of the alias job started",
          lambda: any('"step_started", "step": "wait-rollback"' in p.read_text() for p in runs.glob("*.jsonl")),
          timeout=60)
    taken = lease_object(bucket)
    # the lease is renewed while the long step lasts
    renewed = until("a renewal during the wait", lambda: (lambda now: now if now["etag"] != taken["etag"] else None)(
        lease_object(bucket)), timeout=30)
    assert renewed["run"] == taken["run"]

    proxy.cut()
    _, err = run.communicate(timeout=60)
    assert run.returncode == 4, err  # not 0: the wait stopped, the job was still running
    error = next(line for line in err.splitlines() if line.startswith("error: "))
    assert "was not renewed for" in error and "could not be read" in error, error
    entries = journal(alice)
    failed = next(e for e in entries if e["event"] == "step_failed")
    assert failed["step"] == "wait-rollback" and failed["error_type"] == "LockHeld"
    assert next(e for e in entries if e["event"] == "run_finished")["status"] == "refused"

    # resumed once the lease is free (alice's old lease expires on S3's clock), the run completes
    proxy.mend()
    world.emulator.state.configure(job_seconds=0.5)
    resumed = resume_when_free(alice)
    assert resumed.returncode == 0, resumed.stderr
    assert world.emulator.state.project(DEMO.project_name).production_id == DEMO.previous
    assert [r["type"] for r in world.emulator.state.alias_history] == ["rollback"]  # sent once
