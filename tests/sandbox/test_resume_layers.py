"""A run interrupted after its last destructive step is resumed to the end, layer by layer (issue 18, item 2).

``resume`` re-checks every step the stopped run finished, so each step's check must stay true after the
later steps of the same run acted: after the swap the restored copy is the live database (no database has
the copy's name any more), after a redeploy production serves the new build rather than the deployment
the rollback step moved it to, after the pin and the invalidation the edge association is still the
planned one. For every layer a real ``rollback`` process is interrupted (SIGINT, as Ctrl-C) once its
destructive steps are done, and ``rollback resume --yes`` must finish the run with exit 0, acting on no
step twice. The world is the session's sandbox (real processes: moto, the Vercel emulator, PostgreSQL).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from rollback.sandbox.world import SandboxInfo
from tests.conftest import CliResult
from tests.sandbox.test_run import (
    _journal_with_step,
    acted,
    edge_state,
    journal_dir,
    production,
    repair_assets,
    world,  # noqa: F401  (the fixture: the seeded world, no incident left open)
)

RunCli = Callable[..., CliResult]

pytestmark = pytest.mark.slow


def interrupt_at(info: SandboxInfo, step: str, *args: str) -> str:
    """Start ``rollback ARGS`` in a process of its own, send it SIGINT (Ctrl-C) as soon as ``step`` starts,
    and return the run's id once it has stopped (exit 130)."""
    known = {p.name for p in journal_dir(info).glob("*.jsonl")}
    proc = subprocess.Popen([sys.executable, "-m", "rollback", *args], env=dict(os.environ),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        path = _journal_with_step(info, step, proc, known, timeout=180)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    run_id = path.name.removesuffix(".jsonl")
    if args[0] == "run":
        assert f"rollback resume {run_id}" in err.strip().splitlines()[-1]
    return run_id


class HealthGate(ThreadingHTTPServer):
    """A pass-through proxy in front of the sandbox app that holds every request until :meth:`release`.

    A health step takes a hundredth of a second against the sandbox, so a signal sent when the journal
    shows it started may arrive after the run has ended. Held here, the step is certainly running when
    the signal lands, however loaded the machine."""

    daemon_threads = True

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.arrived = threading.Event()
        self.released = threading.Event()
        super().__init__(("127.0.0.1", 0), _GateHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def release(self) -> None:
        self.released.set()


class _GateHandler(BaseHTTPRequestHandler):
    server: HealthGate

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.server.arrived.set()
        self.server.released.wait(timeout=180)
        try:
            answer = httpx.get(self.server.upstream + self.path, timeout=10)
            status, body = answer.status_code, answer.content
            kind = answer.headers.get("content-type", "text/plain")
        except (httpx.HTTPError, OSError):
            status, body, kind = 502, b"upstream unreachable", "text/plain"
        with contextlib.suppress(OSError):  # the run was interrupted and hung up
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)


@contextmanager
def gated_health(info: SandboxInfo) -> Iterator[tuple[HealthGate, dict[str, str]]]:
    """The sandbox's config with its health checks sent through a :class:`HealthGate`, and the environment
    that selects it (written beside the real config, so that every relative path stays as it is)."""
    import tomllib

    config = Path(info.env["ROLLBACK_CONFIG"])
    upstream = next(
        str(env["health"]["base_url"]) for env in tomllib.loads(config.read_text())["env"].values()
        if "health" in env)
    gate = HealthGate(upstream)
    thread = threading.Thread(target=gate.serve_forever, daemon=True)
    thread.start()
    gated = config.with_name("rollback-gated.toml")
    gated.write_text(config.read_text().replace(f'base_url = "{upstream}"', f'base_url = "{gate.url}"'))
    try:
        yield gate, {**os.environ, "ROLLBACK_CONFIG": str(gated)}
    finally:
        gate.release()
        gate.shutdown()
        gate.server_close()
        gated.unlink(missing_ok=True)


def interrupt_in_health(info: SandboxInfo, gate: HealthGate, env: dict[str, str], *args: str) -> str:
    """Start ``rollback ARGS``, send it SIGINT (Ctrl-C) while its health step waits on its first answer,
    and return the run's id once it has stopped (exit 130). The gate stays open (released) after it: the
    journal records the URL the step checks, so the resumed step asks the gate again."""
    known = {p.name for p in journal_dir(info).glob("*.jsonl")}
    proc = subprocess.Popen([sys.executable, "-m", "rollback", *args], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while not gate.arrived.wait(timeout=0.05):
            if proc.poll() is not None:
                raise AssertionError(f"rollback ended early ({proc.returncode}): {proc.communicate()}")
            assert time.monotonic() < deadline, "the health step never started"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        gate.release()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    started = [p for p in journal_dir(info).glob("*.jsonl") if p.name not in known]
    assert len(started) == 1, started
    return started[0].name.removesuffix(".jsonl")


def resume_all(run_cli: RunCli, info: SandboxInfo, first: str) -> dict[str, object]:
    resumed = run_cli("resume", "--yes", "--json")
    assert resumed.code == 0, resumed.err
    document: dict[str, object] = resumed.json()
    assert document["resumes"] == first
    assert set(acted(info, [first, str(document["run"])]).values()) == {1}  # no step acted twice
    return document


def replaced_databases(info: SandboxInfo) -> int:
    import psycopg

    url = info.env["DATABASE_URL"]
    with psycopg.connect(url, autocommit=True) as conn:
        live = conn.info.dbname
        row = conn.execute("SELECT count(*) FROM pg_database WHERE datname LIKE %s", (f"{live}_replaced_%",)).fetchone()
    return int(row[0]) if row else 0


def alias_requests(info: SandboxInfo) -> list[str]:
    state = httpx.get(f"{info.env['VERCEL_API_URL']}/_admin/state", timeout=10).json()
    return [str(r["type"]) for r in state["aliasRequests"]]


def test_ctrl_c_during_the_checklist_of_run_app_db_then_resume_swaps_once(world: SandboxInfo,  # noqa: F811
                                                                           run_cli: RunCli) -> None:
    """The issue's reproduction: the checklist (up to 5 min) is the likeliest moment for a Ctrl-C."""
    info = world
    repair_assets(run_cli)  # the checklist passes only when every broken layer is restored
    edge = run_cli("infra", "edge", "--to-version", "2", "--yes", "--poll-interval", "1s")
    assert edge.code == 0, edge.err
    before = replaced_databases(info)
    first = interrupt_at(info, "verify.checklist", "run", "--layers", "app,db", "--yes")
    assert replaced_databases(info) == before + 1  # the swap happened before the Ctrl-C

    document = resume_all(run_cli, info, first)
    steps = {s["id"]: s for s in document["steps"]}  # type: ignore[attr-defined]
    for done in ("db.restore", "db.check-counts", "db.swap", "app.vercel-rollback"):
        assert steps[done]["already_done"] is True, done
    assert replaced_databases(info) == before + 1  # exactly one more <db>_replaced_: no second swap
    assert document["verification"]["ok"] is True  # type: ignore[index]
    assert production(info)["deployment"]["id"] == info.world["vercel"]["good_deployment"]


def test_app_undo_interrupted_after_the_promote_then_resume(world: SandboxInfo, run_cli: RunCli) -> None:  # noqa: F811
    info = world
    rolled = run_cli("app", "rollback", "--yes", "--no-verify")
    assert rolled.code == 0, rolled.err
    httpx.post(f"{info.env['VERCEL_API_URL']}/_admin/config", json={"job_seconds": 3}, timeout=10).raise_for_status()
    try:
        first = interrupt_at(info, "wait-promote", "app", "undo", "--yes", "--no-verify")
    finally:
        httpx.post(f"{info.env['VERCEL_API_URL']}/_admin/config", json={"job_seconds": 0.5},
                   timeout=10).raise_for_status()
    resume_all(run_cli, info, first)
    assert alias_requests(info) == ["rollback", "promote"]  # the undo's promote was sent once
    assert production(info)["deployment"]["id"] == info.world["vercel"]["bad_deployment"]


def test_edge_layer_interrupted_after_the_pin_and_invalidation_then_resume(world: SandboxInfo,  # noqa: F811
                                                                          run_cli: RunCli) -> None:
    info = world
    assert run_cli("app", "rollback", "--yes", "--no-verify").code == 0  # the edge layer's health check needs it
    _, etag_before = edge_state(info)
    with gated_health(info) as (gate, env):
        first = interrupt_in_health(info, gate, env, "run", "--layers", "edge", "--yes", "--no-verify",
                                    "--poll-interval", "1s")
        version, etag = edge_state(info)
        assert version == "2" and etag != etag_before
        document = resume_all(run_cli, info, first)
    steps = {s["id"]: s for s in document["steps"]}  # type: ignore[attr-defined]
    assert steps["edge.associate"]["already_done"] is True and steps["edge.pin"]["already_done"] is True
    assert edge_state(info) == (version, etag)  # not updated again


def test_assets_layer_interrupted_after_the_invalidation_then_resume(world: SandboxInfo,  # noqa: F811
                                                                    run_cli: RunCli) -> None:
    info = world
    assert run_cli("app", "rollback", "--yes", "--no-verify").code == 0
    with gated_health(info) as (gate, env):
        first = interrupt_in_health(info, gate, env, "run", "--layers", "assets", "--yes", "--no-verify",
                                    "--poll-interval", "1s")
        document = resume_all(run_cli, info, first)
    steps = {s["id"]: s for s in document["steps"]}  # type: ignore[attr-defined]
    restored = [sid for sid in steps if sid.startswith("assets.key-")]
    assert restored and all(steps[sid]["already_done"] for sid in restored)
    assert steps["assets.invalidate"]["already_done"] is True


def test_run_interrupted_after_the_redeploy_then_resume(world: SandboxInfo, run_cli: RunCli) -> None:  # noqa: F811
    """--switch-database redeploys what the rollback step moved production to, and promotes the new build:
    production no longer serves the rollback's target, yet the rollback step is done.

    The sandbox's RDS restore happens in moto (the app's data stays the damaged local database), so the
    checklist cannot pass here: the resumed run is walked as a dry run, which re-checks every finished
    step exactly as the real resume does (a check that no longer holds refuses it, exit 4)."""
    info = world
    first = interrupt_at(info, "verify.checklist", "run", "--layers", "app,db", "--to", "db=rds-latest",
                         "--switch-database", "--yes")
    serving = production(info)["deployment"]["id"]
    assert serving != info.world["vercel"]["good_deployment"]  # the redeploy serves
    resumed = run_cli("resume", first, "--dry-run", "--json")
    assert resumed.code == 0, resumed.err
    steps = {s["id"]: s for s in resumed.json()["steps"]}
    assert steps["app.vercel-rollback"]["already_done"] is True and steps["db.redeploy"]["already_done"] is True
    assert not steps["verify.checklist"]["already_done"]
    assert production(info)["deployment"]["id"] == serving
    assert alias_requests(info).count("rollback") == 1
