"""The decision matrix and tree (rollback.model.decide), table-driven: every row, every branch."""

from __future__ import annotations

import json
from typing import Any

import pytest

from rollback.model.decide import (
    CHANGED,
    RULES,
    Context,
    Signal,
    alarm_criterion,
    decide,
    order_layers,
    run_command,
)

# (signals, expected severity, expected layers): one case per row of the matrix, plus the boundaries.
MATRIX: list[tuple[str, list[Signal], str | None, tuple[str, ...]]] = [
    ("service down", [Signal("service_down", True)], "P0", ("app",)),
    ("data loss: app stops it, db repairs it", [Signal("data_loss", True)], "P0", ("app", "db")),
    ("security breach", [Signal("security_breach", True)], "P0", ("app",)),
    ("canary: its own error rate over 5 % (rollback.model.decide: judged on its share)",
     [Signal("canary_error_rate", 20.0, "cloudfront", "%")], "P1", ("app",)),
    ("error rate 7 %", [Signal("error_rate", 7.0, unit="%")], "P1", ("app",)),
    ("error rate just over 5 %", [Signal("error_rate", 5.01)], "P1", ("app",)),
    ("error rate exactly 5 % is some errors", [Signal("error_rate", 5.0)], "P2", ("app",)),
    ("error rate 1.5 %", [Signal("error_rate", 1.5)], "P2", ("app",)),
    ("error rate 1 % is fine", [Signal("error_rate", 1.0)], None, ()),
    ("p95 over 5 s", [Signal("p95_ms", 5200.0)], "P1", ("app",)),
    ("p95 at 5 s is fine", [Signal("p95_ms", 5000.0)], None, ()),
    ("major feature broken", [Signal("feature_broken", "major")], "P1", ("app",)),
    ("MAJOR in capitals", [Signal("feature_broken", "MAJOR")], "P1", ("app",)),
    ("some health URLs fail", [Signal("health_failing", True)], "P1", ("app",)),
    ("failed migration: app + db (repair, not restore)", [Signal("failed_migration", True)], "P1", ("app", "db")),
    ("connections exhausted", [Signal("db_connections_exhausted", True)], "P1", ("app",)),
    ("alarm: 5xx rate", [Signal("alarm.cdn-5xx-error-rate", "ALARM", "alarm")], "P1", ("app",)),
    ("alarm: origin latency", [Signal("alarm.cdn-origin-latency-p95", "ALARM", "alarm")], "P1", ("app",)),
    ("alarm: edge errors -> edge", [Signal("alarm.edge-function-errors", "ALARM", "alarm")], "P1", ("edge",)),
    ("alarm: db connections", [Signal("alarm.db-connections", "ALARM", "alarm")], "P1", ("app",)),
    ("alarm: db free storage", [Signal("alarm.db-free-storage", "ALARM", "alarm")], "P1", ("app",)),
    ("minor feature broken", [Signal("feature_broken", "minor")], "P2", ("app",)),
    # A post-rollback check: every release and rollback invalidates /*, so alone it is no rollback criterion.
    ("alarm: cache hit rate alone: no rollback", [Signal("alarm.cdn-cache-hit-rate", "ALARM", "alarm")], "P3", ()),
    ("rows fewer than the backup, unexplained: no db layer", [Signal("rows_fewer", True, "database")], "P2",
     ("app",)),
    ("another alarm", [Signal("alarm.other", "ALARM", "alarm")], "P2", ("app",)),
    ("cosmetic: fix forward, nothing to roll back", [Signal("cosmetic", True)], "P3", ()),
    ("alarm OK decides nothing", [Signal("alarm.cdn-5xx-error-rate", "OK", "alarm")], None, ()),
    ("composite alarm decides nothing by itself", [Signal("alarm.composite", "ALARM", "alarm")], None, ()),
    ("false flags decide nothing", [Signal("service_down", False), Signal("failed_migration", False)], None, ()),
    ("not measured decides nothing", [Signal("error_rate", None, "cloudfront", detail="not measured: x")], None, ()),
    ("NaN never matches", [Signal("error_rate", float("nan"))], None, ()),
    ("the most severe reason wins", [Signal("feature_broken", "minor"), Signal("service_down", True)], "P0",
     ("app",)),
    ("data loss + edge errors: every layer, in run order",
     [Signal("alarm.edge-function-errors", "ALARM"), Signal("data_loss", True)], "P0", ("app", "edge", "db")),
]


