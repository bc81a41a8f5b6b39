"""The sandbox with ``--rolling``: the bad app release is the canary of a Vercel rolling release at 10 %
(real processes: the supervisor with moto, the Vercel emulator, the app server and its monitor).

The emulator treats an instant rollback request naming the canary as Vercel documents it (the release is
aborted, all traffic goes to its base: see ``tests/app/test_rolling_emulator.py``); the app server sends
each request to the canary or the base by the current stage.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rollback.sandbox.world import Sandbox, SandboxInfo
from tests.conftest import CliResult
from tests.sandbox.test_world import aws, wait_for

RunCli = Callable[..., CliResult]
pytestmark = pytest.mark.slow


@pytest.fixture
def rolling_sandbox(sandbox_env: SandboxInfo) -> Iterator[SandboxInfo]:
    """The session's sandbox (its exports set: the same URLs after a reset) re-seeded with ``--rolling``;
    seeded the usual way again afterwards, so the next test that wants the world as seeded gets it."""
    info = Sandbox.reset(sandbox_env.dir, rolling=True)
    try:
        yield info
    finally:
        Sandbox.reset(sandbox_env.dir)


def health(info: SandboxInfo, count: int) -> list[int]:
    with httpx.Client(base_url=info.env["APP_URL"], timeout=10) as http:
        return [http.get("/api/health").status_code for _ in range(count)]


def rollback_posts(info: SandboxInfo) -> list[str]:
    requests = httpx.get(f"{info.env['VERCEL_API_URL']}/_admin/requests", timeout=5).json()["requests"]
    return [r["path"] for r in requests if r["method"] == "POST" and "/rollback/" in r["path"]]


def rolling_state(info: SandboxInfo) -> dict[str, Any]:
    state = httpx.get(f"{info.env['VERCEL_API_URL']}/_admin/state", timeout=5).json()
    return {"production": state["projects"][0]["production"],
            **state["rollingReleases"][info.world["vercel"]["project_id"]]}


def newest_error_rate(info: SandboxInfo) -> float | None:
    """The newest ``AWS/CloudFront 5xxErrorRate`` datapoint the monitor published (CloudWatch, in moto)."""
    now = dt.datetime.now(dt.UTC)
    found = aws("cloudwatch").get_metric_statistics(
        Namespace="AWS/CloudFront", MetricName="5xxErrorRate", StartTime=now - dt.timedelta(seconds=30),
        EndTime=now + dt.timedelta(seconds=5), Period=1, Statistics=["Average"],
        Dimensions=[{"Name": "DistributionId", "Value": info.world["aws"]["distribution_id"]},
                    {"Name": "Region", "Value": "Global"}])
    points = sorted(found["Datapoints"], key=lambda p: p["Timestamp"])
    return float(points[-1]["Average"]) if points else None


def test_rolling_world_splits_traffic_and_app_rollback_aborts_the_canary(rolling_sandbox: SandboxInfo,
                                                                        run_cli: RunCli) -> None:
    info = rolling_sandbox
    vercel = info.world["vercel"]
    assert info.world["rolling"] is True and vercel["rolling"]["percentage"] == 10.0
    canary, base = vercel["rolling"]["canary"], vercel["rolling"]["base"]
    assert (canary, base) == (vercel["bad_deployment"], vercel["good_deployment"])
    assert rolling_state(info)["state"] == "ACTIVE" and rolling_state(info)["production"] == base

    # A crashing canary at 10 %: about 10 % of /api/health fails (the monitor's own probes interleave).
    assert 8 <= health(info, 100).count(500) <= 12
    # ... and the monitor publishes about 10 % to CloudWatch once it has measured enough of them.
    wait_for(lambda: (newest_error_rate(info) or 0.0) > 5.0, timeout=60, what="a 5xxErrorRate datapoint over 5 %")
    assert 5.0 < (newest_error_rate(info) or 0.0) < 20.0

    decided = run_cli("decide", "--live", "--no-incident", "--json")
    assert decided.code == 0, decided.err
    reasons = [r for r in decided.json()["reasons"] if r["signal"] == "canary_error_rate"]
    assert reasons and all(f"({canary}) at 10 %: abort" in r["detail"] for r in reasons)
    assert decided.json()["options"]["app"] == "abort-rolling-release"

    rolled = run_cli("app", "rollback", "--yes", "--json")
    assert rolled.code == 0, rolled.err
    after = rolling_state(info)
    assert after["production"] == base and after["state"] == "ABORTED"
    assert rollback_posts(info) == [f"/v9/projects/{vercel['project_id']}/rollback/{canary}"]  # the abort only
    assert health(info, 100) == [200] * 100


def test_drill_with_rolling_names_the_canary_and_the_abort(rolling_sandbox: SandboxInfo, run_cli: RunCli) -> None:
    info = rolling_sandbox
    canary = info.world["vercel"]["rolling"]["canary"]
    drill = run_cli("drill", "--sandbox", "--rolling", "--json")
    assert drill.code == 0, drill.err + drill.out
    document = drill.json()
    assert document["ok"] is True and "app" in document["layers"]
    rows = {row["key"]: row for row in document["timeline"]}
    assert canary in rows["deployment_initiated"]["detail"] and "rolling release at 10 %" in \
        rows["deployment_initiated"]["detail"]
    assert "abort the rolling release" in rows["restored"]["detail"]
    report = Path(document["report"]).read_text(encoding="utf-8")
    assert f"canary {info.world['vercel']['bad_url']} ({canary}) started a Vercel rolling release" in report
    assert "abort the rolling release: canary" in report
    assert "abort rolling release" in report  # the resolution names the option
    assert rolling_state(info)["state"] == "ABORTED"
    human = run_cli("report", str(document["incident"]), "--format", "md")
    assert "at 10 %: abort" in human.out  # the decision's reason, in the summary
