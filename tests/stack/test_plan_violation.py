"""When `pulumi up --plan` refuses a correct plan (pulumi/pulumi#11587, #16670, #16681): recognising the
failure (resource and properties), and comparing a fresh `pulumi preview --json` with the saved plan.

The CLI cases go through the Automation API (rollback.adapters.pulumi) against the recorded-CLI double of
``pulumi`` on PATH (tests/stack/recorded_pulumi.py), which reproduces the violation the CLI reports for a
Lambda function whose code is an Archive (our edge function)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollback.adapters.pulumi import (
    PlannedStep,
    PlanViolated,
    compare_steps,
    parse_plan_violations,
    plan_file_steps,
)
from tests.stack.conftest import FakePulumi, StackEnv

FUNCTION = "urn:pulumi:staging::rollback::aws:lambda/function:Function::security-headers"
CDN = "urn:pulumi:staging::rollback::aws:cloudfront/distribution:Distribution::cdn"
DB = "urn:pulumi:staging::rollback::aws:rds/instance:Instance::db"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # pulumi/pulumi#11587, as the CLI printed it
        ("    error: resource urn:pulumi:production::aws-account-setup::pulumi-eng:apps:AccessKeyRotator$aws:lambda/"
         "function:Function::rotator violates plan: properties changed: ~~code[{&{ d12b map[__index.js:0xc0033c9d10 "
         "node_modules/axios:0xc0033c9d60]  }}!={&{ 2333 map[__index.js:0xc003c9b810]  }}]",
         [("rotator", ("code",))]),
        # pulumi/pulumi#13765: nested brackets, one top-level property
        ("error: resource urn:pulumi:dev::k8s::eks:index:Cluster$aws:eks/cluster:Cluster::eks violates plan: "
         "properties changed: ++vpcConfig[{map[securityGroupIds:{[output<string>{}]} subnetIds:{[{subnet-1}]}]}!="
         "{map[]}] --tags[{map[]}] ~~name[{a}!={b}]",
         [("eks", ("vpcConfig", "tags", "name"))]),
        ("error: create is not allowed by the plan: no steps were expected for this resource",
         [("(the stack)", ())]),
        ("error: update failed", []),
    ],
)
def test_violations_are_recognised_with_resource_and_properties(text: str, expected: list[tuple[str, tuple[str, ...]]]
                                                                ) -> None:
    assert [(v.resource, v.properties) for v in parse_plan_violations(text)] == expected


def test_step_comparison() -> None:
    planned = {CDN: PlannedStep(CDN, ("update",), frozenset({"origins"}))}
    same = {CDN: PlannedStep(CDN, ("update",), frozenset({"origins"}))}
    assert compare_steps(planned, same).approved
    assert compare_steps(planned, {}).approved  # the failed update already applied it
    assert compare_steps(planned, {}).done == (planned[CDN],)
    other_property = {CDN: PlannedStep(CDN, ("update",), frozenset({"origins", "defaultCacheBehavior"}))}
    assert not compare_steps(planned, other_property).approved
    replace = {CDN: PlannedStep(CDN, ("create-replacement", "replace", "delete-replaced"), frozenset({"origins"}))}
    assert not compare_steps(planned, replace).approved
    extra = {**same, DB: PlannedStep(DB, ("update",), frozenset({"instanceClass"}))}
    comparison = compare_steps(planned, extra)
    assert not comparison.approved and "not in the plan: " + DB in comparison.describe()


def _stack(env: StackEnv) -> object:
    from rollback.config import load_config
    from rollback.context import Services

    return Services(load_config(env.config)).pulumi_stack()


@pytest.mark.slow
def test_the_double_reproduces_the_violation_and_the_fresh_preview_matches_the_plan(
        stack_env: StackEnv, fake_pulumi: FakePulumi, monkeypatch: pytest.MonkeyPatch, run_cli: object) -> None:
    from rollback.adapters.pulumi import PulumiStack

    assert run_cli("infra", "preview", "--config-only", "--to", "3", "--plan-file", "v3.plan.json").code == 0  # type: ignore[operator]
    plan = stack_env.root / "v3.plan.json"
    saved = plan_file_steps(plan)
    assert saved == {CDN: PlannedStep(CDN, ("update",), frozenset({"defaultCacheBehavior", "origins"}))}
    stack = _stack(stack_env)
    assert isinstance(stack, PulumiStack)
    monkeypatch.setenv("FAKE_PULUMI_VIOLATE", f"{FUNCTION} code")
    with pytest.raises(PlanViolated) as caught:
        stack.up(plan)
    (violation,) = caught.value.violations
    assert (violation.urn, violation.properties) == (FUNCTION, ("code",))
    assert "security-headers" in caught.value.message and "properties code" in caught.value.message
    # A fresh preview from the same program and config takes exactly the plan's steps.
    assert compare_steps(saved, stack.preview_steps()).approved
    monkeypatch.setenv("FAKE_PULUMI_EXTRA_STEP", f"{DB} instanceClass")
    comparison = compare_steps(saved, stack.preview_steps())
    assert not comparison.approved and comparison.unplanned[0].urn == DB


def test_plan_file_steps_of_an_unreadable_plan_is_one_line(tmp_path: Path) -> None:
    from rollback.errors import PulumiError

    bad = tmp_path / "p.json"
    bad.write_text("{not json")
    with pytest.raises(PulumiError, match="cannot read the update plan"):
        plan_file_steps(bad)


def _history_count(run_cli: object) -> int:
    document = run_cli("infra", "history", "--json").json()  # type: ignore[operator]
    return int(document["count"])


@pytest.mark.slow
def test_restore_recognises_the_violation_and_falls_back_only_on_the_same_steps(
        stack_env: StackEnv, fake_pulumi: FakePulumi, monkeypatch: pytest.MonkeyPatch, run_cli: object) -> None:
    import json

    cli = run_cli  # type: ignore[assignment]
    assert cli("infra", "preview", "--config-only", "--to", "3", "--plan-file", "v3.plan.json").code == 0
    plan = stack_env.root / "v3.plan.json"
    before = _history_count(cli)
    monkeypatch.setenv("FAKE_PULUMI_VIOLATE", f"{FUNCTION} code")
    refused = cli("infra", "restore", "--to", "3", "--plan-file", "v3.plan.json", "--yes")
    assert refused.code == 4, refused.err
    (error,) = [line for line in refused.err.splitlines() if line.startswith("error: ")]
    assert f"security-headers ({FUNCTION}): properties code" in error
    assert "pulumi/pulumi#11587" in error
    assert "a fresh preview from the same program and config takes exactly the plan's steps" in error
    assert f"rollback infra restore --to 3 --plan-file {plan} --without-plan" in error
    assert _history_count(cli) == before  # nothing applied
    sidecar = json.loads(Path(f"{plan}.rollback.json").read_text())
    assert sidecar["refused"]["violations"] == [{"urn": FUNCTION, "resource": "security-headers",
                                                 "properties": ["code"]}]
    assert "applied" not in sidecar

    fallback = cli("infra", "restore", "--to", "3", "--plan-file", "v3.plan.json", "--without-plan", "--yes",
                   "--json")
    assert fallback.code == 0, fallback.err
    up = next(s for s in fallback.json()["steps"] if s["id"] == "up")["result"]
    assert up["without_plan"] is True and up["comparison"]["approved"] is True
    assert _history_count(cli) == before + 1
    ups = [c for c in fake_pulumi.calls() if "up" in c]
    assert "--plan" in ups[0] and "--plan" not in ups[-1]
    assert "--json" in [c for c in fake_pulumi.calls() if "preview" in c][-1]
    again = cli("infra", "restore", "--to", "3", "--plan-file", "v3.plan.json", "--yes")
    assert again.code == 4 and "was already applied" in again.err


@pytest.mark.slow
def test_the_fallback_is_refused_when_a_fresh_preview_differs(
        stack_env: StackEnv, fake_pulumi: FakePulumi, monkeypatch: pytest.MonkeyPatch, run_cli: object) -> None:
    cli = run_cli  # type: ignore[assignment]
    assert cli("infra", "preview", "--config-only", "--to", "3", "--plan-file", "v3.plan.json").code == 0
    before = _history_count(cli)
    never = cli("infra", "restore", "--to", "3", "--plan-file", "v3.plan.json", "--without-plan", "--yes")
    assert never.code == 4 and "never was" in never.err  # only for a plan the CLI refused
    monkeypatch.setenv("FAKE_PULUMI_VIOLATE", f"{FUNCTION} code")
    monkeypatch.setenv("FAKE_PULUMI_EXTRA_STEP", f"{DB} instanceClass")  # the world moved since the preview
    refused = cli("infra", "restore", "--to", "3", "--plan-file", "v3.plan.json", "--yes")
    assert refused.code == 4, refused.err
    assert f"a fresh preview does not take the steps of v3.plan.json: not in the plan: {DB} update" in refused.err
    assert "--without-plan" not in refused.err and "preview --to 3" in refused.err
    fallback = cli("infra", "restore", "--to", "3", "--plan-file", "v3.plan.json", "--without-plan", "--yes")
    assert fallback.code == 4 and "not applying anything without the plan" in fallback.err
    assert _history_count(cli) == before
