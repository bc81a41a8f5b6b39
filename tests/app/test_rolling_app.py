"""``rollback app rollback`` and ``app status`` during a Vercel rolling release, against the emulator over
real HTTP (seed ``demo-rolling``: the newest deployment is the canary of an active release at 10 %, the
one before it, its base, serves production).

The emulator follows Vercel's documented behaviour of an instant rollback request during a rolling release
(see ``tests/app/test_rolling_emulator.py``): naming the canary aborts the release and puts all traffic on
the base; naming an older deployment goes past the base.
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
from typing import Any

import pytest

from rollback.sandbox.vercel import VercelEmulator
from rollback.sandbox.vercel_state import DEMO
from tests.conftest import CliResult

RunCli = Callable[..., CliResult]
ABORT_PATH = f"/v9/projects/{DEMO.project_id}/rollback/{DEMO.current}"


@pytest.fixture
def rolling(emulator: VercelEmulator, app_env: Path) -> VercelEmulator:
    """The emulator with a crashing canary at 10 % (the app env pointing at it)."""
    emulator.state.reset("demo-rolling")
    emulator.state.configure(crashing=[DEMO.current])
    return emulator


def writes(emulator: VercelEmulator) -> list[tuple[str, str]]:
    return [(r["method"], r["path"]) for r in emulator.state.requests if r["method"] != "GET"]


def production(emulator: VercelEmulator) -> str | None:
    return emulator.state.project(DEMO.project_id).production_id


def release_state(emulator: VercelEmulator) -> str | None:
    release = emulator.state.rolling_release(DEMO.project_id)
    return release.state if release is not None else None


def test_rollback_aborts_the_canary_with_one_request(rolling: VercelEmulator, app_env: Path, run_cli: RunCli) -> None:
    result = run_cli("app", "rollback", "--yes", "--json")
    assert result.code == 0, result.err
    document = result.json()
    assert document["option"] == "abort-rolling-release" and document["rolling_release_state"] == "ABORTED"
    assert document["to"]["id"] == DEMO.previous and document["from"]["id"] == DEMO.current
    assert writes(rolling) == [("POST", ABORT_PATH)]  # the abort, as the CLI sends it; nothing older targeted
    assert production(rolling) == DEMO.previous and release_state(rolling) == "ABORTED"
    steps = {s["id"]: s for s in document["steps"]}
    assert list(steps) == ["vercel-abort", "wait-abort", "health"]
    assert steps["wait-abort"]["result"]["state"] == "ABORTED"
    assert all(c["ok"] for c in steps["health"]["result"]["checks"])  # the base's commit answers
    journal = next(app_env.glob("*.jsonl"))
    finished = [json.loads(line) for line in journal.read_text().splitlines() if '"step_finished"' in line]
    assert [e["step"] for e in finished] == ["vercel-abort", "wait-abort", "health"]


def test_a_dry_run_sends_nothing(rolling: VercelEmulator, run_cli: RunCli) -> None:
    result = run_cli("app", "rollback", "--dry-run")
    assert result.code == 0, result.err
    assert f"would: POST {ABORT_PATH} {{}}" in result.out
    assert "check: the rolling release is aborted and all traffic is on the base" in result.err
    assert writes(rolling) == [] and release_state(rolling) == "ACTIVE"


@pytest.mark.parametrize("target", [DEMO.older, DEMO.current])
def test_to_other_than_the_base_is_refused_naming_the_flag(rolling: VercelEmulator, run_cli: RunCli,
                                                          target: str) -> None:
    result = run_cli("app", "rollback", "--to", target, "--yes")
    assert result.code == 2
    assert result.err.startswith("error: ") and len(result.err.strip().splitlines()) == 1
    assert "--past-rolling-release" in result.err or "canary of the active rolling release" in result.err
    assert writes(rolling) == [] and release_state(rolling) == "ACTIVE"


def test_to_the_base_is_the_abort(rolling: VercelEmulator, run_cli: RunCli) -> None:
    result = run_cli("app", "rollback", "--to", DEMO.previous, "--yes", "--json")
    assert result.code == 0, result.err
    assert writes(rolling) == [("POST", ABORT_PATH)] and release_state(rolling) == "ABORTED"


def test_past_rolling_release_aborts_first_then_rolls_back_further(rolling: VercelEmulator,
                                                                  run_cli: RunCli) -> None:
    dry = run_cli("app", "rollback", "--past-rolling-release", "--dry-run", "--json")
    assert dry.code == 0, dry.err
    notes = " ".join(dry.json()["plan"]["notes"])
    assert "--past-rolling-release: the rolling release is aborted first" in notes and "past the base" in notes
    result = run_cli("app", "rollback", "--past-rolling-release", "--yes", "--json")
    assert result.code == 0, result.err
    assert writes(rolling) == [("POST", ABORT_PATH),
                               ("POST", f"/v1/projects/{DEMO.project_id}/rollback/{DEMO.older}")]
    assert production(rolling) == DEMO.older and release_state(rolling) == "ABORTED"
    assert [s["id"] for s in result.json()["steps"]] == ["vercel-abort", "wait-abort", "vercel-rollback",
                                                         "wait-rollback", "health"]


def test_without_a_rolling_release_the_flag_changes_nothing(emulator: VercelEmulator, app_env: Path,
                                                            run_cli: RunCli) -> None:
    result = run_cli("app", "rollback", "--past-rolling-release", "--dry-run", "--json")
    assert result.code == 0, result.err
    assert "no rolling release is active: --past-rolling-release changes nothing" in result.json()["plan"]["notes"]
    assert [s["action"] for s in result.json()["plan"]["steps"]][:1] == ["vercel.rollback"]


def test_status_shows_the_rolling_release(rolling: VercelEmulator, run_cli: RunCli) -> None:
    from rollback.commands.app.rolling import rolling_status
    from rollback.config import load_config
    from rollback.context import Services

    result = run_cli("app", "status", "--json")
    assert result.code == 0, result.err
    shown = result.json()["rolling_release"]
    assert (shown["state"], shown["percentage"], shown["stage"], shown["advancement_type"]) == (
        "ACTIVE", 10.0, 1, "manual-approval")
    assert shown["canary"]["id"] == DEMO.current and shown["base"]["id"] == DEMO.previous
    assert shown["next_percentage"] == 50.0
    rows = {row["id"]: row for row in result.json()["deployments"]}
    assert rows[DEMO.current]["canary"] and not rows[DEMO.current]["rollback_candidate"]
    human = run_cli("app", "status")
    assert f"rolling release: ACTIVE: canary {rolling.state.deployments[DEMO.current].url}" in human.out
    assert "at 10 % (stage 1 of 3, manual-approval)" in human.out
    config = load_config()
    assert rolling_status(config, Services(config).vercel()) == {**shown}  # what 'rollback status' will show


def test_status_without_a_rolling_release(emulator: VercelEmulator, app_env: Path, run_cli: RunCli) -> None:
    result = run_cli("app", "status", "--json")
    assert result.code == 0 and result.json()["rolling_release"] is None


def _events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.slow
def test_a_killed_abort_is_resumed_without_sending_it_again(rolling: VercelEmulator, app_env: Path) -> None:
    """SIGKILL while the abort's check waits for Vercel's job: ``resume`` re-checks the abort (done:
    the release reads ABORTED), waits for the job, and never sends the abort again."""
    from rollback.commands.registry import handlers_for
    from rollback.config import load_config
    from rollback.runner import resume

    rolling.state.configure(job_seconds=3)  # the abort's job outlives the process
    proc = subprocess.Popen([sys.executable, "-m", "rollback", "app", "rollback", "--yes"], env=dict(os.environ),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    path: Path | None = None
    while path is None:  # until the check has seen the release aborted and the job still running
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        for found in app_env.glob("*.jsonl"):
            if any(e["event"] == "note" and "rolling release ABORTED" in str(e.get("message"))
                   for e in _events(found)):
                path = found
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert writes(rolling) == [("POST", ABORT_PATH)]
    from rollback.context import Services

    config = load_config()
    outcome = resume(config.journal_dir, path.name.removesuffix(".jsonl"),
                     lambda plan: handlers_for(config, plan.actions, Services(config)))
    assert writes(rolling) == [("POST", ABORT_PATH)]  # not sent twice
    finished = {e["step"]: e for e in _events(app_env / f"{outcome.run_id}.jsonl") if e["event"] == "step_finished"}
    assert finished["vercel-abort"]["already_done"] is True
    assert finished["wait-abort"]["result"]["state"] == "ABORTED"
    assert finished["wait-abort"]["result"]["job_status"] == "succeeded"
    assert production(rolling) == DEMO.previous


def test_decide_live_judges_the_canary_on_its_share(rolling: VercelEmulator, run_cli: RunCli) -> None:
    """Only Vercel and the health URLs configured (the emulator's app stand-in, where the crashing canary
    answers 10 % of the requests): the burst of probes sees 10 % fail, 100 % of the canary's."""
    result = run_cli("decide", "--live", "--no-incident", "--json")
    assert result.code == 0, result.err
    document = result.json()
    canary = next(r for r in document["reasons"] if r["signal"] == "canary_error_rate")
    assert canary["source"] == "health" and canary["value"] == 100.0 and document["severity"] == "P1"
    url = rolling.state.deployments[DEMO.current].url
    assert f"canary {url} ({DEMO.current}) at 10 %: abort" in canary["detail"]
    assert document["options"] == {"app": "abort-rolling-release"}
    assert document["changed"]["layers"] == ["app"] and document["changed"]["from"] == "live"
    assert document["command"].endswith("run --severity P1 --layers app")
    human = run_cli("decide", "--live", "--no-incident")
    assert "at 10 %: abort" in human.out and "app (abort-rolling-release)" in human.out


