"""Each action is declared once, at its handler (``rollback.actions.action``); the registry's tables (the
layer of an action, the actions of a layer, the read-only ones, the steps that create a database) are
derived from those declarations.

In memory: handler classes declared inside the tests (the declarations are put back as they were after
each test, so that no other test sees them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest

from rollback.actions import DECLARED, StepHandlers, action
from rollback.commands.registry import FAMILIES, family_of, handlers_for, is_read_only
from rollback.context import Services
from rollback.plan import LAYERS, SERVICE_LAYERS, Step, layer_of
from rollback.runner import Check, StepContext


def test_every_declared_action_is_in_its_layer_and_a_step_gets_that_layer() -> None:
    assert DECLARED, "the registry imports every layer's handler classes"
    for name, declared in DECLARED.items():
        assert declared.layer in LAYERS, name
        assert family_of(name) == declared.layer  # an action's family is its layer
        assert layer_of(name) == declared.layer, name  # a step built from the action gets the same layer
        assert name in FAMILIES[declared.layer]
    assert set(FAMILIES) <= set(LAYERS)
    assert set(SERVICE_LAYERS) <= set(FAMILIES)  # every layer a rollback restores runs steps


def test_what_the_handler_classes_declare_is_what_they_run() -> None:
    from rollback.commands.registry import LAYER_HANDLERS

    run = {name for cls in LAYER_HANDLERS for name in cls(cast(Any, None)).handlers()}
    assert run == set(DECLARED)


def test_the_read_only_and_database_creating_steps_are_read_from_the_declarations() -> None:
    # The steps a run passes before it has *initiated* its change (the set kept by hand before).
    for name in ("run.check_world", "health.check", "verify.checklist", "vercel.wait_alias_job",
                 "vercel.wait_deploy", "vercel.wait_abort", "edge.wait", "cloudfront.wait_invalidation",
                 "db.verify_backup", "db.check_rights", "db.check_counts", "db.check_migration", "infra.check",
                 "infra.desired_state"):
        assert is_read_only(name), name
    # read-only by their handler, and missing from the set kept by hand: now they cannot be
    for name in ("db.check_standby", "db.salvage_compare", "db.guard_outcome"):
        assert is_read_only(name), name
    for name in ("vercel.rollback", "db.swap", "db.backup", "edge.associate", "infra.up", "s3.restore"):
        assert not is_read_only(name), name
    assert {name for name, declared in DECLARED.items() if declared.creates_database} == \
        {"db.restore_beside", "db.clone_standby", "db.stage"}


def test_a_read_only_db_step_declared_in_one_module_is_known_to_every_table(declarations: None,
                                                                           write_config: Any) -> None:
    """Adding a read-only step to the db restore touches one module (here: this test): the registry builds
    its handler, and it is read-only, in the db layer and in the db family, with no table edited by hand."""
    from rollback.commands.db.common import DbSteps
    from rollback.config import load_config

    @dataclass
    class ExtensionSteps(DbSteps):
        @action("db.check_extensions", read_only=True)
        def check_extensions(self, step: Step, ctx: StepContext) -> Check:
            return Check(False, {"extensions": ["plpgsql"]}, "list the restored database's extensions")

    assert family_of("db.check_extensions") == "db"
    assert is_read_only("db.check_extensions")
    assert "db.check_extensions" in FAMILIES["db"]
    assert Step("extensions", "db.check_extensions", "list the extensions").layer == "db"
    config = load_config(write_config({"production": {"database": {"url_env": "NOWHERE_URL"}}}))
    services = Services(config)
    built = handlers_for(config, ["db.verify_backup", "db.check_extensions"], services)
    assert set(built) == {"db.verify_backup", "db.check_extensions"}
    found = built["db.check_extensions"].check(Step("extensions", "db.check_extensions", "x"),
                                               StepContext(dry_run=True, plan=cast(Any, None)))
    assert found.result == {"extensions": ["plpgsql"]}


def test_a_declaration_that_cannot_be_derived_from_is_refused(declarations: None) -> None:
    with pytest.raises(TypeError, match="layer 'nowhere' is not one of"):
        @dataclass
        class Lost(StepHandlers):
            layer = "nowhere"

            @action("nowhere.step")
            def step(self, step: Step, ctx: StepContext) -> dict[str, Any]:
                return {}

    with pytest.raises(TypeError, match=r"action db\.swap is declared twice"):
        @dataclass
        class Again(StepHandlers):
            layer = "db"

            @action("db.swap")
            def swap(self, step: Step, ctx: StepContext) -> dict[str, Any]:
                return {}

    with pytest.raises(TypeError, match="check 'check_missing' is not a method"):
        @dataclass
        class NoCheck(StepHandlers):
            layer = "db"

            @action("db.unchecked", check="check_missing")
            def unchecked(self, step: Step, ctx: StepContext) -> dict[str, Any]:
                return {}


def test_a_step_that_creates_a_database_is_named_by_the_journal(declarations: None, write_config: Any,
                                                                tmp_path: Path) -> None:
    """A step declared ``creates_database`` in one module (here: this test) is named in the journal's
    ``step_planned``, and the database its params name is then one rollback made (``journaled_copies``);
    a journal written before the journal named them is read by the earlier steps' action names."""
    from rollback.commands.db.backup import journaled_copies
    from rollback.commands.db.common import DbSteps
    from rollback.config import load_config
    from rollback.journal import Journal, read_run
    from rollback.plan import Plan
    from rollback.runner import Run

    @dataclass
    class ScratchSteps(DbSteps):
        @action("db.make_scratch", check="check_make_scratch", creates_database=True)
        def make_scratch(self, step: Step, ctx: StepContext) -> dict[str, Any]:
            return {"database": step.params.get("database")}

        def check_make_scratch(self, step: Step, ctx: StepContext) -> Check:
            return Check(False, {}, "create the scratch database")

    config = load_config(write_config({"production": {"database": {"url_env": "NOWHERE_URL"}}}))
    plan = Plan("scratch", "production", [Step("scratch", "db.make_scratch", "create app_scratch_1",
                                               params={"database": "app_scratch_1"}),
                                          Step("other", "db.make_scratch", "not this one", params={"name": "x"})])
    journal = Journal.start(config.journal_dir, command="db scratch", env="production")
    Run(plan, ScratchSteps(Services(config)).handlers(), journal=journal).go()
    journal.close()
    planned = next(e for e in read_run(journal.path).entries if e["event"] == "step_planned")
    assert planned["creates_database"] == ["scratch", "other"]
    assert journaled_copies(config) == {"app_scratch_1": journal.run_id}

    # an earlier journal (no creates_database): the steps that created a database then, by name
    old = Journal.start(config.journal_dir, command="db restore", env="production")
    old.write("step_planned", title="restore", env="production", notes=[], plan_format=2,
              steps=[{"id": "restore", "action": "db.restore_beside", "params": {"database": "app_restore_1"}},
                     {"id": "scratch", "action": "db.make_scratch", "params": {"database": "app_scratch_2"}}])
    old.close()
    copies = journaled_copies(config)
    assert copies["app_restore_1"] == old.run_id and "app_scratch_2" not in copies
