"""An app served by Vercel directly (no CloudFront distribution in front of it): ``decide`` and ``verify``
say that error rate and latency come from the health probe and the flows, and list no CloudFront rate as
"not measured" (there is none to measure), against the Vercel emulator and the moto server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.conftest import render_config
from tests.incident.conftest import World, world_config


def _direct(world: World) -> None:
    """The world's config without a distribution: the app's domains point at Vercel."""
    import sys

    config = world_config(world.emulator.url, "INC_DATABASE_URL", "unused", world.alarms, f"{sys.executable} -c 0")
    config["production"]["aws"].pop("distribution_id")
    world.config_path.write_text(render_config(config, default_env="production",
                                               journal_dir=str(world.journal_dir)), encoding="utf-8")


def test_decide_measures_latency_with_the_health_probe(run_cli: Callable[..., Any], world: World,
                                                       monkeypatch: Any) -> None:
    monkeypatch.setenv("ROLLBACK_DECIDE_BUDGET", "20")
    _direct(world)
    result = run_cli("decide", "--live", "--no-incident", "--json")
    assert result.code == 0, result.err
    document = result.json()
    unmeasured = {s["signal"] for s in document["not_measured"]}
    assert not unmeasured & {"error_rate", "p95_ms"}, document["not_measured"]
    latency = next(s for s in document["signals"] if s["signal"] == "p95_ms")
    assert latency["source"] == "health" and latency["status"] == "ok"
    assert any("served by Vercel directly" in n and "health probe" in n for n in document["notes"])
    human = run_cli("decide", "--live", "--no-incident")
    assert "error rate and latency come from the health probe" in human.out


def test_verify_lists_no_cloudfront_item(run_cli: Callable[..., Any], world: World) -> None:
    _direct(world)
    result = run_cli("verify", "--json")
    document = result.json()
    ids = {i["id"] for i in document["items"]}
    assert not {i for i in ids if i.startswith("cdn.") or i == "metrics.arriving"}, ids
    assert {"health./", "health./api/health", "api.p95", "flow.home", "flow.health-api"} <= ids, ids
    assert any("served by Vercel directly" in n for n in document["notes"])
    assert not any("distribution" in i["detail"] and i["status"] == "not measured" for i in document["items"])