@pytest.mark.parametrize(("signals", "severity", "layers"), [c[1:] for c in MATRIX], ids=[c[0] for c in MATRIX])
def test_matrix(signals: list[Signal], severity: str | None, layers: tuple[str, ...]) -> None:
    decision = decide(signals, Context(env="production"))
    assert decision.severity == severity
    assert decision.layers == layers
    if severity is None:
        assert decision.reasons == () and decision.command is None
    elif layers:
        assert decision.command == run_command("production", severity, layers, decision.options)
    else:
        assert decision.command is None  # P3: fix forward


def test_every_rule_row_is_exercised() -> None:
    covered = set()
    for _, signals, _, _ in MATRIX:
        decision = decide(signals)
        covered |= {id(reason.rule) for reason in decision.reasons}
    assert covered == {id(rule) for rule in RULES}


# (context, signals, expected options): every branch of the option per layer.
OPTIONS: list[tuple[str, Context, list[Signal], dict[str, str]]] = [
    ("app: instant rollback by default", Context(), [Signal("error_rate", 9.0)], {"app": "vercel-instant-rollback"}),
    ("app: git revert when a rollback is already in effect", Context(rollback_active=True),
     [Signal("error_rate", 9.0)], {"app": "git-revert"}),
    ("app: git revert when the commit must go", Context(remove_commit=True), [Signal("error_rate", 9.0)],
     {"app": "git-revert"}),
    ("app: a rolling release is aborted, whatever else", Context(rollback_active=True, canary="canary c at 10 %"),
     [Signal("canary_error_rate", 100.0)], {"app": "abort-rolling-release"}),
    ("edge P0: break-glass even with a stack", Context(changed=("edge",), has_pulumi=True),
     [Signal("service_down", True)], {"edge": "break-glass"}),
    ("edge P1 with a stack: pinned restore", Context(has_pulumi=True), [Signal("alarm.edge-function-errors", "ALARM")],
     {"edge": "infra-pin"}),
    ("edge P1 without a stack: break-glass", Context(has_pulumi=False),
     [Signal("alarm.edge-function-errors", "ALARM")], {"edge": "break-glass"}),
    ("assets P1 with a stack: pinned restore", Context(changed=("assets",), has_pulumi=True),
     [Signal("error_rate", 9.0)], {"assets": "infra-pin"}),
    ("infra with a stack: pinned restore", Context(changed=("infra",), has_pulumi=True), [Signal("error_rate", 9.0)],
     {"infra": "infra-pin"}),
    ("infra without a stack: break-glass", Context(changed=("infra",)), [Signal("error_rate", 9.0)],
     {"infra": "break-glass"}),
    ("db: restore only for data loss", Context(), [Signal("data_loss", True)],
     {"app": "vercel-instant-rollback", "db": "restore-backup"}),
    ("db: migration repair for a failed migration", Context(), [Signal("failed_migration", True)],
     {"app": "vercel-instant-rollback", "db": "migration-repair"}),
    ("data loss and failed migration: restore", Context(),
     [Signal("failed_migration", True), Signal("data_loss", True)],
     {"app": "vercel-instant-rollback", "db": "restore-backup"}),
]


@pytest.mark.parametrize(("ctx", "signals", "options"), [c[1:] for c in OPTIONS], ids=[c[0] for c in OPTIONS])
def test_options(ctx: Context, signals: list[Signal], options: dict[str, str]) -> None:
    assert dict(decide(signals, ctx).options) == options


