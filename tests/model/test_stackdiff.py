"""rollback.model.stackdiff: config and resource diffs, built in memory (no I/O)."""

from __future__ import annotations

from typing import Any

import pytest

from rollback.model.stackdiff import (
    SECRET_MASK,
    ConfigValue,
    PropertyChange,
    StackState,
    changed_config_keys,
    config_value_from_cli,
    config_value_from_history,
    diff_config,
    diff_properties,
    diff_resources,
    diff_states,
    format_path,
    shorten,
)

SIG = "4dabf18193072939515e22adb298388d"
SECRET = {SIG: "1b47061264138c4ac30d75fd1eb44270", "ciphertext": "c2VjcmV0LW9uZQ=="}
SECRET_2 = {SIG: "1b47061264138c4ac30d75fd1eb44270", "ciphertext": "c2VjcmV0LXR3bw=="}
ASSET = {SIG: "c44067f5952c0a294b673a41bacd8c17", "hash": "abc", "text": "x"}


@pytest.mark.parametrize(("parts", "expected"), [
    (["a"], "a"),
    (["a", "b", 0, "c"], "a.b[0].c"),
    ([0, "x"], "[0].x"),
    (["tags", "kubernetes.io/name"], 'tags["kubernetes.io/name"]'),
    (["a b"], '["a b"]'),
    ([], ""),
])
def test_format_path(parts: list[Any], expected: str) -> None:
    assert format_path(parts) == expected


@pytest.mark.parametrize(("old", "new", "expected"), [
    ({"a": 1}, {"a": 1}, []),
    ({"a": 1}, {"a": 2}, [("a", 1, 2, False)]),
    ({"a": {"b": [1, 2]}}, {"a": {"b": [1, 3]}}, [("a.b[1]", 2, 3, False)]),
    ({"a": [1]}, {"a": [1, 2]}, [("a[1]", None, 2, False)]),
    ({"a": 1, "b": 2}, {"b": 2}, [("a", 1, None, False)]),
    ({}, {"z": "new"}, [("z", None, "new", False)]),
    ({"p": SECRET}, {"p": SECRET}, []),
    ({"p": SECRET}, {"p": SECRET_2}, [("p", SECRET_MASK, SECRET_MASK, True)]),
    ({"p": "plain"}, {"p": SECRET}, [("p", SECRET_MASK, SECRET_MASK, True)]),
    ({"a": 1}, {"a": "1"}, [("a", 1, "1", False)]),
    ({"code": ASSET}, {"code": {**ASSET, "hash": "def"}}, [("code.hash", "abc", "def", False)]),
    ({"n": {"inner": SECRET}}, {"n": {"inner": SECRET}, "m": {"s": SECRET}}, [("m", None, {"s": SECRET_MASK}, False)]),
    ({}, {"p": SECRET}, [("p", None, SECRET_MASK, True)]),
    ({"p": SECRET}, {}, [("p", SECRET_MASK, None, True)]),
    ({"a": [SECRET]}, {"a": []}, [("a[0]", SECRET_MASK, None, True)]),
])
def test_diff_properties(old: Any, new: Any, expected: list[tuple[str, Any, Any, bool]]) -> None:
    changes = diff_properties(old, new)
    assert [(c.path, c.old, c.new, c.secret) for c in changes] == expected
    for change in changes:
        assert "c2VjcmV0" not in change.describe()


def test_property_change_describe_masks_and_shortens() -> None:
    assert PropertyChange("p", SECRET_MASK, SECRET_MASK, secret=True).describe() == "p: [secret] changed"
    arn = "arn:aws:lambda:us-east-1:123456789012:function:rollback-staging-security-headers"
    line = PropertyChange("x", f"{arn}:7", f"{arn}:6").describe(width=40)
    assert line.endswith("headers:6") and "..." in line


def _resource(name: str, inputs: dict[str, Any], rid: str | None = "id-1", typ: str = "aws:s3/bucket:Bucket"
              ) -> dict[str, Any]:
    return {"urn": f"urn:pulumi:staging::rollback::{typ}::{name}", "type": typ, "id": rid, "custom": True,
            "inputs": inputs, "outputs": {"noise": name}}


def test_diff_resources_added_removed_changed_replaced() -> None:
    old = [_resource("keep", {"a": 1}), _resource("gone", {}), _resource("edit", {"a": 1}),
           _resource("swap", {"a": 1}, rid="old-id")]
    new = [_resource("keep", {"a": 1}), _resource("edit", {"a": 2}), _resource("fresh", {}),
           _resource("swap", {"a": 1}, rid="new-id")]
    changes = {c.name: c for c in diff_resources(old, new)}
    assert set(changes) == {"gone", "edit", "fresh", "swap"}
    assert changes["gone"].kind == "removed"
    assert changes["fresh"].kind == "added"
    assert [(p.path, p.old, p.new) for p in changes["edit"].properties] == [("a", 1, 2)]
    assert [(p.path, p.old, p.new) for p in changes["swap"].properties] == [("id", "old-id", "new-id")]


def test_diff_resources_uses_defaults_of_old_checkpoints() -> None:
    old = [{"urn": "urn:pulumi:s::p::t::r", "type": "t", "id": "1", "defaults": {"name": "n-1"}}]
    new = [{"urn": "urn:pulumi:s::p::t::r", "type": "t", "id": "1", "inputs": {"name": "n-1"}}]
    assert diff_resources(old, new) == []


