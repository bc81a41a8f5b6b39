"""Pure parts of the CloudFront adapter: Lambda ARNs and the association swap."""

from __future__ import annotations

import copy
from typing import Any

from rollback.adapters.cloudfront import function_name_of, parse_lambda_arn, swap_associations

F = "arn:aws:lambda:us-east-1:123456789012:function:sec-headers"
G = "arn:aws:lambda:us-east-1:123456789012:function:other"


def test_parse_lambda_arn() -> None:
    parsed = parse_lambda_arn(f"{F}:7")
    assert parsed is not None and (parsed.name, parsed.version, parsed.region) == ("sec-headers", "7", "us-east-1")
    assert parse_lambda_arn(f"{F}:$LATEST").version is None  # type: ignore[union-attr]
    assert parse_lambda_arn(F).qualifier is None  # type: ignore[union-attr]
    assert parse_lambda_arn("sec-headers") is None
    assert function_name_of(f"{F}:7") == function_name_of("sec-headers") == "sec-headers"


def _config() -> dict[str, Any]:
    def behaviour(*items: tuple[str, str], path: str | None = None) -> dict[str, Any]:
        found: dict[str, Any] = {"LambdaFunctionAssociations": {
            "Quantity": len(items), "Items": [{"LambdaFunctionARN": arn, "EventType": event} for arn, event in items]}}
        if path:
            found["PathPattern"] = path
        return found

    return {"Comment": "keep", "DefaultCacheBehavior": behaviour((f"{F}:7", "viewer-response"),
                                                                 (f"{G}:2", "viewer-request")),
            "CacheBehaviors": {"Quantity": 2, "Items": [behaviour((f"{F}:7", "origin-request"), path="/api/*"),
                                                        behaviour((f"{F}:5", "viewer-response"), path="/old/*")]}}


def test_swap_only_the_function_on_the_chosen_behaviours() -> None:
    original = _config()
    before = copy.deepcopy(original)
    swapped = swap_associations(original, "sec-headers", f"{F}:6", ["default", "/api/*"])
    assert original == before  # pure: the input is not modified
    default = swapped["DefaultCacheBehavior"]["LambdaFunctionAssociations"]["Items"]
    assert default == [{"LambdaFunctionARN": f"{F}:6", "EventType": "viewer-response"},
                       {"LambdaFunctionARN": f"{G}:2", "EventType": "viewer-request"}]
    items = swapped["CacheBehaviors"]["Items"]
    assert items[0]["LambdaFunctionAssociations"]["Items"][0]["LambdaFunctionARN"] == f"{F}:6"
    assert items[1]["LambdaFunctionAssociations"]["Items"][0]["LambdaFunctionARN"] == f"{F}:5"
    assert swapped["Comment"] == "keep"
