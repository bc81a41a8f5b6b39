"""A library ``resume`` takes the team lease (issue 23, item 1: one journal opener).

``rollback.runner.resume(config, run, handlers)`` opens its journal through :func:`rollback.runner.open_journal`,
the opener every CLI command uses, so with ``[lock] url = "s3://..."`` the resumed run holds the team lease
while it acts: the lease object names it, and another holder (another laptop) is refused. Before, the
library resume opened its journal with ``Journal.start`` and the local lock only, and acted without the lease.

Against the moto server (S3 conditional writes: ``If-None-Match: *`` answers 412 when the object exists, as
S3 documents for PutObject), with handlers that record what they see while the resumed step acts.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from rollback.errors import LockHeld
from rollback.journal import Journal, read_run
from rollback.plan import Plan, Step
from rollback.runner import Check, StepContext, handler, resume

PLAN = Plan.of("roll back", "production", [
    Step("backup", "test.backup", "take a backup"),
    Step("restore", "test.restore", "restore it", destructive=True),
])


@pytest.fixture
def team_config(aws_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    import boto3

    from rollback.config import load_config

    bucket = f"team-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=bucket)
    monkeypatch.setenv("ROLLBACK_LOCK_DIR", str(tmp_path / "locks"))
    path = tmp_path / "rollback.toml"
    path.write_text(f'[lock]\nurl = "s3://{bucket}/team"\n[env.production.vercel]\nproject = "p"\n',
                    encoding="utf-8")
    return load_config(path, "production", environ={"ROLLBACK_JOURNAL_DIR": str(tmp_path / "runs")})


def _interrupted_run(journal_dir: Path) -> str:
    """A run that finished its backup and was killed before the restore (no team lease: a test journal)."""
    journal = Journal.start(journal_dir, command="rollback run", env="production")
    journal.plan(PLAN)
    journal.step_started(PLAN.steps[0])
    journal.step_finished(PLAN.steps[0], {"backup": "b-1"})
    journal.close()
    return journal.run_id


def _lease(config: Any) -> dict[str, Any] | None:
    import boto3
    from botocore.exceptions import ClientError

    bucket = str(config.lock_settings.url).removeprefix("s3://").split("/")[0]
    try:
        body = boto3.client("s3", region_name="us-east-1").get_object(Bucket=bucket, Key="team/locks/production.json")
    except ClientError:
        return None
    found: dict[str, Any] = json.loads(body["Body"].read())
    return found


def test_a_library_resume_holds_the_team_lease_while_it_acts(team_config: Any) -> None:
    from rollback.lock import TeamLock

    old_run = _interrupted_run(team_config.journal_dir)
    seen: dict[str, Any] = {}

    def act(step: Step, ctx: StepContext) -> Mapping[str, Any]:
        seen["lease"] = _lease(team_config)  # the lease object in S3, while the resumed step acts
        other = TeamLock(str(team_config.lock_settings.url)).lease("production", {"run": "other", "who": "bob"})
        try:
            other.take()
        except LockHeld as exc:
            seen["refused"] = exc
        else:
            other.release()
        seen["run"] = ctx.run_id
        return {"restored": True}

    def check(step: Step, ctx: StepContext) -> Check:
        return Check(step.id == "backup", {"backup": "b-1"} if step.id == "backup" else {}, f"do {step.id}")

    outcome = resume(team_config, old_run, {action: handler(act, check) for action in PLAN.actions})
    assert [s.already_done for s in outcome.steps] == [True, False]
    assert seen["lease"] is not None and seen["lease"]["run"] == outcome.run_id == seen["run"]
    assert isinstance(seen.get("refused"), LockHeld) and seen["refused"].exit_code == 4
    assert outcome.run_id in seen["refused"].message  # the refusal names the resuming run
    assert _lease(team_config) is None  # released with the journal at the finish
    record = read_run(team_config.journal_dir / f"{outcome.run_id}.jsonl")
    assert record.status == "succeeded" and record.started["resumes"] == old_run


def test_a_library_resume_is_refused_while_another_holds_the_team_lease(team_config: Any) -> None:
    from rollback.lock import TeamLock

    old_run = _interrupted_run(team_config.journal_dir)
    acted: list[str] = []
    holder = TeamLock(str(team_config.lock_settings.url)).lease(
        "production", {"run": "run-of-bob", "who": "bob", "host": "laptop-b", "pid": 1, "command": "rollback run"})
    holder.take()
    try:
        with pytest.raises(LockHeld, match="run-of-bob") as held:
            resume(team_config, old_run, {action: handler(lambda step, ctx: acted.append(step.id) or {})
                                          for action in PLAN.actions})
    finally:
        holder.release()
    assert held.value.exit_code == 4 and acted == []  # nothing acted without the lease
