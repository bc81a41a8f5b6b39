"""The sandbox's Vercel: the emulator reset to the demo world, its newest production deployment bad (see
:mod:`rollback.sandbox.seed` for the whole story)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from rollback.sandbox.seed import VERCEL_JOB_SECONDS, iso
from rollback.sandbox.vercel_state import DEMO


def seed_vercel(url: str, rolling: bool = False) -> dict[str, Any]:
    """Reset the emulator to the demo seed with the newest production deployment unhealthy; with
    ``rolling``, to the demo-rolling seed with that deployment the crashing canary of a release at 10 %."""
    import httpx

    bad_id = DEMO.current
    config: dict[str, Any] = {"job_seconds": VERCEL_JOB_SECONDS, "unhealthy": [bad_id], "fail_aliases": [],
                              "crashing": [bad_id] if rolling else []}
    with httpx.Client(base_url=url, timeout=10) as http:
        http.post("/_admin/reset", json={"seed": "demo-rolling" if rolling else "demo"}).raise_for_status()
        http.post("/_admin/config", json=config).raise_for_status()
        state = http.get("/_admin/state").raise_for_status().json()
    deployments = {d["id"]: d for d in state["deployments"]}
    good, bad = deployments[DEMO.previous], deployments[bad_id]
    seeded = {
        "team_id": DEMO.team_id, "team_slug": DEMO.team_slug, "project_id": DEMO.project_id,
        "project_name": DEMO.project_name, "domains": list(DEMO.domains),
        "bad_deployment": bad["id"], "bad_url": bad["url"], "bad_sha": bad["sha"],
        "good_deployment": good["id"], "good_url": good["url"], "good_sha": good["sha"],
        "bad_created_at": iso(dt.datetime.fromtimestamp(bad["createdAt"] / 1000, dt.UTC)),
        "job_seconds": VERCEL_JOB_SECONDS,
        "rolling": None,
    }
    if rolling:
        release = state["rollingReleases"][DEMO.project_id]
        seeded["rolling"] = {"canary": release["canary"], "base": release["base"], "state": release["state"],
                             "percentage": round(release["share"] * 100, 3)}
    return seeded
