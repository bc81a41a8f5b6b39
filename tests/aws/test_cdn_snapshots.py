"""Whole-distribution snapshots (the adapter layer of ``infra cdn``): taken with their ETag, stored owner-only,
put back under IfMatch (412 when the distribution changed since), and what a change must invalidate. Real
boto3 calls against the moto server with the sandbox's CloudFront semantics."""

from __future__ import annotations

import copy
import datetime as dt
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rollback.adapters.cloudfront import EdgeAdapter, SnapshotStore, invalidation_paths, set_origin_path, take_snapshot
from rollback.errors import BadInput, StaleETag
from tests.aws.conftest import EdgeStack


def adapter(aws: Callable[[str], Any]) -> EdgeAdapter:
    return EdgeAdapter(aws("cloudfront"), aws("lambda"))


def test_snapshot_restore_guarded_by_the_etag(aws: Callable[[str], Any], edge_stack: Callable[..., EdgeStack],
                                             tmp_path: Path) -> None:
    stack = edge_stack()
    edge = adapter(aws)
    store = SnapshotStore(tmp_path / "snapshots")
    snapshot = take_snapshot(edge, stack.distribution_id, "before the release switch")
    assert snapshot.etag == stack.etag
    saved = store.save(snapshot)
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert store.load(snapshot.id).config == snapshot.config
    assert [s.id for s in store.list(stack.distribution_id)] == [snapshot.id]

    # A change (someone else's) moves the ETag on: putting the snapshot back with the old one is a 412.
    changed = set_origin_path(snapshot.config, "assets", "/releases/r43")
    etag = edge.update_config(stack.distribution_id, changed, snapshot.etag)
    with pytest.raises(StaleETag):
        edge.update_config(stack.distribution_id, snapshot.config, snapshot.etag)
    assert edge.get_config(stack.distribution_id).origins[0].origin_path == "/releases/r43"  # not overwritten
    # With the current ETag it goes back, exactly.
    edge.update_config(stack.distribution_id, snapshot.config, etag)
    back = edge.get_config(stack.distribution_id)
    assert back.origins[0].origin_path == stack.origin_path
    assert back.raw["DefaultCacheBehavior"] == snapshot.config["DefaultCacheBehavior"]


def test_snapshots_newest_first_and_unknown_ids(aws: Callable[[str], Any], edge_stack: Callable[..., EdgeStack],
                                                tmp_path: Path) -> None:
    stack = edge_stack()
    edge = adapter(aws)
    store = SnapshotStore(tmp_path)
    times = iter([dt.datetime(2026, 11, 28, 9, 0, tzinfo=dt.UTC), dt.datetime(2026, 11, 28, 9, 5, tzinfo=dt.UTC)])
    first = take_snapshot(edge, stack.distribution_id, "one", now=lambda: next(times))
    second = take_snapshot(edge, stack.distribution_id, "two", now=lambda: next(times))
    store.save(first)
    store.save(second)
    assert [s.id for s in store.list()] == [second.id, first.id]
    assert second.summary()["origins"] == [{"id": "assets", "domain_name": f"{stack.bucket}.s3.amazonaws.com",
                                            "origin_path": stack.origin_path}]
    for bad in ("nope", "../x", ".hidden"):
        with pytest.raises(BadInput):
            store.load(bad)
    (tmp_path / stack.distribution_id / f"{first.id}.distribution.json").write_text("{broken")
    assert [s.id for s in store.list()] == [second.id]  # a damaged file is skipped when listing
    with pytest.raises(BadInput, match="damaged"):
        store.load(first.id)


def test_origin_header_secrets_never_reach_the_summary(tmp_path: Path) -> None:
    from rollback.adapters.cloudfront import DistributionSnapshot
    from rollback.redact import redact_text

    config = {"Origins": {"Quantity": 1, "Items": [{"Id": "app", "DomainName": "app.vercel.app", "OriginPath": "",
                                                    "CustomHeaders": {"Quantity": 1, "Items": [
                                                        {"HeaderName": "X-Origin-Verify",
                                                         "HeaderValue": "s3cr3t-origin-verify-value"}]}}]},
              "DefaultCacheBehavior": {"TargetOriginId": "app"}}
    snapshot = DistributionSnapshot("E1-x", "E1", "ETAG", "2026-11-28T09:00:00Z", "test", config)
    store = SnapshotStore(tmp_path)
    store.save(snapshot)
    loaded = store.load("E1-x")
    assert "s3cr3t-origin-verify-value" not in str(loaded.summary())
    assert "s3cr3t-origin-verify-value" not in repr(loaded)
    assert redact_text("header s3cr3t-origin-verify-value") != "header s3cr3t-origin-verify-value"


BASE: dict[str, Any] = {
    "Origins": {"Quantity": 2, "Items": [{"Id": "assets", "DomainName": "b.s3.amazonaws.com", "OriginPath": "/r/1"},
                                         {"Id": "app", "DomainName": "app.vercel.app", "OriginPath": ""}]},
    "DefaultCacheBehavior": {"TargetOriginId": "assets", "LambdaFunctionAssociations": {"Quantity": 0}},
    "CacheBehaviors": {"Quantity": 2, "Items": [{"PathPattern": "/api/*", "TargetOriginId": "app"},
                                                {"PathPattern": "/static/*", "TargetOriginId": "assets"}]},
    "DefaultRootObject": "index.html",
    "Comment": "c",
    "PriceClass": "PriceClass_100",
}


def changed(**edits: Any) -> dict[str, Any]:
    config = copy.deepcopy(BASE)
    for path, value in edits.items():
        node = config
        keys = path.split("__")
        for key in keys[:-1]:
            node = node[int(key)] if key.isdigit() else node[key]
        node[int(keys[-1]) if keys[-1].isdigit() else keys[-1]] = value
    return config


@pytest.mark.parametrize(
    ("new", "paths"),
    [
        (changed(Comment="other", PriceClass="PriceClass_All"), []),  # nothing served differs
        (changed(Origins__Items__0__OriginPath="/r/0"), ["/*"]),  # the default behaviour serves that origin
        (changed(Origins__Items__1__DomainName="other.vercel.app"), ["/api/*"]),
        (changed(CacheBehaviors__Items__0__Compress=True), ["/api/*"]),
        (changed(DefaultRootObject="home.html"), ["/"]),
    ],
)
def test_invalidation_paths_follow_what_changed(new: dict[str, Any], paths: list[str]) -> None:
    assert invalidation_paths(BASE, new) == paths
    assert invalidation_paths(new, BASE) == paths


def test_set_origin_path_changes_that_origin_only() -> None:
    updated = set_origin_path(BASE, "assets", "/r/2")
    assert updated["Origins"]["Items"][0]["OriginPath"] == "/r/2"
    assert BASE["Origins"]["Items"][0]["OriginPath"] == "/r/1"  # the input is untouched
    assert {k: v for k, v in updated.items() if k != "Origins"} == {k: v for k, v in BASE.items() if k != "Origins"}
    with pytest.raises(BadInput, match="no origin 'media'"):
        set_origin_path(BASE, "media", "/x")
