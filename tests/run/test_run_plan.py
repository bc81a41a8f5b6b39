"""The cross-layer run, in memory: how the plan is assembled and ordered, which step restores service,
the hazards stated, saved plans read back, the incident's timeline and the notifications kept by
:class:`~rollback.commands.run.tracker.RunTracker`, and decide's command that ``rollback run`` runs as written."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from rollback.adapters.cloudwatch import clean_start
from rollback.adapters.s3_versions import ObjectVersion
from rollback.commands.run import plan as run_module  # the planning seams (layer planners) live here
from rollback.commands.run.plan import _db_mode, newest_release_start, plan_run
from rollback.commands.run.tracker import RunTracker
from rollback.commands.run.types import RunRequest, load_plan_document, restoring_step, segments
from rollback.config import Config, load_config
from rollback.context import Services
from rollback.errors import BadInput, ChecksFailed
from rollback.journal import Journal
from rollback.model.decide import NO_CLI, Context, Signal, decide, run_command
from rollback.model.incident import IncidentLog, read_incident
from rollback.model.layers import MigrationRow
from rollback.plan import Plan, Step
from rollback.runner import Check, execute, handler

T0 = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.UTC)


def version(key: str, minutes: float, *, marker: bool = False) -> ObjectVersion:
    return ObjectVersion(key, f"v-{key}-{minutes}", False, marker, T0 + dt.timedelta(minutes=minutes))


# ------------------------------------------------------------------------------------------ step ids


def test_prefixed_steps_find_their_siblings() -> None:
    step = Step("edge.wait", "edge.wait", "wait")
    assert step.group == "edge" and step.sibling("associate") == "edge.associate"
    plain = Step("wait", "edge.wait", "wait")
    assert plain.group == "" and plain.sibling("associate") == "associate"


# ------------------------------------------------------------------------------------------ assets


@pytest.mark.parametrize(("minutes", "start"), [
    ([-120, -4, -4, -3.5], -4),          # a release 2 h ago, the bad one 4 min ago (writes 30 s apart)
    ([-120, -60, -52, -45], -60),        # writes less than 10 min apart: one release
    ([-4], -4),                          # one write
])
def test_newest_release_start(minutes: list[float], start: float) -> None:
    versions = [version(f"k{i}", m) for i, m in enumerate(minutes)]
    assert newest_release_start(versions) == T0 + dt.timedelta(minutes=start)


def test_newest_release_start_counts_delete_markers_and_nothing_is_none() -> None:
    assert newest_release_start([version("a", -120), version("b", -3, marker=True)]) == T0 + dt.timedelta(minutes=-3)
    assert newest_release_start([]) is None


# ------------------------------------------------------------------------------------------ db targets


@pytest.mark.parametrize(("targets", "options", "mode"), [
    ({}, {}, ("restore", "latest")),
    ({}, {"db": "migration-repair"}, ("repair", "")),
    ({}, {"db": "restore-backup"}, ("restore", "latest")),
    ({"db": "app-20261128T093000Z"}, {"db": "migration-repair"}, ("restore", "app-20261128T093000Z")),
    ({"db": "repair"}, {}, ("repair", "")),
    ({"db": "rds-snapshot:snap-1"}, {}, ("rds", "snapshot:snap-1")),
    ({"db": "rds-time:15m ago"}, {}, ("rds", "time:15m ago")),
    ({"db": "rds-latest"}, {}, ("rds", "latest")),
])
def test_db_mode(targets: dict[str, str], options: dict[str, str], mode: tuple[str, str]) -> None:
    assert _db_mode(RunRequest(layers=("db",), targets=targets, options=options)) == mode


@pytest.mark.parametrize("target", ["rds", "rds-snapshot:", "rds-latest:x", "rds-time"])
def test_db_mode_rejects_half_written_rds_targets(target: str) -> None:
    with pytest.raises(BadInput, match="rds-snapshot:ID, rds-time:TIME or rds-latest"):
        _db_mode(RunRequest(layers=("db",), targets={"db": target}))


# ------------------------------------------------------------------------------------------ assembly


@pytest.fixture
def config(tmp_path: Path) -> Config:
    path = tmp_path / "rollback.toml"
    path.write_text('default_env = "production"\n[env.production.vercel]\nproject = "demo"\n'
                    '[env.production.health]\nbase_url = "https://app.example.com"\npaths = ["/api/health"]\n'
                    '[env.production.aws]\ndistribution_id = "E1"\nassets_bucket = "assets"\n'
                    'assets_releases = { r42 = "dpl_good" }\n', encoding="utf-8")
    return load_config(path, environ={})


def _layer(name: str, *ids: str, **facts: Any) -> run_module._Layer:
    steps = [Step(f"{name}.{i}", f"t.{i}", f"{name} {i}", layer=name if name != "cache" else "edge",
                  destructive=i == "act") for i in ids]
    return run_module._Layer(name, steps, [f"{name} note"], {"seen": name}, dict(facts))


@pytest.fixture
def planners(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Canned layer planners (the real ones read Vercel, AWS, the database: see tests/sandbox/test_run.py)."""
    made: dict[str, Any] = {"migrations": []}
    monkeypatch.setattr(run_module, "_plan_app", lambda c, s, r: _layer(
        "app", "act", "wait", "health", option="vercel-instant-rollback", to="dpl_good", to_commit="abc123",
        to_created=(T0 - dt.timedelta(hours=2)).isoformat(), **{"from": "dpl_bad"}))
    monkeypatch.setattr(run_module, "_plan_edge", lambda c, s, r, pin: _layer("edge", "act", "wait"))
    monkeypatch.setattr(run_module, "_plan_assets", lambda c, s, r: _layer("assets", "act", release=made.get(
        "release", "r42")))
    monkeypatch.setattr(run_module, "_plan_db", lambda c, s, r: (
        run_module._Layer("db", [Step("db.emergency-backup", "db.backup", "emergency backup",
                                      params={"kind": "emergency"})]),
        _layer("db", "act", mode="restore", manifest="/backups/app.manifest.json")))
    monkeypatch.setattr(run_module, "_invalidation", lambda c, s, group: [
        Step(f"{group}.invalidate", "cloudfront.invalidate", "invalidate /*"),
        Step(f"{group}.wait-invalidation", "cloudfront.wait_invalidation", "wait")])
    monkeypatch.setattr(run_module, "_migration_rows", lambda c, s: made["migrations"])
    return made


