"""``resume`` of a run that lost the team lease is refused once another run acted meanwhile.

A run that lost its lease stops with exit 4 and says ``rollback resume`` continues it once the lease is
free. But when the run that took the lease over *acted* (here: moved the app to another deployment), the
resume would re-check the first run's finished steps and carry on with its remaining ones against a
world another run changed: it would move the app back again. So ``resume`` refuses (exit 4) naming that
run, when and on which layers it acted, and what to do instead; it still resumes when the other run only
read, or when nobody took the lease.

Real servers: the moto server (S3 conditional writes for the lease, the journals' copies under
``<prefix>/runs/``) and the Vercel emulator. alice and bob are two laptops: two config files, two journal
directories, one team lease. alice's run A is the library's real path (``Journal.start`` with the team
lease, then ``runner.execute`` of a real instant-rollback plan); its lease counts as lost before its first
act because the lease's monotonic clock is advanced past ``ttl`` (as a laptop cut off from S3 for that
long: the rule of issue 18 item 1), and its lease object, written with a 1 s ttl, then expires on S3's clock
for the next run to take over. Every wait polls a condition with a deadline.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rollback.errors import LockHeld
from tests.conftest import CliResult
from tests.incident.conftest import World
from tests.incident.test_lease_fails_closed import (  # noqa: F401  (fixtures)
    backup,
    cli,
    laptop,
    proxy,
    replaced,
    restore_stopped_before_swap,
    until,
)
from tests.incident.test_lease_fails_closed import journal as journal_of
from tests.incident.test_lock import _team_world, bucket, procs  # noqa: F401  (fixtures)

RunCli = Callable[..., CliResult]


class Clock:
    """The lease's monotonic clock (seconds), moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Laptop:
    """One engineer's config (its own path, journal directory and local locks) sharing the team lease."""

    def __init__(self, world: World, tmp_path: Path, bucket: str, name: str,  # noqa: F811
                 monkeypatch: pytest.MonkeyPatch, run_cli: RunCli) -> None:
        environ = _team_world(world, tmp_path, bucket, name, ttl=5)
        self.config_path = Path(environ["ROLLBACK_CONFIG"])
        self.lock_dir = environ["ROLLBACK_LOCK_DIR"]
        self.journal_dir = self.config_path.parent / "runs"
        self.monkeypatch = monkeypatch
        self.run_cli = run_cli

    def use(self) -> Any:
        from rollback.config import load_config

        self.monkeypatch.setenv("ROLLBACK_CONFIG", str(self.config_path))
        self.monkeypatch.setenv("ROLLBACK_LOCK_DIR", self.lock_dir)
        return load_config(self.config_path, None)

    def cli(self, *args: str) -> CliResult:
        self.use()
        return self.run_cli(*args)

    def cli_once_the_lease_is_free(self, *args: str) -> CliResult:
        """The command, again while the last holder's lease has not expired on S3's clock."""

        def attempt() -> CliResult | None:
            result = self.cli(*args)
            return None if result.code == 4 and "holds the team lock" in result.err else result

        return until("the lease was free", attempt, timeout=30, every=0.2)  # type: ignore[no-any-return]

    def runs(self) -> list[str]:
        return sorted(p.name.removesuffix(".jsonl") for p in self.journal_dir.glob("*.jsonl"))

    def journal(self, run_id: str) -> list[dict[str, Any]]:
        path = self.journal_dir / f"{run_id}.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def laptops(world: World, tmp_path: Path, bucket: str, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
            run_cli: RunCli) -> tuple[Laptop, Laptop]:
    return (Laptop(world, tmp_path, bucket, "alice", monkeypatch, run_cli),
            Laptop(world, tmp_path, bucket, "bob", monkeypatch, run_cli))


def production(world: World) -> str:
    from rollback.sandbox.vercel_state import DEMO

    return str(world.emulator.state.project(DEMO.project_name).production_id)


def run_that_loses_its_lease(alice: Laptop) -> str:
    """alice's instant rollback (to the previous deployment) loses its lease before its first act."""
    from rollback.commands.app.plan import plan_rollback
    from rollback.commands.registry import handlers_for
    from rollback.context import Services
    from rollback.journal import Journal
    from rollback.lock import TeamLock
    from rollback.runner import execute

    config = alice.use()
    clock = Clock()
    team = TeamLock(str(config.lock_settings.url), ttl=1, monotonic=clock)
    journal = Journal.start(config.journal_dir, command="rollback app rollback --yes", env=config.env_name,
                            lock=True, lock_identity=config.identity, team_lock=team)
    planned = plan_rollback(config, Services(config).vercel(), verify=False)
    clock.now += 60  # not renewed for longer than the ttl: lost
    with pytest.raises(LockHeld, match="was not renewed"):
        execute(planned.plan, handlers_for(config, planned.plan.actions, Services(config)), journal=journal)
    journal.close()
    finished = alice.journal(journal.run_id)[-1]
    assert finished["event"] == "run_finished" and finished["status"] == "refused", finished
    return journal.run_id


