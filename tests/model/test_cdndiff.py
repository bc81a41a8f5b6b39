"""The field-by-field diff of two DistributionConfig documents (rollback.model.cdndiff): named items matched by name,
Quantity wrappers by their items, CallerReference left out, origin header values never shown."""

from __future__ import annotations

import copy
from typing import Any

from rollback.model.cdndiff import config_diff, config_digest, with_caller_reference

SECRET = "x-origin-verify-value-1"

BASE: dict[str, Any] = {
    "CallerReference": "ref-1",
    "Enabled": True,
    "Comment": "prod",
    "Aliases": {"Quantity": 1, "Items": ["www.example.com"]},
    "Origins": {"Quantity": 2, "Items": [
        {"Id": "assets", "DomainName": "b.s3.amazonaws.com", "OriginPath": "/releases/r1",
         "CustomHeaders": {"Quantity": 0}},
        {"Id": "app", "DomainName": "app.vercel.app", "OriginPath": "",
         "CustomHeaders": {"Quantity": 1, "Items": [{"HeaderName": "X-Origin-Verify", "HeaderValue": SECRET}]}}]},
    "CacheBehaviors": {"Quantity": 1, "Items": [{"PathPattern": "/api/*", "TargetOriginId": "app"}]},
}


def test_same_config_and_caller_reference_alone_differ_in_nothing() -> None:
    other = copy.deepcopy(BASE)
    other["CallerReference"] = "ref-2"
    other["Origins"]["Items"][0]["CustomHeaders"] = {"Quantity": 0, "Items": []}
    assert config_diff(BASE, other) == []
    assert with_caller_reference(other, BASE)["CallerReference"] == "ref-1"


def test_named_items_and_masked_header_values() -> None:
    other = copy.deepcopy(BASE)
    other["Enabled"] = False
    other["Origins"]["Items"].reverse()  # order alone is no change: items are matched by Id
    app = other["Origins"]["Items"][0]
    app["CustomHeaders"]["Items"][0]["HeaderValue"] = "another-secret"
    other["Origins"]["Items"].append({"Id": "media", "DomainName": "m.example.com",
                                      "CustomHeaders": {"Quantity": 1, "Items": [
                                          {"HeaderName": "X-Key", "HeaderValue": "media-secret"}]}})
    other["Aliases"] = {"Quantity": 0}
    lines = [c.describe() for c in config_diff(BASE, other)]
    assert lines == ['Aliases: ["www.example.com"] -> []', "Enabled: true -> false",
                     "Origins[app].CustomHeaders[X-Origin-Verify].HeaderValue: [secret] changed",
                     "Origins[media]: added"]
    documents = str([c.to_dict() for c in config_diff(BASE, other)])
    assert SECRET not in documents and "another-secret" not in documents and "media-secret" not in documents


def test_a_header_added_or_removed_is_masked_too() -> None:
    other = copy.deepcopy(BASE)
    other["Origins"]["Items"][1]["CustomHeaders"] = {"Quantity": 0}
    (change,) = config_diff(BASE, other)
    assert change.describe() == "Origins[app].CustomHeaders[X-Origin-Verify]: removed"
    assert SECRET not in str(change.to_dict())


def test_the_digest_ignores_key_order() -> None:
    assert config_digest({"a": 1, "b": [1, 2]}) == config_digest({"b": [1, 2], "a": 1})
    assert config_digest({"a": 1}) != config_digest({"a": 2})