def test_plan_order_world_first_backup_app_edge_assets_restore_last_checklist(config: Config,
                                                                              planners: dict[str, Any]) -> None:
    planned = plan_run(config, RunRequest(layers=("db", "assets", "app", "edge")), Services(config))
    ids = [s.id for s in planned.plan.steps]
    assert ids == ["run.world", "db.emergency-backup", "app.act", "app.wait", "app.health", "edge.act", "edge.wait",
                   "assets.act", "assets.invalidate", "assets.wait-invalidation", "db.act", "verify.checklist"]
    world = planned.plan.steps[0].params["world"]
    assert set(world) == {"app", "edge", "assets", "db"}
    checklist = planned.plan.steps[-1]
    assert checklist.params["baseline"] == "/backups/app.manifest.json"
    assert checklist.params["expect_version"] == "abc123"
    assert restoring_step(planned.plan) == ("app", "app.health")
    assert planned.facts.hazards == [] and planned.facts.blocking == []


def test_without_the_app_the_first_layer_restores_and_gets_a_health_check(config: Config,
                                                                          planners: dict[str, Any]) -> None:
    planned = plan_run(config, RunRequest(layers=("edge", "db"), verify=False), Services(config))
    ids = [s.id for s in planned.plan.steps]
    assert ids == ["run.world", "db.emergency-backup", "edge.act", "edge.wait", "edge.invalidate",
                   "edge.wait-invalidation", "edge.health", "db.act"]
    health = planned.plan.step("edge.health")
    assert health.action == "health.check" and health.params["base_url"] == "https://app.example.com"
    assert restoring_step(planned.plan) == ("edge", "edge.health")
    assert [group for group, _ in segments(planned.plan)] == ["run", "db", "edge", "db"]


