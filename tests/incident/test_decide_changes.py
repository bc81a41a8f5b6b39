"""What changed recently, per layer: the pure judgement (rollback.model.changes) and how it fills @changed."""

from __future__ import annotations

import datetime as dt

import pytest

from rollback.commands.budget import live_budget
from rollback.commands.decide import LiveReading, judge_changed
from rollback.errors import BadInput
from rollback.model.changes import (
    Change,
    Deployed,
    app_change,
    changed_layers,
    judge,
    layer_of_config_key,
    stack_changes,
)
from rollback.model.decide import Context, Signal, decide

DETECTED = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.UTC)


def ago(minutes: float) -> dt.datetime:
    return DETECTED - dt.timedelta(minutes=minutes)


@pytest.mark.parametrize(("key", "layer"), [
    ("rollback:edgeFunctionVersion", "edge"),
    ("edgeFunctionVersion", "edge"),
    ("rollback:authLambdaArn", "edge"),
    ("rollback:assetsRelease", "assets"),
    ("rollback:dbInstanceClass", "db"),
    ("rollback:dbInstanceIdentifier", "db"),
    ("rollback:assetsBucketName", "infra"),
    ("aws:region", "infra"),
    ("rollback:originVerifySecret", "infra"),
])
def test_config_keys_name_their_layer(key: str, layer: str) -> None:
    assert layer_of_config_key(key) == layer


@pytest.mark.parametrize(("minutes_before", "counted", "within"), [
    (3, True, True),  # the sandbox's bad deploy
    (0, True, True),
    (60, True, True),  # the edge of the window
    (61, True, False),  # too old
    (-0.5, True, True),  # within the clock skew after detection
    (-2, True, False),  # after detection: a rollback or a fix, not the cause
    (3, False, False),  # seen, not a change of the layer (a rollback in effect)
])
def test_a_change_counts_within_the_window_before_detection(minutes_before: float, counted: bool,
                                                            within: bool) -> None:
    finding, = judge([Change("edge", "cloudfront", "distribution E2 modified", ago(minutes_before), counted)],
                     DETECTED)
    assert finding.minutes_before == pytest.approx(minutes_before)
    assert finding.within is within
    assert changed_layers([finding]) == (("edge",) if within else ())
    document = finding.to_dict()
    assert document["value"] == round(minutes_before, 1) and document["changed"] is within
    assert document["threshold"] == "<= 60 min before detection"


def test_the_finding_line_says_what_changed_and_how_long_before_detection() -> None:
    finding, = judge([Change("edge", "cloudfront", "distribution E2SANDBOX modified", ago(3))], DETECTED)
    assert finding.line() == "edge: distribution E2SANDBOX modified 3 min before detection"
    old, = judge([Change("db", "prisma", "migration x started (applied)", ago(180))], DETECTED)
    assert old.line() == "db: migration x started (applied) 3.0 h before detection (outside the 60 min window)"
    late, = judge([Change("app", "vercel", "deployment d went live", ago(-5))], DETECTED, lookback=30)
    assert late.line() == "app: deployment d went live 5 min after detection (outside the 30 min window)"


def test_changed_layers_come_in_run_order_once_each() -> None:
    findings = judge([Change("db", "prisma", "m", ago(2)), Change("edge", "lambda", "v3", ago(4)),
                      Change("app", "vercel", "d", ago(3)), Change("edge", "cloudfront", "E2", ago(4)),
                      Change("infra", "pulumi", "u", ago(500)), Change("assets", "s3", "k", ago(4))], DETECTED)
    assert changed_layers(findings) == ("app", "edge", "assets", "db")
    assert [f.minutes_before for f in findings] == sorted(f.minutes_before for f in findings)


GOOD = Deployed("dpl_good", "dpl_good 'Add stats cache'", ago(120))
BAD = Deployed("dpl_bad", "dpl_bad 'Add new feature'", ago(3))


@pytest.mark.parametrize(("serving", "recent", "what", "counted"), [
    (BAD, [BAD, GOOD], "deployment dpl_bad 'Add new feature' went live (previous: dpl_good 'Add stats cache')",
     True),
    (None, [BAD, GOOD], "deployment dpl_bad 'Add new feature' went live (previous: dpl_good 'Add stats cache')",
     True),  # the project could not be read: the newest READY one is taken as serving
    (BAD, [], "deployment dpl_bad 'Add new feature' went live", True),
    (GOOD, [BAD, GOOD], "production serves dpl_good 'Add stats cache', older than the newest dpl_bad 'Add new "
                        "feature' (a rollback is in effect)", False),
    (None, [], None, None),
])
def test_the_app_changed_when_production_serves_the_newest_deployment(
        serving: Deployed | None, recent: list[Deployed], what: str | None, counted: bool | None) -> None:
    change = app_change(serving, recent)
    if what is None:
        assert change is None
        return
    assert change is not None
    assert (change.layer, change.source, change.what, change.counted) == ("app", "vercel", what, counted)
    assert change.at == (serving or recent[0]).live_at


