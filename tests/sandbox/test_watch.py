"""``rollback watch`` end to end against the session's sandbox: the real loop (live readers, the real clock),
its automatic rollback through ``rollback run``'s own code, and each guard rail: the database left to a
person, the cooldown, ``--pause`` while a watch runs, a run holding the team lease, a migration the app's
target does not know, and SIGKILL / SIGTERM mid-rollback completed by ``rollback resume``.

Each test has its own lock directory (the kill switch and the last automatic rollback live beside the
lock): one test's automatic rollback must not put the next one in its cooldown.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rollback.sandbox.world import Sandbox, SandboxInfo
from tests.conftest import CliResult
from tests.sandbox.test_run import (
    _journal_with_step,
    _served,
    acted,
    edge_state,
    events,
    journal_dir,
    production,
    row_counts,
)

RunCli = Callable[..., CliResult]
DB_COMMAND = "rollback --env sandbox run --severity P0 --layers db"


@pytest.fixture(autouse=True)
def _own_lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROLLBACK_LOCK_DIR", str(tmp_path / "locks"))


def _close_open_incidents(run_cli: RunCli) -> None:
    for incident in run_cli("incident", "list", "--json").json().get("incidents", []):
        if incident["status"] == "open":
            assert run_cli("incident", "close", incident["id"], "--resolution", "test isolation").code == 0


@pytest.fixture
def world(fresh_sandbox: SandboxInfo, run_cli: RunCli) -> SandboxInfo:
    """The seeded world (every layer bad), with no incident left open by an earlier test."""
    _close_open_incidents(run_cli)
    return fresh_sandbox


def channel(info: SandboxInfo) -> list[str]:
    answer = httpx.get(f"{info.env['APP_URL']}/_sandbox/channel", timeout=10).json()
    return [str(post["text"]) for post in answer["posts"]]


def incident_events(run_cli: RunCli, incident: str) -> list[dict[str, Any]]:
    shown = run_cli("incident", "show", incident, "--json")
    assert shown.code == 0, shown.err
    return list(shown.json()["events"])


def databases(info: SandboxInfo) -> list[str]:
    import psycopg

    with psycopg.connect(info.env["DATABASE_URL"]) as conn:
        return sorted(str(row[0]) for row in conn.execute("SELECT datname FROM pg_database"))


def backups(info: SandboxInfo) -> list[str]:
    return sorted(p.name for p in (info.dir / "backups").glob("*"))


def health_status(info: SandboxInfo) -> int:
    return httpx.get(f"{info.env['APP_URL']}/api/health", timeout=10).status_code


# ------------------------------------------------------------------------------------------ the must-show


def test_watch_brings_the_app_back_leaves_the_database_to_a_person_and_posts_its_command(
        world: SandboxInfo, run_cli: RunCli) -> None:
    """``sandbox up`` (every layer bad), then ``rollback watch --for 3m --interval 1s --auto app,edge,assets``:
    the app answers 200 again, the edge and the assets are back, the database is untouched, and the
    ``rollback run ... --layers db`` command is in the sandbox's channel and on the incident."""
    info = world
    rows_before, databases_before, backups_before = row_counts(run_cli), databases(info), backups(info)
    posts_before = len(channel(info))
    assert health_status(info) == 500

    result = run_cli("watch", "--for", "3m", "--interval", "1s", "--auto", "app,edge,assets", "--json")
    assert result.code == 3, result.err  # it acted, and a person must act on the database
    document = result.json()
    assert document["outcome"] == "needs_person" and document["acted"]["status"] == "succeeded"
    assert document["acted"]["verified"] is True and document["acted"]["layers"] == ["app", "edge", "assets"]
    assert document["person"]["command"] == DB_COMMAND and document["person"]["layers"] == ["db"]
    assert document["readings"]["readings"] == 3  # three bad readings in a row, then it acted
    since = document["since_start"]
    assert since["detected"] <= since["decided"] <= since["restored"] <= since["verified"]

    # the app, the edge and the assets are back
    assert health_status(info) == 200
    assert production(info)["deployment"]["id"] == info.world["vercel"]["good_deployment"]
    assert edge_state(info)[0] == "2"
    # the database is untouched: the same rows, no new database, no backup taken (no emergency backup either)
    assert row_counts(run_cli) == rows_before
    assert databases(info) == databases_before and backups(info) == backups_before
    run_id = document["acted"]["run"]
    steps = [e["step"] for e in events(info, run_id) if e["event"] == "step_started"]
    assert steps and not any(step.startswith("db.") for step in steps)
    assert set(acted(info, [run_id]).values()) == {1}
    checklist = next(e for e in events(info, run_id) if e["event"] == "step_finished"
                     and e["step"] == "verify.checklist")["result"]
    database = [i for i in checklist["items"] if i["id"] == "database"]
    assert checklist["ok"] is True and database and database[0]["status"] == "not measured"
    started = next(e for e in events(info, run_id) if e["event"] == "run_started")
    assert started["watch"] == document["watch"] and started["command"].startswith("rollback watch")

    # the db command went to the sandbox's channel, and the incident says a person must act
    posts = channel(info)[posts_before:]
    assert any(DB_COMMAND in post for post in posts), posts
    assert any("rollback finished: service restored, verification passed" in post for post in posts)
    assert DB_COMMAND in posts[-1]  # the last word: what the person runs
    order = [e["event"] for e in incident_events(run_cli, document["incident"])]
    assert order[:3] == ["opened", "decided", "needs_person"]
    assert {"run_started", "initiated", "restored", "verified", "run_finished"} <= set(order)
    needs = next(e for e in incident_events(run_cli, document["incident"]) if e["event"] == "needs_person")
    assert needs["command"] == DB_COMMAND and "never restores the database" in needs["why"]