def test_schema_skew_is_named_and_blocks_unless_accepted_or_db_restores(config: Config,
                                                                        planners: dict[str, Any]) -> None:
    planners["migrations"] = [MigrationRow("20261130_add_score", T0 - dt.timedelta(minutes=30), "applied"),
                              MigrationRow("20261101_init", T0 - dt.timedelta(days=30), "applied"),
                              MigrationRow("20261130_failed", None, "failed")]
    planned = plan_run(config, RunRequest(layers=("app",)), Services(config))
    assert [h.kind for h in planned.facts.blocking] == ["schema-skew"]
    assert planned.facts.blocking[0].details["migrations"] == ["20261130_add_score"]
    assert any("20261130_add_score" in n and "--accept-schema-skew" in n for n in planned.plan.notes)
    assert plan_run(config, RunRequest(layers=("app",), accept_schema_skew=True), Services(config)).facts.blocking == []
    with_db = plan_run(config, RunRequest(layers=("app", "db")), Services(config))
    assert with_db.facts.blocking == [] and with_db.facts.hazards[0].kind == "schema-skew"


def test_assets_release_of_another_deployment_blocks(config: Config, planners: dict[str, Any]) -> None:
    assert plan_run(config, RunRequest(layers=("app", "assets")),
                    Services(config)).facts.hazards == []  # r42 belongs to dpl_good
    planners["release"] = "r41"
    planned = plan_run(config, RunRequest(layers=("app", "assets")), Services(config))
    assert [h.kind for h in planned.facts.blocking] == ["assets-mismatch"]
    accepted = plan_run(config, RunRequest(layers=("app", "assets"), accept_mismatch=True), Services(config))
    assert accepted.facts.blocking == [] and "--accept-mismatch" in accepted.facts.hazards[0].message


def test_switch_database_needs_an_rds_restore(config: Config, planners: dict[str, Any]) -> None:
    with pytest.raises(BadInput, match="--switch-database needs an RDS restore"):
        plan_run(config, RunRequest(layers=("app", "db"), switch_database=True), Services(config))


def test_no_layer_is_bad_input(config: Config) -> None:
    with pytest.raises(BadInput):
        plan_run(config, RunRequest(layers=()), Services(config))


def test_restoring_step_without_health_is_the_layers_last_step() -> None:
    plan = Plan.of("p", "e", [Step("run.world", "run.check_world", "w"),
                              Step("db.emergency-backup", "db.backup", "b"),
                              Step("edge.act", "edge.associate", "a"), Step("edge.wait", "edge.wait", "w"),
                              Step("db.swap", "db.swap", "s")])
    assert restoring_step(plan) == ("edge", "edge.wait")
    only_db = Plan.of("p", "e", [Step("db.emergency-backup", "db.backup", "b"), Step("db.swap", "db.swap", "s")])
    assert restoring_step(only_db) == ("db", "db.swap")


# ------------------------------------------------------------------------------------------ saved plans


def test_a_saved_plan_reads_back_and_one_without_the_world_check_is_refused(tmp_path: Path) -> None:
    plan = Plan.of("p", "production", [Step("run.world", "run.check_world", "w", layer="core",
                                            params={"world": {}}), Step("app.act", "vercel.rollback", "r")])
    saved = tmp_path / "plan.json"
    saved.write_text(json.dumps({"plan": plan.to_dict(), "request": {"severity": "P1"}}))
    loaded, request = load_plan_document(saved)
    assert loaded == plan and request == {"severity": "P1"}
    saved.write_text(json.dumps(plan.to_dict()))  # the plan alone is fine too
    assert load_plan_document(saved)[0] == plan
    bare = Plan.of("p", "production", [Step("vercel-rollback", "vercel.rollback", "r")])
    saved.write_text(json.dumps({"plan": bare.to_dict()}))
    with pytest.raises(BadInput, match=r"no run\.check_world step"):
        load_plan_document(saved)
    saved.write_text('{"plan": NaN}')
    with pytest.raises(BadInput, match="not a JSON document"):
        load_plan_document(saved)


# ------------------------------------------------------------------------------------------ the tracker


class FakeNotifier:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.closed_at: int | None = None
        from rollback.notify import DeliveryReport

        self.report = DeliveryReport(enabled=True)

    def attach(self, journal: Any) -> None:
        self.calls.append(("attach",))

    def start(self, severity: str | None, plan: Any) -> None:
        self.calls.append(("start", severity))

    def step_started(self, step: Any) -> None:
        self.calls.append(("step", step.id))

    def step_finished(self, step: Any = None) -> None:
        pass

    def layer_done(self, layer: str, result: Mapping[str, Any]) -> None:
        self.calls.append(("layer", layer, result["status"]))

    def post(self, text: str) -> None:
        self.calls.append(("post", text))

    def end(self, restored: bool, verified: bool | None, metrics: Any = None, targets: Any = None) -> None:
        self.calls.append(("end", restored, verified))

    def close(self, timeout: float = 5.0) -> Any:
        self.calls.append(("close",))
        return self.report


