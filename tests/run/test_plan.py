"""Plans and steps are pure data: built, described and serialised in memory."""

from __future__ import annotations

import json

import pytest

from rollback.plan import Plan, Step


def make_plan() -> Plan:
    return Plan.of(
        "edge rollback",
        "production",
        [
            Step("read", "cloudfront.read", "read distribution config", target="E123"),
            Step("swap", "cloudfront.swap", "version 7 -> 6", target="edge function sec-headers",
                 params={"from": 7, "to": 6}, destructive=True),
            Step("pin", "stack.pin", "pin rollback:edgeFunctionVersion = 6", target="stack production"),
        ],
        notes=["the next pulumi up keeps version 6"],
    )


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (Step("a", "x", "version 7 -> 6", target="edge function sec-headers"),
         "edge function sec-headers: version 7 -> 6"),
        (Step("b", "x", "edge function sec-headers: version 7 -> 6", target="edge function sec-headers"),
         "edge function sec-headers: version 7 -> 6"),
        (Step("c", "x", "take an emergency backup"), "take an emergency backup"),
    ],
)
def test_step_describes_itself_in_one_line(step: Step, expected: str) -> None:
    assert step.describe() == expected
    assert "\n" not in step.describe()


def test_plan_knows_whether_it_is_destructive_and_serialises() -> None:
    plan = make_plan()
    assert plan.is_destructive
    document = json.loads(json.dumps(plan.to_dict()))
    assert [s["id"] for s in document["steps"]] == ["read", "swap", "pin"]
    assert document["steps"][1]["params"] == {"from": 7, "to": 6}
    assert document["destructive"] is True
    assert plan.rows()[1] == ("2", "edge function sec-headers: version 7 -> 6", "destructive")
    assert not Plan.of("read only", "staging", [Step("r", "x", "read")]).is_destructive


def test_plan_lookup_and_resume_point() -> None:
    plan = make_plan()
    assert plan.step("swap").action == "cloudfront.swap"
    assert [s.id for s in plan.after("read")] == ["swap", "pin"]
    assert plan.after("pin") == ()
    with pytest.raises(KeyError):
        plan.step("missing")


def test_duplicate_step_ids_are_rejected() -> None:
    with pytest.raises(ValueError, match="duplicate step id 'a'"):
        Plan.of("bad", "production", [Step("a", "x", "one"), Step("a", "y", "two")])
