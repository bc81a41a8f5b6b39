"""The cross-layer run's pure parts: layer order, --to targets, hazards."""

from __future__ import annotations

import datetime as dt

import pytest

from rollback.errors import BadInput
from rollback.model.layers import (
    MigrationRow,
    assets_mismatch,
    database_switch,
    parse_layers,
    parse_targets,
    schema_skew,
)

T = dt.datetime(2026, 11, 28, 9, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(("given", "expected"), [
    (["db,app"], ("app", "db")), (["edge", "app,assets"], ("app", "edge", "assets")),
    (["infra,db,assets,edge,app"], ("app", "edge", "assets", "infra", "db")), (["APP, db"], ("app", "db")),
])
def test_layers_in_run_order(given: list[str], expected: tuple[str, ...]) -> None:
    assert parse_layers(given) == expected


@pytest.mark.parametrize(("given", "match"), [([""], "names no layer"), (["app,cdn"], "'cdn' is not a layer")])
def test_bad_layers(given: list[str], match: str) -> None:
    with pytest.raises(BadInput, match=match):
        parse_layers(given)


def test_targets() -> None:
    assert parse_targets(["app=dpl_1", "DB = latest"], ("app", "db")) == {"app": "dpl_1", "db": "latest"}
    for values, match in ((["app"], "not LAYER=TARGET"), (["app="], "not LAYER=TARGET"), (["cdn=x"], "not a layer"),
                          (["edge=3"], "not in --layers"), (["app=1", "app=2"], "twice")):
        with pytest.raises(BadInput, match=match):
            parse_targets(values, ("app", "db"))


def test_schema_skew_names_the_migrations() -> None:
    rows = [MigrationRow("1_init", T - dt.timedelta(days=2), "applied"),
            MigrationRow("3_stats", T + dt.timedelta(hours=2), "applied"),
            MigrationRow("2_cache", T + dt.timedelta(hours=1), "applied"),
            MigrationRow("4_bad", T + dt.timedelta(hours=3), "failed"),
            MigrationRow("5_undone", T + dt.timedelta(hours=3), "rolled back")]
    hazard = schema_skew(T, rows, restores_db=False, accepted=False)
    assert hazard is not None and hazard.blocking and hazard.override == "--accept-schema-skew"
    assert hazard.details["migrations"] == ["2_cache", "3_stats"]
    assert "2_cache, 3_stats" in hazard.message
    accepted = schema_skew(T, rows, restores_db=False, accepted=True)
    assert accepted is not None and not accepted.blocking
    restoring = schema_skew(T, rows, restores_db=True, accepted=False)
    assert restoring is not None and not restoring.blocking and "restores a backup" in restoring.message
    assert schema_skew(T + dt.timedelta(days=1), rows, restores_db=False, accepted=False) is None
    assert schema_skew(None, rows, restores_db=False, accepted=False) is None


def test_assets_release_against_app_deployment() -> None:
    releases = {"r41": "dpl_old", "r42": "dpl_new", "r40": "abcdef1"}
    assert assets_mismatch("dpl_old", "r41", releases) is None
    assert assets_mismatch("abcdef1234", "r40", releases) is None  # a commit prefix
    hazard = assets_mismatch("dpl_old", "r42", releases)
    assert hazard is not None and hazard.blocking and "belongs to dpl_new" in hazard.message
    unknown = assets_mismatch("dpl_old", "r9", releases)
    assert unknown is not None and "not in the configured release map" in unknown.message
    assert assets_mismatch("dpl_old", "r42", {}) is None  # no map configured: nothing to compare


def test_database_switch() -> None:
    assert database_switch("db.old", None, url_env="DATABASE_URL", switching=False) is None
    assert database_switch("db.new", "db.new", url_env="DATABASE_URL", switching=False) is None
    hazard = database_switch("db.old", "db.new", url_env="DATABASE_URL", switching=False)
    assert hazard is not None and hazard.override == "--switch-database"
    assert "change the host in DATABASE_URL to db.new" in hazard.message
    switching = database_switch("db.old", "db.new", url_env="DATABASE_URL", switching=True)
    assert switching is not None and "redeploys" in switching.message