def _tracked_plan() -> Plan:
    return Plan.of("run", "production", [
        Step("run.world", "run.check_world", "world", layer="core"),
        Step("db.emergency-backup", "db.backup", "backup", params={"kind": "emergency"}),
        Step("app.act", "vercel.rollback", "rollback", destructive=True),
        Step("app.health", "health.check", "health", layer="verify"),
        Step("edge.act", "edge.associate", "edge"),
        Step("verify.checklist", "verify.checklist", "checklist", layer="verify"),
    ])


def _handlers(fail: str | None = None) -> dict[str, Any]:
    def act(step: Step, ctx: Any) -> dict[str, Any]:
        if step.id == fail:
            raise ChecksFailed("checklist failed")
        if step.action == "health.check":
            return {"checks": [{"name": "/api/health", "ok": True}]}
        if step.action == "verify.checklist":
            return {"ok": True}
        if step.action == "db.backup":
            return {"name": "app-emergency"}
        return {}

    chosen = handler(act, lambda step, ctx: Check(False, {}, step.summary))
    return {a: chosen for a in ("run.check_world", "db.backup", "vercel.rollback", "health.check", "edge.associate",
                                "verify.checklist")}


def test_tracker_writes_the_timeline_once_and_posts_each_layer(tmp_path: Path, config: Config) -> None:
    log = IncidentLog.create(tmp_path / "incidents", "production", detected_at="2026-11-30T09:00:00Z")
    notifier = FakeNotifier()
    plan = _tracked_plan()
    tracker = RunTracker(plan, config=config, incident=log, notifier=notifier, severity="P1")  # type: ignore[arg-type]
    journal = Journal.start(tmp_path / "runs", command="rollback run", env="production")
    tracker.started(journal)
    execute(plan, _handlers(), journal=journal, progress=tracker, finish_run=False)
    tracker.finish("succeeded", 0)
    journal.finish("succeeded", 0)
    tracker.closed("succeeded", 0)

    events = read_incident(log.path).events
    assert [e["event"] for e in events] == ["opened", "run_started", "initiated", "restored", "run_finished"]
    assert events[2]["step"] == "db.emergency-backup"  # the world check only reads
    assert events[3]["layer"] == "app" and events[3]["health"] == [{"name": "/api/health", "ok": True}]
    layers = [c for c in notifier.calls if c[0] == "layer"]
    assert layers == [("layer", "db", "emergency backup taken"), ("layer", "app", "restored"),
                      ("layer", "edge", "done"), ("layer", "verification", "passed")]
    ends = [c[0] for c in notifier.calls if c[0] in ("start", "end", "close")]
    assert ends == ["start", "end", "close"]
    assert ("end", True, True) in notifier.calls

    # a second run on the same incident (a resume) does not write initiated or restored again
    again = RunTracker(plan, config=config, incident=log, notifier=FakeNotifier(), severity="P1",  # type: ignore[arg-type]
                       resumes=journal.run_id)
    second = Journal.start(tmp_path / "runs", command="rollback resume", env="production")
    again.started(second)
    execute(plan, _handlers(), journal=second, progress=again, finish_run=False)
    second.finish("succeeded", 0)
    again.closed("succeeded", 0)
    kinds = [e["event"] for e in read_incident(log.path).events]
    assert kinds.count("initiated") == 1 and kinds.count("restored") == 1 and kinds.count("run_started") == 2


def test_tracker_on_failure_ends_before_the_journal_finishes(tmp_path: Path, config: Config) -> None:
    log = IncidentLog.create(tmp_path / "incidents", "production", detected_at="2026-11-30T09:00:00Z")
    notifier = FakeNotifier()
    plan = _tracked_plan()
    tracker = RunTracker(plan, config=config, incident=log, notifier=notifier, severity="P1")  # type: ignore[arg-type]
    journal = Journal.start(tmp_path / "runs", command="rollback run", env="production")
    tracker.started(journal)
    order: list[str] = []
    original = journal.finish

    def finish(status: str, code: int, **fields: Any) -> None:
        order.append("journal finished")
        original(status, code, **fields)

    journal.finish = finish  # type: ignore[method-assign]
    notifier.close = lambda timeout=5.0: order.append("notifier closed")  # type: ignore[method-assign,assignment,misc]
    with pytest.raises(ChecksFailed):
        execute(plan, _handlers(fail="verify.checklist"), journal=journal, progress=tracker, finish_run=False)
    tracker.closed("failed", 3)
    assert order == ["notifier closed", "journal finished"]
    posted = [c[1] for c in notifier.calls if c[0] == "post"]
    assert posted and "stopped at step verify.checklist" in posted[0] and f"rollback resume {journal.run_id}" in \
        posted[0]
    assert ("end", True, False) in notifier.calls
    assert read_incident(log.path).events[-1]["event"] == "run_finished"
    assert read_incident(log.path).events[-1]["exit_code"] == 3