# ------------------------------------------------------------------------------------------ guard rails


def test_a_second_bad_release_within_the_cooldown_pages_instead(world: SandboxInfo, run_cli: RunCli) -> None:
    info = world
    first = run_cli("watch", "--for", "2m", "--interval", "1s", "--json")
    assert first.code == 3, first.err
    assert first.json()["acted"]["status"] == "succeeded"
    _close_open_incidents(run_cli)
    Sandbox.reset(info.dir)  # the same bad release, deployed again
    assert health_status(info) == 500

    second = run_cli("watch", "--for", "2m", "--interval", "1s", "--json")
    assert second.code == 3, second.err
    document = second.json()
    assert document["outcome"] == "needs_person" and document["acted"] is None
    assert "cooldown" in document["person"]["why"] and first.json()["incident"] in document["person"]["why"]
    assert document["person"]["command"] == "rollback --env sandbox run --severity P0 --layers app,edge,assets,db"
    assert production(info)["deployment"]["id"] == info.world["vercel"]["bad_deployment"]  # nothing was done
    assert any("cooldown" in post for post in channel(info))


def _variant(info: SandboxInfo, *, database: bool = True, lock_url: str | None = None) -> Path:
    """A copy of the sandbox's rollback.toml beside it (its relative paths still hold): without the database
    signals (``database=False``: the seeded data loss and failed migration are not this test's subject), or
    with a team lease in the sandbox's S3."""
    text = info.config_path.read_text(encoding="utf-8")
    if not database:
        text = text.replace('url_env = "DATABASE_URL"', 'url_env = "WATCH_TEST_NO_DATABASE_URL"')
        text = "\n".join(line for line in text.splitlines() if not line.startswith("grow_only"))
    if lock_url:
        text += f'\n[lock]\nurl = "{lock_url}"\nttl = 60\n'
    path = info.dir / f"watch-test-{uuid.uuid4().hex[:8]}.toml"
    path.write_text(text + "\n", encoding="utf-8")
    return path


