"""``rollback sandbox up|status|down`` as processes: never two sets, nothing left behind (also after
the owner is SIGKILLed), a stale state cleaned up. Each test starts its own sandbox (real processes)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from rollback.sandbox.processes import ProcessRef, is_alive
from rollback.sandbox.world import Sandbox, SandboxInfo

# Each test here starts a sandbox or a browser of its own: the full run, not the inner loop.
pytestmark = pytest.mark.slow


def rollback(*args: str, cwd: Path | None = None, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROLLBACK_", "AWS_", "VERCEL_"))}
    return subprocess.run([sys.executable, "-m", "rollback", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=timeout, stdin=subprocess.DEVNULL)


def recorded(directory: Path) -> dict[str, Any]:
    return dict(json.loads((directory / "sandbox.json").read_text()))


def refs(state: dict[str, Any]) -> list[ProcessRef]:
    return [ProcessRef.from_dict(data) for data in state["processes"].values()]


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def assert_nothing_left(state: dict[str, Any], timeout: float = 20.0) -> None:
    """No recorded process alive, no port answering, no cluster directory."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [ref.name for ref in refs(state) if is_alive(ref)]
        if not alive:
            break
        time.sleep(0.1)
    assert [ref.name for ref in refs(state) if is_alive(ref)] == []
    assert [name for name, port in state["ports"].items() if port_open(port)] == []
    assert not Path(state["postgres"]["root"]).exists()
    # And no PostgreSQL server of ours anywhere: no postmaster for a data dir under that root.
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert state["postgres"]["root"] not in ps


@pytest.fixture
def directory(tmp_path: Path) -> Any:
    path = tmp_path / ".rollback" / "sandbox"
    yield path
    Sandbox.down(path)  # whatever a failed test left


def test_up_twice_reuses_then_down_leaves_nothing(directory: Path) -> None:
    first = rollback("sandbox", "up", "--dir", str(directory), "--json")
    assert first.returncode == 0, first.stderr
    started = json.loads(first.stdout)
    assert started["reused"] is False and started["state"] == "ready"
    state = recorded(directory)
    assert all(is_alive(ref) for ref in refs(state))
    assert set(state["pids"]) >= {"supervisor", "moto", "vercel", "app", "postgres", "postgres-watchdog"}

    second = rollback("sandbox", "up", "--dir", str(directory), "--json")
    assert second.returncode == 0, second.stderr
    again = json.loads(second.stdout)
    assert again["reused"] is True
    assert again["pids"] == started["pids"] and again["ports"] == started["ports"]
    assert "already running" in rollback("sandbox", "up", "--dir", str(directory)).stdout

    status = rollback("sandbox", "status", "--dir", str(directory))
    assert status.returncode == 0 and f"export APP_URL={started['env']['APP_URL']}" in status.stdout

    down = rollback("sandbox", "down", "--dir", str(directory), "--json")
    assert down.returncode == 0, down.stderr
    assert json.loads(down.stdout)["was_running"] is True
    assert_nothing_left(state)
    assert not (directory / "sandbox.json").exists()
    assert rollback("sandbox", "status", "--dir", str(directory)).returncode == 3
    repeat = rollback("sandbox", "down", "--dir", str(directory))
    assert repeat.returncode == 0 and "no sandbox was running" in repeat.stdout


def test_two_concurrent_ups_start_one_sandbox(directory: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROLLBACK_", "AWS_", "VERCEL_"))}
    command = [sys.executable, "-m", "rollback", "sandbox", "up", "--dir", str(directory), "--json"]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    outputs = [proc.communicate(timeout=240) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], [err for _, err in outputs]
    documents = [json.loads(out) for out, _ in outputs]
    assert sorted(d["reused"] for d in documents) == [False, True]
    assert documents[0]["pids"] == documents[1]["pids"]
    supervisors = subprocess.run(["pgrep", "-f", f"rollback.sandbox.supervisor --dir {directory}"],
                                 capture_output=True, text=True).stdout.split()
    assert len(supervisors) == 1


def test_down_after_the_owner_was_sigkilled(directory: Path) -> None:
    info = Sandbox.up(directory)
    state = recorded(directory)
    supervisor = ProcessRef.from_dict(state["processes"]["supervisor"])
    os.kill(supervisor.pid, signal.SIGKILL)
    # Its children die with it (PDEATHSIG) and the watchdog stops the cluster; down finds a stale state
    # and removes what is left.
    deadline = time.monotonic() + 10
    while Sandbox.status(directory) is not None:  # the kernel releases its lock when it is reaped
        assert time.monotonic() < deadline, "the killed supervisor still holds its lock"
        time.sleep(0.05)
    result = Sandbox.down(directory)
    assert result.was_running is False
    assert_nothing_left(state)
    assert not (directory / "sandbox.json").exists()
    assert info.dir == directory.resolve()


def test_up_over_a_stale_state_starts_afresh(directory: Path) -> None:
    Sandbox.up(directory)
    stale = recorded(directory)
    os.kill(stale["pids"]["supervisor"], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while Sandbox.status(directory) is not None:  # the kernel releases its lock when it is reaped
        assert time.monotonic() < deadline, "the killed supervisor still holds its lock"
        time.sleep(0.02)
    info: SandboxInfo = Sandbox.up(directory)
    assert info.reused is False and info.is_ready
    assert info.pids["supervisor"] != stale["pids"]["supervisor"]
    assert_nothing_left(stale)
    down = Sandbox.down(directory)
    assert down.was_running
    assert_nothing_left(recorded_or(stale, info))


def recorded_or(stale: dict[str, Any], info: SandboxInfo) -> dict[str, Any]:
    return info.raw if info.raw else stale


def test_a_recycled_pid_is_never_signalled(tmp_path: Path) -> None:
    """A pid whose start time differs from the recorded one names another process: down leaves it alone."""
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        from rollback.sandbox.processes import process_ref, stop_process

        real = process_ref("other", sleeper.pid)
        impostor = ProcessRef("app", sleeper.pid, (real.start_time or 0) + 1)
        assert is_alive(real) and not is_alive(impostor)
        assert stop_process(impostor) is False
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()


def test_missing_sandbox_extra_is_one_line(run_cli: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "moto" else real(name, *a))
    result = run_cli("sandbox", "up", "--dir", str(tmp_path / "sb"))
    assert result.code == 2
    assert result.err.strip().splitlines() == [
        "error: the sandbox needs moto, which is not installed (pip install -e '.[sandbox]')"]


def test_a_deleted_sandbox_directory_stops_its_sandbox(directory: Path) -> None:
    """rm -rf of a running sandbox's directory: its supervisor notices, stops everything, and never writes
    into a new sandbox made in the same place."""
    import shutil

    Sandbox.up(directory)
    state = recorded(directory)
    shutil.rmtree(directory)
    assert_nothing_left(state, timeout=30)
