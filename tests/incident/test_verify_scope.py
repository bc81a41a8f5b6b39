"""Which checklist items a run of some layers can heal (``rollback.commands.verify.not_healed``): the rest
is reported at once as "not healed by this run", with the ``rollback run`` that would, not waited for."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollback.commands.verify import heal_command, healers, not_healed
from rollback.config import load_config


def item(item_id: str, status: str = "fail") -> dict[str, str]:
    return {"id": item_id, "status": status}


SANDBOX_AFTER_APP_AND_EDGE = [
    item("health./api/health", "pass"), item("cdn.5xx-rate"), item("db.migrations"),
    item("db.orphans.UserStats(userId) -> User(id)"), item("db.rows.User"), item("cdn.cache-hit-rate"),
    item("alarm.rollback-sandbox-cdn-cache-hit-rate"), item("alarm.rollback-sandbox-cdn-5xx-error-rate"),
    item("alarm.rollback-sandbox-rollback"), item("flow.login"), item("version", "pass"),
]


def test_a_run_of_app_and_edge_waits_for_what_they_can_heal_only() -> None:
    left = not_healed(SANDBOX_AFTER_APP_AND_EDGE, ["app", "edge"])
    # the database and the assets' cache are not healed by an app or edge rollback, nor is the composite
    # alarm while the cache-hit alarm is in ALARM
    assert set(left) == {"db.migrations", "db.orphans.UserStats(userId) -> User(id)", "db.rows.User",
                         "cdn.cache-hit-rate", "alarm.rollback-sandbox-cdn-cache-hit-rate",
                         "alarm.rollback-sandbox-rollback"}
    # the 5xx rate, the flows and the 5xx alarm are anyone's: the run waits for them
    assert not {"cdn.5xx-rate", "flow.login", "alarm.rollback-sandbox-cdn-5xx-error-rate"} & set(left)


def test_every_layer_waits_for_everything() -> None:
    assert not_healed(SANDBOX_AFTER_APP_AND_EDGE, ["app", "edge", "assets", "db"]) == {}


def test_the_composite_alarm_waits_when_its_failing_children_can_be_healed() -> None:
    items = [item("alarm.rollback-sandbox-cdn-5xx-error-rate"), item("alarm.rollback-sandbox-rollback")]
    assert not_healed(items, ["app"]) == {}
    items = [item("alarm.rollback-sandbox-edge-function-errors"), item("alarm.rollback-sandbox-rollback")]
    assert set(not_healed(items, ["app"])) == {"alarm.rollback-sandbox-edge-function-errors",
                                              "alarm.rollback-sandbox-rollback"}


def test_strict_counts_unmeasured_items() -> None:
    items = [item("db.rows", "not measured")]
    assert not_healed(items, ["app"]) == {}
    assert not_healed(items, ["app"], strict=True) == {"db.rows": ("db",)}


@pytest.mark.parametrize(("item_id", "layers"), [
    ("db.connect", ("db",)), ("version", ("app",)), ("cdn.cache-hit-rate", ("assets", "infra")),
    ("alarm.x-edge-function-errors", ("edge", "infra")), ("health./", None), ("flow.login", None),
    ("alarm.x-something-else", None),
])
def test_healers(item_id: str, layers: tuple[str, ...] | None) -> None:
    assert healers({"id": item_id}) == layers


def test_the_command_that_would_heal_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "rollback.toml"
    path.write_text('default_env = "staging"\n[env.staging.health]\nbase_url = "https://x.example.com"\n')
    config = load_config(path)
    left = not_healed(SANDBOX_AFTER_APP_AND_EDGE, ["app", "edge"])
    assert heal_command(config, left) == "rollback --env staging run --layers assets,db"
    assert heal_command(config, {"db.migrations": ("db",)}) == \
        "rollback --env staging run --layers db --to db=repair"  # a failed migration alone: the repair
