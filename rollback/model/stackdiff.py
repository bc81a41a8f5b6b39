"""Stack versions and the differences between them: pure data, no I/O.

A Pulumi stack's history is a list of updates; each carries the config it ran
with, and (in a self-managed backend) the checkpoint it left behind. Rolling
infrastructure back means *selecting* one of those versions, so the operator
needs to see what separates two of them:

- config differences by key, where a secret's value is never shown, only
  whether it changed (:func:`diff_config`);
- resource differences by URN: added, removed, and changed properties by path,
  e.g. ``defaultCacheBehavior.lambdaFunctionAssociations[0].lambdaArn``
  (:func:`diff_resources`).

The adapters (``rollback.adapters.pulumi_backend`` for self-managed backends
read directly, ``rollback.adapters.pulumi`` for the Automation API) return the
types defined here.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "SECRET_MASK",
    "ConfigChange",
    "ConfigValue",
    "PropertyChange",
    "ResourceChange",
    "StackDiff",
    "StackState",
    "StackVersion",
    "changed_config_keys",
    "config_value_from_cli",
    "config_value_from_history",
    "diff_config",
    "diff_properties",
    "diff_resources",
    "diff_states",
    "format_path",
    "is_secret_value",
    "normalize_resource",
    "provider_version",
    "shorten",
]

SECRET_MASK = "[secret]"

# Pulumi's "special signature" key marks assets, archives and secrets in
# serialised property values; this value of it marks a secret.
_SIG_KEY = "4dabf18193072939515e22adb298388d"
_SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"


def is_secret_value(value: Any) -> bool:
    """True for a checkpoint secret (``{sig: secret, ciphertext|plaintext}``)."""
    return isinstance(value, Mapping) and value.get(_SIG_KEY) == _SECRET_SIG


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class ConfigValue:
    """One config value of one stack version.

    ``value`` is the plain value; for a secret it is the plaintext when the
    source decrypted it (the Automation API with ``--show-secrets``) or ``None``
    (a self-managed backend's history holds only ciphertext, kept in
    ``ciphertext`` so it can be written back as ``secure:``). ``token`` is what
    two versions are compared by: the value, or for a secret a digest of its
    plaintext or its ciphertext. ``repr`` and :meth:`to_dict` never show a
    secret's value.
    """

    value: str | None = field(repr=False)
    secret: bool = False
    ciphertext: str | None = field(default=None, repr=False)

    @property
    def token(self) -> str:
        if not self.secret:
            return f"plain:{self.value}"
        if self.value is not None:
            return f"plain-digest:{_digest(self.value)}"
        return f"cipher-digest:{_digest(self.ciphertext or '')}"

    def shown(self) -> str | None:
        """What may be printed: the value, or the mask for a secret."""
        return SECRET_MASK if self.secret else self.value

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.shown(), "secret": self.secret}


def config_value_from_history(raw: Any) -> ConfigValue:
    """A value as a self-managed backend stores it in ``*.history.json``:
    ``"text"``, ``{"secure": "<ciphertext>"}`` or an object value. ``Pulumi.<stack>.yaml``
    holds its values in the same form."""
    if isinstance(raw, Mapping) and set(raw) == {"secure"}:
        return ConfigValue(None, True, str(raw["secure"]))
    if isinstance(raw, str):
        return ConfigValue(raw)
    return ConfigValue(json.dumps(raw, sort_keys=True, separators=(",", ":")))


def config_value_from_cli(raw: Any) -> ConfigValue:
    """A value as ``pulumi stack history --json`` / ``pulumi config --json`` prints it:
    ``{"value": ..., "secret": bool}`` (``objectValue`` for objects)."""
    if not isinstance(raw, Mapping):
        return config_value_from_history(raw)
    secret = bool(raw.get("secret"))
    value = raw.get("value")
    if value is None and raw.get("objectValue") is not None:
        value = json.dumps(raw["objectValue"], sort_keys=True, separators=(",", ":"))
    return ConfigValue(None if value is None else str(value), secret)


@dataclass(frozen=True)
class StackVersion:
    """One update in a stack's history.

    ``version`` is the backend's number, or ours (oldest = 1) where the backend
    records 0 for every update (self-managed backends): ``numbered_locally``
    says which. ``ref`` is the source's handle on the update's checkpoint
    (a history file key), read only when resources are needed.
    """

    version: int
    kind: str
    result: str
    message: str
    start_time: int | None
    end_time: int | None
    environment: Mapping[str, str]
    config: Mapping[str, ConfigValue]
    resource_changes: Mapping[str, int]
    numbered_locally: bool = False
    ref: str | None = None

    @property
    def git_head(self) -> str | None:
        return self.environment.get("git.head") or None

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "numbered_locally": self.numbered_locally,
            "kind": self.kind,
            "result": self.result,
            "message": self.message,
            "start_time": self.start_time,
            "end_time": self.end_time,
            "git_head": self.git_head,
            "git_dirty": self.environment.get("git.dirty"),
            "resource_changes": dict(self.resource_changes),
            "config": {k: v.to_dict() for k, v in sorted(self.config.items())},
        }


@dataclass(frozen=True)
class StackState:
    """Resources of one checkpoint, normalised across checkpoint versions 0 to 3."""

    resources: tuple[Mapping[str, Any], ...]
    pending_operations: tuple[Mapping[str, Any], ...] = ()
    outputs: Mapping[str, Any] = field(default_factory=dict)

    def by_urn(self) -> dict[str, Mapping[str, Any]]:
        return {str(r["urn"]): r for r in self.resources}


def provider_version(state: StackState, package: str = "aws") -> str | None:
    """The version of the ``package`` provider the checkpoint's resources were last written with
    (``pulumi:providers:<package>``: its ``version`` input, else the one in a default provider's name,
    ``default_7_51_1``); the newest when there are several."""
    found: list[str] = []
    for resource in state.resources:
        if resource.get("type") != f"pulumi:providers:{package}":
            continue
        version = (resource.get("inputs") or {}).get("version") or (resource.get("outputs") or {}).get("version")
        if not version:
            name = str(resource.get("urn", "")).rsplit("::", 1)[-1]
            match = re.fullmatch(r"default_(\d+)_(\d+)_(\d+)", name)
            version = ".".join(match.groups()) if match else None
        if isinstance(version, str) and re.fullmatch(r"\d+(\.\d+)*([.+-].*)?", version):
            found.append(version)
    return max(found, key=lambda v: [int(p) for p in re.findall(r"\d+", v)[:3]]) if found else None


def normalize_resource(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A checkpoint resource with the keys we compare: urn, type, id, inputs, outputs."""
    inputs = raw.get("inputs")
    if inputs is None:
        # Checkpoint v0/v1 kept provider defaults apart from the inputs.
        inputs = raw.get("defaults")
    return {
        "urn": str(raw.get("urn", "")),
        "type": str(raw.get("type", "")),
        "id": raw.get("id"),
        "custom": bool(raw.get("custom", False)),
        "parent": raw.get("parent"),
        "inputs": dict(inputs or {}),
        "outputs": dict(raw.get("outputs") or {}),
        "delete": bool(raw.get("delete", False)),
    }


