"""A real ``rollback app rollback`` process killed mid-run, then resumed.

The process runs the CLI as a subprocess against the emulator (served in this
test process, over real HTTP). It is killed while it watches the alias job
(the rollback request went out and was journaled): with SIGKILL (no handler runs,
the journal just stops) and with SIGTERM (handled like Ctrl-C: the step is
interrupted, the journal says so, exit 130). :func:`rollback.runner.resume`
then rebuilds the plan from the journal and finishes the run without sending
the rollback again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from rollback.context import Services
from rollback.sandbox.vercel import VercelEmulator
from rollback.sandbox.vercel_state import DEMO
from tests.conftest import CliResult

RunCli = Callable[..., CliResult]


def _start(app_env: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "rollback", "app", "rollback", "--yes"], env=dict(os.environ),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_step(journal_dir: Path, step: str, proc: subprocess.Popen[str], timeout: float = 30.0) -> Path:
    """The run's journal, once it has journaled ``step`` as started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in journal_dir.glob("*.jsonl"):
            events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            if any(e["event"] == "step_started" and e.get("step") == step for e in events):
                return path
        if proc.poll() is not None:
            raise AssertionError(f"the process ended early ({proc.returncode}): {proc.communicate()}")
        time.sleep(0.05)
    raise AssertionError(f"step {step} never started")


def _wait_for_a_poll(emulator: VercelEmulator, served: int, proc: subprocess.Popen[str],
                     timeout: float = 30.0) -> None:
    """Until the emulator has answered a GET after its first ``served`` requests."""
    deadline = time.monotonic() + timeout
    while not any(r["method"] == "GET" for r in emulator.state.requests[served:]):
        if proc.poll() is not None:
            raise AssertionError(f"the process ended early ({proc.returncode}): {proc.communicate()}")
        assert time.monotonic() < deadline, "the watch never polled"
        time.sleep(0.01)


def _events(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _resume(app_env: Path, run_id: str) -> object:
    from rollback.commands.registry import handlers_for
    from rollback.config import load_config
    from rollback.runner import resume

    config = load_config()
    return resume(config.journal_dir, run_id, lambda plan: handlers_for(config, plan.actions, Services(config)))


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_rollback_is_resumed_without_sending_it_again(app_env: Path, emulator: VercelEmulator,
                                                               signum: int) -> None:
    emulator.state.configure(job_seconds=600)  # the job outlives the process (until the test lets it finish)
    proc = _start(app_env)
    served = len(emulator.state.requests)
    path = _wait_for_step(app_env, "wait-rollback", proc)
    _wait_for_a_poll(emulator, served, proc)  # inside the watch: it has asked how the job is going
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=30)
    run_id = path.name.removesuffix(".jsonl")
    events = _events(path)
    if signum == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
        assert not any(e["event"] == "run_finished" for e in events)  # nothing ran after the kill
    else:
        assert proc.returncode == 130, err
        assert err.strip().splitlines()[-1].startswith("error: interrupted (SIGTERM) during step 'wait-rollback'")
        failed = [e for e in events if e["event"] == "step_failed"]
        assert failed[-1]["step"] == "wait-rollback" and failed[-1]["error"] == "interrupted (SIGTERM)"
        assert f"rollback resume {run_id}" in str(failed[-1]["resume"])
        assert events[-1]["event"] == "run_finished" and events[-1]["status"] == "interrupted"
        assert events[-1]["exit_code"] == 130
    assert [r["to"] for r in emulator.state.alias_history] == [DEMO.previous]

    emulator.state.configure(job_seconds=0)  # the job, still running, now finishes at its next read
    outcome = _resume(app_env, run_id)  # watches the same job until it succeeds
    assert emulator.state.project(DEMO.project_id).production_id == DEMO.previous
    assert len(emulator.state.alias_history) == 1  # the rollback was not requested twice
    resumed = _events(app_env / f"{outcome.run_id}.jsonl")  # type: ignore[attr-defined]
    assert resumed[0]["resumes"] == run_id
    finished = {e["step"]: e for e in resumed if e["event"] == "step_finished"}
    assert finished["vercel-rollback"]["already_done"] is True
    assert finished["wait-rollback"]["result"]["job_status"] == "succeeded"
    assert all(c["ok"] for c in finished["health"]["result"]["checks"])
    assert resumed[-1]["event"] == "run_finished" and resumed[-1]["status"] == "succeeded"


def test_a_resumed_run_refuses_when_production_moved_since(app_env: Path, emulator: VercelEmulator) -> None:
    """The rollback finished earlier, then someone promoted another deployment: resuming must not
    silently carry on (nor roll back again) on top of that."""
    from rollback.errors import UnsafePrecondition

    emulator.state.configure(job_seconds=60)
    proc = _start(app_env)
    path = _wait_for_step(app_env, "wait-rollback", proc)
    proc.kill()
    proc.communicate(timeout=30)
    emulator.state.configure(job_seconds=0)
    emulator.state.request_alias_job(DEMO.project_id, DEMO.older, "promote")  # someone else, meanwhile
    with pytest.raises(UnsafePrecondition, match="checking it again finds it not done"):
        _resume(app_env, path.name.removesuffix(".jsonl"))
    assert emulator.state.project(DEMO.project_id).production_id == DEMO.older
    assert [r["type"] for r in emulator.state.alias_history] == ["rollback", "promote"]


def test_the_plan_a_dry_run_prints_is_what_runs(app_env: Path, emulator: VercelEmulator, run_cli: RunCli) -> None:
    """``--dry-run --json`` prints a plan that, read back, executes as it is (no re-planning)."""
    from rollback.commands.registry import handlers_for
    from rollback.config import load_config
    from rollback.plan import Plan
    from rollback.runner import execute

    dry = run_cli("app", "rollback", "--dry-run", "--json")
    assert dry.code == 0, dry.err
    plan = Plan.from_dict(json.loads(json.dumps(dry.json()["plan"])))
    assert [s.layer for s in plan.steps] == ["app", "app", "verify"]
    assert emulator.state.project(DEMO.project_id).production_id == DEMO.current  # the dry run changed nothing
    config = load_config()
    outcome = execute(plan, handlers_for(config, plan.actions, Services(config)))
    assert emulator.state.project(DEMO.project_id).production_id == DEMO.previous
    assert outcome.result_of("wait-rollback")["job_status"] == "succeeded"
    assert all(c["ok"] for c in outcome.result_of("health")["checks"])
