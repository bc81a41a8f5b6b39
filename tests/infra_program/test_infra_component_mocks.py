"""One component on its own, the classic way: set_mocks, then @pulumi.runtime.test on its outputs.

The rest of the suite runs the whole program through rollback.adapters.pulumi_mocks;
this checks a component's outputs directly, as pulumi/examples testing-unit-py does.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pytest


class Mocks(pulumi.runtime.Mocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        state = dict(args.inputs)
        if args.typ == "aws:lambda/function:Function":
            arn = f"arn:aws:lambda:us-east-1:123456789012:function:{args.inputs['name']}"
            state.update(arn=arn, version="9", qualifiedArn=f"{arn}:9")
        if args.typ == "aws:iam/role:Role":
            state["arn"] = f"arn:aws:iam::123456789012:role/{args.name}"
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        return {}, []


@pytest.fixture(scope="module", autouse=True)
def mocks() -> None:
    # Mocks first, then the component module (it builds Pulumi resources at call time only).
    pulumi.runtime.set_mocks(Mocks(), project="rollback", stack="unit", preview=False)


def make_edge(name: str, pinned: str | None) -> Any:
    from infra.edge_function import EdgeFunction, EdgeFunctionArgs

    return EdgeFunction(name, EdgeFunctionArgs(function_name=f"{name}-fn", pinned_version=pinned))


@pulumi.runtime.test
def test_unpinned_edge_function_exposes_the_newest_version() -> Any:
    edge = make_edge("newest", None)

    def check(values: list[str]) -> None:
        version, arn = values
        assert version == "9"
        assert arn == "arn:aws:lambda:us-east-1:123456789012:function:newest-fn:9"

    return pulumi.Output.all(edge.version, edge.version_arn).apply(check)


@pulumi.runtime.test
def test_pinned_edge_function_exposes_the_pinned_version() -> Any:
    edge = make_edge("pinned", "4")

    def check(values: list[str]) -> None:
        version, arn, latest = values
        assert (version, latest) == ("4", "9")
        assert arn == "arn:aws:lambda:us-east-1:123456789012:function:pinned-fn:4"

    return pulumi.Output.all(edge.version, edge.version_arn, edge.latest_version).apply(check)
