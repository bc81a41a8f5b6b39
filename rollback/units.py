"""Parsing of durations and points in time given on the command line."""

from __future__ import annotations

import datetime as dt
import re

from rollback.errors import BadInput

__all__ = ["format_duration", "parse_duration", "parse_time"]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(text: str, *, option: str = "duration") -> float:
    """Seconds from ``90``, ``90s``, ``5m``, ``1h30m`` or ``500ms``."""
    match = _DURATION.match(text)
    if match:
        return float(match.group(1)) * _UNITS[match.group(2) or "s"]
    compact = text.replace(" ", "")
    parts = _PART.findall(compact)
    if parts and "".join(n + u for n, u in parts) == compact:
        return sum(float(n) * _UNITS[u] for n, u in parts)
    raise BadInput(f"{option}: {text!r} is not a duration", "write it like 90s, 5m, 1h30m")


def format_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 2 * 3600:
        minutes, secs = divmod(round(seconds), 60)
        return f"{minutes} min {secs:02d} s"
    if seconds < 2 * 86400:
        hours, rest = divmod(round(seconds), 3600)
        return f"{hours} h {rest // 60:02d} min"
    days, rest = divmod(round(seconds), 86400)
    return f"{days} d {rest // 3600:02d} h"


def parse_time(text: str, *, option: str = "time", now: dt.datetime | None = None) -> dt.datetime:
    """An aware UTC datetime from ISO-8601 (``2026-11-28T09:30:00Z``, offset or
    naive-as-UTC) or a relative ``15m ago``."""
    current = now or dt.datetime.now(dt.UTC)
    stripped = text.strip()
    if stripped.endswith(" ago"):
        return current - dt.timedelta(seconds=parse_duration(stripped[:-4], option=option))
    try:
        value = dt.datetime.fromisoformat(stripped.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise BadInput(f"{option}: {text!r} is not a time",
                       "write it as ISO-8601 UTC like 2026-11-28T09:30:00Z, or like '15m ago'") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)
