"""Staged standbys: a backup restored ahead of time, so that a restore at incident time is a file copy.

``rollback db backup --stage`` restores the new backup into ``<live>_standby_<time>``
beside the live database, checks its row counts against the manifest, closes it to
connections and marks it (``rollback:{"role": "standby", "backup": ..., "tables": ...,
"bytes": ...}``). ``rollback db restore`` of that backup then clones the standby
(``CREATE DATABASE ... TEMPLATE <standby> STRATEGY FILE_COPY``) instead of loading the
dump, and keeps the standby for a second attempt.

A standby is used only while it is *fresh* against its backup: its mark names the
backup and the same row counts as the manifest has now, it still refuses connections,
no client is connected, its data did not change since it was staged, and this role may
copy it. Otherwise the plan says why and restores from the dump.

Whether its data changed is judged by the data, not by its size: autovacuum and
autoanalyze work in a database that refuses connections too (and ``VACUUM ANALYZE``
adds visibility and free-space maps and statistics), so a size check called nearly
every standby stale within minutes of staging. The method, and what it costs:

- At staging, the mark records the transaction horizon (the first transaction id not yet
  assigned, ``xid_horizon``), a digest of the sequences' states, and the version of the
  standby's ``pg_database`` row (``db_row``) right after it was closed to connections.
- Rows can only be edited through a connection, and connections are only possible after
  an ``ALTER DATABASE ... ALLOW_CONNECTIONS true``, which writes a new version of that row
  (VACUUM updates the row in place). So while the row is the recorded one, the data is
  as staged: nothing more is read (the common case costs one catalog query).
- When the row changed (connections were allowed since), the clone made at restore time
  is checked before anything else happens: no row of any user table carries an ``xmin`` at
  or past the horizon (nothing inserted or updated since staging; the row counts, checked
  against the manifest as always, catch a delete), no column was changed, the sequences
  are as staged. That costs one sequential read of each table of the clone (stopping at the
  first changed row), mostly from the cache the copy just filled. A change drops the clone,
  marks the standby stale (``stale`` in its mark) and fails the restore before the swap
  (and before any emergency backup); run again, it restores from the dump.

Marks written before this (no ``xid_horizon``) keep the size check.

Pure: the catalog facts are passed in.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rollback.setaside import Mark, parse_set_aside_name

__all__ = ["StandbyChoice", "choose_standby", "counts_fingerprint", "needs_data_check", "standby_details"]


def counts_fingerprint(tables: Sequence[Mapping[str, Any]]) -> str:
    """A short digest of a manifest's per-table row counts (order-independent)."""
    rows = sorted((str(t["schema"]), str(t["name"]), int(t["rows"])) for t in tables)
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]


def standby_details(manifest: Mapping[str, Any], size: int, *, xid_horizon: int | None = None,
                    sequences: str | None = None, db_row: int | None = None) -> dict[str, Any]:
    """What a complete standby's mark records (besides role, run, live and name)."""
    details: dict[str, Any] = {"backup": manifest["name"], "counts": "match",
                               "tables": counts_fingerprint(manifest["tables"]), "rows": int(manifest["total_rows"]),
                               "bytes": size}
    if xid_horizon is not None:
        details.update(xid_horizon=xid_horizon, sequences=sequences, db_row=db_row)
    return details


def needs_data_check(mark: Mark, facts: Mapping[str, Any] | None) -> bool:
    """Whether the clone of this standby must be checked for rows written since staging: connections
    were allowed at some moment since (its ``pg_database`` row is not the one recorded)."""
    return (mark.get("xid_horizon") is not None and facts is not None
            and facts.get("row_version") != mark.get("db_row"))


@dataclass(frozen=True)
class StandbyChoice:
    """The standby to clone (``name``), or why none is used (``reason``; None when the backup was
    never staged). ``check_data``: connections were allowed since it was staged, so its clone's rows
    are checked against staging."""

    name: str | None
    reason: str | None = None
    check_data: bool = False

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
        found = facts(name)
        why = _stale(name, mark, manifest, found)
        if why is None:
            return StandbyChoice(name, check_data=needs_data_check(mark, found))
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
    if mark.get("stale"):
        return f"its data changed after it was staged ({mark.get('stale')})"
    if mark.get("xid_horizon") is None and mark.get("bytes") != facts.get("bytes"):
        # A mark of before the data check: its size is all there is to go by.
        return f"its size changed since it was staged ({mark.get('bytes')} -> {facts.get('bytes')} bytes)"
    if not facts.get("may_copy"):
        return "this role may not copy it (it is not the owner)"
    return None
