"""The journal: append-only, fsynced, redacted, readable after a crash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rollback.errors import BadInput, DatabaseError
from rollback.journal import Journal, find_run, list_runs, read_run
from rollback.plan import Plan, Step
from rollback.runner import execute
from rollback.runner import handler as step_handler

PLAN = Plan.of(
    "restore",
    "production",
    [
        Step("backup", "db.backup", "emergency backup of app"),
        Step("restore", "db.restore", "restore backup-1 into app_restored"),
        Step("swap", "db.swap", "swap app_restored into place", destructive=True),
    ],
)


def test_a_successful_run_reads_back_step_by_step(tmp_path: Path) -> None:
    calls: list[tuple[str, bool]] = []

    def handler(step: Step, ctx: object) -> dict[str, object]:
        calls.append((step.id, ctx.dry_run))
        return {"done": step.id}

    journal = Journal.start(tmp_path, command=["rollback", "db", "restore"], env="production")
    result = execute(PLAN, dict.fromkeys(("db.backup", "db.restore", "db.swap"), step_handler(handler)),
                     journal=journal)
    assert [s.step.id for s in result.steps] == ["backup", "restore", "swap"]
    assert calls == [("backup", False), ("restore", False), ("swap", False)]

    run = read_run(journal.path)
    assert run.status == "succeeded"
    assert [s["status"] for s in run.steps] == ["done", "done", "done"]
    assert run.last_completed_step is not None and run.last_completed_step["id"] == "swap"
    events = [e["event"] for e in run.entries]
    assert events[0] == "run_started" and events[-1] == "run_finished"
    assert events.count("step_started") == 3
    assert run.started["command"] == "rollback db restore"
    assert run.entries[0]["who"] and run.entries[0]["host"]


def test_a_dry_run_walks_the_same_handlers_without_side_effects() -> None:
    side_effects: list[str] = []

    def handler(step: Step, ctx: object) -> dict[str, object]:
        if ctx.dry_run:
            return {"would": step.describe()}
        side_effects.append(step.id)
        return {}

    result = execute(PLAN, dict.fromkeys(("db.backup", "db.restore", "db.swap"), step_handler(handler)), dry_run=True)
    assert side_effects == []
    assert result.dry_run and result.run_id is None
    assert result.result_of("swap") == {"would": "swap app_restored into place"}


def test_a_failed_step_records_where_it_stopped_and_how_to_resume(tmp_path: Path) -> None:
    def ok(step: Step, ctx: object) -> dict[str, object]:
        return {"ok": True}

    def boom(step: Step, ctx: object) -> dict[str, object]:
        raise DatabaseError("pg_restore exited 1 for postgresql://app:pw-xyz-1@h/db", "check the backup")

    journal = Journal.start(tmp_path, command="rollback db restore", env="production")
    with pytest.raises(DatabaseError):
        execute(PLAN, {"db.backup": step_handler(ok), "db.restore": step_handler(boom), "db.swap": step_handler(ok)},
                journal=journal)
    run = read_run(journal.path)
    assert run.status == "failed"
    assert run.failed_step is not None and run.failed_step["id"] == "restore"
    assert "pw-xyz-1" not in journal.path.read_text()
    assert "steps completed before this one: backup" in run.failed_step["resume"]
    assert [s["status"] for s in run.steps] == ["done", "failed", "planned"]
    assert run.finished is not None and run.finished["exit_code"] == 1


def test_interrupt_is_journaled_as_interrupted(tmp_path: Path) -> None:
    def interrupt(step: Step, ctx: object) -> dict[str, object]:
        raise KeyboardInterrupt

    journal = Journal.start(tmp_path, command="x", env="production")
    from rollback.errors import Interrupted

    with pytest.raises(Interrupted):
        execute(PLAN, dict.fromkeys(("db.backup", "db.restore", "db.swap"), step_handler(interrupt)), journal=journal)
    run = read_run(journal.path)
    assert run.status == "interrupted"
    assert run.finished is not None and run.finished["exit_code"] == 130


def test_secrets_are_redacted_before_writing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VERCEL_TOKEN", "vercel-token-abcdef")
    journal = Journal.start(tmp_path, command="rollback app rollback", env="production")
    journal.note("calling with vercel-token-abcdef", headers={"Authorization": "Bearer vercel-token-abcdef"},
                 url="postgres://u:hunter22@h/db")
    journal.close()
    text = journal.path.read_text()
    assert "vercel-token-abcdef" not in text
    assert "hunter22" not in text


def test_a_torn_last_line_is_skipped_and_the_run_is_unfinished(tmp_path: Path) -> None:
    journal = Journal.start(tmp_path, command="x", env="production")
    journal.plan(PLAN)
    journal.step_started(PLAN.steps[0])
    journal.step_finished(PLAN.steps[0], {"bytes": 10})
    journal.close()
    with journal.path.open("a") as handle:
        handle.write('{"ts": "2026-11-28T10:00:00Z", "event": "step_sta')
    run = read_run(journal.path)
    assert run.torn_lines == 1
    assert run.status == "unfinished"
    assert run.last_completed_step is not None and run.last_completed_step["id"] == "backup"
    assert json.loads(json.dumps(run.to_dict()))["last_completed_step"] == "backup"


def test_list_and_find_runs(tmp_path: Path) -> None:
    first = Journal.start(tmp_path, command="one", env="production")
    first.finish("succeeded", 0)
    second = Journal.start(tmp_path, command="two", env="staging")
    second.finish("failed", 1)
    runs = list_runs(tmp_path)
    assert {r.run_id for r in runs} == {first.run_id, second.run_id}
    assert find_run(tmp_path, first.run_id).started["command"] == "one"
    assert find_run(tmp_path, "last").run_id == second.run_id  # ids order by start time, to the microsecond
    assert [r.run_id for r in runs] == [second.run_id, first.run_id]
    with pytest.raises(BadInput, match="no run"):
        find_run(tmp_path, "nope")
    with pytest.raises(BadInput, match="no runs journaled"):
        find_run(tmp_path / "empty", "last")


def test_one_state_changing_run_per_environment(tmp_path: Path) -> None:
    from rollback.errors import LockHeld

    first = Journal.start(tmp_path, command="rollback app rollback", env="production", lock=True)
    with pytest.raises(LockHeld, match="another rollback run is in progress on env 'production'") as info:
        Journal.start(tmp_path, command="rollback db restore", env="production", lock=True)
    assert first.run_id in info.value.message
    assert info.value.exit_code == 4
    other_env = Journal.start(tmp_path, command="x", env="staging", lock=True)  # other envs are free
    other_env.finish("succeeded", 0)
    first.finish("succeeded", 0)  # finishing releases the lock
    Journal.start(tmp_path, command="rollback db restore", env="production", lock=True).close()
