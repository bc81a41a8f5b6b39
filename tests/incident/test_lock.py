"""The run lock: keyed on the environment (not the journal directory), and the team lease on S3
(moto server, real HTTP), between real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rollback.errors import LockHeld
from tests.conftest import render_config
from tests.incident.conftest import World, world_config

ROOT = Path(__file__).resolve().parents[2]


def _spawn(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _hold(env: dict[str, str], seconds: float = 60.0) -> tuple[subprocess.Popen[str], str]:
    proc = _spawn(env, "-m", "tests.incident.hold_lock", str(seconds))
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("held "):
        proc.kill()
        raise AssertionError(f"the holder did not take the lock: {line!r} {proc.stderr.read() if proc.stderr else ''}")
    return proc, line.split()[1]


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rollback", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _environ(world: World, **extra: str) -> dict[str, str]:
    env = {**os.environ, **world.env, **extra}
    env.pop("ROLLBACK_JOURNAL_DIR", None)
    return env


@pytest.mark.slow
def test_two_journal_dirs_cannot_both_act_on_one_environment(world: World, procs: list[Any], tmp_path: Path) -> None:
    from rollback.sandbox.vercel_state import DEMO

    env = _environ(world)
    holder, run_id = _hold({**env, "ROLLBACK_JOURNAL_DIR": str(tmp_path / "journal-a")})
    procs.append(holder)
    second = _cli({**env, "ROLLBACK_JOURNAL_DIR": str(tmp_path / "journal-b")}, "app", "rollback", "--yes")
    assert second.returncode == 4, second.stderr
    assert "another rollback run is in progress on env 'production'" in second.stderr
    assert run_id in second.stderr  # names the holder
    assert world.emulator.state.project(DEMO.project_name).production_id == DEMO.current  # nothing happened
    holder.kill()
    holder.wait()
    # the kernel dropped the lock with the process: the next run goes ahead
    third = _cli({**env, "ROLLBACK_JOURNAL_DIR": str(tmp_path / "journal-b")}, "app", "rollback", "--yes")
    assert third.returncode == 0, third.stderr
    assert world.emulator.state.project(DEMO.project_name).production_id == DEMO.previous


def test_other_environments_and_config_files_are_not_blocked(world: World, procs: list[Any],
                                                            tmp_path: Path) -> None:
    from rollback.config import load_config
    from rollback.lock import acquire, lock_path

    holder, _ = _hold(_environ(world))
    procs.append(holder)
    config = load_config(world.config_path)
    with pytest.raises(LockHeld):
        acquire("production", {"run": "x"}, identity=config.identity)
    other = acquire("production", {"run": "y"}, identity=f"{tmp_path / 'other.toml'}\0production")
    other.release()
    assert lock_path(config.identity).parent == tmp_path / "locks"
    assert not lock_path(f"{tmp_path / 'other.toml'}\0production").exists()  # released locks leave no file


# ------------------------------------------------------------------------------------------ S3 lease


@pytest.fixture
def bucket(aws_env: str) -> str:
    import boto3

    name = f"team-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=name)
    return name


def test_moto_implements_s3_conditional_writes(bucket: str) -> None:
    """What the lease relies on: If-None-Match: * and If-Match answer 412 when the object does not match."""
    import boto3
    from botocore.exceptions import ClientError

    s3 = boto3.client("s3", region_name="us-east-1")
    first = s3.put_object(Bucket=bucket, Key="k", Body=b"1", IfNoneMatch="*")
    with pytest.raises(ClientError) as taken:
        s3.put_object(Bucket=bucket, Key="k", Body=b"2", IfNoneMatch="*")
    assert taken.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    second = s3.put_object(Bucket=bucket, Key="k", Body=b"3", IfMatch=first["ETag"])
    with pytest.raises(ClientError) as stale:
        s3.put_object(Bucket=bucket, Key="k", Body=b"4", IfMatch=first["ETag"])
    assert stale.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    with pytest.raises(ClientError) as stale_delete:
        s3.delete_object(Bucket=bucket, Key="k", IfMatch=first["ETag"])
    assert stale_delete.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    s3.delete_object(Bucket=bucket, Key="k", IfMatch=second["ETag"])


def test_lease_take_renew_release_and_take_over(bucket: str) -> None:
    from rollback.adapters.s3_lease import open_store
    from rollback.lock import TeamLock

    team = TeamLock(f"s3://{bucket}/team", ttl=1)
    store = open_store(bucket)
    first = team.lease("production", {"run": "run-a", "who": "alice", "host": "laptop-a", "pid": 1,
                                      "command": "rollback run"})
    first.take()
    body = json.loads(store.client.get_object(Bucket=bucket, Key="team/locks/production.json")["Body"].read())
    assert body["run"] == "run-a" and body["host"] == "laptop-a" and body["ttl"] == 1 and body["expires_at"]
    etag = first.etag
    assert first.renew() and first.etag != etag
    second = team.lease("production", {"run": "run-b", "who": "bob", "host": "laptop-b", "pid": 2, "command": "x"})
    with pytest.raises(LockHeld, match="run run-a by alice@laptop-a") as held:
        second.take()
    assert held.value.exit_code == 4
    # alice's laptop went to sleep: no renewal, the lease expires (on S3's clock) and bob takes it over.
    deadline = time.monotonic() + 30
    while True:
        try:
            second.take()
            break
        except LockHeld:
            assert time.monotonic() < deadline, "the expired lease was never taken over"
            time.sleep(0.1)
    assert second.taken_over is not None and second.taken_over["run"] == "run-a"
    assert not first.renew() and first.lost is not None and "run-b" in first.lost  # alice learns she lost it
    second.release()
    assert store.read("team/locks/production.json") is None
    third = team.lease("production", {"run": "run-c"})
    third.take()  # free again
    third.release()


def _team_world(world: World, tmp_path: Path, bucket: str, name: str, ttl: int = 60) -> dict[str, str]:
    """A second copy of the config (another laptop: another path) sharing the team lock."""

    folder = tmp_path / name
    folder.mkdir()
    path = folder / "rollback.toml"
    config = world_config(world.emulator.url, "INC_DATABASE_URL", world.distribution, world.alarms, "true",
                          lock={"url": f"s3://{bucket}/team", "ttl": ttl})
    path.write_text(render_config(config, default_env="production", journal_dir=str(folder / "runs")),
                    encoding="utf-8")
    return _environ(world, ROLLBACK_CONFIG=str(path), ROLLBACK_LOCK_DIR=str(folder / "locks"))


@pytest.mark.slow
def test_two_laptops_one_team_lease(world: World, bucket: str, procs: list[Any], tmp_path: Path) -> None:
    import boto3

    from rollback.sandbox.vercel_state import DEMO

    alice = _team_world(world, tmp_path, bucket, "alice")
    bob = _team_world(world, tmp_path, bucket, "bob")
    holder, run_id = _hold(alice)
    procs.append(holder)
    refused = _cli(bob, "app", "rollback", "--yes")
    assert refused.returncode == 4, refused.stderr
    assert "holds the team lock on env 'production'" in refused.stderr and run_id in refused.stderr
    assert world.emulator.state.project(DEMO.project_name).production_id == DEMO.current
    s3 = boto3.client("s3", region_name="us-east-1")
    lease = json.loads(s3.get_object(Bucket=bucket, Key="team/locks/production.json")["Body"].read())
    assert lease["run"] == run_id
    holder.terminate()
    assert holder.wait(timeout=20) is not None
    # alice's run journal is in the shared prefix from its first line
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="team/runs/").get("Contents", [])}
    assert f"team/runs/{run_id}.jsonl" in keys


@pytest.mark.slow
def test_expired_lease_of_a_killed_run_is_taken_over(world: World, bucket: str, procs: list[Any],
                                                     tmp_path: Path) -> None:
    import boto3

    from rollback.sandbox.vercel_state import DEMO

    alice = _team_world(world, tmp_path, bucket, "alice", ttl=5)
    bob = _team_world(world, tmp_path, bucket, "bob", ttl=5)
    holder, run_id = _hold(alice)
    procs.append(holder)
    holder.send_signal(signal.SIGKILL)  # no release: the lease object stays until it expires
    holder.wait()
    s3 = boto3.client("s3", region_name="us-east-1")
    assert json.loads(s3.get_object(Bucket=bucket, Key="team/locks/production.json")["Body"].read())["run"] == run_id
    deadline = time.monotonic() + 30
    while True:
        result = _cli(bob, "app", "rollback", "--yes")
        if result.returncode != 4 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert result.returncode == 0, result.stderr
    assert f"took over the expired team lease of run {run_id}" in result.stderr
    assert world.emulator.state.project(DEMO.project_name).production_id == DEMO.previous
    journal = next((tmp_path / "bob" / "runs").glob("*.jsonl")).read_text()
    assert "took over the expired team lease" in journal
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket=bucket, Key="team/locks/production.json")  # released at the end


@pytest.mark.slow
def test_lease_of_a_run_is_renewed_while_it_lasts(world: World, bucket: str, procs: list[Any],
                                                  tmp_path: Path) -> None:
    import boto3

    alice = _team_world(world, tmp_path, bucket, "alice", ttl=5)
    holder, run_id = _hold(alice, seconds=30)
    procs.append(holder)
    s3 = boto3.client("s3", region_name="us-east-1")
    first = s3.get_object(Bucket=bucket, Key="team/locks/production.json")
    deadline = time.monotonic() + 30  # renewals every ttl/3: the object changes well within the ttl
    while (second := s3.get_object(Bucket=bucket, Key="team/locks/production.json"))["ETag"] == first["ETag"]:
        assert time.monotonic() < deadline and holder.poll() is None, "the lease was never renewed"
        time.sleep(0.1)
    assert json.loads(second["Body"].read())["run"] == run_id


Starter = Callable[..., Any]
