"""The Vercel API emulator over real HTTP: published response shapes, auth, alias
jobs, fault injection through the admin endpoint, and the standalone server."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import httpx
import pytest

from rollback.sandbox.vercel import VercelEmulator
from rollback.sandbox.vercel_state import DEMO
from tests.app import openapi_check
from tests.app.conftest import TOKEN

AUTH = {"Authorization": f"Bearer {TOKEN}"}
TEAM = {"teamId": DEMO.team_id}


def get(emulator: VercelEmulator, path: str, **params: Any) -> httpx.Response:
    return httpx.get(emulator.url + path, params={**TEAM, **params}, headers=AUTH, timeout=5)


def post(emulator: VercelEmulator, path: str, **params: Any) -> httpx.Response:
    return httpx.post(emulator.url + path, params={**TEAM, **params}, headers=AUTH, json={}, timeout=5)


def admin(emulator: VercelEmulator, path: str, body: dict[str, Any] | None = None,
          method: str = "POST") -> httpx.Response:
    response = httpx.request(method, f"{emulator.url}/_admin/{path}", json=body, timeout=5)
    assert response.status_code < 300, response.text
    return response


def operation_calls(emulator: VercelEmulator) -> list[tuple[str, str, dict[str, Any]]]:
    current = DEMO.current
    return [
        ("getDeployments", "/v6/deployments", {"projectId": DEMO.project_id, "limit": 3}),
        ("getDeployments", "/v6/deployments", {"projectId": DEMO.project_name, "target": "production",
                                               "state": "READY", "rollbackCandidate": "true"}),
        ("getDeployment", f"/v13/deployments/{current}", {}),
        ("getDeployment", f"/v13/deployments/{DEMO.preview}", {}),
        ("getProject", f"/v9/projects/{DEMO.project_name}", {}),
        ("listPromoteAliases", f"/v1/projects/{DEMO.project_id}/promote/aliases", {"failedOnly": "true"}),
        ("listAliases", "/v4/aliases", {"projectId": DEMO.project_id}),
        ("listDeploymentAliases", f"/v2/deployments/{current}/aliases", {}),
    ]


def test_every_covered_operation_validates_against_the_published_schema(emulator: VercelEmulator) -> None:
    covered = set()
    for operation_id, path, params in operation_calls(emulator):
        response = get(emulator, path, **params)
        assert response.status_code == 200, (path, response.text)
        openapi_check.validate(operation_id, 200, response.json())
        covered.add(operation_id)
    # after a rollback and a promote: lastAliasRequest set, job aliases listed, the promote's 201
    assert post(emulator, f"/v1/projects/{DEMO.project_id}/rollback/{DEMO.previous}").status_code == 201
    project = get(emulator, f"/v9/projects/{DEMO.project_id}").json()
    openapi_check.validate("getProject", 200, project)
    assert project["lastAliasRequest"]["type"] == "rollback"
    promote = post(emulator, f"/v10/projects/{DEMO.project_id}/promote/{DEMO.current}")
    assert promote.status_code == 201 and promote.content == b""
    openapi_check.response_schema("requestPromote", 201)  # documented status
    covered.add("requestPromote")
    aliases = get(emulator, f"/v1/projects/{DEMO.project_id}/promote/aliases").json()
    openapi_check.validate("listPromoteAliases", 200, aliases)
    assert {a["alias"] for a in aliases["aliases"]} == set(DEMO.domains)
    assert covered == set(openapi_check.operations())


def test_error_responses_validate_and_keep_vercels_error_shape(emulator: VercelEmulator) -> None:
    missing = get(emulator, "/v13/deployments/dpl_doesnotexist")
    assert missing.status_code == 404
    openapi_check.validate("getDeployment", 404, missing.json())
    assert set(missing.json()["error"]) >= {"code", "message"}
    bad = post(emulator, f"/v10/projects/{DEMO.project_id}/promote/{DEMO.errored}")
    assert bad.status_code == 400
    openapi_check.validate("requestPromote", 400, bad.json())


def test_the_lenient_validator_still_rejects_wrong_bodies() -> None:
    with pytest.raises(AssertionError, match="getProject"):
        openapi_check.validate("getProject", 200, {"id": "prj_x"})
    with pytest.raises(AssertionError, match="getDeployments"):
        openapi_check.validate("getDeployments", 200, {"deployments": [{"uid": 1}], "pagination": {}})


@pytest.mark.parametrize(("headers", "params", "status"), [
    ({}, TEAM, 401),
    ({"Authorization": "Bearer wrongToken123"}, TEAM, 401),
    (AUTH, {"teamId": "team_someoneelse"}, 403),
])
def test_auth(emulator: VercelEmulator, headers: dict[str, str], params: dict[str, str], status: int) -> None:
    response = httpx.get(f"{emulator.url}/v9/projects/{DEMO.project_id}", params=params, headers=headers)
    assert response.status_code == status
    openapi_check.validate("getProject", status, response.json())
    assert response.json()["error"]["message"]


def test_pagination_follows_next_as_until(emulator: VercelEmulator) -> None:
    seen: list[str] = []
    until = None
    while True:
        params: dict[str, Any] = {"projectId": DEMO.project_id, "limit": 2}
        if until:
            params["until"] = until
        body = get(emulator, "/v6/deployments", **params).json()
        seen += [d["uid"] for d in body["deployments"]]
        until = body["pagination"]["next"]
        if not until:
            break
    assert len(seen) == len(set(seen)) == 6
    assert seen[0] == DEMO.current


def test_alias_job_progresses_pending_in_progress_succeeded(emulator: VercelEmulator) -> None:
    # pending for a third of the job: 1.5 s, long enough to be seen first on a loaded machine
    admin(emulator, "config", {"job_seconds": 4.5})
    assert post(emulator, f"/v1/projects/{DEMO.project_id}/rollback/{DEMO.previous}",
                description="drill").status_code == 201
    statuses = []
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        status = get(emulator, f"/v9/projects/{DEMO.project_id}").json()["lastAliasRequest"]["jobStatus"]
        if not statuses or statuses[-1] != status:
            statuses.append(status)
        if status == "succeeded":
            break
        time.sleep(0.05)
    assert statuses == ["pending", "in-progress", "succeeded"]
    project = get(emulator, f"/v9/projects/{DEMO.project_id}").json()
    assert project["targets"]["production"]["id"] == DEMO.previous
    assert project["lastRollbackTarget"]  # auto-assignment paused until undone
    aliases = get(emulator, "/v4/aliases", projectId=DEMO.project_id).json()["aliases"]
    assert {a["deploymentId"] for a in aliases} == {DEMO.previous}


def test_rollback_refuses_preview_and_unready_deployments(emulator: VercelEmulator) -> None:
    preview = post(emulator, f"/v1/projects/{DEMO.project_id}/rollback/{DEMO.preview}")
    errored = post(emulator, f"/v1/projects/{DEMO.project_id}/rollback/{DEMO.errored}")
    assert (preview.status_code, errored.status_code) == (400, 400)
    assert "production" in preview.json()["error"]["message"]


def test_failing_aliases_fail_the_job(emulator: VercelEmulator) -> None:
    admin(emulator, "config", {"fail_aliases": ["www.demo.example.com"]})
    post(emulator, f"/v1/projects/{DEMO.project_id}/rollback/{DEMO.previous}")
    assert get(emulator, f"/v9/projects/{DEMO.project_id}").json()["lastAliasRequest"]["jobStatus"] == "failed"
    failed = get(emulator, f"/v1/projects/{DEMO.project_id}/promote/aliases", failedOnly="true").json()
    assert [(a["alias"], a["status"]) for a in failed["aliases"]] == [("www.demo.example.com", "failed")]
    cli_shape = get(emulator, f"/v9/projects/{DEMO.project_id}/rollback/aliases", failedOnly="true").json()
    assert cli_shape["aliases"][0]["alias"]["alias"] == "www.demo.example.com"


def test_faults_429_with_retry_after_5xx_latency_and_after(emulator: VercelEmulator) -> None:
    admin(emulator, "faults", {"method": "GET", "path": "^/v9/projects", "status": 429, "retry_after": 7})
    limited = get(emulator, f"/v9/projects/{DEMO.project_id}")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "7"
    assert get(emulator, f"/v9/projects/{DEMO.project_id}").status_code == 200  # times=1 by default
    admin(emulator, "faults", {"path": "^/v6/deployments", "status": 503, "times": 2})
    assert [get(emulator, "/v6/deployments").status_code for _ in range(3)] == [503, 503, 200]
    admin(emulator, "faults", {"path": "^/v13/", "latency": 0.3})
    started = time.monotonic()
    assert get(emulator, f"/v13/deployments/{DEMO.current}").status_code == 200
    assert time.monotonic() - started >= 0.3
    # "after": the origin acts, then the gateway fails: the rollback happened despite the 502
    admin(emulator, "faults", {"method": "POST", "path": "/rollback/", "status": 502, "after": True})
    assert post(emulator, f"/v1/projects/{DEMO.project_id}/rollback/{DEMO.previous}").status_code == 502
    state = admin(emulator, "state", method="GET").json()
    assert [r["to"] for r in state["aliasRequests"]] == [DEMO.previous]
    assert admin(emulator, "faults", method="GET").json()["faults"]
    admin(emulator, "faults", method="DELETE")
    assert admin(emulator, "faults", method="GET").json()["faults"] == []


def _job(emulator: VercelEmulator) -> dict[str, Any]:
    return dict(get(emulator, f"/v9/projects/{DEMO.project_id}").json()["lastAliasRequest"])


def test_delete_faults_clears_every_injected_fault(emulator: VercelEmulator) -> None:
    """README's drills inject slow alias jobs and failing aliases through ``/_admin/config`` beside the fault
    rules; ``DELETE /_admin/faults`` takes all of them away (the job time back to what the emulator was started
    with), so a rollback after it behaves as seeded, a job already running included."""
    admin(emulator, "config", {"job_seconds": 600, "fail_aliases": ["www.demo.example.com"]})
    admin(emulator, "faults", {"path": "^/v6/deployments", "status": 503, "times": None})
    assert post(emulator, f"/v1/projects/{DEMO.project_id}/rollback/{DEMO.previous}").status_code == 201
    assert _job(emulator)["jobStatus"] == "pending"  # 600 s to go
    admin(emulator, "faults", method="DELETE")
    assert admin(emulator, "faults", method="GET").json()["faults"] == []
    assert get(emulator, "/v6/deployments").status_code == 200
    assert _job(emulator)["jobStatus"] == "succeeded"  # the running job now takes the started-with 0 s
    assert get(emulator, f"/v1/projects/{DEMO.project_id}/promote/aliases", failedOnly="true").json()["aliases"] == []
    state = admin(emulator, "state", method="GET").json()
    assert state["jobSeconds"] == 0.0 and state["failAliases"] == []
    # a new job: every alias moves at once
    assert post(emulator, f"/v1/projects/{DEMO.project_id}/rollback/{DEMO.older}").status_code == 201
    job = _job(emulator)
    assert job["jobStatus"] == "succeeded" and job["toDeploymentId"] == DEMO.older


def test_git_push_deployments_go_live_unless_a_rollback_paused_them(emulator: VercelEmulator) -> None:
    created = admin(emulator, "deployments", {"project": "demo", "sha": "a" * 40, "ready_after": 0.2}).json()
    assert created["state"] == "BUILDING"
    deadline = time.monotonic() + 30  # ready after 0.2 s (the emulator's clock), then production
    while (project := get(emulator, f"/v9/projects/{DEMO.project_id}").json())["targets"]["production"]["id"] \
            != created["id"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert project["targets"]["production"]["id"] == created["id"]
    post(emulator, f"/v1/projects/{DEMO.project_id}/rollback/{DEMO.previous}")
    paused = admin(emulator, "deployments", {"project": "demo", "sha": "b" * 40}).json()
    project = get(emulator, f"/v9/projects/{DEMO.project_id}").json()
    assert project["targets"]["production"]["id"] == DEMO.previous
    assert get(emulator, f"/v13/deployments/{paused['id']}").json()["readyState"] == "READY"


def test_app_stand_in_reports_the_live_commit(emulator: VercelEmulator) -> None:
    version = httpx.get(f"{emulator.url}/_app/demo/api/version").json()
    assert version["deploymentId"] == DEMO.current
    assert httpx.get(f"{emulator.url}/_app/demo/api/health").status_code == 200
    admin(emulator, "config", {"unhealthy": [DEMO.current]})
    assert httpx.get(f"{emulator.url}/_app/demo/api/health").status_code == 500


def test_request_log_records_api_calls(emulator: VercelEmulator) -> None:
    get(emulator, "/v2/user")
    requests = admin(emulator, "requests", method="GET").json()["requests"]
    assert requests[-1]["path"] == "/v2/user"
    assert requests[-1]["status"] == 200


def test_standalone_server_prints_its_url_and_serves() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "rollback.sandbox.vercel", "--port", "0", "--token", TOKEN,
                             "--seed", "demo"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        body = httpx.get(f"{url}/v2/user", headers=AUTH, timeout=5).json()
        assert body["user"]["username"] == "demo"
    finally:
        proc.terminate()
        proc.wait(timeout=5)
