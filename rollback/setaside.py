"""The databases rollback sets aside beside the live one, and the mark that proves it made them.

``<live>_restore_<YYYYmmddHHMMSS>``  a backup restored beside the live database
``<live>_replaced_<YYYYmmddHHMMSS>`` the previous live database, kept by a swap
``<live>_standby_<YYYYmmddHHMMSS>``  a backup staged ahead of time (``db backup --stage``), no connections

A name alone proves nothing (``CREATE DATABASE app_restore_points`` is someone's
database), so each copy also carries a mark in its ``COMMENT ON DATABASE``:
``rollback:{"role": ..., "run": ..., "live": ..., "name": ...}``. A database is
rollback's when its name has the timestamp form of its role *and* its mark names
the same role, live database and name (a copy renamed by hand no longer matches).
``rollback db prune`` drops only those.

Pure: no database access here.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["KINDS", "MARK_PREFIX", "ROLES", "Mark", "classify_set_aside", "parse_set_aside_name", "set_aside_name"]

MARK_PREFIX = "rollback:"
ROLES = ("restore", "replaced", "standby")
MAX_IDENT = 63
STAMP_FORMAT = "%Y%m%d%H%M%S"


def set_aside_name(live: str, kind: str, stamp: str) -> str:
    """``<live>_<kind>_<stamp>`` trimmed to PostgreSQL's 63-BYTE identifier limit (PostgreSQL would
    cut a longer name itself, in bytes; a non-ASCII live name is cut here at a character boundary)."""
    suffix = f"_{kind}_{stamp}"
    room = MAX_IDENT - len(suffix.encode())
    return live.encode()[:room].decode("utf-8", "ignore") + suffix


def parse_set_aside_name(name: str, live: str) -> tuple[str, str] | None:
    """``(role, stamp)`` when ``name`` is a set-aside name of ``live`` (the live name trimmed as
    :func:`set_aside_name` trims it, a known role, a real timestamp); else None."""
    match = re.fullmatch(r"(?s)(?P<prefix>.*)_(?P<role>[a-z]+)_(?P<stamp>\d{14})", name)
    if not match or match.group("role") not in ROLES:
        return None
    role, stamp = match.group("role"), match.group("stamp")
    if set_aside_name(live, role, stamp) != name:
        return None
    try:
        dt.datetime.strptime(stamp, STAMP_FORMAT)
    except ValueError:
        return None
    return role, stamp


@dataclass(frozen=True)
class Mark:
    """What rollback writes into the comment of a database it made."""

    role: str
    run: str
    live: str
    name: str
    at: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_comment(self) -> str:
        body = {"role": self.role, "run": self.run, "live": self.live, "name": self.name,
                "at": self.at or dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
                **{k: v for k, v in self.details.items() if k not in ("role", "run", "live", "name", "at")}}
        return MARK_PREFIX + json.dumps(body, sort_keys=True, ensure_ascii=True)

    @classmethod
    def from_comment(cls, text: str | None) -> Mark | None:
        if not text or not text.startswith(MARK_PREFIX):
            return None
        try:
            body = json.loads(text[len(MARK_PREFIX):])
        except ValueError:
            return None
        if not isinstance(body, dict):
            return None
        try:
            role, run, live, name = (body.pop(key) for key in ("role", "run", "live", "name"))
        except KeyError:
            return None
        if not all(isinstance(v, str) and v for v in (role, run, live, name)):
            return None
        at = body.pop("at", "")
        return cls(role, run, live, name, at if isinstance(at, str) else "", body)

    def get(self, key: str, default: Any = None) -> Any:
        return self.details.get(key, default)

    def is_mark_of(self, name: str, live: str) -> bool:
        """True when this mark proves ``name`` is the copy of ``live`` rollback made in this role."""
        parsed = parse_set_aside_name(name, live)
        return parsed is not None and parsed[0] == self.role and self.name == name and self.live == live


KINDS = {"replaced": "replaced by a swap", "restore": "restored, never swapped in",
         "standby": "staged standby of a backup"}


def classify_set_aside(rows: list[dict[str, Any]], live: str, *, live_exists: bool,
                       journaled: Mapping[str, str], keep_standbys: int = 1,
                       dumped: Collection[str] = ()) -> list[dict[str, Any]]:
    """Which databases beside ``live`` rollback may drop.

    ``rows``: ``{name, bytes, comment}`` from the catalog; ``journaled``: databases
    journaled runs planned to create (name -> run), the proof for a copy killed
    before it was marked. Each result has ``prunable`` and, when it is kept, the
    ``reason``. While the live database is missing (a swap of an older version
    killed between its renames), the newest copy a swap set aside may be the only
    copy of the live data: it is always kept. The ``keep_standbys`` newest standbys are kept.
    A copy a swap kept while its safety dump is not written (marked ``dump: pending``, and no
    complete backup in ``dumped``, the copies complete backups were read from) is the only copy of
    the database as it was before the restore: it is kept.
    """
    candidates: list[tuple[dict[str, Any], str, str]] = []
    lookalikes: list[dict[str, Any]] = []
    for row in rows:
        name = str(row["name"])
        if name == live:
            continue
        parsed = parse_set_aside_name(name, live)
        if parsed is not None:
            candidates.append((row, *parsed))
        elif any(name.startswith(set_aside_name(live, role, "")) for role in ROLES):
            lookalikes.append(row)
    newest_replaced = max((stamp for _, role, stamp in candidates if role == "replaced"), default=None)
    out: list[dict[str, Any]] = []
    for row, role, stamp in candidates:
        name = str(row["name"])
        mark = Mark.from_comment(row.get("comment"))
        item: dict[str, Any] = {"database": name, "role": role, "bytes": int(row.get("bytes") or 0),
                                "kind": KINDS[role],
                                "run": None, "evidence": None, "prunable": False, "reason": None}
        if mark is not None and mark.is_mark_of(name, live):
            item.update(run=mark.run, evidence=f"marked by run {mark.run}", backup=mark.get("backup"),
                        complete=mark.get("counts") == "match")
        elif role in ("restore", "standby") and name in journaled:
            item.update(run=journaled[name], evidence=f"created by run {journaled[name]} (journaled; not yet marked)")
        else:
            item["reason"] = "it carries no rollback mark, so rollback did not make it (drop it by hand if it is yours)"
        if item["evidence"] and role == "replaced" and mark is not None and mark.get("dump") == "pending" \
                and name not in dumped:
            item.update(evidence=None, reason=f"its safety dump is not written yet (run {mark.run} writes it after "
                                              "the swap, or a run it started in the background; 'rollback journal "
                                              "list' shows them, 'rollback resume RUN' finishes one that stopped)")
        if item["evidence"] and role == "replaced" and not live_exists and stamp == newest_replaced:
            item.update(evidence=None, reason=f"the live database {live} is missing and this is the newest copy a "
                                              "swap set aside: it may be the only copy of the live data (rename it "
                                              f"back: ALTER DATABASE \"{name}\" RENAME TO \"{live}\")")
        item["prunable"] = item["evidence"] is not None
        out.append(item)
    # Only complete standbys (row counts checked) take a place among those kept.
    standbys = sorted((i for i in out if i["role"] == "standby" and i["prunable"] and i.get("complete")),
                      key=lambda i: i["database"], reverse=True)
    for kept in standbys[:max(0, keep_standbys)]:
        kept.update(prunable=False, reason=f"one of the {keep_standbys} newest standbys kept (--keep-standbys)")
    for row in lookalikes:
        out.append({"database": str(row["name"]), "role": None, "bytes": int(row.get("bytes") or 0),
                    "kind": "not rollback's", "run": None, "evidence": None, "prunable": False,
                    "reason": "its name is not one rollback gives (<db>_restore_/_replaced_/_standby_<timestamp>)"})
    return out
