"""``rollback app status|rollback|undo|promote`` through the real CLI entry point,
against the emulator over real HTTP: outcomes (aliases moved), exit codes,
one-line errors, the journal, and no token anywhere."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rollback.commands.app import handlers as app_handlers
from rollback.context import RunSettings, Services
from rollback.sandbox.vercel import VercelEmulator
from rollback.sandbox.vercel_state import DEMO, FaultRule
from tests.app.conftest import TOKEN
from tests.conftest import CliResult

RunCli = Callable[..., CliResult]


def production(emulator: VercelEmulator) -> str | None:
    return emulator.state.project(DEMO.project_id).production_id


def aliases(emulator: VercelEmulator) -> set[str]:
    return {a.deployment_id for a in emulator.state.aliases.values()}


def journal_text(journal_dir: Path) -> str:
    return "".join(p.read_text() for p in sorted(journal_dir.glob("*.jsonl"))) if journal_dir.is_dir() else ""


def assert_one_line_error(result: CliResult, code: int, *fragments: str) -> None:
    assert result.code == code, (result.code, result.out, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.err + result.out
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def assert_no_token(*texts: str) -> None:
    for text in texts:
        assert TOKEN not in text


# ------------------------------------------------------------------ status
def test_status_shows_production_and_marks_candidates(run_cli: RunCli, app_env: Path) -> None:
    result = run_cli("app", "status", "--json")
    assert result.code == 0, result.err
    doc = result.json()
    assert doc["current"]["id"] == DEMO.current
    assert doc["last_alias_request"] is None
    rows = {d["id"]: d for d in doc["deployments"]}
    assert DEMO.preview not in rows  # production deployments only
    assert rows[DEMO.current]["current"] and not rows[DEMO.current]["rollback_candidate"]
    assert rows[DEMO.previous]["rollback_candidate"] and rows[DEMO.older]["rollback_candidate"]
    assert not rows[DEMO.errored]["rollback_candidate"]
    assert {"id", "url", "commit", "created", "state"} <= set(rows[DEMO.previous])
    human = run_cli("app", "status")
    assert human.code == 0
    assert DEMO.current in human.out and "candidate" in human.out


def test_status_after_a_rollback_shows_the_alias_request(run_cli: RunCli, app_env: Path) -> None:
    assert run_cli("app", "rollback", "--yes").code == 0
    doc = run_cli("app", "status", "--json").json()
    assert doc["last_alias_request"]["type"] == "rollback"
    assert doc["last_alias_request"]["job_status"] == "succeeded"
    assert doc["rollback_active"] is True
    assert "rollback app undo" in run_cli("app", "status").out


# ---------------------------------------------------------------- rollback
def test_rollback_picks_the_previous_stable_deployment_and_moves_the_aliases(
        run_cli: RunCli, app_env: Path, emulator: VercelEmulator) -> None:
    result = run_cli("app", "rollback", "--reason", "checkout 500s", "--yes")
    assert result.code == 0, result.err
    assert production(emulator) == DEMO.previous
    assert aliases(emulator) == {DEMO.previous}
    assert "auto-assign" in result.out.replace("assigns", "auto-assign") or "no longer assigns" in result.out
    assert "rollback app undo" in result.out
    assert "rollback job: succeeded" in result.err  # progress
    assert [r["to"] for r in emulator.state.alias_history] == [DEMO.previous]
    assert any("description=checkout" in r["query"] for r in emulator.state.requests if r["method"] == "POST")
    text = journal_text(app_env)
    assert '"step_finished"' in text and DEMO.previous in text and '"succeeded"' in text


def test_rollback_json_is_one_document(run_cli: RunCli, app_env: Path) -> None:
    result = run_cli("app", "rollback", "--yes", "--json")
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    assert doc["ok"] and doc["job_status"] == "succeeded"
    assert doc["from"]["id"] == DEMO.current and doc["to"]["id"] == DEMO.previous
    assert any("undo" in note for note in doc["plan"]["notes"])
    assert doc["run"]


def test_rollback_to_an_explicit_deployment_by_url(run_cli: RunCli, app_env: Path, emulator: VercelEmulator) -> None:
    url = emulator.state.deployments[DEMO.older].url
    assert run_cli("app", "rollback", "--to", f"https://{url}", "--yes").code == 0
    assert production(emulator) == DEMO.older


def test_dry_run_sends_nothing_and_journals_nothing(run_cli: RunCli, app_env: Path, emulator: VercelEmulator) -> None:
    result = run_cli("app", "rollback", "--dry-run")
    assert result.code == 0, result.err
    assert "would: POST /v1/projects/" in result.out
    assert production(emulator) == DEMO.current
    assert not [r for r in emulator.state.requests if r["method"] == "POST"]
    assert journal_text(app_env) == ""


def test_without_yes_and_without_a_terminal_it_refuses(run_cli: RunCli, app_env: Path,
                                                       emulator: VercelEmulator) -> None:
    result = run_cli("app", "rollback")
    assert result.code == 4
    assert "--yes" in result.err
    # the refusal names the environment it refused: the on-call engineer may have several open
    assert "error: refusing to roll back production (env production) without confirmation" in result.err
    assert production(emulator) == DEMO.current


@pytest.mark.parametrize(("target", "fragment"), [
    ("dpl_doesnotexist", "no deployment"),
    (DEMO.preview, "preview deployment"),
    (DEMO.errored, "not READY"),
    (DEMO.current, "already serves production"),
])
def test_bad_targets_exit_2_with_one_line(run_cli: RunCli, app_env: Path, emulator: VercelEmulator, target: str,
                                          fragment: str) -> None:
    result = run_cli("app", "rollback", "--to", target, "--yes")
    assert_one_line_error(result, 2, fragment)
    assert production(emulator) == DEMO.current
    assert not emulator.state.alias_history


def test_missing_token_exits_2_with_one_line(run_cli: RunCli, app_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VERCEL_TOKEN")
    assert_one_line_error(run_cli("app", "rollback", "--yes"), 2, "VERCEL_TOKEN")
    assert_one_line_error(run_cli("app", "status"), 2, "VERCEL_TOKEN")


def test_wrong_token_exits_1_and_is_not_echoed(run_cli: RunCli, app_env: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VERCEL_TOKEN", "wrongTokenValue4242")
    result = run_cli("app", "status")
    assert_one_line_error(result, 1, "HTTP 401", "VERCEL_TOKEN")
    assert "wrongTokenValue4242" not in result.err + result.out


def test_bad_timeout_exits_2(run_cli: RunCli, app_env: Path) -> None:
    assert_one_line_error(run_cli("app", "rollback", "--timeout", "soon", "--yes"), 2, "--timeout")


def test_failed_aliases_are_listed_and_exit_1(run_cli: RunCli, app_env: Path, emulator: VercelEmulator) -> None:
    emulator.state.configure(fail_aliases=["www.demo.example.com"])
    result = run_cli("app", "rollback", "--yes")
    assert result.code == 1
    assert "www.demo.example.com" in result.err
    last = result.err.strip().splitlines()[-1]
    assert last.startswith("error: the rollback job failed: 1 alias(es) not moved: www.demo.example.com")
    assert '"step_failed"' in journal_text(app_env)


def test_status_lists_the_failed_aliases_of_a_failed_job(run_cli: RunCli, app_env: Path,
                                                        emulator: VercelEmulator) -> None:
    emulator.state.configure(fail_aliases=["www.demo.example.com"])
    assert run_cli("app", "rollback", "--yes").code == 1
    doc = run_cli("app", "status", "--json").json()
    assert doc["last_alias_request"]["job_status"] == "failed"
    assert [a["alias"] for a in doc["failed_aliases"]] == ["www.demo.example.com"]
    assert "failed alias: www.demo.example.com" in run_cli("app", "status").out


def test_a_superseded_job_is_reported(run_cli: RunCli, app_env: Path, emulator: VercelEmulator) -> None:
    import threading
    import time

    emulator.state.configure(job_seconds=5)

    def someone_else() -> None:  # once our rollback's job is under way, another one replaces it
        deadline = time.monotonic() + 30
        while not any(r["method"] == "POST" for r in emulator.state.requests) and time.monotonic() < deadline:
            time.sleep(0.01)
        emulator.state.request_alias_job(DEMO.project_id, DEMO.oldest, "rollback")

    thread = threading.Thread(target=someone_else)
    thread.start()
    result = run_cli("app", "rollback", "--yes", "--timeout", "20s")
    thread.join()
    assert result.code == 1
    assert "superseded" in result.err.strip().splitlines()[-1] and DEMO.oldest in result.err


def test_deadline_exits_1_naming_the_jobs_last_status(run_cli: RunCli, app_env: Path,
                                                      emulator: VercelEmulator) -> None:
    emulator.state.configure(job_seconds=30)
    result = run_cli("app", "rollback", "--timeout", "0.4s", "--yes")
    assert result.code == 1
    last = result.err.strip().splitlines()[-1]
    assert "not confirmed within" in last and "last status is pending" in last
    assert "rollback app status" in last


def test_a_rerun_while_the_job_is_still_running_is_refused(run_cli: RunCli, app_env: Path,
                                                           emulator: VercelEmulator) -> None:
    emulator.state.configure(job_seconds=30)
    assert run_cli("app", "rollback", "--timeout", "0.2s", "--yes").code == 1
    again = run_cli("app", "rollback", "--yes")
    assert_one_line_error(again, 4, "still pending", "rollback app status")
    assert len(emulator.state.alias_history) == 1
    assert run_cli("app", "promote", DEMO.current, "--yes").code == 4


def test_progress_shows_each_job_status(run_cli: RunCli, app_env: Path, emulator: VercelEmulator) -> None:
    emulator.state.configure(job_seconds=1.5)
    result = run_cli("app", "rollback", "--yes")
    assert result.code == 0, result.err
    for status in ("pending", "in-progress", "succeeded"):
        assert f"rollback job: {status}" in result.err


@pytest.mark.parametrize("fault", [
    FaultRule(method="GET", path="^/v9/projects", status=429, retry_after="0", times=2),
    FaultRule(method="GET", path="^/v6/deployments", status=503, times=2),
    FaultRule(method="POST", path="/rollback/", status=502, after=True),
    FaultRule(method="POST", path="/rollback/", status=500),
    FaultRule(method="POST", path="/rollback/", status=429, retry_after="0"),
    FaultRule(path="^/v9/projects", latency=0.3, times=3),
])
def test_injected_faults_still_roll_back_exactly_once(run_cli: RunCli, app_env: Path, emulator: VercelEmulator,
                                                      fault: FaultRule) -> None:
    emulator.state.add_fault(fault)
    result = run_cli("app", "rollback", "--yes")
    assert result.code == 0, result.err
    assert production(emulator) == DEMO.previous
    assert len(emulator.state.alias_history) == 1
    assert fault.fired >= 1


def test_persistent_5xx_gives_exit_1(run_cli: RunCli, app_env: Path, emulator: VercelEmulator) -> None:
    emulator.state.add_fault(FaultRule(method="GET", path="^/v9/projects", status=503, times=None))
    result = run_cli("app", "status")
    assert result.code == 1
    assert "HTTP 503" in result.err.strip().splitlines()[-1]


# ------------------------------------------------------------ undo, promote
def test_undo_promotes_back_what_was_live_before(run_cli: RunCli, app_env: Path, emulator: VercelEmulator) -> None:
    assert run_cli("app", "rollback", "--to", DEMO.older, "--yes").code == 0
    assert production(emulator) == DEMO.older
    result = run_cli("app", "undo", "--yes")
    assert result.code == 0, result.err
    assert production(emulator) == DEMO.current
    assert aliases(emulator) == {DEMO.current}
    assert not emulator.state.project(DEMO.project_id).auto_assign_paused
    assert [r["type"] for r in emulator.state.alias_history] == ["rollback", "promote"]
    again = run_cli("app", "undo", "--yes")
    assert again.code == 0 and "nothing to do" in again.out


def test_undo_without_a_journal_uses_last_alias_request(run_cli: RunCli, app_env: Path,
                                                        emulator: VercelEmulator) -> None:
    emulator.state.request_alias_job(DEMO.project_id, DEMO.previous, "rollback")  # someone else's rollback
    result = run_cli("app", "undo", "--yes", "--json")
    assert result.code == 0, result.err
    assert result.json()["source"] == "lastAliasRequest"
    assert production(emulator) == DEMO.current


def test_undo_with_nothing_to_undo_exits_2(run_cli: RunCli, app_env: Path) -> None:
    assert_one_line_error(run_cli("app", "undo", "--yes"), 2, "no rollback")


def test_undo_dry_run(run_cli: RunCli, app_env: Path, emulator: VercelEmulator) -> None:
    assert run_cli("app", "rollback", "--yes").code == 0
    result = run_cli("app", "undo", "--dry-run")
    assert result.code == 0 and "would: POST /v10/projects/" in result.out
    assert production(emulator) == DEMO.previous


def test_promote(run_cli: RunCli, app_env: Path, emulator: VercelEmulator) -> None:
    result = run_cli("app", "promote", DEMO.older, "--yes")
    assert result.code == 0, result.err
    assert production(emulator) == DEMO.older
    assert [r["type"] for r in emulator.state.alias_history] == ["promote"]
    assert_one_line_error(run_cli("app", "promote", DEMO.preview, "--yes"), 2, "preview")


def test_the_token_never_reaches_output_errors_or_the_journal(run_cli: RunCli, app_env: Path,
                                                              emulator: VercelEmulator,
                                                              journal_redaction: bool) -> None:
    outputs = [run_cli("app", "status"), run_cli("app", "status", "--json"),
               run_cli("app", "rollback", "--yes", "--json"), run_cli("app", "undo", "--yes"),
               run_cli("app", "rollback", "--to", "dpl_nope", "--yes")]
    emulator.state.configure(fail_aliases=["demo.example.com"])
    outputs.append(run_cli("app", "rollback", "--yes", "--json"))
    emulator.state.configure(fail_aliases=[])
    emulator.state.add_fault(FaultRule(path="^/v9/", status=503, times=None))
    outputs.append(run_cli("app", "rollback", "--yes"))
    assert_no_token(*(o.out + o.err for o in outputs), journal_text(app_env))
    assert journal_text(app_env)  # there is a journal to check


def test_an_environment_without_vercel_settings_exits_2(run_cli: RunCli, app_env: Path,
                                                         write_config: Callable[..., Path],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_config({"production": {"health": {"base_url": "https://app.example.com"}}}, name="novercel.toml")
    monkeypatch.setenv("ROLLBACK_CONFIG", str(path))
    assert_one_line_error(run_cli("app", "status"), 2, "[env.production.vercel]")


def test_json_failure_is_one_document_with_the_error(run_cli: RunCli, app_env: Path,
                                                     emulator: VercelEmulator) -> None:
    emulator.state.configure(fail_aliases=["demo.example.com"])
    result = run_cli("app", "rollback", "--yes", "--json")
    assert result.code == 1
    doc = json.loads(result.out)
    assert doc["ok"] is False and doc["error"]["error"] == "VercelError"
    assert "demo.example.com" in doc["error"]["message"]


# ---------------------------------------------------------- re-runs, late outcomes
def test_a_rerun_after_a_rollback_does_not_step_further_back(run_cli: RunCli, app_env: Path,
                                                             emulator: VercelEmulator) -> None:
    assert run_cli("app", "rollback", "--yes").code == 0
    assert production(emulator) == DEMO.previous
    again = run_cli("app", "rollback", "--yes")
    assert_one_line_error(again, 4, "production was just rolled back to", DEMO.previous, "pass --to",
                          "rollback app undo")
    assert production(emulator) == DEMO.previous
    assert len(emulator.state.alias_history) == 1
    further = run_cli("app", "rollback", "--to", DEMO.older, "--yes")  # explicit: allowed
    assert further.code == 0, further.err
    assert production(emulator) == DEMO.older


def test_undo_refuses_when_production_is_not_a_rollback_target(run_cli: RunCli, app_env: Path,
                                                               emulator: VercelEmulator) -> None:
    assert run_cli("app", "rollback", "--yes").code == 0  # journaled: current -> previous
    assert run_cli("app", "promote", DEMO.older, "--yes").code == 0  # production moved on since
    result = run_cli("app", "undo", "--yes")
    assert_one_line_error(result, 4, "is not the target of a rollback", "nothing to undo")
    assert production(emulator) == DEMO.older  # the deployment rolled away from was not put back
    assert [r["type"] for r in emulator.state.alias_history] == ["rollback", "promote"]


def test_a_transient_read_error_while_waiting_for_the_job_keeps_waiting(app_env: Path, client: Any,
                                                                        emulator: VercelEmulator) -> None:
    from rollback.commands.app import plan as commands
    from rollback.config import load_config

    config = load_config()
    planned = commands.plan_rollback(config, client)
    # The POST is answered; then every read of the project fails for a whole retry budget once.
    emulator.state.add_fault(FaultRule(method="GET", path="^/v9/projects", status=503,
                                       times=client.max_attempts))
    notes: list[str] = []
    document = app_handlers.apply(planned, app_handlers.handlers(Services(config, vercel=client, settings=RunSettings(
        sleep=client.sleep, clock=client.clock))),
                              progress=notes.append)
    assert document["job_status"] == "succeeded"
    assert production(emulator) == DEMO.previous
    assert len(emulator.state.alias_history) == 1
    assert any("still waiting" in note for note in notes), notes
