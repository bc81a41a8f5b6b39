"""``rollback decide --live`` finds what the sandbox's bad deploy changed, layer by layer, by itself.

The sandbox's world (rollback/sandbox/seed.py): the bad Vercel deployment went live 2 min ago, the
stack's last update moved the edge pin to version 3 (4 min ago), the assets under the served release
were overwritten 4 min ago (and the distribution, serving edge version 3, last modified then), the
failed migration started 3 min ago, and the alarms went off 1 min ago.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from rollback.sandbox.world import SandboxInfo


@pytest.fixture
def patient(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every source must answer for the assertions below, on a loaded machine too; the 1.5 s budget
    # itself is measured by bench/decide.py, not asserted here.
    monkeypatch.setenv("ROLLBACK_DECIDE_BUDGET", "30")


def test_live_decide_recommends_every_layer_the_bad_deploy_changed(
        run_cli: Callable[..., Any], fresh_sandbox: SandboxInfo, patient: None) -> None:
    result = run_cli("decide", "--live", "--json", "--no-incident")
    assert result.code == 0, result.err
    document = result.json()
    assert document["severity"] == "P0"
    assert document["layers"] == ["app", "edge", "assets", "db"]
    changed = document["changed"]
    assert changed["from"] == "live" and changed["layers"] == ["app", "edge", "assets", "db"]
    assert changed["not_measured"] == []
    assert changed["detected_at"][:19] == fresh_sandbox.world["timeline"]["detected"][:19]  # the alarms' time
    counted = {(c["layer"], c["source"]) for c in changed["changes"] if c["changed"]}
    assert counted == {("app", "vercel"), ("edge", "pulumi"), ("edge", "cloudfront"), ("assets", "s3"),
                       ("db", "prisma")}
    world = fresh_sandbox.world
    details = "\n".join(c["detail"] for c in changed["changes"])
    assert f"app: deployment {world['vercel']['bad_deployment']} 'Add new feature' went live" in details
    assert (f"edge: distribution {world['aws']['distribution_id']} (serves {world['aws']['edge_function']}:3) "
            f"modified 3 min before detection") in details
    assert "changed rollback:edgeFunctionVersion" in details
    assert f"s3://{world['aws']['assets_bucket']}/{world['aws']['assets_prefix']}" in details
    assert f"db: migration {world['database']['failed_migration']} started (failed)" in details
    for change in changed["changes"]:
        if change["changed"]:
            assert 0 < change["value"] <= 60, change
    assert document["command"].startswith("rollback --env sandbox run --severity P0 --layers app,edge,assets,db")

    human = run_cli("decide", "--live", "--no-incident")
    assert "changed within 60 min before detection: app, edge, assets, db" in human.out
    assert "run: rollback --env sandbox run --severity P0 --layers app,edge,assets,db" in human.out


def test_changed_overrides_what_decide_found(run_cli: Callable[..., Any], fresh_sandbox: SandboxInfo,
                                             patient: None) -> None:
    document = run_cli("decide", "--live", "--json", "--no-incident", "--changed", "app").json()
    assert document["changed"]["from"] == "flag"
    # edge: its Lambda@Edge errors alarm is in ALARM; db: the grow-only table lost rows (data loss)
    assert document["layers"] == ["app", "edge", "db"]
    assert {c["layer"] for c in document["changed"]["changes"] if c["changed"]} == {"app", "edge", "assets", "db"}