@pytest.mark.parametrize("signals", [[Signal("error_rate", 60.0)], [Signal("p95_ms", 30000.0)],
                                     [Signal("db_connections_exhausted", True)],
                                     [Signal("alarm.db-connections", "ALARM")]])
def test_high_error_rates_alone_never_restore_the_database(signals: list[Signal]) -> None:
    decision = decide(signals)
    assert "db" not in decision.layers


def test_changed_layers_replace_the_default_app_layer() -> None:
    decision = decide([Signal("error_rate", 9.0)], Context(changed=("assets", "edge"), has_pulumi=True))
    assert decision.layers == ("edge", "assets")
    decision = decide([Signal("data_loss", True)], Context(changed=("infra",)))
    assert decision.layers == ("infra", "db")


def test_reason_lines_carry_value_and_threshold() -> None:
    decision = decide([Signal("error_rate", 7.0, unit="%")])
    assert decision.reasons[0].line() == ("P1  error_rate = 7 % (threshold > 5 %, from flag): high error rate")
    reason = decision.reasons[0].to_dict()
    assert reason | {"detail": None} == {"signal": "error_rate", "value": 7.0, "threshold": "> 5", "unit": "%",
                                         "detail": None, "why": "high error rate", "severity": "P1",
                                         "source": "flag"}


def test_notes_by_branch() -> None:
    def notes(signals: list[Signal], ctx: Context | None = None) -> str:
        return " | ".join(decide(signals, ctx).notes)

    assert "rotate every credential" in notes([Signal("security_breach", True)])
    assert "--to db=BACKUP" in notes([Signal("data_loss", True)])
    assert "repair the failed migration" in notes([Signal("failed_migration", True)])
    assert "already in effect" in notes([Signal("error_rate", 9.0)], Context(rollback_active=True))
    assert "fixing forward is an option" in notes([Signal("feature_broken", "minor")])
    assert "no rollback" in notes([Signal("cosmetic", True)])
    assert "1 signal source(s) not measured" in notes([Signal("error_rate", 9.0), Signal("p95_ms", None)])


def test_document_is_strict_json_and_lists_every_signal() -> None:
    decision = decide([Signal("error_rate", 7.0), Signal("p95_ms", None, "cloudfront", detail="not measured: x"),
                       Signal("service_down", False, "health"), Signal("error_rate", float("inf"), "cloudfront")])
    text = json.dumps(decision.to_dict(), allow_nan=False)
    document: dict[str, Any] = json.loads(text)
    assert document["severity"] == "P1" and document["layers"] == ["app"]
    assert [s["status"] for s in document["signals"]] == ["breach", "not measured", "ok", "ok"]
    assert document["not_measured"] == [{"signal": "p95_ms", "source": "cloudfront", "detail": "not measured: x"}]


@pytest.mark.parametrize(("name", "prefix", "criterion"), [
    ("prod-cdn-5xx-error-rate", None, "cdn-5xx-error-rate"),
    ("prod-cdn-5xx-error-rate", "prod", "cdn-5xx-error-rate"),
    ("huntaze-production-edge-function-errors", None, "edge-function-errors"),
    ("prod-db-connections", None, "db-connections"),
    ("prod-db-free-storage", None, "db-free-storage"),
    ("prod-cdn-origin-latency-p95", None, "cdn-origin-latency-p95"),
    ("prod-cdn-cache-hit-rate", None, "cdn-cache-hit-rate"),
    ("prod-rollback", "prod", "composite"),
    ("checkout-latency", None, "other"),
])
def test_alarm_criterion(name: str, prefix: str | None, criterion: str) -> None:
    assert alarm_criterion(name, prefix) == criterion


def test_order_layers_and_changed_marker() -> None:
    assert order_layers(["db", "app", "db", "edge"]) == ("app", "edge", "db")
    assert all(CHANGED in rule.layers or rule.layers in ((), ("edge",)) for rule in RULES)


def test_command_quotes_the_environment() -> None:
    assert run_command("prod eu", "P1", ["app"]) == "rollback --env 'prod eu' run --severity P1 --layers app"
