"""Which later runs make a stopped run unsafe to resume (rollback.commands.run.resume_guard.interventions).

Journals built in memory, in the shape ``rollback.journal`` writes them; table-driven. The real-server
half (the team's copies in S3, the CLI's exit 4) is tests/incident/test_resume_overtaken.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rollback.commands.run.resume_guard import SeenRun, interventions
from rollback.journal import RunRecord

A = "20261207T060000.000000Z-aaaaaa"
B = "20261207T060100.000000Z-bbbbbb"
EARLIER = "20261207T055900.000000Z-eeeeee"

PLAN = [{"id": "db.backup", "action": "db.backup", "layer": "db"},
        {"id": "app.check", "action": "health.check", "layer": "verify"},
        {"id": "db.swap", "action": "db.swap", "layer": "db"},
        {"id": "checklist", "action": "verify.checklist", "layer": "verify"}]
READS = [{"id": "app.check", "action": "health.check", "layer": "verify"}]


def record(run_id: str, *events: dict[str, Any], env: str = "production", **started: Any) -> RunRecord:
    entries = [{"ts": "2026-12-07T06:01:00.000Z", "run": run_id, "event": "run_started", "who": "bob",
                "host": "laptop-b", "pid": 7, "command": "rollback run --layers db --yes", "env": env, **started}]
    entries += [{"ts": f"2026-12-07T06:01:{n + 1:02d}.000Z", "run": run_id, **e} for n, e in enumerate(events)]
    return RunRecord(run_id, Path(f"{run_id}.jsonl"), entries)


def planned(steps: list[dict[str, Any]] = PLAN) -> dict[str, Any]:
    return {"event": "step_planned", "steps": steps}


def started(step: str) -> dict[str, Any]:
    return {"event": "step_started", "step": step}


def finished(step: str, **fields: Any) -> dict[str, Any]:
    return {"event": "step_finished", "step": step, "result": {}, **fields}


def failed(step: str) -> dict[str, Any]:
    return {"event": "step_failed", "step": step, "error": "boom"}


END = {"event": "run_finished", "status": "succeeded", "exit_code": 0}
STOPPED = record(A, planned(), started("db.backup"), finished("db.backup"),
                 {"event": "run_finished", "status": "refused", "exit_code": 4})

CASES: list[tuple[str, RunRecord, bool, tuple[str, ...] | None, bool | None]] = [
    # (case, the other run, is its copy the journal itself, steps named, certain)
    ("a destructive step finished", record(B, planned(), started("db.swap"), finished("db.swap"), END),
     True, ("db.swap",), True),
    ("its copy in S3, finished", record(B, planned(), started("db.backup"), finished("db.backup"), END),
     False, ("db.backup",), True),
    ("only read", record(B, planned(), started("app.check"), finished("app.check"), started("checklist"),
                         finished("checklist"), END), True, None, None),
    ("found already done", record(B, planned(), started("db.swap"), finished("db.swap", already_done=True), END),
     True, None, None),
    ("a dry run's step", record(B, planned(), started("db.swap"), finished("db.swap", dry_run=True), END),
     True, None, None),
    ("killed inside a destructive step", record(B, planned(), started("db.swap")), True, ("db.swap",), False),
    ("failed inside a destructive step", record(B, planned(), started("db.swap"), failed("db.swap"),
                                                {**END, "status": "failed"}), True, ("db.swap",), False),
    ("killed inside a read", record(B, planned(), started("app.check")), True, None, None),
    ("a local journal that stops before its plan", record(B), True, None, None),
    ("a copy that stops before its plan", record(B), False, (), False),
    ("a copy that stops with destructive steps left", record(B, planned(), started("app.check"),
                                                             finished("app.check")), False, ("db.backup", "db.swap"),
     False),
    ("a copy of a run whose plan only reads", record(B, planned(READS)), False, None, None),
    ("a finished copy without steps (the lease only held)", record(B, END), False, None, None),
    ("another environment", record(B, planned(), started("db.swap"), finished("db.swap"), END, env="staging"),
     True, None, None),
    ("started before the stopped run", record(EARLIER, planned(), started("db.swap"), finished("db.swap"), END),
     True, None, None),
    ("a dry run", record(B, planned(), started("db.swap"), finished("db.swap"), END, dry_run=True), True, None, None),
    ("the stopped run's own resume", record(B, planned(), started("db.swap"), finished("db.swap"), END, resumes=A),
     True, None, None),
    ("the safety dump the stopped run started in the background",
     record(B, planned([{"id": "emergency-backup", "action": "db.backup_replaced", "layer": "db"}]),
            started("emergency-backup"), finished("emergency-backup"), END, continues=A, background=True),
     True, None, None),
]


@pytest.mark.parametrize(("case", "other", "complete", "steps", "certain"), CASES, ids=[c[0] for c in CASES])
def test_which_later_runs_acted(case: str, other: RunRecord, complete: bool, steps: tuple[str, ...] | None,
                                certain: bool | None) -> None:
    found = interventions(STOPPED, [SeenRun(other, "where", complete)])
    if steps is None:
        assert found == [], case
        return
    assert len(found) == 1, case
    assert found[0].run == other.run_id and found[0].steps == steps and found[0].certain is certain, case
    assert "bob@laptop-b" in found[0].holder and found[0].where == "where"


def test_a_resume_of_the_stopped_run_is_followed_through_its_own_resumes() -> None:
    """Runs that continue the stopped run (and their resumes) are its own: load_resume_point names them."""
    resume = record(B, planned(), started("db.swap"), finished("db.swap"), {**END, "status": "failed"}, resumes=A)
    again = record("20261207T060200.000000Z-cccccc", planned(), started("db.swap"), finished("db.swap"), END,
                   resumes=B)
    stranger = record("20261207T060300.000000Z-dddddd", planned(), started("db.swap"), finished("db.swap"), END)
    found = interventions(STOPPED, [SeenRun(r, "here", True) for r in (stranger, again, resume)])
    assert [f.run for f in found] == [stranger.run_id]
    assert found[0].layers == ("db",) and found[0].at == "2026-12-07T06:01:03.000Z"  # its swap finished