# ------------------------------------------------------------------------------------------ decide -> run


def test_decides_command_is_the_run_that_carries_out_the_options() -> None:
    repair = decide([Signal("failed_migration", True)], Context(env="prod"))
    assert repair.command == "rollback --env prod run --severity P1 --layers app,db --to db=repair"
    restore = decide([Signal("data_loss", True)], Context(env="prod"))
    assert restore.command == "rollback --env prod run --severity P0 --layers app,db"
    pinned = decide([Signal("alarm.edge-function-errors", "ALARM")], Context(env="prod", has_pulumi=True))
    assert pinned.options == {"edge": "infra-pin"}
    assert pinned.command == "rollback --env prod run --severity P1 --layers infra"
    revert = decide([Signal("error_rate", 9.0)], Context(env="prod", rollback_active=True))
    assert revert.command == "rollback --env prod run --severity P1 --layers app --to app=revert"
    assert run_command("prod", "P1", ["infra"], {"infra": "break-glass"}) == \
        "rollback --env prod run --severity P1 --layers edge,assets"


def test_without_the_pulumi_cli_edge_and_assets_are_break_glass_and_say_why() -> None:
    decision = decide([Signal("alarm.edge-function-errors", "ALARM"), Signal("error_rate", 9.0)],
                      Context(env="prod", changed=("assets",), has_pulumi=True, pulumi_cli=False))
    assert decision.options == {"edge": "break-glass", "assets": "break-glass"}
    assert decision.option_reasons["edge"] == NO_CLI and "Pulumi CLI is not on PATH" in NO_CLI
    assert "rollback infra edge' also pins" in NO_CLI
    assert any("break-glass rather than a pinned restore" in n for n in decision.notes)
    assert decision.command == "rollback --env prod run --severity P1 --layers edge,assets"
    assert decision.to_dict()["option_reasons"]["assets"] == NO_CLI


# ------------------------------------------------------------------------------------------ verify window


@pytest.mark.parametrize(("since", "end", "start"), [
    ("09:00:30.400", "09:00:50", "09:00:31"),   # less than a minute after it: from the next whole second
    ("09:00:30.400", "09:02:10", "09:01:00"),   # a whole minute after it has ended: from the next minute
    ("09:00:30", "09:00:31", "09:00:30"),       # already on a whole second
    ("09:01:00", "09:02:30", "09:01:00"),       # already on a minute boundary
])
def test_clean_start(since: str, end: str, start: str) -> None:
    def at(text: str) -> dt.datetime:
        return dt.datetime.fromisoformat(f"2026-11-30T{text}+00:00")

    assert clean_start(at(since), at(end)) == at(start)


def test_run_plan_steps_are_strict_json(config: Config, planners: dict[str, Any]) -> None:
    planned = plan_run(config, RunRequest(layers=("app", "edge", "assets", "db")), Services(config))
    text = json.dumps(planned.to_dict(), allow_nan=False)
    assert Plan.from_dict(json.loads(text)["plan"]) == dataclasses.replace(planned.plan)


def test_the_infra_layer_without_the_pulumi_cli_is_refused_naming_break_glass(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from rollback.errors import UnsafePrecondition

    path = tmp_path / "rollback.toml"
    path.write_text('default_env = "production"\n[env.production.pulumi]\nstack = "production"\n', encoding="utf-8")
    monkeypatch.setenv("PATH", str(tmp_path))  # no pulumi executable here
    with pytest.raises(UnsafePrecondition, match="Pulumi CLI") as caught:
        chosen = load_config(path, environ={})
        plan_run(chosen, RunRequest(layers=("infra",)), Services(chosen))
    assert "--layers edge,assets" in caught.value.hint
