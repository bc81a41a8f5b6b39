"""Staged standbys' freshness, judged by data rather than size (rollback.standby), in memory."""

from __future__ import annotations

from typing import Any

from rollback.setaside import Mark
from rollback.standby import choose_standby, needs_data_check, standby_details

LIVE = "app"
NAME = "app_standby_20261201090000"
MANIFEST = {"name": "app-20261201T090000Z", "tables": [{"schema": "public", "name": "User", "rows": 3}],
            "total_rows": 3}


def _rows(**details: Any) -> list[dict[str, Any]]:
    mark = Mark("standby", "run-1", LIVE, NAME, "2026-12-01T09:00:00Z", {**standby_details(MANIFEST, 1000),
                                                                       **details})
    return [{"name": NAME, "comment": mark.to_comment()}]


def _facts(**changes: Any) -> Any:
    facts = {"bytes": 1000, "allows_connections": False, "sessions": 0, "may_copy": True, "row_version": 77}
    facts.update(changes)
    return lambda name: facts


def test_a_size_change_alone_no_longer_makes_a_standby_stale() -> None:
    """VACUUM ANALYZE (or autovacuum) grows the files; the rows are as staged."""
    rows = _rows(xid_horizon=5000, sequences="abc", db_row=77)
    choice = choose_standby(rows, LIVE, MANIFEST, _facts(bytes=1_400_000))
    assert choice.name == NAME and choice.check_data is False


def test_connections_allowed_since_staging_ask_for_the_data_check() -> None:
    rows = _rows(xid_horizon=5000, sequences="abc", db_row=77)
    choice = choose_standby(rows, LIVE, MANIFEST, _facts(row_version=91))
    assert choice.name == NAME and choice.check_data is True
    mark = Mark.from_comment(rows[0]["comment"])
    assert mark is not None and needs_data_check(mark, {"row_version": 91})
    assert not needs_data_check(mark, {"row_version": 77})


def test_a_standby_found_changed_is_stale() -> None:
    rows = _rows(xid_horizon=5000, sequences="abc", db_row=77, stale="changed since staging: public.User (rows)")
    choice = choose_standby(rows, LIVE, MANIFEST, _facts())
    assert choice.name is None and "its data changed after it was staged" in str(choice.reason)


def test_a_mark_of_before_the_data_check_keeps_the_size_check() -> None:
    choice = choose_standby(_rows(), LIVE, MANIFEST, _facts(bytes=2000))
    assert choice.name is None and "its size changed" in str(choice.reason)
    assert choose_standby(_rows(), LIVE, MANIFEST, _facts()).name == NAME
