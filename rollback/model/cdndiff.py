"""Field-by-field differences between two CloudFront ``DistributionConfig`` documents: pure data, no I/O.

``UpdateDistribution`` replaces the whole config (the API reference: "the new
configuration replaces the existing configuration ... not merged"), so a
restore of a saved config is done only when *every* field reads back as saved.
:func:`config_diff` lists what differs, by path, so that a plan can show it
and a check can require it to be empty:

- lists of named things are compared by name, not position: origins by
  ``Id``, cache behaviours by ``PathPattern``, custom headers by
  ``HeaderName``, function associations by ``EventType``, error responses by
  ``ErrorCode``, origin groups by ``Id``
  (``Origins[app].CustomHeaders[X-Origin-Verify].HeaderValue``);
- CloudFront's ``{"Quantity": n, "Items": [...]}`` wrappers are compared by
  their items (``{"Quantity": 0}`` equals ``{"Quantity": 0, "Items": []}``);
- ``CallerReference`` is left out: CloudFront refuses to change it
  (``IllegalUpdate``), so an update always sends the distribution's own;
- custom origin header values may be secrets (``X-Origin-Verify``): a change
  says only that the value changed, never the value.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rollback.model.stackdiff import SECRET_MASK, shorten

__all__ = ["IGNORED_FIELDS", "FieldChange", "comparable", "config_diff", "config_digest", "with_caller_reference"]

IGNORED_FIELDS = ("CallerReference",)

# List items are matched by these fields (the first one an item has).
_ITEM_KEYS = ("Id", "PathPattern", "HeaderName", "EventType", "ErrorCode")
_SECRET_FIELDS = {("CustomHeaders", "HeaderValue")}


@dataclass(frozen=True)
class FieldChange:
    """One field that differs: ``path`` in the config, before and after (``None``: absent)."""

    path: str
    old: Any
    new: Any
    secret: bool = False

    @property
    def change(self) -> str:
        if self.old is None:
            return "added"
        if self.new is None:
            return "removed"
        return "changed"

    @property
    def is_whole_item(self) -> bool:
        """A whole item (an origin, a behaviour...) added or removed: shown by name, not by its fields."""
        return self.change != "changed" and isinstance(self.old if self.new is None else self.new, Mapping)

    def describe(self, width: int = 200) -> str:
        if self.is_whole_item:
            return f"{self.path}: {self.change}"  # its fields may hold secrets
        if self.secret:
            return f"{self.path}: {SECRET_MASK} {self.change}"
        return f"{self.path}: {shorten(self.old, width // 2)} -> {shorten(self.new, width // 2)}"

    def to_dict(self) -> dict[str, Any]:
        hidden = self.secret or self.is_whole_item
        return {"path": self.path, "change": self.change, "secret": self.secret,
                "old": None if hidden else self.old, "new": None if hidden else self.new,
                "describe": self.describe()}


def comparable(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` without the fields an update cannot change, wrappers normalised."""
    return {key: _normal(value) for key, value in config.items() if key not in IGNORED_FIELDS}


def with_caller_reference(target: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
    """``target`` carrying ``current``'s ``CallerReference`` (the one field an update must not change)."""
    updated = dict(target)
    if "CallerReference" in current:
        updated["CallerReference"] = current["CallerReference"]
    return updated


def config_digest(config: Mapping[str, Any]) -> str:
    """A sha256 of ``config`` as saved (key order does not matter)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
                          .encode()).hexdigest()


def config_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[FieldChange]:
    """Every field of ``old`` and ``new`` that differs (``CallerReference`` left out), by path."""
    found: list[FieldChange] = []
    _diff("", comparable(old), comparable(new), found, parent="")
    return found


def _normal(value: Any) -> Any:
    if isinstance(value, Mapping):
        normal = {str(k): _normal(v) for k, v in value.items()}
        if "Quantity" in normal and set(normal) <= {"Quantity", "Items"}:
            items = normal.get("Items") or []
            return {"Quantity": len(items), "Items": items}
        return normal
    if isinstance(value, list | tuple):
        return [_normal(v) for v in value]
    return value


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _item_key(item: Any) -> str | None:
    if isinstance(item, Mapping):
        for key in _ITEM_KEYS:
            if key in item:
                return str(item[key])
    return None


def _keyed(items: Sequence[Any]) -> dict[str, Any] | None:
    """``items`` by their name, when every item has a distinct one."""
    keyed: dict[str, Any] = {}
    for item in items:
        key = _item_key(item)
        if key is None or key in keyed:
            return None
        keyed[key] = item
    return keyed


def _diff(path: str, old: Any, new: Any, found: list[FieldChange], *, parent: str) -> None:
    if old == new:
        return
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        if set(old) <= {"Quantity", "Items"} and set(new) <= {"Quantity", "Items"}:
            _diff_items(path, list(old.get("Items") or []), list(new.get("Items") or []), found, parent=parent)
            return
        for key in sorted(set(old) | set(new)):
            name = str(key)
            secret = (parent, name) in _SECRET_FIELDS
            if secret:
                if old.get(key) != new.get(key):
                    found.append(FieldChange(_join(path, name), old.get(key), new.get(key), secret=True))
                continue
            _diff(_join(path, name), old.get(key), new.get(key), found, parent=parent if name == "Items" else name)
        return
    if isinstance(old, list) and isinstance(new, list):
        _diff_items(path, old, new, found, parent=parent)
        return
    found.append(FieldChange(path, old, new, secret=_holds_secret(parent, old) or _holds_secret(parent, new)))


def _diff_items(path: str, old: list[Any], new: list[Any], found: list[FieldChange], *, parent: str) -> None:
    keyed_old, keyed_new = _keyed(old), _keyed(new)
    if keyed_old is None or keyed_new is None:
        if all(not isinstance(v, Mapping | list) for v in [*old, *new]):
            found.append(FieldChange(path, old, new))  # a list of plain values (aliases, methods...)
            return
        for index in range(max(len(old), len(new))):
            _diff(f"{path}[{index}]", old[index] if index < len(old) else None,
                  new[index] if index < len(new) else None, found, parent=parent)
        return
    for key in [*keyed_old, *[k for k in keyed_new if k not in keyed_old]]:
        _diff(f"{path}[{key}]", keyed_old.get(key), keyed_new.get(key), found, parent=parent)


def _holds_secret(parent: str, value: Any) -> bool:
    """A whole custom header (or a list of them) appearing or disappearing."""
    if parent == "CustomHeaders":
        return True
    if isinstance(value, Mapping):
        return any(_holds_secret(str(k), v) for k, v in value.items()) or "HeaderValue" in value
    if isinstance(value, list):
        return any(_holds_secret(parent, v) for v in value)
    return False