def test_resume_is_refused_naming_the_run_that_took_the_lease_over_and_acted(
        world: World, laptops: tuple[Laptop, Laptop]) -> None:
    from rollback.sandbox.vercel_state import DEMO

    alice, bob = laptops
    first = run_that_loses_its_lease(alice)
    assert production(world) == DEMO.current  # A did nothing

    # bob takes the expired lease over and moves production elsewhere
    taken = bob.cli_once_the_lease_is_free("app", "rollback", "--to", DEMO.older, "--yes", "--no-verify")
    assert taken.code == 0, taken.err
    assert f"took over the expired team lease of run {first}" in taken.err
    bob_run = bob.runs()[-1]
    assert production(world) == DEMO.older

    # alice's resume would move the app back to A's target: refused, naming bob's run, its layer and when
    refused = alice.cli("resume", first, "--yes")
    assert refused.code == 4, refused.err
    lines = [line for line in refused.err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, refused.err
    error = lines[0]
    assert f"run {first} cannot be resumed" in error and f"run {bob_run} by" in error, error
    assert "another run acted on env 'production'" in error and "layer(s) app" in error, error
    assert "state-changing step(s) (vercel-rollback)" in error, error
    assert "rollback decide --live" in error and "'rollback run'" in error, error
    # bob's journal is on bob's laptop: alice read its copy in the team's prefix
    assert f"/team/runs/{bob_run}.jsonl" in error, error
    assert "Traceback" not in refused.err
    assert production(world) == DEMO.older  # the app stays where bob put it
    assert [r["type"] for r in world.emulator.state.alias_history] == ["rollback"]  # bob's only
    assert alice.runs() == [first]  # refused before anything: no new run
    # a dry run says the same, and --json carries the other run
    dry = alice.cli("resume", first, "--dry-run", "--json")
    assert dry.code == 4
    document = json.loads(dry.out)
    assert document["ok"] is False and document["error"]["error"] == "UnsafePrecondition"
    assert bob_run in document["error"]["message"]
    # a run that succeeded has nothing to resume, whoever acted after it (exit 2, as before)
    assert bob.cli("app", "promote", DEMO.current, "--yes", "--no-verify").code == 0
    succeeded = bob.cli("resume", bob_run, "--yes")
    assert succeeded.code == 2, succeeded.err
    assert f"run {bob_run} succeeded: there is nothing to resume" in succeeded.err, succeeded.err


@pytest.mark.parametrize("other", ["nobody", "a run that only read"])
def test_resume_continues_when_no_other_run_acted(world: World, laptops: tuple[Laptop, Laptop],
                                                  other: str) -> None:
    from rollback.commands.app.health import health_step
    from rollback.commands.registry import handlers_for
    from rollback.journal import Journal
    from rollback.lock import TeamLock
    from rollback.plan import Plan
    from rollback.runner import execute
    from rollback.sandbox.vercel_state import DEMO

    alice, bob = laptops
    first = run_that_loses_its_lease(alice)
    if other != "nobody":
        config = bob.use()

        def take() -> Journal | None:
            try:
                return Journal.start(config.journal_dir, command="rollback health", env=config.env_name, lock=True,
                                     lock_identity=config.identity,
                                     team_lock=TeamLock(str(config.lock_settings.url), ttl=5))
            except LockHeld:
                return None

        journal: Journal = until("bob took the lease over", take, timeout=30, every=0.2)
        step = health_step(config)
        assert step is not None
        from rollback.context import Services

        outcome = execute(Plan.of("health", config.env_name, [step]),
                          handlers_for(config, [step.action], Services(config)), journal=journal)
        journal.close()  # releases the lease: its journal is copied to the team's prefix
        assert outcome.steps[0].result  # it read the app's health

    resumed = alice.cli_once_the_lease_is_free("resume", first, "--yes", "--json")
    assert resumed.code == 0, resumed.err
    assert json.loads(resumed.out)["resumes"] == first
    assert production(world) == DEMO.previous  # A's rollback, done once
    assert [r["type"] for r in world.emulator.state.alias_history] == ["rollback"]


def test_a_run_that_acts_while_the_resume_starts_is_caught_once_the_resume_holds_the_lease(
        world: World, laptops: tuple[Laptop, Laptop], monkeypatch: pytest.MonkeyPatch) -> None:
    """The first look (before any question) can come before the other run acts: the resume looks again once
    it holds the lock and the lease, when no other run can act any more, and stops there."""
    from rollback.commands.app.plan import plan_rollback
    from rollback.commands.registry import handlers_for
    from rollback.commands.run import resume_guard
    from rollback.context import Services
    from rollback.journal import Journal
    from rollback.lock import TeamLock
    from rollback.runner import execute
    from rollback.sandbox.vercel_state import DEMO

    alice, bob = laptops
    first = run_that_loses_its_lease(alice)
    bob_config = bob.use()
    real = resume_guard.runs_after
    looks: list[int] = []

    def bob_acts_right_after_the_first_look(config: Any, record: Any) -> Any:
        seen = real(config, record)
        looks.append(len(seen))
        if len(looks) == 1:  # bob's rollback runs between alice's first look and her taking the lease

            def take() -> Journal | None:
                try:
                    return Journal.start(bob_config.journal_dir, command="rollback app rollback", env="production",
                                         lock=True, lock_identity=bob_config.identity,
                                         team_lock=TeamLock(str(bob_config.lock_settings.url), ttl=5))
                except LockHeld:
                    return None

            journal: Journal = until("bob took the lease over", take, timeout=30, every=0.2)
            planned = plan_rollback(bob_config, Services(bob_config).vercel(), to=DEMO.older, verify=False)
            execute(planned.plan, handlers_for(bob_config, planned.plan.actions, Services(bob_config)), journal=journal)
            journal.close()
        return seen

    monkeypatch.setattr(resume_guard, "runs_after", bob_acts_right_after_the_first_look)
    refused = alice.cli("resume", first, "--yes")
    assert refused.code == 4, refused.err
    assert looks == [0, 2]  # nothing at the first look; then bob's run (and this resume's own, not counted)
    bob_run = bob.runs()[-1]
    assert f"run {first} cannot be resumed: another run acted" in refused.err and bob_run in refused.err
    assert production(world) == DEMO.older  # where bob put it
    assert [r["type"] for r in world.emulator.state.alias_history] == ["rollback"]
    # the resume's own run says why it stopped, before any step
    resume_run = next(r for r in alice.runs() if r != first)
    entries = alice.journal(resume_run)
    assert entries[0]["resumes"] == first
    assert [e["event"] for e in entries] == ["run_started", "note", "run_finished"]
    assert entries[1]["overtaken_by"]["run"] == bob_run
    assert entries[2]["status"] == "refused" and entries[2]["exit_code"] == 4
    # asked again, the answer is the same (not "already resumed by" the refused resume)
    monkeypatch.setattr(resume_guard, "runs_after", real)
    again = alice.cli("resume", first, "--yes")
    assert again.code == 4 and bob_run in again.err, again.err


@pytest.mark.slow
def test_real_processes_a_run_cut_off_before_its_swap_is_not_resumed_once_another_run_swapped(
        world: World, bucket: str, procs: list[Any], proxy: Any, tmp_path: Path) -> None:  # noqa: F811
    """The hostile review's case with real processes: alice's restore stops (SIGSTOP) right before its swap
    while her path to S3 is cut (tests/incident/cut_proxy.py); bob takes the expired lease over and restores
    and swaps; alice's run then stops (exit 4, lease lost). Resumed, it would swap a second time and leave
    the writes made since bob's swap only in a set-aside copy: it is refused, naming bob's run."""
    alice = laptop(world, tmp_path, bucket, "alice", AWS_ENDPOINT_URL=proxy.url)
    bob = laptop(world, tmp_path, bucket, "bob")
    name, bob_name = backup(alice), backup(bob)
    restore = restore_stopped_before_swap(alice, name, procs, "alice")
    proxy.cut()
    first = journal_of(alice)[0]["run"]

    def bob_swaps() -> Any:
        result = cli(bob, "db", "restore", bob_name, "--swap", "--yes", "--skip-emergency-backup", "--reason", "bob")
        return None if result.returncode == 4 and "holds the team lock" in result.stderr else result

    swapped = until("bob took the expired lease over", bob_swaps, timeout=60, every=0.5)
    assert swapped.returncode == 0, swapped.stderr
    bob_run = journal_of(bob)[0]["run"]  # the newest
    assert len(replaced(world)) == 1
    world.sql("""INSERT INTO "User"(email) VALUES ('written-after-bobs-swap@example.com')""")

    proxy.mend()
    os.kill(restore.pid, signal.SIGCONT)
    _, err = restore.communicate(timeout=120)
    assert restore.returncode == 4, err  # alice's lease was lost: she did not swap

    resumed = cli(alice, "resume", "--yes")
    assert resumed.returncode == 4, resumed.stderr
    error = next(line for line in resumed.stderr.splitlines() if line.startswith("error: "))
    assert f"run {first} cannot be resumed: another run acted" in error and f"run {bob_run} by" in error, error
    assert "layer(s) db" in error and "swap" in error, error
    assert "Traceback" not in resumed.stderr
    assert len(replaced(world)) == 1  # one swap: bob's
    assert world.sql("""SELECT count(*) FROM "User" WHERE email = 'written-after-bobs-swap@example.com'""") == [(1,)]
