"""``rollback verify`` against the Vercel emulator, the moto server and a throwaway PostgreSQL:
the checklist fails (exit 3) in a broken world and passes after the rollback fixed it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.incident.conftest import FAILED_MIGRATION, World

GROUPS = {"Service health", "Critical flows", "Data integrity", "Performance", "Monitoring"}


def _items(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["id"]: item for item in document["items"]}


def test_verify_fails_in_a_broken_world_and_passes_after_the_rollback(run_cli: Callable[..., Any],
                                                                      world: World) -> None:
    from rollback.sandbox.vercel_state import DEMO

    world.break_it()
    decided = run_cli("decide", "--live", "--json")
    assert decided.code == 0, decided.err
    incident = decided.json()["incident"]

    before = run_cli("verify", "--json")
    assert before.code == 3, before.err
    document = before.json()
    assert document["ok"] is False and document["error"]["error"] == "ChecksFailed"
    assert document["error"]["exit_code"] == 3 and document["incident"] == incident
    assert "verification failed" in before.err and len(before.err.strip().splitlines()) == 1
    items = _items(document)
    assert {i["group"] for i in items.values()} == GROUPS
    failing = {i for i, item in items.items() if item["status"] == "fail"}
    assert {"health./", "health./api/health", "flow.home", "flow.health-api", "smoke", "db.migrations", "api.p95",
            "page./", "cdn.5xx-rate", f"alarm.{world.alarms[0]}"} <= failing
    assert items["health./api/health"]["value"] == "500" and items["health./api/health"]["threshold"] == "== 200"
    assert items["db.migrations"]["value"] == "1" and FAILED_MIGRATION in items["db.migrations"]["detail"]
    assert items["cdn.5xx-rate"]["value"] == "20.00 %" and items["cdn.5xx-rate"]["threshold"] == "< 1 %"
    assert items[f"alarm.{world.alarms[0]}"]["value"] == "ALARM"
    assert items["smoke"]["value"] == "exit 1"
    for item in items.values():  # every item has a value and a threshold, or says why it was not measured
        assert item["status"] in ("pass", "fail", "not measured")
        if item["status"] == "not measured":
            assert item["detail"].startswith("not measured: ")

    # the rollback: previous (healthy) deployment, migration repaired, monitoring recovers
    rolled = run_cli("app", "rollback", "--yes", "--json")
    assert rolled.code == 0, rolled.err
    assert world.emulator.state.project(DEMO.project_name).production_id == DEMO.previous
    resolved = run_cli("db", "resolve", "--rolled-back", FAILED_MIGRATION, "--yes")
    assert resolved.code == 0, resolved.err
    world.heal_monitoring()

    after = run_cli("verify", "--json")
    assert after.code == 0, after.err
    document = after.json()
    items = _items(document)
    assert document["ok"] is True and "error" not in document
    assert [i for i, item in items.items() if item["status"] == "fail"] == []
    assert items["version"]["status"] == "pass"  # the version endpoint reports what Vercel says production serves
    assert items["version"]["value"] == items["version"]["threshold"].removeprefix("== ").split(" or ")[0]
    assert items["cdn.cache-hit-rate"]["status"] == "pass" and items["metrics.arriving"]["status"] == "pass"
    assert items["db.rows.User"]["status"] == "not measured"  # no --baseline
    assert all(item["status"] == "pass" for i, item in items.items() if i.startswith("db.orphans."))
    assert any(i.startswith("db.orphans.") and "UserStats" in i for i in items)

    shown = run_cli("incident", "show", incident, "--json").json()
    assert [v["ok"] for v in shown["verifications"]] == [False, True]
    assert shown["timeline"]["verified"] is not None

    human = run_cli("verify")
    assert human.code == 0
    assert "post-rollback checklist" in human.out and "passed" in human.out


def test_strict_fails_on_items_that_cannot_be_measured(run_cli: Callable[..., Any], world: World) -> None:
    world.heal_monitoring()
    relaxed = run_cli("verify", "--json")
    assert relaxed.code == 0, relaxed.err
    assert any(i["status"] == "not measured" for i in relaxed.json()["items"])  # row counts without a baseline
    strict = run_cli("verify", "--strict", "--json")
    assert strict.code == 3
    assert strict.json()["strict"] is True and strict.json()["ok"] is False


def test_wait_rechecks_until_the_alarm_clears(run_cli: Callable[..., Any], world: World,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    world.heal_monitoring()
    world.set_alarm("ALARM")
    timer = threading.Timer(1.5, lambda: world.set_alarm("OK"))
    timer.start()
    try:
        result = run_cli("verify", "--wait", "60s", "--interval", "1s", "--json")
    finally:
        timer.cancel()
    assert result.code == 0, result.err
    assert result.json()["rounds"] >= 2
    assert "checking again in" in result.err


def test_unknown_baseline_is_bad_input(run_cli: Callable[..., Any], world: World) -> None:
    result = run_cli("verify", "--baseline", "nope")
    assert result.code == 2 and result.err.startswith("error: no backup 'nope'")


def test_unreachable_sources_fail_and_missing_ones_are_not_measured(run_cli: Callable[..., Any],
                                                                    write_config: Callable[..., Path],
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    tmp_path: Path) -> None:
    path = write_config({"production": {"health": {"base_url": "http://127.0.0.1:9", "timeout": 0.5},
                                        "verify": {"requests": 2}}},
                        default_env="production", journal_dir=str(tmp_path / "runs"))
    monkeypatch.setenv("ROLLBACK_CONFIG", str(path))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    result = run_cli("verify", "--json")
    assert result.code == 3
    items = _items(result.json())
    assert items["health./"]["status"] == "fail" and items["health./"]["value"] == "no answer"
    assert items["db.connect"]["status"] == "not measured"
    assert items["alarms"]["detail"].startswith("not measured: ")


def test_a_fresh_process_measures_performance_beside_the_health_checks(tmp_path: Path) -> None:
    """The health and performance readers run in threads of their own; in a fresh process both imported
    httpx at the same moment and one got it half-initialised ("partially initialized module 'httpx' has no
    attribute 'Client'"): performance 'could not measure' in 3 of 4 runs. Several fresh processes here."""
    import os
    import subprocess
    import sys
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Ok(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        config = tmp_path / "rollback.toml"
        config.write_text('default_env = "staging"\n[env.staging]\nsandbox = true\n[env.staging.health]\n'
                          f'base_url = "http://127.0.0.1:{server.server_address[1]}"\npaths = ["/", "/api/health"]\n')
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ROLLBACK_", "AWS_"))}
        for _ in range(4):
            done = subprocess.run([sys.executable, "-m", "rollback", "verify", "--config", str(config), "--json"],
                                  env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
            items = _items(__import__("json").loads(done.stdout))
            p95 = items["api.p95"]
            assert str(p95["value"]).endswith(" ms") and p95["detail"].startswith("20 requests"), p95  # measured
            assert "could not measure" not in done.stdout
    finally:
        server.shutdown()
        server.server_close()