@pytest.mark.parametrize(("keys", "resources", "expected"), [
    (["rollback:edgeFunctionVersion"], {"same": 20, "update": 1},
     [("edge", "pulumi update 4 ('bad') changed rollback:edgeFunctionVersion")]),
    (["rollback:assetsRelease", "rollback:edgeFunctionVersion", "rollback:dbInstanceClass", "aws:region"],
     {"update": 3},
     [("edge", "pulumi update 4 ('bad') changed rollback:edgeFunctionVersion"),
      ("assets", "pulumi update 4 ('bad') changed rollback:assetsRelease"),
      ("infra", "pulumi update 4 ('bad') changed aws:region"),
      ("db", "pulumi update 4 ('bad') changed rollback:dbInstanceClass")]),
    ([], {"same": 21}, []),  # a no-op update changed nothing
    ([], {"same": 20, "create": 1}, [("infra", "pulumi update 4 ('bad') changed 1 resource(s)")]),
    (None, {"update": 2}, [("infra", "pulumi update 4 ('bad') changed 2 resource(s)")]),  # previous unknown
])
def test_a_stack_update_changed_the_layers_its_config_keys_name(keys: list[str] | None, resources: dict[str, int],
                                                                expected: list[tuple[str, str]]) -> None:
    changes = stack_changes(4, "bad", ago(4), keys, resources)
    assert [(c.layer, c.what) for c in changes] == expected
    assert all(c.source == "pulumi" and c.at == ago(4) for c in changes)


def _reading(*changes: Change, problems: dict[str, str] | None = None) -> LiveReading:
    return LiveReading(changes=list(changes), change_problems=dict(problems or {}))


@pytest.mark.parametrize(("given", "reading", "layers", "origin"), [
    (None, _reading(Change("edge", "lambda", "v3", ago(4)), Change("app", "vercel", "d", ago(3))),
     ("app", "edge"), "live"),
    (["db"], _reading(Change("edge", "lambda", "v3", ago(4))), ("db",), "flag"),  # --changed overrides
    (None, _reading(Change("edge", "lambda", "v3", ago(400))), ("app",), "default"),  # nothing recent
    (None, _reading(problems={"changes.stack": "not configured: x"}), ("app",), "default"),
    (None, None, ("app",), "default"),  # not --live
])
def test_changed_comes_from_the_flag_else_the_recent_changes_else_the_app(
        given: list[str] | None, reading: LiveReading | None, layers: tuple[str, ...], origin: str) -> None:
    changed = judge_changed(given, reading, DETECTED)
    assert (changed.layers, changed.origin) == (layers, origin)
    document = changed.to_dict()
    assert document["layers"] == list(layers) and document["from"] == origin
    if reading is not None:
        assert [p["source"] for p in document["not_measured"]] == list(reading.change_problems)


def test_the_matrix_recommends_every_layer_that_changed() -> None:
    decision = decide([Signal("service_down", True, "health")], Context(env="sandbox", changed=("app", "edge",
                                                                                                 "assets", "db")))
    assert decision.layers == ("app", "edge", "assets", "db")
    assert decision.command == "rollback --env sandbox run --severity P0 --layers app,edge,assets,db --to db=repair"


@pytest.mark.parametrize(("given", "environ", "expected"), [
    (None, {}, 1.5), (None, {"ROLLBACK_DECIDE_BUDGET": "8"}, 8.0), (3.0, {"ROLLBACK_DECIDE_BUDGET": "8"}, 3.0),
])
def test_the_live_budget(given: float | None, environ: dict[str, str], expected: float) -> None:
    assert live_budget(given, environ) == expected


@pytest.mark.parametrize("raw", ["soon", "0", "-1", "nan", "1e9"])
def test_a_bad_budget_is_bad_input(raw: str) -> None:
    with pytest.raises(BadInput, match="ROLLBACK_DECIDE_BUDGET"):
        live_budget(None, {"ROLLBACK_DECIDE_BUDGET": raw})