def test_diff_resources_names_the_edge_version_path() -> None:
    arn = "arn:aws:lambda:us-east-1:123456789012:function:headers"

    def dist(version: int) -> dict[str, Any]:
        return _resource("cdn", {"defaultCacheBehavior": {"lambdaFunctionAssociations": [
            {"eventType": "viewer-response", "lambdaArn": f"{arn}:{version}"}]}},
            typ="aws:cloudfront/distribution:Distribution")

    (change,) = diff_resources([dist(7)], [dist(6)])
    assert change.properties[0].describe(200) == (
        f"defaultCacheBehavior.lambdaFunctionAssociations[0].lambdaArn: {arn}:7 -> {arn}:6")


PLAIN = ConfigValue("7")
SECRET_PLAIN_A = ConfigValue("hunter2", True)
SECRET_PLAIN_B = ConfigValue("hunter3", True)
SECRET_CIPHER_A = ConfigValue(None, True, "Y2lwaGVyLWE=")
SECRET_CIPHER_B = ConfigValue(None, True, "Y2lwaGVyLWI=")


@pytest.mark.parametrize(("old", "new", "expected"), [
    ({"k": PLAIN}, {"k": PLAIN}, []),
    ({"k": PLAIN}, {"k": ConfigValue("6")}, [("k", "changed", False, "7", "6")]),
    ({}, {"k": PLAIN}, [("k", "added", False, None, "7")]),
    ({"k": PLAIN}, {}, [("k", "removed", False, "7", None)]),
    ({"s": SECRET_PLAIN_A}, {"s": SECRET_PLAIN_A}, []),
    ({"s": SECRET_PLAIN_A}, {"s": SECRET_PLAIN_B}, [("s", "changed", True, SECRET_MASK, SECRET_MASK)]),
    ({"s": SECRET_CIPHER_A}, {"s": SECRET_CIPHER_B}, [("s", "changed", True, SECRET_MASK, SECRET_MASK)]),
    ({"s": PLAIN}, {"s": ConfigValue("7", True)}, [("s", "changed", True, SECRET_MASK, SECRET_MASK)]),
    ({}, {"s": SECRET_PLAIN_A}, [("s", "added", True, None, SECRET_MASK)]),
])
def test_diff_config(old: dict[str, ConfigValue], new: dict[str, ConfigValue],
                     expected: list[tuple[str, str, bool, str | None, str | None]]) -> None:
    changes = diff_config(old, new)
    assert [(c.key, c.kind, c.secret, c.old, c.new) for c in changes] == expected
    text = " ".join(c.describe() for c in changes) + repr(changes) + str([c.to_dict() for c in changes])
    for secret in ("hunter2", "hunter3", "Y2lwaGVy"):
        assert secret not in text


def test_config_values_never_show_secrets() -> None:
    value = ConfigValue("hunter2", True)
    assert "hunter2" not in repr(value)
    assert value.to_dict() == {"value": SECRET_MASK, "secret": True}
    assert "hunter2" not in value.token


@pytest.mark.parametrize(("raw", "value", "secret", "ciphertext"), [
    ("7", "7", False, None),
    ({"secure": "djE6YWJj"}, None, True, "djE6YWJj"),
    (["/api/*", "/auth/*"], '["/api/*","/auth/*"]', False, None),
    # As Pulumi reads it, only an object whose one key is "secure" is a secret; any other is an object value.
    ({"secure": "x", "note": "y"}, '{"note":"y","secure":"x"}', False, None),
    # Values as a Pulumi.<stack>.yaml file holds them (the stack file reader uses this function too).
    (True, "true", False, None),
    (False, "false", False, None),
    (42, "42", False, None),
    (1.5, "1.5", False, None),
    (None, "null", False, None),
    ({"b": 1, "a": [True]}, '{"a":[true],"b":1}', False, None),
])
def test_config_value_from_history(raw: Any, value: str | None, secret: bool, ciphertext: str | None) -> None:
    parsed = config_value_from_history(raw)
    assert (parsed.value, parsed.secret, parsed.ciphertext) == (value, secret, ciphertext)


@pytest.mark.parametrize(("raw", "value", "secret"), [
    ({"value": "7", "secret": False}, "7", False),
    ({"value": "hunter2", "secret": True}, "hunter2", True),
    ({"secret": True}, None, True),
    ({"value": "[1]", "objectValue": [1], "secret": False}, "[1]", False),
])
def test_config_value_from_cli(raw: Any, value: str | None, secret: bool) -> None:
    parsed = config_value_from_cli(raw)
    assert (parsed.value, parsed.secret) == (value, secret)


def test_changed_config_keys() -> None:
    assert changed_config_keys(None, {"b": PLAIN, "a": PLAIN}) == ["a", "b"]
    assert changed_config_keys({"a": PLAIN}, {"a": ConfigValue("8"), "b": PLAIN}) == ["a", "b"]
    assert changed_config_keys({"a": PLAIN}, {"a": PLAIN}) == []


def test_diff_states_without_checkpoints_compares_config_only() -> None:
    result = diff_states(1, None, {"k": PLAIN}, {"k": ConfigValue("8")}, None, StackState(()), ["note"])
    document = result.to_dict()
    assert document["to"] == "current"
    assert document["resources"] is None
    assert document["summary"]["config"] == 1
    assert document["notes"] == ["note"]


def test_shorten() -> None:
    assert shorten(None) == "(absent)"
    assert shorten({"b": 1, "a": 2}) == '{"a": 2, "b": 1}'
    assert len(shorten("x" * 500, 40)) <= 40
