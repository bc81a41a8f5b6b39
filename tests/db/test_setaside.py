"""Which set-aside databases ``db prune`` may drop: a copy a swap kept is kept while its safety dump is
not written (``db restore --swap`` writes it after the swap, issue 20). Pure: rows as the catalog gives them."""

from __future__ import annotations

from typing import Any

import pytest

from rollback.setaside import Mark, classify_set_aside

LIVE = "app"
ASIDE = "app_replaced_20261207041500"


def row(dump: str | None) -> dict[str, Any]:
    details: dict[str, Any] = {"replaced_by": "app_restore_20261207041500", "backup": "app-20261207T040000Z"}
    if dump is not None:
        details["dump"] = dump
    return {"name": ASIDE, "bytes": 1, "comment": Mark("replaced", "run-1", LIVE, ASIDE, details=details).to_comment()}


@pytest.mark.parametrize(("dump", "dumped", "prunable"), [
    (None, (), True),  # a swap with no dump to follow ('db swap', or --skip-emergency-backup)
    ("pending", (), False),  # the dump is not written: the only copy of the database before the restore
    ("pending", (ASIDE,), True),  # a complete backup was read from it (killed before the mark was updated)
    ("app-20261207T041501Z-emergency", (), True),  # the mark names its written dump
])
def test_a_replaced_copy_waits_for_its_safety_dump(dump: str | None, dumped: tuple[str, ...], prunable: bool) -> None:
    [item] = classify_set_aside([row(dump)], LIVE, live_exists=True, journaled={}, dumped=dumped)
    assert item["prunable"] is prunable
    if not prunable:
        assert "safety dump is not written yet" in item["reason"] and "run-1" in item["reason"]
