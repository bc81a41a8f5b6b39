"""``rollback run`` and ``rollback resume`` end to end against the session's sandbox (real processes: the
supervisor with moto, the Vercel emulator, the app server and its monitor, PostgreSQL).

Every test starts from the world as seeded (``fresh_sandbox``) with no open incident, so that each run
opens its own. The CLI runs in this process (``run_cli``) except where a real process is killed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rollback.config import load_settings
from rollback.sandbox.world import SandboxInfo
from tests.conftest import CliResult
from tests.report.conftest import Receiver, receiver  # noqa: F401  (the webhook receiver fixture)

RunCli = Callable[..., CliResult]


def aws(service: str) -> Any:
    import boto3

    return boto3.client(service, region_name="us-east-1")  # type: ignore[call-overload]


@pytest.fixture
def world(fresh_sandbox: SandboxInfo, run_cli: RunCli) -> SandboxInfo:
    """The seeded world, with no incident left open by an earlier test."""
    for incident in run_cli("incident", "list", "--json").json().get("incidents", []):
        if incident["status"] == "open":
            assert run_cli("incident", "close", incident["id"], "--resolution", "test isolation").code == 0
    return fresh_sandbox


def journal_dir(info: SandboxInfo) -> Path:
    return info.dir.parent / "runs"


def events(info: SandboxInfo, run_id: str) -> list[dict[str, Any]]:
    path = journal_dir(info) / f"{run_id}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def acted(info: SandboxInfo, run_ids: list[str]) -> dict[str, int]:
    """How many times each step acted (finished, not as already done) across ``run_ids``."""
    counts: dict[str, int] = {}
    for run_id in run_ids:
        for entry in events(info, run_id):
            if entry["event"] == "step_finished" and not entry.get("already_done") and not entry.get("dry_run"):
                counts[entry["step"]] = counts.get(entry["step"], 0) + 1
    return counts


def production(info: SandboxInfo) -> dict[str, Any]:
    return dict(httpx.get(f"{info.env['VERCEL_API_URL']}/_admin/production/demo", timeout=10).json())


def edge_state(info: SandboxInfo) -> tuple[str, str]:
    """(the version the distribution's edge association runs, its ETag)."""
    response = aws("cloudfront").get_distribution_config(Id=info.world["aws"]["distribution_id"])
    items = response["DistributionConfig"]["DefaultCacheBehavior"]["LambdaFunctionAssociations"]["Items"]
    return str(items[0]["LambdaFunctionARN"]).rsplit(":", 1)[1], str(response["ETag"])


def row_counts(run_cli: RunCli) -> dict[str, int]:
    report = run_cli("db", "verify", "--json").json()
    return {c["check"][len("rows."):]: c["value"] for c in report["checks"] if c["check"].startswith("rows.")}


def incident_of(run_cli: RunCli, incident: str) -> dict[str, Any]:
    shown = run_cli("incident", "show", incident, "--json")
    assert shown.code == 0, shown.err
    return dict(shown.json())


def repair_assets(run_cli: RunCli) -> None:
    """This scenario's bad deploy did not touch the assets: put them back first."""
    result = run_cli("infra", "assets", "--prefix", "releases/r42/", "--before", "30m ago", "--yes")
    assert result.code == 0, result.err


# ------------------------------------------------------------------------------------------ the must-show


def test_run_app_edge_db_restores_all_three_then_verifies(world: SandboxInfo, run_cli: RunCli) -> None:
    info = world
    repair_assets(run_cli)
    version_before, etag_before = edge_state(info)
    assert version_before == "3"
    counts_before = row_counts(run_cli)
    good = info.world["database"]["good_counts"]
    assert counts_before != good

    result = run_cli("run", "--layers", "app,edge,db", "--yes", "--json")
    assert result.code == 0, result.err
    document = result.json()

    # app: the alias moved to the good deployment
    assert production(info)["deployment"]["id"] == info.world["vercel"]["good_deployment"]
    # edge: the association runs version 2 now, and the distribution's ETag changed
    version_after, etag_after = edge_state(info)
    assert version_after == "2" and etag_after != etag_before
    # db: the rows are back
    after = row_counts(run_cli)
    assert {table: after[table] for table in good} == good
    # verified: every measured checklist item passes
    verification = document["verification"]
    assert verification["ok"] is True and verification["summary"]["fail"] == 0
    assert {i["status"] for i in verification["items"]} <= {"pass", "not measured"}
    # the plan: world check, app, edge, the restore last, its safety dump once service is back (issue 20:
    # service first; the dump reads the copy the swap kept), then verification
    ids = [s["id"] for s in document["plan"]["steps"]]
    assert ids[0] == "run.world" and ids[1] == "app.vercel-rollback" and ids[-1] == "verify.checklist"
    assert ids.index("app.vercel-rollback") < ids.index("edge.associate") < ids.index("db.swap") \
        < ids.index("db.emergency-backup") < ids.index("verify.checklist")
    assert ids.index("app.health") == ids.index("app.wait-rollback") + 1
    assert len(ids) == len(set(ids))
    # every step acted exactly once
    assert set(acted(info, [document["run"]]).values()) == {1}

    # the incident's timeline, in order
    incident = incident_of(run_cli, document["incident"])
    order = [e["event"] for e in incident["events"]]
    assert order == ["opened", "decided", "run_started", "initiated", "restored", "verified", "run_finished"]
    timeline = incident["timeline"]
    assert timeline["detected"] <= timeline["decided"] <= timeline["initiated"] <= timeline["restored"] \
        <= timeline["verified"]
    restored = next(e for e in incident["events"] if e["event"] == "restored")
    assert restored["layer"] == "app" and restored["run"] == document["run"]
    assert {c["ok"] for c in restored["health"]} == {True} and len(restored["health"]) >= 2
    initiated = next(e for e in incident["events"] if e["event"] == "initiated")
    assert initiated["step"] == "app.vercel-rollback"  # the first step that is not a check
    finished = next(e for e in incident["events"] if e["event"] == "run_finished")
    assert finished["status"] == "succeeded" and finished["exit_code"] == 0
    assert incident["metrics"]["rollback"] is not None and incident["metrics"]["verify"] is not None
    assert incident["verifications"][-1]["ok"] is True
    assert incident["verifications"][-1]["since"] is not None  # rates judged since the rollback

    # a standalone verify judges the CloudFront rates since the incident's restore
    again = run_cli("verify", "--json")
    assert again.json()["since"] == timeline["restored"]
    rate = next(i for i in again.json()["items"] if i["id"] == "cdn.5xx-rate")
    assert rate["status"] == "pass", rate
    if "since restored" in rate["name"]:  # verify judged from the restore on
        assert rate["name"].endswith(f"(since restored {timeline['restored'][11:19]}Z)"), rate
        assert "since the service was restored" in rate["detail"] \
            or "no 5xxErrorRate datapoint since" in rate["detail"], rate
    else:  # restored longer ago than the window (the sandbox's is 12 s): the whole window is after it
        window = load_settings(info.config_path).env["sandbox"].verify.metrics_minutes
        restored_at = dt.datetime.fromisoformat(timeline["restored"].replace("Z", "+00:00"))
        assert dt.datetime.now(dt.UTC) - restored_at >= dt.timedelta(minutes=window), rate
        assert "average over" in rate["detail"], rate
    # and the report renders the incident, its runs and the swap's data-loss facts
    report = run_cli("report", document["incident"], "--format", "md")
    assert report.code == 0, report.err
    assert document["run"] in report.out and "emergency backup" in report.out.lower()
    # ...counted against the copy the swap kept (keys compared, no row read out)
    assert "Rows only in the kept database: " in report.out and "not counted" not in report.out, report.out


LAYER_SECTIONS = ("app", "edge", "assets", "db", "alarms")


def test_status_shows_every_layer_bad_then_good_around_a_run_of_every_layer(world: SandboxInfo, run_cli: RunCli,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """``rollback status`` reads every source of the seeded (broken) world at once and says which layer is
    bad; after ``run --layers app,edge,assets,db`` every one of them is good. (The budget is raised: this
    test is about what is shown, and a loaded machine must not turn a source into "not read".)"""
    monkeypatch.setenv("ROLLBACK_DECIDE_BUDGET", "60")
    before = run_cli("status", "--json")
    assert before.code == 3, before.err  # a section is BAD
    sections = {s["name"]: s for s in before.json()["sections"]}
    assert [s["name"] for s in before.json()["sections"]] == ["app", "edge", "assets", "db", "stack", "alarms",
                                                              "incident", "backups"]
    assert {name: sections[name]["status"] for name in LAYER_SECTIONS} == dict.fromkeys(LAYER_SECTIONS, "bad")
    assert all(not s["problems"] for s in sections.values()), sections  # every source of the sandbox was read
    assert "'Add new feature'" in sections["app"]["summary"]
    assert "health GET /api/health: HTTP 500, expected 200" in sections["app"]["details"]
    assert "rollback-sandbox-security-headers:3" in sections["edge"]["summary"]
    assert sections["assets"]["summary"].startswith("release r42:")
    assert "failed migration(s): 20261130090000_merge_user_stats" in sections["db"]["details"]
    assert sections["stack"]["summary"].startswith("stack sandbox v4: update succeeded")
    assert sections["incident"]["summary"] == "none open"
    human = run_cli("status")
    assert human.code == 3 and human.out.startswith("status of env sandbox at ")
    assert re.search(r"^  app +BAD +production dpl_", human.out, re.MULTILINE), human.out
    # decide --live shows the same screen first
    decided = run_cli("decide", "--live", "--no-incident")
    assert decided.out.startswith("status of env sandbox at ") and "\nP0: immediate rollback" in decided.out

    ran = run_cli("run", "--layers", "app,edge,assets,db", "--yes")
    assert ran.code == 0, ran.err
    after = run_cli("status", "--json")
    assert after.code == 0, after.out
    sections = {s["name"]: s for s in after.json()["sections"]}
    assert {name: sections[name]["status"] for name in LAYER_SECTIONS} == dict.fromkeys(LAYER_SECTIONS, "ok")
    assert "rollback-sandbox-security-headers:2" in sections["edge"]["summary"]
    assert any("auto-assignment paused by an instant rollback" in d for d in sections["app"]["details"])
    assert any(d.startswith("pin edgeFunctionVersion = 2") and "not deployed yet: v4 deployed 3" in d
               for d in sections["stack"]["details"]), sections["stack"]
    assert sections["incident"]["summary"].startswith("open: INC-")


def test_a_run_of_some_layers_reports_what_it_cannot_heal_at_once(world: SandboxInfo, run_cli: RunCli) -> None:
    """``run --layers app,edge`` in the seeded world: the checklist waits only for what an app or edge rollback
    can heal, then reports the database and the assets' items as not healed by this run, with the command that
    would (exit 3), instead of re-checking them until the verify target (5 min) is up."""
    result = run_cli("run", "--layers", "app,edge", "--yes")
    assert result.code == 3, result.err
    line = result.err.strip().splitlines()[-1]
    assert line.startswith("error: verification: every checklist item the layers of this run (app, edge) can "
                           "heal passes;"), line
    assert "not healed by this run: no failed migrations = 1" in line
    assert line.endswith("(roll back what this run did not: 'rollback --env sandbox run --layers assets,db')"), line
    assert "not healed by this run (no layer of app, edge can fix them): db.migrations" in result.err
    run_id = re.search(r"journaled as run (\S+)", result.err).group(1)  # type: ignore[union-attr]
    failed = [e for e in events(world, run_id) if e["event"] == "step_failed"]
    assert [e["step"] for e in failed] == ["verify.checklist"]
    incident = run_cli("incident", "show", "open", "--json").json()
    scoped = incident["verifications"][-1]
    assert scoped["ok"] is False and scoped["not_healed"]["command"] == "rollback --env sandbox run --layers assets,db"
    assert {i["id"] for i in scoped["items"] if i.get("not_healed_by_run")} >= {"db.migrations", "cdn.cache-hit-rate"}
    assert all(i["status"] == "pass" for i in scoped["items"] if i["id"] in ("cdn.5xx-rate", "health./api/health"))


# ------------------------------------------------------------------------------------------ faults and resume


def test_a_failed_vercel_job_stops_the_run_and_resume_completes_it(world: SandboxInfo, run_cli: RunCli) -> None:
    info = world
    repair_assets(run_cli)
    admin = f"{info.env['VERCEL_API_URL']}/_admin/config"
    httpx.post(admin, json={"fail_aliases": ["www.demo.example.com"]}, timeout=10).raise_for_status()
    try:
        failed = run_cli("run", "--layers", "app,edge,db", "--yes")
    finally:
        httpx.post(admin, json={"fail_aliases": []}, timeout=10).raise_for_status()
    assert failed.code == 1, failed.err
    line = failed.err.strip().splitlines()[-1]
    assert line.startswith("error: the rollback job failed")
    first = line.rsplit("rollback resume ", 1)[1].rstrip(")")
    # one next command, not two ("then run the command again; then continue with: rollback resume ...")
    assert line.endswith(f"(check those domains in the Vercel dashboard, then: rollback resume {first})"), line
    assert "again" not in line
    first_events = events(info, first)
    assert [e["step"] for e in first_events if e["event"] == "step_failed"] == ["app.wait-rollback"]

    resumed = run_cli("resume", "--yes", "--json")  # the newest unfinished run of the environment
    assert resumed.code == 0, resumed.err
    document = resumed.json()
    assert document["resumes"] == first
    second = document["run"]
    # nothing finished is repeated: each step acted exactly once across both runs
    counts = acted(info, [first, second])
    assert set(counts.values()) == {1}
    # and every step of the plan finished (acted once, or found already done by its check)
    assert {s["id"] for s in document["steps"]} == {s["id"] for s in document["plan"]["steps"]}
    assert set(counts) >= {"app.vercel-rollback", "app.wait-rollback", "edge.associate", "db.swap"}
    done_again = [s["id"] for s in document["steps"] if s["already_done"]]
    assert done_again[:2] == ["run.world", "app.vercel-rollback"]
    # the job went through the second time: production serves the good deployment; the world is restored
    assert production(info)["deployment"]["id"] == info.world["vercel"]["good_deployment"]
    assert edge_state(info)[0] == "2"
    assert document["verification"]["ok"] is True
    # one incident holds both runs
    incident = incident_of(run_cli, document["incident"])
    assert incident["runs"] == [first, second]
    started = [e for e in incident["events"] if e["event"] == "run_started"]
    assert started[1]["resumes"] == first
    assert [e["event"] for e in incident["events"]].count("initiated") == 1
    assert [(e["run"], e["status"]) for e in incident["events"] if e["event"] == "run_finished"] == [
        (first, "failed"), (second, "succeeded")]


class Proxy:
    """A TCP proxy in front of PostgreSQL that can drop every connection and refuse new ones:
    the database becoming unreachable mid-run, then reachable again."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.up = True
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.up = False
        with self.lock:
            for sock in self.sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            self.sockets.clear()

    def restore(self) -> None:
        self.up = True

    def close(self) -> None:
        self.server.close()
        self.cut()


@pytest.fixture
def db_proxy(world: SandboxInfo, monkeypatch: pytest.MonkeyPatch) -> Iterator[Proxy]:
    from urllib.parse import urlsplit, urlunsplit

    url = world.env["DATABASE_URL"]
    parts = urlsplit(url)
    proxy = Proxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    netloc = parts.netloc.rsplit(":", 1)[0] + f":{proxy.port}"
    monkeypatch.setenv("DATABASE_URL", urlunsplit(parts._replace(netloc=netloc)))
    try:
        yield proxy
    finally:
        proxy.close()


def _cut_when_started(info: SandboxInfo, step: str, proxy: Proxy, known: set[str]) -> threading.Thread:
    def watch() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            for path in journal_dir(info).glob("*.jsonl"):
                if path.name in known:
                    continue
                if f'"step_started", "step": "{step}"' in path.read_text():
                    proxy.cut()
                    return
            time.sleep(0.005)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_the_database_becoming_unreachable_mid_run_then_resume(world: SandboxInfo, run_cli: RunCli,
                                                               db_proxy: Proxy) -> None:
    info = world
    repair_assets(run_cli)
    known = {p.name for p in journal_dir(info).glob("*.jsonl")}
    watcher = _cut_when_started(info, "db.verify-backup", db_proxy, known)
    failed = run_cli("run", "--layers", "app,edge,db", "--yes", "--no-verify")
    watcher.join(5)
    assert failed.code == 1, failed.err
    assert "rollback resume " in failed.err.strip().splitlines()[-1]
    first = failed.err.strip().splitlines()[-1].rsplit("rollback resume ", 1)[1].rstrip(")")
    first_events = events(info, first)
    stopped = [e["step"] for e in first_events if e["event"] == "step_failed"]
    assert stopped and stopped[0].startswith("db.")
    finished = {e["step"] for e in first_events if e["event"] == "step_finished"}
    assert {"app.vercel-rollback", "edge.associate"} <= finished  # the layers before it were done

    db_proxy.restore()
    resumed = run_cli("resume", first, "--yes", "--json")
    assert resumed.code == 0, resumed.err
    second = resumed.json()["run"]
    assert set(acted(info, [first, second]).values()) == {1}
    good = info.world["database"]["good_counts"]
    after = row_counts(run_cli)
    assert {table: after[table] for table in good} == good


def _journal_with_step(info: SandboxInfo, step: str, proc: subprocess.Popen[str], known: set[str],
                       timeout: float = 60.0) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in journal_dir(info).glob("*.jsonl"):
            if path.name not in known and f'"step_started", "step": "{step}"' in path.read_text():
                return path
        if proc.poll() is not None:
            raise AssertionError(f"rollback run ended early ({proc.returncode}): {proc.communicate()}")
        time.sleep(0.01)
    raise AssertionError(f"step {step} never started")


def _served(info: SandboxInfo) -> list[dict[str, Any]]:
    """Every API request the sandbox's Vercel emulator has answered, oldest first."""
    answer = httpx.get(f"{info.env['VERCEL_API_URL']}/_admin/requests", timeout=10).json()
    return list(answer["requests"] if isinstance(answer, dict) else answer)


def test_sigkill_mid_run_then_resume(world: SandboxInfo, run_cli: RunCli) -> None:
    info = world
    repair_assets(run_cli)
    # The alias job outlives the process (until the test lets it finish, whatever the load).
    httpx.post(f"{info.env['VERCEL_API_URL']}/_admin/config", json={"job_seconds": 600},
               timeout=10).raise_for_status()
    known = {p.name for p in journal_dir(info).glob("*.jsonl")}
    proc = subprocess.Popen([sys.executable, "-m", "rollback", "run", "--layers", "app,edge,db", "--yes"],
                            env=dict(os.environ), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        served = len(_served(info))
        path = _journal_with_step(info, "app.wait-rollback", proc, known)
        deadline = time.monotonic() + 60  # inside the watch of the alias job: it has polled the job once
        while not any(r["method"] == "GET" for r in _served(info)[served:]):
            assert proc.poll() is None and time.monotonic() < deadline, "the watch never polled"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        httpx.post(f"{info.env['VERCEL_API_URL']}/_admin/config", json={"job_seconds": 0.5},
                   timeout=10).raise_for_status()
    assert proc.returncode == -signal.SIGKILL
    first = path.name.removesuffix(".jsonl")
    assert not any(e["event"] == "run_finished" for e in events(info, first))

    resumed = run_cli("resume", "--yes", "--json")
    assert resumed.code == 0, resumed.err
    document = resumed.json()
    assert document["resumes"] == first
    assert set(acted(info, [first, document["run"]]).values()) == {1}
    requests = httpx.get(f"{info.env['VERCEL_API_URL']}/_admin/state", timeout=10).json()["aliasRequests"]
    assert [r["type"] for r in requests] == ["rollback"]  # the rollback was not sent again
    assert production(info)["deployment"]["id"] == info.world["vercel"]["good_deployment"]
    assert edge_state(info)[0] == "2"
    assert document["verification"]["ok"] is True


def test_sigterm_mid_run_is_a_journaled_interruption(world: SandboxInfo, run_cli: RunCli) -> None:
    info = world
    known = {p.name for p in journal_dir(info).glob("*.jsonl")}
    # The alias job runs until the test lets it finish (the finally below), however loaded the machine.
    httpx.post(f"{info.env['VERCEL_API_URL']}/_admin/config", json={"job_seconds": 600},
               timeout=10).raise_for_status()
    proc = subprocess.Popen([sys.executable, "-m", "rollback", "run", "--layers", "app", "--yes", "--no-verify"],
                            env=dict(os.environ), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        path = _journal_with_step(info, "app.wait-rollback", proc, known)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        httpx.post(f"{info.env['VERCEL_API_URL']}/_admin/config", json={"job_seconds": 0.5},
                   timeout=10).raise_for_status()
    assert proc.returncode == 130, err
    run_id = path.name.removesuffix(".jsonl")
    assert f"rollback resume {run_id}" in err.strip().splitlines()[-1]
    finished = [e for e in events(info, run_id) if e["event"] == "run_finished"]
    assert finished and finished[0]["status"] == "interrupted" and finished[0]["exit_code"] == 130
    resumed = run_cli("resume", run_id, "--yes")
    assert resumed.code == 0, resumed.err
    assert production(info)["deployment"]["id"] == info.world["vercel"]["good_deployment"]


# ------------------------------------------------------------------------------------------ saved plans, hazards


def test_the_dry_run_plan_is_what_runs_and_a_changed_world_refuses_it(world: SandboxInfo, run_cli: RunCli,
                                                                     tmp_path: Path) -> None:
    info = world
    # (edge and db stay broken in this test: no checklist at the end, it would wait for them)
    dry = run_cli("run", "--layers", "app,assets", "--no-verify", "--dry-run", "--json")
    assert dry.code == 0, dry.err
    saved = tmp_path / "plan.json"
    saved.write_text(dry.out)
    document = dry.json()
    assert document["dry_run"] is True and document["run"] is None and document["incident"] is None
    # a dry run records nothing: no incident was opened
    assert [i for i in run_cli("incident", "list", "--json").json()["incidents"] if i["status"] == "open"] == []

    done = run_cli("run", "--plan", str(saved), "--yes", "--json")
    assert done.code == 0, done.err
    run_id = done.json()["run"]
    planned = next(e for e in events(info, run_id) if e["event"] == "step_planned")
    assert planned["steps"] == document["plan"]["steps"]  # exactly the saved plan
    assert [s["id"] for s in done.json()["steps"]] == [s["id"] for s in document["plan"]["steps"]]
    assert production(info)["deployment"]["id"] == info.world["vercel"]["good_deployment"]
    body = aws("s3").get_object(Bucket=info.world["aws"]["assets_bucket"], Key="releases/r42/index.html")["Body"]
    assert b"app.3f9c.js" not in body.read()

    # the same saved plan again: production changed since (it was just rolled back), so it is refused
    again = run_cli("run", "--plan", str(saved), "--yes")
    assert again.code == 4, again.err
    assert "the world changed since the plan was made" in again.err
    assert "production serves" in again.err


def test_schema_skew_names_the_migrations(world: SandboxInfo, run_cli: RunCli) -> None:
    from rollback.sandbox.vercel_state import DEMO

    refused = run_cli("run", "--layers", "app", "--to", f"app={DEMO.oldest}", "--dry-run")
    assert refused.code == 4, refused.err
    line = refused.err.strip().splitlines()[-1]
    assert "schema-skew" in line and "20261115090000_integrations_and_stats" in line
    assert "--accept-schema-skew" in line
    accepted = run_cli("run", "--layers", "app", "--to", f"app={DEMO.oldest}", "--accept-schema-skew",
                       "--dry-run", "--json")
    assert accepted.code == 0, accepted.err
    hazards = accepted.json()["hazards"]
    assert [h["kind"] for h in hazards] == ["schema-skew"] and hazards[0]["blocking"] is False
    assert hazards[0]["details"]["migrations"] == ["20261115090000_integrations_and_stats"]
    assert any("20261115090000_integrations_and_stats" in n for n in accepted.json()["plan"]["notes"])


def test_assets_release_of_another_deployment_is_refused(world: SandboxInfo, run_cli: RunCli,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    info = world
    config = info.dir / "rollback-releases.toml"
    text = info.config_path.read_text()
    config.write_text(text.replace("[env.sandbox.aws]\n", "[env.sandbox.aws]\nassets_releases = { r42 = "
                                   f"\"{info.world['vercel']['bad_deployment']}\" }}\n"))
    monkeypatch.setenv("ROLLBACK_CONFIG", str(config))
    refused = run_cli("run", "--layers", "app,assets", "--dry-run")
    assert refused.code == 4, refused.err
    assert "assets-mismatch" in refused.err and "'r42'" in refused.err
    assert run_cli("run", "--layers", "app,assets", "--dry-run", "--accept-mismatch").code == 0


def test_rds_restore_names_the_database_url_change_and_switch_database_makes_it(world: SandboxInfo,
                                                                                run_cli: RunCli) -> None:
    info = world
    dry = run_cli("run", "--layers", "app,db", "--to", "db=rds-latest", "--dry-run", "--json")
    assert dry.code == 0, dry.err
    hazard = dry.json()["hazards"][0]
    assert hazard["kind"] == "database-not-switched" and hazard["override"] == "--switch-database"
    assert "DATABASE_URL" in hazard["message"]

    result = run_cli("run", "--layers", "app,db", "--to", "db=rds-latest", "--switch-database", "--yes",
                     "--no-verify", "--json")
    assert result.code == 0, result.err
    document = result.json()
    restored = next(s for s in document["steps"] if s["id"] == "db.rds-restore")["result"]
    endpoint = restored["endpoint"]
    assert endpoint
    state = httpx.get(f"{info.env['VERCEL_API_URL']}/_admin/state", timeout=10).json()
    project = state["projects"][0]
    assert project["envHosts"]["DATABASE_URL"] == endpoint
    serving = next(d for d in state["deployments"] if d["id"] == project["production"])
    # production serves a redeploy of the rolled-back deployment, built with the new variable
    assert serving["redeployOf"] == info.world["vercel"]["good_deployment"]
    assert serving["envHosts"]["DATABASE_URL"] == endpoint
    assert any(endpoint in change for change in document["database_url_changes"])
    # the variable's value (it holds a password) is in no journal line
    text = (journal_dir(info) / f"{document['run']}.jsonl").read_text()
    assert "demo-password" not in text


# ------------------------------------------------------------------------------------------ decide -> run


def test_decides_recommended_command_runs_as_written(world: SandboxInfo, run_cli: RunCli) -> None:
    import shlex

    decided = run_cli("decide", "--live", "--json")
    assert decided.code == 0, decided.err
    document = decided.json()
    assert document["severity"] in ("P0", "P1")
    assert "data_loss" in {r["signal"] for r in document["reasons"]}  # the grow-only table lost rows
    command = shlex.split(document["command"])
    assert command[0] == "rollback" and "run" in command
    for layer in document["layers"]:
        if layer in ("edge", "assets"):
            # P0, and no Pulumi CLI on PATH either: break-glass, which 'rollback run' does with these layers
            assert document["options"][layer] == "break-glass" and document["option_reasons"][layer]
    ran = run_cli(*command[1:], "--yes", "--no-verify", "--json")
    assert ran.code == 0, ran.err
    assert ran.json()["incident"] == document["incident"]  # the decision's incident
    assert production(info := world)["deployment"]["id"] == info.world["vercel"]["good_deployment"]


def test_run_without_layers_or_decision_says_what_to_give(world: SandboxInfo, run_cli: RunCli) -> None:
    result = run_cli("run", "--dry-run")
    assert result.code == 2
    assert "nothing to run" in result.err and "--layers" in result.err


# ------------------------------------------------------------------------------------------ notifications


def _notify_to_test_webhook(info: SandboxInfo, extra: str = "") -> Path:
    """The sandbox's config with its incident channel pointed at $TEST_WEBHOOK (the test's receiver)."""
    text, count = re.subn(r'(\[env\.sandbox\.notify\]\n(?:#.*\n)*)webhook_env = "[^"]*"\n',
                          lambda m: m.group(1) + 'webhook_env = "TEST_WEBHOOK"\n' + extra,
                          info.config_path.read_text())
    assert count == 1, "the sandbox's config has no [env.sandbox.notify] webhook_env line"
    config = info.dir / "rollback-notify.toml"
    config.write_text(text)
    return config


def test_notifications_start_per_layer_end_and_no_secret(world: SandboxInfo, run_cli: RunCli,
                                                        receiver: Receiver,  # noqa: F811
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    info = world
    repair_assets(run_cli)
    config = _notify_to_test_webhook(info, "heartbeat_minutes = 0.01\n")
    monkeypatch.setenv("ROLLBACK_CONFIG", str(config))
    monkeypatch.setenv("TEST_WEBHOOK", receiver.url)
    httpx.post(f"{info.env['VERCEL_API_URL']}/_admin/config", json={"job_seconds": 2}, timeout=10).raise_for_status()
    try:
        result = run_cli("run", "--layers", "app,edge,db", "--severity", "P1", "--yes", "--json")
    finally:
        httpx.post(f"{info.env['VERCEL_API_URL']}/_admin/config", json={"job_seconds": 0.5},
                   timeout=10).raise_for_status()
    assert result.code == 0, result.err
    texts = receiver.texts()
    assert "rollback started" in texts[0] and "P1" in texts[0] and "[app]" in texts[0]
    layers = [t for t in texts if ": layer " in t]
    # service first (issue 20): the db layer's post names the safety dump written after its swap
    assert any("layer db: done" in t and "safety dump app-" in t for t in layers), layers
    assert any("layer app: restored" in t for t in layers)
    assert any("layer edge: done" in t for t in layers)
    assert any("layer verification: passed" in t for t in layers)
    assert any("still running" in t for t in texts)  # a heartbeat while the 2 s alias job ran
    assert "rollback finished: service restored, verification passed" in texts[-1]
    assert result.json()["notifications"]["sent"] == len(texts)
    secrets = [info.env["VERCEL_TOKEN"], receiver.url,
               info.env["DATABASE_URL"].split("@")[0].rsplit(":", 1)[1]]
    for raw in receiver.raw:
        for secret in secrets:
            assert secret.encode() not in raw


def test_a_dry_run_posts_nothing(world: SandboxInfo, run_cli: RunCli, receiver: Receiver,  # noqa: F811
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    info = world
    config = _notify_to_test_webhook(info)
    monkeypatch.setenv("ROLLBACK_CONFIG", str(config))
    monkeypatch.setenv("TEST_WEBHOOK", receiver.url)
    assert run_cli("run", "--layers", "app,edge,db", "--dry-run").code == 0
    time.sleep(0.5)
    assert receiver.raw == []
