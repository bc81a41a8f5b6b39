"""``app rollback|undo|promote`` end with the health and version checks of [env.<name>.health]
(the version must be the target's commit); ``--no-verify`` skips them. Real CLI, the emulator
over real HTTP (its ``/_app/<project>/`` stand-in answers for whatever serves production)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from rollback.sandbox.vercel import VercelEmulator
from rollback.sandbox.vercel_state import DEMO
from tests.conftest import CliResult

RunCli = Callable[..., CliResult]


def app_requests(emulator: VercelEmulator) -> list[str]:
    return [r["path"] for r in emulator.state.requests if r["path"].startswith("/_app/")]


def test_a_rollback_ends_with_the_health_and_version_checks(run_cli: RunCli, app_env: Path,
                                                             emulator: VercelEmulator) -> None:
    result = run_cli("app", "rollback", "--yes", "--json")
    assert result.code == 0, result.err
    document = result.json()
    target = emulator.state.deployments[DEMO.previous]
    assert [c["name"] for c in document["health"]] == ["GET /", "GET /api/health", "version /api/version"]
    assert document["health"][-1]["value"] == target.sha  # the target's commit, not the bad one's
    step = document["plan"]["steps"][-1]
    assert step["layer"] == "verify" and step["params"]["expected_version"] == target.sha
    assert "ok   version /api/version" in result.err
    assert "health: 3 check(s) passed" in run_cli("app", "undo", "--yes").out


def test_a_failed_check_exits_3_and_the_rollback_stays_done(run_cli: RunCli, app_env: Path,
                                                           emulator: VercelEmulator) -> None:
    emulator.state.configure(unhealthy=[DEMO.previous])
    result = run_cli("app", "rollback", "--yes")
    assert result.code == 3, result.err
    last = result.err.strip().splitlines()[-1]
    assert last.startswith("error: 2 of 3 health check(s) failed: GET / HTTP 500, expected 200; GET /api/health")
    assert "the rollback is done and journaled" in last
    assert "FAIL GET /api/health: HTTP 500" in result.err
    assert emulator.state.project(DEMO.project_id).production_id == DEMO.previous  # not undone
    entries = [json.loads(line) for path in app_env.glob("*.jsonl") for line in path.read_text().splitlines()]
    finished = [e["step"] for e in entries if e["event"] == "step_finished"]
    assert finished == ["vercel-rollback", "wait-rollback"]
    assert entries[-1]["event"] == "run_finished" and entries[-1]["exit_code"] == 3


def test_no_verify_skips_the_checks(run_cli: RunCli, app_env: Path, emulator: VercelEmulator) -> None:
    emulator.state.configure(unhealthy=[DEMO.older])
    result = run_cli("app", "promote", DEMO.older, "--yes", "--no-verify", "--json")
    assert result.code == 0, result.err
    assert "health" not in result.json()
    assert [s["id"] for s in result.json()["plan"]["steps"]] == ["vercel-promote", "wait-promote"]
    assert app_requests(emulator) == []


def test_without_a_health_base_url_the_plan_says_there_is_no_check(
        run_cli: RunCli, app_env: Path, emulator: VercelEmulator, write_config: Callable[..., Path],
        monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_config({"production": {"vercel": {"project": DEMO.project_name, "team": DEMO.team_id}}},
                        default_env="production", journal_dir=str(app_env), name="nohealth.toml")
    monkeypatch.setenv("ROLLBACK_CONFIG", str(path))
    result = run_cli("app", "rollback", "--yes", "--json")
    assert result.code == 0, result.err
    assert any("no health check at the end" in note for note in result.json()["plan"]["notes"])


def test_the_plan_prints_as_one_table_with_text_shown_as_text(run_cli: RunCli, app_env: Path) -> None:
    """Every layer's plan prints the same columns; a value is printed as written (no markup),
    control characters escaped."""
    result = run_cli("app", "rollback", "--dry-run")
    assert result.code == 0, result.err
    lines = result.err.splitlines()
    assert lines[0] == "dry run: instant rollback of demo (env production)"
    assert lines[1].split()[:2] == ["1", "app"] and lines[1].endswith("[destructive]")
    assert lines[3].split()[:2] == ["3", "verify"]


def test_rich_rendering_escapes_markup_and_control_characters() -> None:
    import io

    from rich.console import Console

    from rollback.cli.output import plan_lines, plan_table
    from rollback.plan import Plan, Step

    plan = Plan.of("restore [bold]x[/bold]", "prod", [
        Step("a", "db.skip_emergency_backup", "emergency backup SKIPPED (reason: [/api/pay] 500s\x1b[31m)"),
    ], notes=["line one\nline two"])
    buffer = io.StringIO()
    Console(file=buffer, width=200, color_system=None).print(plan_table(plan))
    text = buffer.getvalue()
    assert "[/api/pay] 500s\\x1b[31m)" in text and "restore [bold]x[/bold]" in text
    assert "\x1b" not in text
    assert plan_lines(plan)[-1] == "  note: line one\\nline two"