@pytest.fixture
def variant(world: SandboxInfo, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Path]]:
    made: list[Path] = []

    def make(**kwargs: Any) -> Path:
        path = _variant(world, **kwargs)
        made.append(path)
        monkeypatch.setenv("ROLLBACK_CONFIG", str(path))
        return path

    yield make
    for path in made:
        path.unlink(missing_ok=True)


def _alarms_ok(info: SandboxInfo) -> bool:
    import boto3

    cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
    found = cloudwatch.describe_alarms(AlarmNamePrefix="rollback-sandbox",
                                       AlarmTypes=["MetricAlarm", "CompositeAlarm"])
    states = [a["StateValue"] for a in found["MetricAlarms"] + found["CompositeAlarms"]
              if not a["AlarmName"].endswith("cache-hit-rate")]
    return bool(states) and all(state == "OK" for state in states)


def _restore_service(info: SandboxInfo, run_cli: RunCli) -> None:
    """The app, the edge and the assets back, and every rollback alarm (but the cache hit rate's, which an
    invalidation keeps low a while and which alone decides nothing) OK again."""
    restored = run_cli("run", "--layers", "app,edge,assets", "--yes", "--no-verify")
    assert restored.code == 0, restored.err
    _close_open_incidents(run_cli)
    deadline = time.monotonic() + 120
    while not (_alarms_ok(info) and health_status(info) == 200):
        assert time.monotonic() < deadline, "the alarms never cleared after the restore"
        time.sleep(0.2)


