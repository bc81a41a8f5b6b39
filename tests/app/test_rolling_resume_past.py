"""``app rollback --past-rolling-release`` stopped after its instant rollback is resumed to its end (found
attacking issues 18 and 24).

The plan aborts the rolling release, then rolls production back past its base. Its abort step's check
asked for "the release ABORTED *and the base serving production*"; after the later rollback step of the
same run, production is the older deployment, so a resumed run found the abort "not done", and its
refusal ("the rolling release ... is ABORTED now, not active: there is nothing left to abort") made the
run impossible to resume. Issue 18's rule: a step's check stays true after later steps of the same run
have acted. An abort this run finished is done while its release reads ABORTED.

Against the Vercel emulator (its rolling releases follow Vercel's documented abort, see
tests/app/test_rolling_emulator.py); the run is stopped by its own failed health check, a real outcome,
and SIGKILL at the same place stops it the same way (checked by hand in the sandbox).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rollback.sandbox.vercel import VercelEmulator
from rollback.sandbox.vercel_state import DEMO
from tests.app.test_rolling_app import ABORT_PATH, production, release_state, rolling, writes  # noqa: F401
from tests.conftest import CliResult

RunCli = Callable[..., CliResult]


def test_a_past_rolling_release_run_stopped_after_its_rollback_resumes_to_its_end(
        rolling: VercelEmulator, app_env: Path, run_cli: RunCli) -> None:  # noqa: F811
    rolling.state.configure(unhealthy=[DEMO.older])  # the older deployment fails its health check at first
    stopped = run_cli("app", "rollback", "--past-rolling-release", "--yes")
    assert stopped.code == 3, stopped.err
    sent = [("POST", ABORT_PATH), ("POST", f"/v1/projects/{DEMO.project_id}/rollback/{DEMO.older}")]
    assert writes(rolling) == sent
    assert production(rolling) == DEMO.older and release_state(rolling) == "ABORTED"

    rolling.state.configure(unhealthy=[])  # fixed: the run can finish
    resumed = run_cli("resume", "--yes", "--json")
    assert resumed.code == 0, resumed.err
    steps = {s["id"]: s for s in resumed.json()["steps"]}
    assert steps["vercel-abort"]["already_done"] and steps["vercel-rollback"]["already_done"]
    assert writes(rolling) == sent  # nothing sent again
    assert production(rolling) == DEMO.older and release_state(rolling) == "ABORTED"
