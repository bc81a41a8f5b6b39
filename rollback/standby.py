"""Staged standbys: a backup restored ahead of time, so that a restore at incident time is a file copy.

``rollback db backup --stage`` restores the new backup into ``<live>_standby_<time>``
beside the live database, checks its row counts against the manifest, closes it to
connections and marks it (``rollback:{"role": "standby", "backup": ..., "tables": ...,
"bytes": ...}``). ``rollback db restore`` of that backup then clones the standby
(``CREATE DATABASE ... TEMPLATE <standby> STRATEGY FILE_COPY``) instead of loading the
dump, and keeps the standby for a second attempt.

A standby is used only while it is *fresh* against its backup: its mark names the
backup and the same row counts as the manifest has now, it still refuses connections,
nobody is connected, its size is the size it had when it was staged, and this role may
copy it. Otherwise the plan says why and restores from the dump.

Pure: the catalog facts are passed in.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rollback.setaside import Mark, parse_set_aside_name

__all__ = ["StandbyChoice", "choose_standby", "counts_fingerprint", "standby_details"]


def counts_fingerprint(tables: Sequence[Mapping[str, Any]]) -> str:
    """A short digest of a manifest's per-table row counts (order-independent)."""
    rows = sorted((str(t["schema"]), str(t["name"]), int(t["rows"])) for t in tables)
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]


def standby_details(manifest: Mapping[str, Any], size: int) -> dict[str, Any]:
    """What a complete standby's mark records (besides role, run, live and name)."""
    return {"backup": manifest["name"], "counts": "match", "tables": counts_fingerprint(manifest["tables"]),
            "rows": int(manifest["total_rows"]), "bytes": size}


@dataclass(frozen=True)
class StandbyChoice:
    """The standby to clone (``name``), or why none is used (``reason``; None when the backup was
    never staged)."""

    name: str | None
    reason: str | None = None

    @property
    def staged(self) -> bool:
        return self.name is not None


def choose_standby(rows: Sequence[Mapping[str, Any]], live: str, manifest: Mapping[str, Any],
                   facts: Callable[[str], Mapping[str, Any] | None]) -> StandbyChoice:
    """The newest fresh standby of ``manifest``'s backup among the catalog ``rows``
    (``{name, comment}``); ``facts(name)`` reads its size, sessions and rights."""
    candidates: list[tuple[str, Mark]] = []
    for row in rows:
        name = str(row["name"])
        parsed = parse_set_aside_name(name, live)
        mark = Mark.from_comment(row.get("comment"))
        if parsed is None or parsed[0] != "standby" or mark is None or not mark.is_mark_of(name, live):
            continue
        if mark.get("backup") == manifest["name"]:
            candidates.append((name, mark))
    if not candidates:
        return StandbyChoice(None)
    reasons: list[str] = []
    for name, mark in sorted(candidates, key=lambda c: c[0], reverse=True):
        why = _stale(name, mark, manifest, facts(name))
        if why is None:
            return StandbyChoice(name)
        reasons.append(f"standby {name} is stale: {why}")
    return StandbyChoice(None, "; ".join(reasons))


def _stale(name: str, mark: Mark, manifest: Mapping[str, Any], facts: Mapping[str, Any] | None) -> str | None:
    if facts is None:
        return "it is missing"
    if mark.get("counts") != "match":
        return "its staging never finished (row counts not checked)"
    if mark.get("tables") != counts_fingerprint(manifest["tables"]):
        return "its row counts differ from the backup's manifest"
    if facts.get("allows_connections"):
        return "it takes connections, so it may have changed since it was staged"
    if facts.get("sessions"):
        return f"{facts['sessions']} session(s) are connected to it"
    if mark.get("bytes") != facts.get("bytes"):
        return f"its size changed since it was staged ({mark.get('bytes')} -> {facts.get('bytes')} bytes)"
    if not facts.get("may_copy"):
        return "this role may not copy it (it is not the owner)"
    return None