def _lines(stream: Any) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in iter(stream.readline, ""):
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _wait_for(lines: queue.Queue[str], needle: str, proc: subprocess.Popen[str], timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            assert proc.poll() is None, f"the watch ended early ({proc.returncode}): {''.join(seen)}"
            continue
        seen.append(line)
        if needle in line:
            return line
    raise AssertionError(f"never saw {needle!r} in: {''.join(seen)}")


def _watch(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "rollback", "watch", *args], env=dict(os.environ),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_pause_while_a_watch_runs_keeps_it_from_acting(world: SandboxInfo, run_cli: RunCli,
                                                     variant: Callable[..., Path]) -> None:
    """A healthy release; a watch reading it; someone pauses the environment; then the release goes bad:
    the watch pages (exit 4, refused: paused) and production stays as it is."""
    info = world
    variant(database=False)
    _restore_service(info, run_cli)
    proc = _watch("--for", "10m", "--interval", "0.5s", "--json")
    try:
        assert proc.stderr is not None and proc.stdout is not None
        lines = _lines(proc.stderr)
        _wait_for(lines, " ok", proc)  # it reads the release as good
        paused = run_cli("watch", "--pause", "--reason", "investigating by hand")
        assert paused.code == 0, paused.err
        bad = info.world["vercel"]["bad_deployment"]
        promoted = run_cli("app", "promote", bad, "--yes", "--no-verify")
        assert promoted.code == 0, promoted.err
        assert proc.wait(timeout=180) == 4
        document = json.loads(proc.stdout.read())
    finally:
        if proc.poll() is None:
            proc.kill()
        run_cli("watch", "--resume")
    assert document["outcome"] == "needs_person" and document["refused"]["reason"] == "paused"
    assert "investigating by hand" in document["refused"]["detail"] and document["acted"] is None
    assert document["readings"]["good"] >= 1 and document["readings"]["bad"] == 3
    assert production(info)["deployment"]["id"] == bad  # not rolled back
    needs = [e for e in incident_events(run_cli, document["incident"]) if e["event"] == "needs_person"]
    assert needs and "paused" in needs[0]["why"]


def test_a_run_holding_the_team_lease_refuses_the_watch_and_the_switch_is_the_team_s(
        world: SandboxInfo, run_cli: RunCli, variant: Callable[..., Path], tmp_path: Path) -> None:
    """Another machine holds the team lease (S3, the sandbox's moto): the watch decides, is refused (exit 4)
    naming the holder, and changes nothing. A --pause from here is an object beside the lease that the
    other machine sees."""
    import boto3

    from rollback.lock import TeamLock
    from rollback.watchstate import WatchState

    info = world
    bucket = f"watch-team-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=bucket)
    variant(lock_url=f"s3://{bucket}/team")
    root = Path(__file__).resolve().parents[2]
    other = {**os.environ, "ROLLBACK_LOCK_DIR": str(tmp_path / "other-machine"), "PYTHONPATH": str(root)}
    holder = subprocess.Popen([sys.executable, "-m", "tests.incident.hold_lock", "600"], env=other, cwd=root,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        held = holder.stdout.readline()
        assert held.startswith("held "), holder.stderr.read() if holder.stderr else held
        result = run_cli("watch", "--for", "2m", "--interval", "1s", "--json")
    finally:
        holder.terminate()
        holder.wait(timeout=30)
    assert result.code == 4, result.err
    document = result.json()
    assert document["outcome"] == "needs_person" and document["refused"]["reason"] == "lock"
    assert held.split()[1] in document["refused"]["detail"] and document["acted"] is None
    assert document["person"]["command"] == "rollback --env sandbox run --severity P0 --layers app,edge,assets,db"
    assert production(info)["deployment"]["id"] == info.world["vercel"]["bad_deployment"]
    assert edge_state(info)[0] == "3"

    paused = run_cli("watch", "--pause", "--reason", "the team's switch", "--json")
    assert paused.code == 0 and paused.json()["paused"]["where"] == "team"
    elsewhere = WatchState("sandbox", "another config\0sandbox", TeamLock(f"s3://{bucket}/team"),
                           environ={"ROLLBACK_LOCK_DIR": str(tmp_path / "other-machine")})
    found = elsewhere.paused()
    assert found is not None and found.reason == "the team's switch" and found.where == "team"
    assert run_cli("watch", "--resume").code == 0 and elsewhere.paused() is None


def test_a_deploy_with_a_migration_the_target_does_not_know_pages_instead(world: SandboxInfo,
                                                                          run_cli: RunCli) -> None:
    """A migration applied after the app's rollback target was built (the schema-skew hazard of ``run``):
    rolling the app back would run old code against the new schema, so the watch rolls nothing back and
    pages with the hazard and the command."""
    import psycopg

    info = world
    name = f"20261207{uuid.uuid4().int % 10**6:06d}_add_watch_column"
    with psycopg.connect(info.env["DATABASE_URL"], autocommit=True) as conn:
        conn.execute('INSERT INTO "_prisma_migrations" (id, checksum, finished_at, migration_name, started_at, '
                     'applied_steps_count) VALUES (%s, %s, now(), %s, now(), 1)',
                     (str(uuid.uuid4()), "0" * 64, name))
    result = run_cli("watch", "--for", "2m", "--interval", "1s", "--json")
    assert result.code == 3, result.err
    document = result.json()
    assert document["outcome"] == "needs_person" and document["acted"] is None and document["refused"] is None
    assert document["person"]["why"].startswith("schema-skew:") and name in document["person"]["why"]
    assert "--accept-schema-skew" in document["person"]["why"]
    assert document["person"]["command"] == "rollback --env sandbox run --severity P0 --layers app,edge,assets,db"
    assert production(info)["deployment"]["id"] == info.world["vercel"]["bad_deployment"]
    assert edge_state(info)[0] == "3"
    assert not any(json.loads(line).get("watch") == document["watch"]
                   for path in journal_dir(info).glob("*.jsonl") for line in path.read_text().splitlines()[:1])
    assert any("schema-skew" in post for post in channel(info))


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_watch_killed_mid_rollback_leaves_a_journal_resume_completes(world: SandboxInfo, run_cli: RunCli,
                                                                        sig: signal.Signals) -> None:
    info = world
    api = info.env["VERCEL_API_URL"]
    # The alias job outlives the process (until the test lets it finish, whatever the load).
    httpx.post(f"{api}/_admin/config", json={"job_seconds": 600}, timeout=10).raise_for_status()
    known = {p.name for p in journal_dir(info).glob("*.jsonl")}
    proc = _watch("--for", "3m", "--interval", "1s", "--json")
    try:
        path = _journal_with_step(info, "app.wait-rollback", proc, known)
        requests = len(_served(info))
        deadline = time.monotonic() + 60  # inside the wait for the alias job: it has polled the job once
        while not any(r["method"] == "GET" for r in _served(info)[requests:]):
            assert proc.poll() is None and time.monotonic() < deadline, "the rollback never polled its job"
            time.sleep(0.01)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        httpx.post(f"{api}/_admin/config", json={"job_seconds": 0.5}, timeout=10).raise_for_status()
    first = path.name.removesuffix(".jsonl")
    finished = [e for e in events(info, first) if e["event"] == "run_finished"]
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL and not finished
    else:
        assert proc.returncode == 130, err
        assert finished and finished[0]["status"] == "interrupted"
        document = json.loads(out)
        assert document["acted"]["status"] == "interrupted" and document["acted"]["run"] == first
        assert document["person"]["command"] == f"rollback --env sandbox resume {first}"

    resumed = run_cli("resume", "--yes", "--json")
    assert resumed.code == 0, resumed.err
    done = resumed.json()
    assert done["resumes"] == first
    assert set(acted(info, [first, done["run"]]).values()) == {1}  # no step twice
    aliases = httpx.get(f"{api}/_admin/state", timeout=10).json()["aliasRequests"]
    assert [r["type"] for r in aliases] == ["rollback"]  # the rollback was not sent again
    assert production(info)["deployment"]["id"] == info.world["vercel"]["good_deployment"]
    assert edge_state(info)[0] == "2"
    assert done["verification"]["ok"] is True  # the service's checklist, the database left to a person
    timeline = run_cli("incident", "show", done["incident"], "--json").json()["timeline"]
    # restored; verified only once a person has restored the database (the watch's checklist left it out)
    assert timeline["restored"] and timeline["verified"] is None


def test_the_abort_of_a_canary_is_automatic_even_with_auto_none(world: SandboxInfo, run_cli: RunCli) -> None:
    """Issue 24's rule for watch: during an active rolling release the app step is the abort, done even with
    ``--auto none`` (all traffic back to the base, sent once); ``--no-abort-canary`` leaves it to a person."""
    from tests.sandbox.test_rolling_sandbox import health, rollback_posts, rolling_state

    info = Sandbox.reset(world.dir, rolling=True)
    try:
        rolling = info.world["vercel"]["rolling"]
        assert rolling_state(info)["state"] == "ACTIVE"
        kept = run_cli("watch", "--for", "2m", "--interval", "1s", "--auto", "none", "--no-abort-canary",
                       "--json")
        assert kept.code == 3, kept.err
        document = kept.json()
        assert document["acted"] is None and "--no-abort-canary" in document["choice"]["why"]["app"]
        assert rolling_state(info)["state"] == "ACTIVE" and rollback_posts(info) == []
        _close_open_incidents(run_cli)

        result = run_cli("watch", "--for", "2m", "--interval", "1s", "--auto", "none", "--json")
        assert result.code == 3, result.err  # the rest (edge, assets, the database) is a person's
        document = result.json()
        assert document["decision"]["options"]["app"] == "abort-rolling-release"
        assert document["acted"]["layers"] == ["app"] and "app" not in document["person"]["layers"]
        state = rolling_state(info)
        assert state["state"] == "ABORTED" and state["production"] == rolling["base"]
        assert rollback_posts(info) == [f"/v9/projects/{info.world['vercel']['project_id']}/rollback/"
                                        f"{rolling['canary']}"]  # exactly one rollback POST: the abort
        assert health(info, 50).count(200) == 50
    finally:
        Sandbox.reset(world.dir)

