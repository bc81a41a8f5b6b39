"""``rollback drill``: end to end against the sandbox (real processes: the supervisor with moto, the
Vercel emulator, the app server and its monitor, PostgreSQL), through the real CLI entry point."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from rollback.model.incident import read_incident
from rollback.sandbox.processes import ProcessRef, is_alive
from rollback.sandbox.world import Sandbox, SandboxInfo
from tests.conftest import CliResult
from tests.sandbox.test_world import alarm_states, aws

RunCli = Callable[..., CliResult]
SECTIONS = ("## Summary", "## Timeline", "## Root Cause Analysis", "## Impact Assessment", "## Resolution",
            "### Verification", "### Rollback metrics", "## Prevention", "## Action Items", "## Lessons Learned")


def _parse(text: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def _world_now(info: SandboxInfo) -> dict[str, Any]:
    """What every layer serves now: the production deployment, the edge version, the assets' ETags,
    the row counts."""
    world = info.world
    production = httpx.get(f"{info.env['VERCEL_API_URL']}/_admin/production/demo", timeout=5).json()
    config = aws("cloudfront").get_distribution_config(Id=world["aws"]["distribution_id"])["DistributionConfig"]
    arn = config["DefaultCacheBehavior"]["LambdaFunctionAssociations"]["Items"][0]["LambdaFunctionARN"]
    listed = aws("s3").list_object_versions(Bucket=world["aws"]["assets_bucket"], Prefix=world["aws"]["assets_prefix"])
    etags = {v["Key"]: v["ETag"] for v in listed.get("Versions", []) if v.get("IsLatest")}
    import psycopg

    with psycopg.connect(info.env["DATABASE_URL"]) as conn:
        rows = {table: conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]  # type: ignore[index]
                for table in world["database"]["tables"]}
    return {"deployment": production["deployment"]["id"], "edge": arn.rsplit(":", 1)[-1], "etags": etags,
            "rows": rows}


def test_drill_restores_every_layer_and_reports_it(fresh_sandbox: SandboxInfo, run_cli: RunCli,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    info = fresh_sandbox
    world = info.world
    good_backup = world["database"]["good_backup"]
    before = _world_now(info)
    assert before["deployment"] == world["vercel"]["bad_deployment"]
    assert before["edge"] in world["aws"]["edge_bad_versions"]
    assert before["etags"] != world["aws"]["assets_good_etags"]
    assert before["rows"] != world["database"]["good_counts"]
    checked = run_cli("verify", "--json", "--baseline", good_backup)
    assert checked.code == 3, checked.err
    assert checked.json()["ok"] is False and checked.json()["error"]["exit_code"] == 3

    # The drill in the directory that holds .rollback/sandbox: it reuses (and re-breaks) the running one.
    drill = run_cli("drill", "--sandbox", "--json")
    assert drill.code == 0, drill.err + drill.out
    document = drill.json()
    assert document["ok"] is True and document["mode"] == "sandbox" and document["env"] == "sandbox"
    assert [p["phase"] for p in document["phases"]] == ["sandbox", "detect", "decide", "rollback", "verify",
                                                        "report", "teardown"]
    assert all(p["ok"] for p in document["phases"])
    assert document["sandbox"]["reused"] is True and document["sandbox"]["kept"] is True
    assert set(document["layers"]) == {"app", "edge", "assets", "db"}
    assert document["command"].startswith("rollback --env sandbox run ")

    # Every layer restored: the app alias, the edge version, the assets, the database rows.
    after = _world_now(info)
    assert after["deployment"] == world["vercel"]["good_deployment"]
    assert after["edge"] == world["aws"]["edge_good_version"]
    assert after["etags"] == world["aws"]["assets_good_etags"]
    assert after["rows"] == world["database"]["good_counts"]
    assert set(alarm_states(info).values()) == {"OK"}
    checked = run_cli("verify", "--json", "--baseline", good_backup)
    assert checked.code == 0, checked.out
    # It was running before the drill: still running after it, its marker gone.
    assert Sandbox.status(info.dir) is not None
    assert not (info.dir / "drill.json").exists()

    # The incident: a drill, closed, its timeline and metrics what the report says.
    incidents = info.dir.parent / "incidents"
    record = read_incident(incidents / f"{document['incident']}.jsonl")
    assert record.opened["drill"] is True and record.status == "closed"
    events = {e["event"]: e for e in reversed(record.events)}  # the first of each kind
    moments = {"deployment_initiated": _parse(record.opened["deployment_initiated_at"]),
               "detected": _parse(record.opened["detected_at"]), "decided": _parse(events["decided"]["ts"]),
               "initiated": _parse(events["initiated"]["ts"]), "restored": _parse(events["restored"]["ts"]),
               "verified": _parse(next(e["ts"] for e in record.events if e["event"] == "verified" and e["ok"]))}
    expected = {"detect": ("deployment_initiated", "detected"), "decide": ("detected", "decided"),
                "rollback": ("decided", "restored"), "verify": ("restored", "verified"),
                "total": ("detected", "verified")}
    metrics = {m["phase"]: m for m in document["metrics"]}
    for phase, (start, end) in expected.items():
        seconds = (moments[end] - moments[start]).total_seconds()  # type: ignore[operator]
        assert metrics[phase]["seconds"] == pytest.approx(seconds, abs=0.002), phase
        assert metrics[phase]["verdict"] == "met"
    for row in document["timeline"]:
        assert abs((_parse(row["at"]) - moments[row["key"]]).total_seconds()) < 1, row  # type: ignore[operator]
    # The deployment is the sandbox's bad release (the seed's clock); the detection is the drill's own poll.
    current = Sandbox.status(info.dir)
    assert current is not None
    assert moments["deployment_initiated"] == _parse(current.world["timeline"]["now"])

    # The report: every section of the runbook's template, the runs of the journal, marked as a drill.
    report = Path(document["report"])
    assert report.is_file() and report.parent == info.dir.parent / "reports"
    text = report.read_text()
    assert "\\[DRILL\\]" in text and "This incident was a rollback drill" in text
    for section in SECTIONS:
        assert section in text, section
    from rollback.journal import find_run

    data = run_cli("report", document["incident"], "--format", "json").json()
    actions = {a["run"]: a for a in data["actions"]}
    assert set(actions) == set(document["runs"])
    for run_id in document["runs"]:
        journal = find_run(info.dir.parent / "runs", run_id)
        finished = [e["step"] for e in journal.entries if e.get("event") == "step_finished"]
        assert finished and [s["id"] for s in actions[run_id]["steps"]
                             if s["status"] in ("done", "already done", "finished")] == finished
        assert run_id in text

    # `rollback report` afterwards in that directory, with no config, renders the same incident.
    for name in ("ROLLBACK_CONFIG", "ROLLBACK_ENV"):
        monkeypatch.delenv(name, raising=False)
    again = run_cli("report", "--format", "json")
    assert again.code == 0, again.err
    assert again.json()["incident"] == document["incident"]
    assert again.json()["metrics"] == document["metrics"]

    # The sandbox's incident channel: start, per-layer and end posts, and no secret in any of them.
    posts = [p["text"] for p in httpx.get(f"{info.env['APP_URL']}/_sandbox/channel", timeout=5).json()["posts"]
             if document["incident"] in p["text"]]
    assert any("started" in p for p in posts), posts
    for layer in ("app", "edge", "assets", "db"):
        assert any(f"layer {layer}" in p for p in posts), (layer, posts)
    assert any("finished" in p for p in posts), posts
    assert all(p.startswith("[DRILL]") for p in posts)
    secrets = [info.env["VERCEL_TOKEN"], info.env["AWS_SECRET_ACCESS_KEY"],
               info.env["DATABASE_URL"].split(":")[2].split("@")[0], info.env["SANDBOX_WEBHOOK_URL"].rsplit("/", 1)[1]]
    for post in posts:
        for secret in secrets:
            assert secret not in post
    for path in [report, *incidents.glob("*.jsonl"), *(info.dir.parent / "drills").glob("*.log")]:
        content = path.read_text()
        for secret in secrets:
            assert secret not in content, path


@pytest.mark.parametrize("env_name, extra", [("production", {}), ("prod", {}), ("live", {"production": True})])
def test_drill_refuses_production(env_name: str, extra: dict[str, Any], tmp_path: Path, run_cli: RunCli,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "rollback.toml"
    flag = "production = true\n" if extra else ""
    # Nothing to measure: decide --live sees no bad deploy, so an allowed drill stops at detect.
    path.write_text(f"[env.{env_name}]\n{flag}\n[env.{env_name}.targets]\ndetect = 5\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    for name in ("ROLLBACK_CONFIG", "ROLLBACK_ENV"):
        monkeypatch.delenv(name, raising=False)
    refused = run_cli("drill", "--env", env_name, "--json")
    assert refused.code == 4, refused.err
    assert "production" in refused.err and "--i-know-this-is-production" in refused.err
    assert json.loads(refused.out)["error"]["exit_code"] == 4
    assert not (tmp_path / ".rollback" / "incidents").exists()
    # With the flag it goes on (here: nothing detects a bad deploy, so the drill stops at detect).
    allowed = run_cli("drill", "--env", env_name, "--i-know-this-is-production", "--detect-timeout", "1s", "--json")
    assert allowed.code == 1, allowed.err
    assert "not detected" in json.loads(allowed.out)["error"]


def test_one_drill_per_sandbox_directory(tmp_path: Path, run_cli: RunCli) -> None:
    import fcntl

    directory = tmp_path / ".rollback" / "sandbox"
    directory.mkdir(parents=True)
    with open(directory / "drill.lock", "a+") as held:  # what a running drill holds
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        result = run_cli("drill", "--sandbox", "--dir", str(directory))
    assert result.code == 4, result.err
    assert "another drill is using the sandbox" in result.err
    assert not (directory / "sandbox.json").exists()


def test_drill_needs_a_target(run_cli: RunCli) -> None:
    result = run_cli("drill")
    assert result.code == 2
    assert "--sandbox" in result.err
    assert run_cli("drill", "--sandbox", "--env", "staging").code == 2
    assert run_cli("drill", "--sandbox", "--layers", "app,nope").code == 2


def _drill_process(directory: Path, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ROLLBACK_", "AWS_", "VERCEL_", "DATABASE_URL", "APP_URL", "SANDBOX_"))}
    return subprocess.Popen([sys.executable, "-m", "rollback", "drill", "--sandbox", *args], cwd=directory, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _wait_for_ready(directory: Path, process: subprocess.Popen[str], timeout: float = 180) -> dict[str, Any]:
    state_file = directory / ".rollback" / "sandbox" / "sandbox.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        if state_file.exists():
            try:
                state = json.loads(state_file.read_text())
            except ValueError:
                state = {}
            if state.get("state") == "ready":
                return state
        time.sleep(0.1)
    raise AssertionError("the drill's sandbox was not ready in time")


def _all_gone(state: dict[str, Any]) -> bool:
    return not any(is_alive(ProcessRef.from_dict(ref)) for ref in state["processes"].values())


@pytest.mark.slow  # starts a sandbox of its own
def test_ctrl_c_stops_the_sandbox_the_drill_started(tmp_path: Path) -> None:
    """A real `rollback drill --sandbox` process, interrupted (SIGINT) once its sandbox is up: exit 130,
    no process and no PostgreSQL cluster left behind."""
    process = _drill_process(tmp_path)
    state = _wait_for_ready(tmp_path, process)
    process.send_signal(signal.SIGINT)
    _out, err = process.communicate(timeout=60)
    # 130, or (rarely, when the signal lands as the interpreter exits) death by SIGINT: $? is 130 either way.
    assert process.returncode in (130, -signal.SIGINT), err
    assert "error: interrupted" in err
    assert _all_gone(state), state["processes"]
    assert not Path(state["postgres"]["root"]).exists()
    assert Sandbox.status(tmp_path / ".rollback" / "sandbox") is None


@pytest.mark.slow  # starts a sandbox of its own
def test_a_killed_drill_leaves_a_sandbox_the_next_drill_stops(tmp_path: Path) -> None:
    """SIGKILL cannot be handled: the sandbox stays up, marked as the drill's; the next drill in that
    directory adopts it (re-seeds it), runs to the end as a whole process and stops it."""
    process = _drill_process(tmp_path)
    state = _wait_for_ready(tmp_path, process)
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)
    directory = tmp_path / ".rollback" / "sandbox"
    assert Sandbox.status(directory) is not None and (directory / "drill.json").exists()
    try:
        again = _drill_process(tmp_path, "--json")
        out, err = again.communicate(timeout=600)
        assert again.returncode == 0, err
        document = json.loads(out)
        assert document["sandbox"]["started"] is True and document["sandbox"]["kept"] is False
        assert Path(document["report"]).is_file()
        assert _all_gone(state)
        assert Sandbox.status(directory) is None and not (directory / "drill.json").exists()
    finally:
        Sandbox.down(directory)


def test_drill_auto_detects_and_decides_by_watch(fresh_sandbox: SandboxInfo, run_cli: RunCli,
                                                 monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``rollback drill --sandbox --auto``: ``rollback watch`` detects (its first bad reading), decides (after
    three in a row) and rolls back app, edge and assets itself; the drill then runs the command it posted
    for the database, as the person it paged would. The timeline shows detection and decision in seconds."""
    monkeypatch.setenv("ROLLBACK_LOCK_DIR", str(tmp_path / "locks"))  # no cooldown from another test
    info = fresh_sandbox
    world = info.world
    drill = run_cli("drill", "--sandbox", "--auto", "--json")
    assert drill.code == 0, drill.err + drill.out
    document = drill.json()
    assert [p["phase"] for p in document["phases"]] == ["sandbox", "detect", "decide", "rollback", "verify",
                                                        "report", "teardown"]
    assert all(p["ok"] for p in document["phases"]), document["phases"]
    phases = {p["phase"]: p for p in document["phases"]}
    assert phases["detect"]["detail"].startswith("rollback watch: first bad reading")
    assert phases["decide"]["detail"].startswith("rollback watch: P0 after 3 readings")
    person = "then the person's rollback --env sandbox run --severity P0 --layers db --yes"
    assert person in phases["rollback"]["detail"]
    assert len(document["runs"]) == 2  # the watch's (app, edge, assets), the person's (db)

    # every layer back, the database by the person's command
    after = _world_now(info)
    assert after["deployment"] == world["vercel"]["good_deployment"]
    assert after["edge"] == world["aws"]["edge_good_version"]
    assert after["etags"] == world["aws"]["assets_good_etags"]
    assert after["rows"] == world["database"]["good_counts"]

    # the timeline: detected by the watch, decided by it, each in seconds
    metrics = {m["phase"]: m for m in document["metrics"]}
    assert metrics["detect"]["seconds"] < 60 and metrics["decide"]["seconds"] < 30
    assert metrics["detect"]["verdict"] == metrics["decide"]["verdict"] == "met"
    rows = {row["key"]: row for row in document["timeline"]}
    assert rows["detected"]["detail"].startswith("rollback watch ")
    assert "3 bad readings in a row" in rows["decided"]["detail"]
    record = read_incident(info.dir.parent / "incidents" / f"{document['incident']}.jsonl")
    assert record.opened["detected_from"] == "watch" and record.opened["drill"] is True
    assert [e["command"] for e in record.events if e["event"] == "needs_person"] == \
        ["rollback --env sandbox run --severity P0 --layers db"]
