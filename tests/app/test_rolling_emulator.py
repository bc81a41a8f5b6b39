"""The Vercel emulator's rolling releases over real HTTP: configuration, start, stages that advance on the
emulator's own clock or by approval, complete, and the abort as Vercel's CLI sends it.

What the emulator follows, and where Vercel documents it:

- the abort: ``vercel rolling-release abort --dpl <id>`` ("the deploymentId of the rolling release to
  abort": the canary, the deployment the release rolls out) sends ``POST /v9/projects/{projectId}/
  rollback/{deploymentId}`` with ``{}``. Vercel's REST reference names that id "the deployment to rollback
  *to*", its Rolling Releases page says "at any point, you can use Instant Rollback to revert from the
  current release candidate" while "the rest of your traffic will be routed to your previous production
  deployment" (the base), and getProject's ``lastAliasRequest.fromRollingReleaseId`` says that after
  "rolling back from a rolling release, fromDeploymentId captures the 'base' of that rolling release, and
  fromRollingReleaseId captures the 'target'". So a rollback request naming the canary of an active
  release aborts it: ``state`` ABORTED, ``activeStage`` null ("null if the rollout is aborted"),
  production and every request on the base, ``lastAliasRequest`` from the base with
  ``fromRollingReleaseId`` the canary. Naming an older deployment rolls back past the base (and the
  release is aborted too).
- ``GET /v1/projects/{idOrName}/rolling-release`` returns the release "regardless of whether the rollout
  is active, aborted, or completed"; stage durations are seconds there, minutes in the config.
- ``start``: "If a rolling release is already active for the same canary deployment, returns the
  current state without side effects"; ``complete``: "The canary deployment will begin serving 100% of
  the traffic"; "the final stage must always have targetPercentage: 100".
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from rollback.sandbox.vercel import VercelEmulator
from rollback.sandbox.vercel_rolling import TrafficSplit
from rollback.sandbox.vercel_state import DEMO
from tests.app import openapi_check
from tests.app.conftest import TOKEN

AUTH = {"Authorization": f"Bearer {TOKEN}"}
TEAM = {"teamId": DEMO.team_id}
RR = f"/v1/projects/{DEMO.project_id}/rolling-release"


def call(emulator: VercelEmulator, method: str, path: str, body: Any = None, **params: Any) -> httpx.Response:
    return httpx.request(method, emulator.url + path, params={**TEAM, **params}, headers=AUTH, json=body, timeout=5)


def release(emulator: VercelEmulator, **params: Any) -> Any:
    response = call(emulator, "GET", RR, **params)
    assert response.status_code == 200, response.text
    return response.json()["rollingRelease"]


def production(emulator: VercelEmulator) -> str | None:
    return emulator.state.project(DEMO.project_id).production_id


def health(emulator: VercelEmulator, count: int) -> list[int]:
    with httpx.Client(base_url=emulator.url, timeout=5) as http:
        return [http.get(f"/_app/{DEMO.project_name}/api/health").status_code for _ in range(count)]


AUTOMATIC = {"enabled": True, "advancementType": "automatic",
             "stages": [{"targetPercentage": 10, "duration": 5}, {"targetPercentage": 50, "duration": 10},
                        {"targetPercentage": 100}]}
MANUAL = {"enabled": True, "advancementType": "manual-approval",
          "stages": [{"targetPercentage": 10}, {"targetPercentage": 50}, {"targetPercentage": 100}]}


def test_config_round_trip_and_project_shows_it(emulator: VercelEmulator) -> None:
    assert call(emulator, "GET", RR + "/config").json() == {"rollingRelease": None}
    answered = call(emulator, "PATCH", RR + "/config", AUTOMATIC)
    assert answered.status_code == 200, answered.text
    config = call(emulator, "GET", RR + "/config").json()["rollingRelease"]
    assert [(s["targetPercentage"], s.get("duration")) for s in config["stages"]] == [(10, 5), (50, 10), (100, None)]
    project = call(emulator, "GET", f"/v9/projects/{DEMO.project_id}").json()
    openapi_check.validate("getProject", 200, project)  # rollingRelease as published: target, stages
    assert project["rollingRelease"]["target"] == "production"
    assert call(emulator, "DELETE", RR + "/config").status_code == 200
    assert call(emulator, "GET", f"/v9/projects/{DEMO.project_id}").json()["rollingRelease"] is None


@pytest.mark.parametrize(("body", "problem"), [
    ({"enabled": True, "advancementType": "sometimes", "stages": MANUAL["stages"]}, "advancementType"),
    ({**MANUAL, "stages": [{"targetPercentage": 50}, {"targetPercentage": 10}, {"targetPercentage": 100}]},
     "above the previous"),
    ({**MANUAL, "stages": [{"targetPercentage": 10}, {"targetPercentage": 50}]}, "final stage"),
    ({**AUTOMATIC, "stages": [{"targetPercentage": 10}, {"targetPercentage": 100}]}, "duration"),
])
def test_config_refuses_what_vercel_refuses(emulator: VercelEmulator, body: dict[str, Any], problem: str) -> None:
    answered = call(emulator, "PATCH", RR + "/config", body)
    assert answered.status_code == 400
    assert problem in answered.json()["error"]["message"]
    assert emulator.state.rolling_config(DEMO.project_id) is None


def test_start_needs_rolling_releases_enabled_and_repeats_without_side_effects(emulator: VercelEmulator) -> None:
    refused = call(emulator, "POST", RR + "/start", {"canaryDeploymentId": DEMO.current})
    assert refused.status_code == 400 and "not enabled" in refused.json()["error"]["message"]
    assert call(emulator, "PATCH", RR + "/config", MANUAL).status_code == 200
    emulator.state.request_alias_job(DEMO.project_id, DEMO.previous, "rollback")  # production: the previous one
    emulator.state.list_deployments()
    first = call(emulator, "POST", RR + "/start", {"canaryDeploymentId": DEMO.current})
    assert first.status_code == 200, first.text
    again = call(emulator, "POST", RR + "/start", {"canaryDeploymentId": DEMO.current})
    assert again.json() == first.json()  # the current state, no side effect
    body = first.json()["rollingRelease"]
    assert body["state"] == "ACTIVE"
    assert body["canaryDeployment"]["id"] == DEMO.current and body["currentDeployment"]["id"] == DEMO.previous
    assert body["activeStage"]["targetPercentage"] == 10 and body["nextStage"]["targetPercentage"] == 50
    assert production(emulator) == DEMO.previous


def test_a_production_build_starts_a_release_that_advances_on_the_emulators_clock(emulator: VercelEmulator) -> None:
    # Frozen: only the test moves the clock, so the stage ends exactly when it says, however slow the machine.
    httpx.post(f"{emulator.url}/_admin/clock", json={"freeze": True}, timeout=5).raise_for_status()
    assert call(emulator, "PATCH", RR + "/config", AUTOMATIC).status_code == 200
    created = httpx.post(f"{emulator.url}/_admin/deployments", json={"project": "demo", "sha": "c0ffee" * 6},
                         timeout=5).json()
    started = release(emulator)
    assert started["state"] == "ACTIVE" and started["canaryDeployment"]["id"] == created["id"]
    assert production(emulator) == DEMO.current  # the base keeps production and the domains
    assert started["stages"][0]["duration"] == 300  # seconds in the release (5 minutes in the config)
    httpx.post(f"{emulator.url}/_admin/clock", json={"advance": 299}, timeout=5).raise_for_status()
    assert release(emulator)["activeStage"]["targetPercentage"] == 10
    httpx.post(f"{emulator.url}/_admin/clock", json={"advance": 1}, timeout=5).raise_for_status()
    assert release(emulator)["activeStage"]["targetPercentage"] == 50
    httpx.post(f"{emulator.url}/_admin/clock", json={"advance": 600}, timeout=5).raise_for_status()
    done = release(emulator)
    assert done["state"] == "COMPLETE" and done["activeStage"]["isFinalStage"] is True and done["nextStage"] is None
    assert production(emulator) == created["id"]
    assert {a.deployment_id for a in emulator.state.aliases.values()} == {created["id"]}
    assert release(emulator, state="ACTIVE") is None and release(emulator, state="complete")["state"] == "COMPLETE"


def test_manual_approval_stage_by_stage_then_complete(emulator: VercelEmulator) -> None:
    emulator.state.reset("demo-rolling")
    canary = {"canaryDeploymentId": DEMO.current}
    httpx.post(f"{emulator.url}/_admin/clock", json={"advance": 86400}, timeout=5).raise_for_status()
    assert release(emulator)["activeStage"]["index"] == 0  # approval stages never advance on the clock
    wrong = call(emulator, "POST", RR + "/approve-stage", {"activeStageIndex": 0, "nextStageIndex": 2, **canary})
    assert wrong.status_code == 400 and "stage 0" in wrong.json()["error"]["message"]
    other = call(emulator, "POST", RR + "/approve-stage", {"nextStageIndex": 1, "canaryDeploymentId": DEMO.older})
    assert other.status_code == 400
    approved = call(emulator, "POST", RR + "/approve-stage", {"activeStageIndex": 0, "nextStageIndex": 1, **canary})
    assert approved.status_code == 200 and approved.json()["rollingRelease"]["activeStage"]["targetPercentage"] == 50
    assert production(emulator) == DEMO.previous
    completed = call(emulator, "POST", RR + "/complete", canary)
    assert completed.json()["rollingRelease"]["state"] == "COMPLETE"
    assert production(emulator) == DEMO.current


def test_traffic_follows_the_stage(emulator: VercelEmulator) -> None:
    emulator.state.reset("demo-rolling")
    emulator.state.configure(crashing=[DEMO.current])
    assert health(emulator, 100).count(500) == 10  # a crashing canary at 10 %: exactly 10 of 100 requests
    call(emulator, "POST", RR + "/approve-stage", {"nextStageIndex": 1, "canaryDeploymentId": DEMO.current})
    assert health(emulator, 100).count(500) == 50


def test_abort_as_the_cli_sends_it(emulator: VercelEmulator) -> None:
    """``POST /v9/projects/{projectId}/rollback/{canary}`` with ``{}``: the documented behaviour in the
    module docstring (abort: ABORTED, activeStage null, everything on the base, fromRollingReleaseId)."""
    emulator.state.reset("demo-rolling")
    emulator.state.configure(crashing=[DEMO.current])
    answered = call(emulator, "POST", f"/v9/projects/{DEMO.project_id}/rollback/{DEMO.current}", {})
    assert answered.status_code == 201
    aborted = release(emulator)
    assert aborted["state"] == "ABORTED" and aborted["activeStage"] is None and aborted["nextStage"] is None
    assert aborted["currentDeployment"]["id"] == DEMO.previous and aborted["canaryDeployment"]["id"] == DEMO.current
    project = call(emulator, "GET", f"/v9/projects/{DEMO.project_id}").json()
    openapi_check.validate("getProject", 200, project)
    last = project["lastAliasRequest"]
    assert (last["type"], last["fromDeploymentId"], last["toDeploymentId"], last["fromRollingReleaseId"]) == (
        "rollback", DEMO.previous, DEMO.previous, DEMO.current)
    assert last["jobStatus"] == "succeeded" and production(emulator) == DEMO.previous
    assert health(emulator, 100) == [200] * 100


def test_a_rollback_to_an_older_deployment_goes_past_the_base(emulator: VercelEmulator) -> None:
    emulator.state.reset("demo-rolling")
    assert call(emulator, "POST", f"/v9/projects/{DEMO.project_id}/rollback/{DEMO.older}", {}).status_code == 201
    assert release(emulator)["state"] == "ABORTED"
    assert production(emulator) == DEMO.older  # further back than the release's base
    last = call(emulator, "GET", f"/v9/projects/{DEMO.project_id}").json()["lastAliasRequest"]
    assert (last["fromDeploymentId"], last["toDeploymentId"]) == (DEMO.previous, DEMO.older)


def test_no_rolling_release_reads_null(emulator: VercelEmulator) -> None:
    assert release(emulator) is None
    assert call(emulator, "GET", RR, state="SOMETIMES").status_code == 400


def test_traffic_split_is_exact_per_path_and_spread_across_paths() -> None:
    split = TrafficSplit(spread=("/a", "/b"))
    for path in ("/a", "/b", "/c"):
        assert sum(split.to_canary(path, 0.1) for _ in range(1000)) == 100
    rounds = [[split.to_canary(path, 0.5) for path in ("/a", "/b")] for _ in range(4)]
    assert all(sum(hits) == 1 for hits in rounds)  # out of phase: one canary request per round, not two
