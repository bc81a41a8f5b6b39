from __future__ import annotations

import datetime as dt

import pytest

from rollback.errors import BadInput
from rollback.units import format_duration, parse_duration, parse_time


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("90s", 90), ("5m", 300), ("1h30m", 5400), ("500ms", 0.5), ("2d", 172800), ("1.5m", 90)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "five minutes", "5x", "-3s", "m5"])
def test_bad_durations_are_bad_input(text: str) -> None:
    with pytest.raises(BadInput, match="is not a duration"):
        parse_duration(text, option="--timeout")


def test_parse_time_forms() -> None:
    now = dt.datetime(2026, 11, 28, 10, 0, tzinfo=dt.UTC)
    assert parse_time("2026-11-28T09:30:00Z") == dt.datetime(2026, 11, 28, 9, 30, tzinfo=dt.UTC)
    assert parse_time("2026-11-28T10:30:00+01:00") == dt.datetime(2026, 11, 28, 9, 30, tzinfo=dt.UTC)
    assert parse_time("2026-11-28 09:30") == dt.datetime(2026, 11, 28, 9, 30, tzinfo=dt.UTC)
    assert parse_time("15m ago", now=now) == dt.datetime(2026, 11, 28, 9, 45, tzinfo=dt.UTC)
    with pytest.raises(BadInput, match="is not a time"):
        parse_time("yesterday-ish")


def test_format_duration() -> None:
    assert format_duration(0.25) == "250 ms"
    assert format_duration(12.34) == "12.3 s"
    assert format_duration(185) == "3 min 05 s"
    assert format_duration(7199) == "119 min 59 s"
    assert format_duration(3 * 3600 + 5 * 60) == "3 h 05 min"  # a backup's age reads in hours, then days
    assert format_duration(3 * 86400 + 4 * 3600) == "3 d 04 h"
