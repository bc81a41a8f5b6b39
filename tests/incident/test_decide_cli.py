"""``rollback decide`` through the real CLI: the must-shows, live signals against the stand-ins, the incident."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.incident.conftest import FAILED_MIGRATION, World


@pytest.fixture
def plain(write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    path = write_config({"production": {"vercel": {"project": "demo"}}}, default_env="production",
                        journal_dir=str(tmp_path / "runs"))
    monkeypatch.setenv("ROLLBACK_CONFIG", str(path))
    for name in ("ROLLBACK_ENV", "ROLLBACK_JOURNAL_DIR", "VERCEL_TOKEN", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


@pytest.mark.parametrize(("args", "severity", "layers", "reason"), [
    (["--error-rate", "7"], "P1", ["app"], "error_rate = 7 % (threshold > 5 %, from flag): high error rate"),
    (["--service-down"], "P0", ["app"], "service_down = true (threshold true, from flag): service down"),
    (["--data-loss"], "P0", ["app", "db"], "data_loss = true (threshold true, from flag)"),
    (["--feature-broken", "minor"], "P2", ["app"], "feature_broken = minor (threshold == minor, from flag)"),
    (["--p95-ms", "6000"], "P1", ["app"], "p95_ms = 6000 ms (threshold > 5000 ms, from flag)"),
    (["--cosmetic"], "P3", [], "cosmetic = true"),
])
def test_must_show(run_cli: Callable[..., Any], plain: Path, args: list[str], severity: str, layers: list[str],
                   reason: str) -> None:
    human = run_cli("decide", *args, "--no-incident")
    assert human.code == 0, human.err
    assert human.out.startswith(f"{severity}: ")
    assert reason in human.out
    if layers:
        command = f"rollback --env production run --severity {severity} --layers {','.join(layers)}"
        assert f"run: {command}" in human.out
    document = run_cli("decide", *args, "--no-incident", "--json").json()
    assert document["severity"] == severity and document["layers"] == layers
    assert document["reasons"][0]["signal"] and "threshold" in document["reasons"][0]
    assert (document["command"] is None) == (not layers)


def test_data_loss_recommends_app_then_db_and_opens_an_incident(run_cli: Callable[..., Any], plain: Path) -> None:
    result = run_cli("decide", "--data-loss", "--detected-at", "2026-11-28T09:30:00Z", "--json")
    assert result.code == 0, result.err
    document = result.json()
    assert document["options"] == {"app": "vercel-instant-rollback", "db": "restore-backup"}
    assert document["incident_opened"] is True
    assert document["detected"]["from"] == "flag" and document["detected"]["at"] == "2026-11-28T09:30:00.000Z"
    shown = run_cli("incident", "show", "open", "--json").json()
    assert shown["id"] == document["incident"] and shown["severity"] == "P0"
    assert shown["timeline"]["detected"] == "2026-11-28T09:30:00.000Z" and shown["timeline"]["decided"]
    assert shown["layers"] == ["app", "db"] and shown["status"] == "open"
    # a second decision attaches to the same open incident
    again = run_cli("decide", "--error-rate", "9", "--json").json()
    assert again["incident"] == document["incident"] and again["incident_opened"] is False
    assert len(list((plain / "incidents").glob("INC-*.jsonl"))) == 1
    closed = run_cli("incident", "close", "--resolution", "rolled back [app] + restored", "--json").json()
    assert closed["status"] == "closed" and closed["timeline"]["closed"]
    assert run_cli("incident", "close", "--resolution", "x").code == 2
    listed = run_cli("incident", "list")
    assert "rolled back" not in listed.out and document["incident"] in listed.out


def test_incident_show_reads_as_run_and_the_report_do(run_cli: Callable[..., Any], plain: Path) -> None:
    """``incident show`` for people: the reasons as sentences, the durations and verdict words ``run`` prints
    (``1 min 4 s``, ``met``), the notes (text as written), who closed it; ``list --open`` with none open says so."""
    assert "no open incidents (env production;" in run_cli("incident", "list", "--open").err
    opened = run_cli("decide", "--error-rate", "7", "--detected-at", "2026-11-28T09:30:00Z", "--json").json()
    assert run_cli("incident", "note", "status page updated [/api/pay] \x1b[31m").code == 0
    shown = run_cli("incident", "show", "open")
    assert shown.code == 0, shown.err
    assert "P1  The error rate was 7 %, above the 5 % threshold (reported with --error-rate)." in shown.out
    assert "error_rate = 7" not in shown.out  # not the decision's key = value line
    assert "09:30:00      Issue detected" in shown.out
    assert "Time to detect" in shown.out and "not measured" in shown.out
    assert "min 0.0" not in shown.out and " ok " not in shown.out  # no "2.0 min", no "ok"/"OVER" words
    assert "notes\n" in shown.out and "status page updated [/api/pay] \\x1b[31m" in shown.out
    assert run_cli("incident", "list", "--open").out.count(opened["incident"]) == 1
    closed = run_cli("incident", "close", "--resolution", "rolled back", "--by", "alex")
    assert "by alex: rolled back" in closed.out
    assert "no open incidents" in run_cli("incident", "list", "--open").err
    verdicts = run_cli("incident", "show", "last").out
    assert "Time to decide" in verdicts and ("met" in verdicts or "missed" in verdicts)


@pytest.mark.parametrize("args", [[], ["--error-rate", "nan"], ["--error-rate", "-1"], ["--feature-broken", "huge"],
                                  ["--changed", "app,cdn", "--service-down"],
                                  ["--service-down", "--detected-at", "yesterday"]])
def test_bad_input_is_one_line_and_exit_2(run_cli: Callable[..., Any], plain: Path, args: list[str]) -> None:
    result = run_cli("decide", *args)
    assert result.code == 2
    assert result.err.startswith("error: ") and len(result.err.strip().splitlines()) == 1


def test_live_without_sources_reports_each_as_not_measured(run_cli: Callable[..., Any], plain: Path) -> None:
    result = run_cli("decide", "--live", "--json")
    assert result.code == 0, result.err
    document = json.loads(result.out)
    assert document["severity"] is None and document["incident"] is None
    missing = {item["signal"]: item["detail"] for item in document["not_measured"]}
    # A Vercel project and no CloudFront: error rate and latency are the health probe's (not measured here,
    # with service_down), not CloudFront rates "not measured".
    assert set(missing) == {"alarms", "service_down", "failed_migration", "rollback_active"}
    assert any("served by Vercel directly" in note for note in document["notes"])
    assert all(detail.startswith("not measured: ") for detail in missing.values())
    assert "base_url is not set" in missing["service_down"]
    human = run_cli("decide", "--live")
    assert "no rollback indicated" in human.out and "not measured: " in human.out


def test_live_signals_from_the_stand_ins(run_cli: Callable[..., Any], world: World,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # Every source must answer for the assertions below, on a loaded machine too: a source that times
    # out is "not measured" (P1 instead of P0). The 1.5 s budget itself is measured by bench/decide.py.
    monkeypatch.setenv("ROLLBACK_DECIDE_BUDGET", "30")
    world.break_it()
    result = run_cli("decide", "--live", "--json")
    assert result.code == 0, result.err
    document = result.json()
    reasons = {r["signal"]: r for r in document["reasons"]}
    assert document["severity"] == "P0"  # every health URL answers 500: the service is down
    assert reasons["service_down"]["source"] == "health"
    assert reasons["error_rate"]["value"] == 20.0 and reasons["error_rate"]["threshold"] == "> 5"
    assert reasons["p95_ms"]["value"] == 6500.0 and reasons["p95_ms"]["source"] == "cloudfront"
    assert reasons["alarm.cdn-5xx-error-rate"]["value"] == "ALARM"
    assert FAILED_MIGRATION in reasons["failed_migration"]["detail"]
    assert document["layers"] == ["app", "db"]
    assert document["options"] == {"app": "vercel-instant-rollback", "db": "migration-repair"}
    assert document["not_measured"] == []
    # detected when the alarm went off; deployment from Vercel's production deployment
    assert document["detected"]["from"] == "alarm"
    shown = run_cli("incident", "show", document["incident"], "--json").json()
    assert shown["timeline"]["deployment_initiated"] is not None
    assert shown["metrics"]["detect"] is not None and shown["metrics"]["decide"] is not None


def test_live_healthy_world_decides_no_rollback(run_cli: Callable[..., Any], world: World,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROLLBACK_DECIDE_BUDGET", "30")  # as above: a timed-out source would be "not measured"
    world.heal_monitoring()
    document = run_cli("decide", "--live", "--json").json()
    assert document["severity"] is None and document["layers"] == [] and document["incident"] is None
    statuses = {s["signal"]: s["status"] for s in document["signals"]}
    assert statuses["service_down"] == "ok" and statuses["error_rate"] == "ok"
    assert statuses["failed_migration"] == "ok" and statuses["alarm.cdn-5xx-error-rate"] == "ok"


@pytest.mark.parametrize(("flag", "said"), [
    # The runbook's P3: nothing to roll back, so the run stops at its decision.
    ("--cosmetic", "fix forward in the next deployment"),
    # P1 (a pool exhausted), app: it plans the app rollback and stops at the missing Vercel token.
    ("--db-connections-exhausted", "decided P1: app"),
])
def test_run_decides_from_every_signal_flag(run_cli: Callable[..., Any], plain: Path, flag: str, said: str) -> None:
    """run takes all of decide's signal flags (one declaration: tests/cli/test_signal_flags_shared.py)."""
    result = run_cli("run", flag, "--dry-run")
    assert result.code == 2
    assert said in result.out + result.err
    assert "no such option" not in result.err