_PLAIN_KEY = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$-]*$")


def format_path(parts: Sequence[str | int]) -> str:
    """``["a", "b", 0, "c.d"]`` -> ``a.b[0]["c.d"]``."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            text += f".{part}" if text else part
        else:
            text += f"[{json.dumps(part)}]"
    return text


@dataclass(frozen=True)
class PropertyChange:
    """A property that differs; ``old``/``new`` are ``None`` when absent on that side."""

    path: str
    old: Any
    new: Any
    secret: bool = False

    @property
    def kind(self) -> str:
        if self.old is _ABSENT_SHOWN:
            return "added"
        if self.new is _ABSENT_SHOWN:
            return "removed"
        return "changed"

    def describe(self, width: int = 80) -> str:
        if self.secret:
            return f"{self.path}: {SECRET_MASK} changed"
        return f"{self.path}: {shorten(self.old, width)} -> {shorten(self.new, width)}"

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "old": self.old, "new": self.new, "secret": self.secret}


class _Absent:
    def __repr__(self) -> str:
        return "(absent)"


_ABSENT = _Absent()
_ABSENT_SHOWN = None  # how an absent side is reported


def shorten(value: Any, width: int = 80) -> str:
    """A value on one line, middle elided when longer than ``width``."""
    if value is None:
        return "(absent)"
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    text = " ".join(text.split())
    if len(text) <= width:
        return text
    keep = max(8, (width - 3) // 2)
    return f"{text[:keep]}...{text[-keep:]}"


def _masked(value: Any) -> Any:
    """A value safe to print: secrets inside it replaced by the mask."""
    if is_secret_value(value):
        return SECRET_MASK
    if isinstance(value, Mapping):
        return {str(k): _masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return value


def diff_properties(old: Any, new: Any, path: tuple[str | int, ...] = ()) -> list[PropertyChange]:
    """Leaf-level differences between two property values, by path."""
    if is_secret_value(old) or is_secret_value(new):
        # An added or removed secret has the _ABSENT sentinel on one side, which json cannot encode.
        if old is _ABSENT or new is _ABSENT or json.dumps(old, sort_keys=True) != json.dumps(new, sort_keys=True):
            return [PropertyChange(format_path(path) or "(value)", SECRET_MASK if old is not _ABSENT else None,
                                   SECRET_MASK if new is not _ABSENT else None, secret=True)]
        return []
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        changes: list[PropertyChange] = []
        for key in sorted(set(old) | set(new), key=str):
            changes += diff_properties(old.get(key, _ABSENT), new.get(key, _ABSENT), (*path, str(key)))
        return changes
    if isinstance(old, list) and isinstance(new, list):
        changes = []
        for index in range(max(len(old), len(new))):
            changes += diff_properties(old[index] if index < len(old) else _ABSENT,
                                       new[index] if index < len(new) else _ABSENT, (*path, index))
        return changes
    if old is _ABSENT and new is _ABSENT:
        return []
    if old == new and type(old) is type(new):
        return []
    return [PropertyChange(format_path(path) or "(value)",
                           None if old is _ABSENT else _masked(old),
                           None if new is _ABSENT else _masked(new))]


@dataclass(frozen=True)
class ResourceChange:
    urn: str
    type: str
    kind: str  # "added" | "removed" | "changed"
    properties: tuple[PropertyChange, ...] = ()

    @property
    def name(self) -> str:
        return self.urn.rsplit("::", 1)[-1]

    def to_dict(self) -> dict[str, Any]:
        return {"urn": self.urn, "type": self.type, "name": self.name, "change": self.kind,
                "properties": [p.to_dict() for p in self.properties]}


def diff_resources(old: Iterable[Mapping[str, Any]], new: Iterable[Mapping[str, Any]],
                   *, compare: str = "inputs") -> list[ResourceChange]:
    """Resources added, removed and changed between two checkpoints, by URN.

    Changed resources list their differing properties (``compare`` selects
    ``inputs``, the desired state, or ``outputs``); a changed physical ``id``
    (a replacement) is reported as the property ``id``.
    """
    olds = {str(r["urn"]): normalize_resource(r) for r in old}
    news = {str(r["urn"]): normalize_resource(r) for r in new}
    changes: list[ResourceChange] = []
    for urn in sorted(set(olds) | set(news)):
        before, after = olds.get(urn), news.get(urn)
        if before is None:
            assert after is not None
            changes.append(ResourceChange(urn, after["type"], "added"))
        elif after is None:
            changes.append(ResourceChange(urn, before["type"], "removed"))
        else:
            properties = diff_properties(before[compare], after[compare])
            if before["id"] != after["id"]:
                properties.insert(0, PropertyChange("id", before["id"], after["id"]))
            if properties:
                changes.append(ResourceChange(urn, after["type"], "changed", tuple(properties)))
    return changes


@dataclass(frozen=True)
class ConfigChange:
    key: str
    kind: str  # "added" | "removed" | "changed"
    secret: bool
    old: str | None
    new: str | None

    def describe(self, width: int = 80) -> str:
        if self.secret:
            verb = {"added": "added", "removed": "removed", "changed": "changed"}[self.kind]
            return f"{self.key}: {SECRET_MASK} {verb}"
        if self.kind == "added":
            return f"{self.key}: (absent) -> {shorten(self.new, width)}"
        if self.kind == "removed":
            return f"{self.key}: {shorten(self.old, width)} -> (absent)"
        return f"{self.key}: {shorten(self.old, width)} -> {shorten(self.new, width)}"

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "change": self.kind, "secret": self.secret, "old": self.old, "new": self.new}


def diff_config(old: Mapping[str, ConfigValue], new: Mapping[str, ConfigValue]) -> list[ConfigChange]:
    """Config keys added, removed and changed. A secret's values are never carried,
    only whether it changed (by digest of plaintext or ciphertext)."""
    changes: list[ConfigChange] = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key), new.get(key)
        if before is None and after is not None:
            changes.append(ConfigChange(key, "added", after.secret, None, after.shown()))
        elif after is None and before is not None:
            changes.append(ConfigChange(key, "removed", before.secret, before.shown(), None))
        elif before is not None and after is not None and before.token != after.token:
            secret = before.secret or after.secret
            changes.append(ConfigChange(key, "changed", secret,
                                        SECRET_MASK if secret else before.value,
                                        SECRET_MASK if secret else after.value))
    return changes


def changed_config_keys(previous: Mapping[str, ConfigValue] | None, current: Mapping[str, ConfigValue]) -> list[str]:
    """Keys whose value differs from the previous update's (all keys for the first update)."""
    if previous is None:
        return sorted(current)
    return [change.key for change in diff_config(previous, current)]