def test_run_uses_the_abort_as_its_app_step(rolling: VercelEmulator, run_cli: RunCli) -> None:
    dry = run_cli("run", "--layers", "app", "--dry-run", "--json")
    assert dry.code == 0, dry.err
    plan = dry.json()
    steps = [s["id"] for s in plan["plan"]["steps"]]
    assert steps[:3] == ["run.world", "app.vercel-abort", "app.wait-abort"]
    assert plan["facts"]["app"]["option"] == "abort-rolling-release"
    assert plan["facts"]["app"]["canary"] == DEMO.current and plan["facts"]["app"]["to"] == DEMO.previous
    assert writes(rolling) == []
    done = run_cli("run", "--layers", "app", "--no-verify", "--yes", "--json")
    assert done.code == 0, done.err
    assert writes(rolling) == [("POST", ABORT_PATH)]
    assert production(rolling) == DEMO.previous and release_state(rolling) == "ABORTED"


def test_a_saved_run_plan_refuses_once_the_release_is_no_longer_active(rolling: VercelEmulator, tmp_path: Path,
                                                                       run_cli: RunCli) -> None:
    """``run.check_world``: the plan was made for an active release; someone completed it since."""
    saved = tmp_path / "plan.json"
    dry = run_cli("run", "--layers", "app", "--no-verify", "--dry-run", "--json")
    assert dry.code == 0, dry.err
    saved.write_text(dry.out, encoding="utf-8")
    rolling.state.complete_rolling_release(DEMO.project_id, DEMO.current)
    result = run_cli("run", "--plan", str(saved), "--yes")
    assert result.code == 4, result.err
    assert f"the rolling release of canary {DEMO.current} is no longer active" in result.err
    assert writes(rolling) == []
