"""The per-key restore rules of rollback.adapters.s3_versions, table-driven, no server."""

from __future__ import annotations

import datetime as dt

import pytest

from rollback.adapters.s3_versions import KeyAction, ObjectVersion, newest_first, plan_key, state_at
from rollback.errors import BadInput

T0 = dt.datetime(2026, 11, 28, 9, 0, tzinfo=dt.UTC)


def at(minutes: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def v(version: str, minute: int, *, marker: bool = False, latest: bool = False, rank: int = 0) -> ObjectVersion:
    return ObjectVersion("k", version, latest, marker, at(minute), None if marker else f'"{version}"',
                         None if marker else 10, rank)


# Newest first, as S3 lists them.
WRITTEN = [v("v3", 30, latest=True), v("v2", 20), v("v1", 10)]
DELETED = [v("d2", 40, marker=True, latest=True), v("d1", 35, marker=True), v("v2", 20), v("v1", 10)]


def test_state_at() -> None:
    assert state_at(WRITTEN, at(5)) is None
    assert state_at(WRITTEN, at(10)).version_id == "v1"  # type: ignore[union-attr]
    assert state_at(WRITTEN, at(25)).version_id == "v2"  # type: ignore[union-attr]
    assert state_at(DELETED, at(36)).version_id == "d1"  # type: ignore[union-attr]


@pytest.mark.parametrize(("versions", "kwargs", "action", "target", "markers"), [
    (WRITTEN, {"to_version": "v1"}, "copy", "v1", ()),
    (WRITTEN, {"to_version": "v3"}, "none", "v3", ()),
    (DELETED, {"to_version": "v2"}, "remove-delete-markers", "v2", ("d2", "d1")),
    (DELETED, {"to_version": "v1"}, "copy", "v1", ()),
    (DELETED, {"undelete": True}, "remove-delete-markers", "v2", ("d2", "d1")),
    (WRITTEN, {"undelete": True}, "none", None, ()),
    ([v("d1", 5, marker=True, latest=True)], {"undelete": True}, "none", None, ()),
    (WRITTEN, {"before": at(25)}, "copy", "v2", ()),
    (WRITTEN, {"before": at(31)}, "none", "v3", ()),
    (WRITTEN, {"before": at(5)}, "delete", None, ()),
    (WRITTEN, {"before": at(5), "keep_new": True}, "none", None, ()),
    (DELETED, {"before": at(25)}, "remove-delete-markers", "v2", ("d2", "d1")),
    (DELETED, {"before": at(37)}, "none", None, ()),  # deleted then, still deleted
    ([v("v2", 50, latest=True), v("d1", 35, marker=True), v("v1", 10)], {"before": at(37)}, "delete", None, ()),
    ([v("d1", 35, marker=True, latest=True)], {"before": at(5)}, "none", None, ()),
])
def test_plan_key(versions: list[ObjectVersion], kwargs: dict[str, object], action: str, target: str | None,
                  markers: tuple[str, ...]) -> None:
    planned = plan_key("k", versions, **kwargs)  # type: ignore[arg-type]
    assert (planned.action, planned.target_version, planned.markers) == (action, target, markers)
    assert planned.current_version == newest_first(versions)[0].version_id
    assert planned.describe().startswith("k: ")


def test_same_second_ties_put_markers_above_content() -> None:
    # S3 timestamps have one-second resolution; markers and content come back in separate lists.
    versions = [v("a", 10, rank=0), v("m1", 10, marker=True, latest=True, rank=0), v("m2", 10, marker=True, rank=1)]
    assert [x.version_id for x in newest_first(versions)] == ["m1", "m2", "a"]
    assert plan_key("k", versions, undelete=True).markers == ("m1", "m2")


def test_errors() -> None:
    with pytest.raises(BadInput, match="does not exist"):
        plan_key("k", WRITTEN, to_version="nope")
    with pytest.raises(BadInput, match="is a delete marker"):
        plan_key("k", DELETED, to_version="d1")
    with pytest.raises(BadInput, match="exactly one"):
        plan_key("k", WRITTEN, to_version="v1", undelete=True)
    assert plan_key("k", [], undelete=True).action == "none"


def test_describe() -> None:
    assert KeyAction("k", "copy", "why", "v3", "v1").describe() == "k: copy version v1 over v3 (why)"
    assert KeyAction("k", "delete", "why", "v3").describe() == "k: add a delete marker over v3 (why)"
    assert KeyAction("k", "none", "why", "v3").describe() == "k: nothing to do (why)"
