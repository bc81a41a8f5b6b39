"""Data loss needs real evidence; the cache-hit-rate alarm alone recommends nothing (rollback.model.decide)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rollback.context import Services
from rollback.model.decide import Context, RowLoss, Signal, data_loss_signals, decide

ACCOUNT_REMOVAL = RowLoss("User", 299, 300, "app-1")  # one legitimate deletion
WIPED = RowLoss("User", 250, 300, "app-1")  # 50 rows, 16.7 %


def _decide(losses: list[RowLoss], corroboration: list[str], *others: Signal) -> tuple[str | None, tuple[str, ...]]:
    decision = decide([*others, *data_loss_signals(losses, corroboration)], Context())
    return decision.severity, decision.layers


def test_one_deletion_after_a_deploy_is_not_data_loss() -> None:
    assert not ACCOUNT_REMOVAL.crosses
    severity, layers = _decide([ACCOUNT_REMOVAL], ["deployment dpl_1 went live (4 min before detection)"])
    assert severity == "P2" and "db" not in layers


def test_a_big_loss_without_anything_to_explain_it_is_not_data_loss() -> None:
    signals = data_loss_signals([WIPED], [])
    assert [(s.name, s.value) for s in signals] == [("data_loss", False), ("rows_fewer", True)]
    assert "nothing explains it" in signals[1].detail and "50 fewer" in signals[1].detail
    severity, layers = _decide([WIPED], [])
    assert severity == "P2" and "db" not in layers


@pytest.mark.parametrize("evidence", ["a failed migration", "migration 2026_x started (applied) (3 min before "
                                                            "detection)"])
def test_a_big_loss_with_evidence_is_data_loss(evidence: str) -> None:
    severity, layers = _decide([WIPED], [evidence])
    assert (severity, layers) == ("P0", ("app", "db"))


@pytest.mark.parametrize(("loss", "crosses"), [
    (RowLoss("User", 990, 1000, "b"), True),  # 10 rows, 1 %: both at the threshold
    (RowLoss("User", 991, 1000, "b"), False),  # 9 rows
    (RowLoss("User", 9_990, 10_000, "b"), False),  # 10 rows but 0.1 %
    (RowLoss("Payment", 499, 500, "b", min_percent=0.1, min_rows=1), True),  # a table's own threshold
])
def test_threshold_is_rows_and_percent(loss: RowLoss, crosses: bool) -> None:
    assert loss.crosses is crosses


def test_no_loss_is_measured_as_none() -> None:
    assert [(s.name, s.value) for s in data_loss_signals([], ["a failed migration"])] == [("data_loss", False)]


def test_cache_hit_rate_alarm_recommends_no_edge_rollback() -> None:
    alone = decide([Signal("alarm.cdn-cache-hit-rate", "ALARM", "alarm")], Context(changed=("edge",)))
    assert alone.severity == "P3" and alone.layers == () and alone.command is None
    with_errors = decide([Signal("alarm.cdn-cache-hit-rate", "ALARM", "alarm"),
                          Signal("alarm.edge-function-errors", "ALARM", "alarm")], Context())
    assert with_errors.severity == "P1" and with_errors.layers == ("edge",)


def test_an_app_served_by_vercel_directly(tmp_path: Path) -> None:
    """A Vercel project and no CloudFront distribution (config or stack outputs): its rates are the health
    probe's and the flows', which the note says."""
    from rollback.commands.signals import served_by_vercel, vercel_direct_note
    from rollback.config import load_config
    from tests.conftest import render_config

    def config(**aws: Any) -> Any:
        path = tmp_path / "rollback.toml"
        path.write_text(render_config({"p": {"vercel": {"project": "demo"}, "aws": {"from_stack_outputs": False,
                                                                                     **aws}}}, default_env="p"))
        return load_config(path)

    chosen = config()
    reason = served_by_vercel(chosen, Services(chosen))
    assert reason is not None and "aws.distribution_id" in reason
    assert "health probe and the critical flows" in vercel_direct_note(reason)
    other = config(distribution_id="E123")
    assert served_by_vercel(other, Services(other)) is None