@dataclass(frozen=True)
class StackDiff:
    """What separates two versions: config and (when both checkpoints are known) resources."""

    from_version: int
    to_version: int | None  # None = the current state
    config: tuple[ConfigChange, ...]
    resources: tuple[ResourceChange, ...] | None
    notes: tuple[str, ...] = ()

    def summary(self) -> dict[str, int]:
        counts = {"config": len(self.config)}
        for kind in ("added", "removed", "changed"):
            counts[f"resources_{kind}"] = sum(1 for r in self.resources or () if r.kind == kind)
        return counts

    def to_dict(self) -> dict[str, Any]:
        return {
            "from": self.from_version,
            "to": self.to_version if self.to_version is not None else "current",
            "summary": self.summary(),
            "config": [c.to_dict() for c in self.config],
            "resources": None if self.resources is None else [r.to_dict() for r in self.resources],
            "notes": list(self.notes),
        }


def diff_states(from_version: int, to_version: int | None, from_config: Mapping[str, ConfigValue],
                to_config: Mapping[str, ConfigValue], from_state: StackState | None,
                to_state: StackState | None, notes: Iterable[str] = ()) -> StackDiff:
    """Both halves of a diff. Resources are compared only when both states are known."""
    resources = None
    if from_state is not None and to_state is not None:
        resources = tuple(diff_resources(from_state.resources, to_state.resources))
    return StackDiff(from_version, to_version, tuple(diff_config(from_config, to_config)), resources,
                     tuple(notes))
