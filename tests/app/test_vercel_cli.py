"""Vercel's own CLI (vercel@58.10.0) against the emulator: ``ls``, ``inspect``,
``rollback``, ``promote`` and ``rolling-release configure|start|approve|fetch|abort|complete``
with ``--api URL --token T --scope demo-team``.

The rolling-release commands build their requests as the CLI's source does
(``node_modules/vercel/dist/commands-bulk.js``): ``fetch`` prints the ``rollingRelease`` of
``GET /v1/projects/{id}/rolling-release`` as JSON; ``abort --dpl <canary>`` sends
``POST /v9/projects/{id}/rollback/{canary}`` with ``{}``, which the emulator treats as Vercel documents an
instant rollback during a rolling release (see ``tests/app/test_rolling_emulator.py``): the release is
aborted and its base serves everything.

The CLI is found at ``$VERCEL_CLI`` or ``.cache/vercel-cli/node_modules/.bin/vercel``
(install: ``npm i -E --prefix .cache/vercel-cli vercel@58.10.0``). In CI
(``CI=true``) a missing CLI fails the test; elsewhere it is skipped with the
reason, which fails the run too unless ``ROLLBACK_TESTS_ALLOW_SKIP=1``. It runs
with a throwaway HOME and --global-config, telemetry and update checks off,
stdin closed and a timeout, so it never touches the user's config or the
network.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rollback.sandbox.vercel import VercelEmulator
from rollback.sandbox.vercel_state import DEMO
from tests.app.conftest import TOKEN
from tests.conftest import IN_CI

VERSION = "58.10.0"
ROOT = Path(__file__).resolve().parents[2]
INSTALL = f"npm i -E --prefix .cache/vercel-cli vercel@{VERSION}"
Vercel = Callable[..., "subprocess.CompletedProcess[str]"]


def vercel_cli() -> str:
    candidate = os.environ.get("VERCEL_CLI") or str(ROOT / ".cache" / "vercel-cli" / "node_modules" / ".bin" / "vercel")
    problem = None
    if not Path(candidate).is_file():
        problem = f"Vercel CLI not found at {candidate} (install it with: {INSTALL})"
    elif shutil.which("node") is None:
        problem = "node is not on PATH (the Vercel CLI needs Node.js)"
    if problem:
        if IN_CI:
            pytest.fail(problem)
        pytest.skip(problem)
    return candidate


@pytest.fixture
def vercel(tmp_path: Path, emulator: VercelEmulator) -> Vercel:
    cli = vercel_cli()
    home = tmp_path / "home"
    cwd = tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "VERCEL_TELEMETRY_DISABLED": "1",
        "NO_UPDATE_NOTIFIER": "1",
        "NO_COLOR": "1",
        "FORCE_COLOR": "0",
        "CI": "1",
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [cli, *args, "--api", emulator.url, "--token", TOKEN, "--scope", DEMO.team_slug,
                   "--global-config", str(home / "vercel-global"), "--no-color"]
        return subprocess.run(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=90, check=False)

    return run


def production(emulator: VercelEmulator) -> str | None:
    return emulator.state.project(DEMO.project_id).production_id


def test_version_is_pinned() -> None:
    cli = vercel_cli()
    out = subprocess.run([cli, "--version"], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                         env={**os.environ, "VERCEL_TELEMETRY_DISABLED": "1", "NO_UPDATE_NOTIFIER": "1"})
    assert VERSION in out.stdout + out.stderr


def test_vercel_ls(vercel: Vercel, emulator: VercelEmulator) -> None:
    result = vercel("ls", DEMO.project_name)
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    for dep_id in (DEMO.current, DEMO.previous, DEMO.preview):
        assert emulator.state.deployments[dep_id].url in output
    assert "Production" in output and "Preview" in output


@pytest.mark.slow
def test_vercel_inspect(vercel: Vercel, emulator: VercelEmulator) -> None:
    url = emulator.state.deployments[DEMO.previous].url
    result = vercel("inspect", url)
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert DEMO.previous in output and "production" in output


@pytest.mark.slow
def test_vercel_rollback_then_promote(vercel: Vercel, emulator: VercelEmulator) -> None:
    previous = emulator.state.deployments[DEMO.previous].url
    result = vercel("rollback", previous, "--yes", "--timeout", "60s")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success!" in result.stdout + result.stderr
    assert production(emulator) == DEMO.previous
    assert {a.deployment_id for a in emulator.state.aliases.values()} == {DEMO.previous}

    current = emulator.state.deployments[DEMO.current].url
    result = vercel("promote", current, "--yes", "--timeout", "60s")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success!" in result.stdout + result.stderr
    assert production(emulator) == DEMO.current
    assert [r["type"] for r in emulator.state.alias_history] == ["rollback", "promote"]


@pytest.mark.slow
def test_vercel_rollback_reports_failed_aliases(vercel: Vercel, emulator: VercelEmulator) -> None:
    emulator.state.configure(fail_aliases=["www.demo.example.com"])
    result = vercel("rollback", emulator.state.deployments[DEMO.previous].url, "--yes", "--timeout", "60s")
    assert result.returncode == 1
    assert "www.demo.example.com" in result.stdout + result.stderr


@pytest.mark.slow
def test_vercel_cli_with_a_wrong_token_fails(emulator: VercelEmulator, tmp_path: Path) -> None:
    cli = vercel_cli()
    result = subprocess.run([cli, "ls", "demo", "--api", emulator.url, "--token", "wrongToken123",
                             "--global-config", str(tmp_path / "gc")], cwd=tmp_path, stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=90,
                            env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path),
                                 "VERCEL_TELEMETRY_DISABLED": "1", "NO_UPDATE_NOTIFIER": "1", "CI": "1"})
    assert result.returncode != 0


def printed_json(output: str) -> Any:
    """The JSON document ``vercel rolling-release fetch`` prints (after its banner lines)."""
    return json.loads(output[output.index("{"):output.rindex("}") + 1])


@pytest.mark.slow
def test_vercel_rolling_release_fetch_then_abort(vercel: Vercel, emulator: VercelEmulator) -> None:
    emulator.state.reset("demo-rolling")
    emulator.state.configure(crashing=[DEMO.current])
    fetched = vercel("rolling-release", "fetch", "--project", DEMO.project_name)
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    active = printed_json(fetched.stdout + fetched.stderr)
    assert active["state"] == "ACTIVE" and active["advancementType"] == "manual-approval"
    assert active["canaryDeployment"]["id"] == DEMO.current and active["currentDeployment"]["id"] == DEMO.previous
    assert active["activeStage"]["targetPercentage"] == 10 and active["nextStage"]["targetPercentage"] == 50

    aborted = vercel("rolling-release", "abort", "--project", DEMO.project_name, "--dpl", DEMO.current)
    assert aborted.returncode == 0, aborted.stdout + aborted.stderr
    assert "Successfully aborted the active rolling release." in aborted.stdout + aborted.stderr
    posts = [(r["method"], r["path"]) for r in emulator.state.requests if r["method"] != "GET"]
    assert posts == [("POST", f"/v9/projects/{DEMO.project_id}/rollback/{DEMO.current}")]
    assert production(emulator) == DEMO.previous

    after = vercel("rolling-release", "fetch", "--project", DEMO.project_name)
    state = printed_json(after.stdout + after.stderr)
    assert state["state"] == "ABORTED" and state["activeStage"] is None and state["nextStage"] is None
    assert state["currentDeployment"]["id"] == DEMO.previous


@pytest.mark.slow
def test_vercel_rolling_release_configure_start_approve_complete(vercel: Vercel, emulator: VercelEmulator) -> None:
    configured = vercel("rolling-release", "configure", "--project", DEMO.project_name, "--enable",
                        "--advancement-type=manual-approval", "--stage=10", "--stage=50")
    assert configured.returncode == 0, configured.stdout + configured.stderr
    assert "Successfully configured rolling releases." in configured.stdout + configured.stderr
    config = emulator.state.rolling_config(DEMO.project_id)
    assert config is not None and [s.target_percentage for s in config.stages] == [10, 50, 100]
    emulator.state.request_alias_job(DEMO.project_id, DEMO.previous, "rollback")  # the previous one serves
    emulator.state.list_deployments()

    started = vercel("rolling-release", "start", "--project", DEMO.project_name, "--dpl", DEMO.current)
    assert started.returncode == 0, started.stdout + started.stderr
    assert "Successfully started rolling release" in started.stdout + started.stderr
    release = emulator.state.rolling_release(DEMO.project_id)
    assert release is not None and release.is_active and release.canary_id == DEMO.current

    approved = vercel("rolling-release", "approve", "--project", DEMO.project_name, "--dpl", DEMO.current,
                      "--currentStageIndex=0")
    assert approved.returncode == 0, approved.stdout + approved.stderr
    assert release.canary_share == 0.5

    completed = vercel("rolling-release", "complete", "--project", DEMO.project_name, "--dpl", DEMO.current)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert release.state == "COMPLETE" and production(emulator) == DEMO.current

    disabled = vercel("rolling-release", "configure", "--project", DEMO.project_name, "--disable")
    assert disabled.returncode == 0 and emulator.state.rolling_config(DEMO.project_id) is None
