"""A Vercel rolling release's canary in the decision (rollback.model.decide): judged on its share of the traffic,
bad sooner than a full release, and its option is the abort (pure, no I/O)."""

from __future__ import annotations

from rollback.model.decide import Context, Signal, decide

CANARY = "canary demo-m5 (dpl_M5) at 10 %, base demo-pf (dpl_Pf)"


def _canary(overall: float, share: float) -> Signal:
    """What ``decide --live`` makes of an overall error rate while a canary takes ``share`` of the traffic."""
    own = min(100.0, overall / share)
    return Signal("canary_error_rate", own, "cloudfront", "%", f"canary dpl_M5 at {share * 100:g} %: abort")


def test_a_canary_failing_every_request_at_10_percent_is_a_10_percent_error_rate() -> None:
    decision = decide([Signal("error_rate", 10.0, "cloudfront", "%"), _canary(10.0, 0.10)], Context(canary=CANARY))
    assert decision.severity == "P1"
    canary = next(r for r in decision.reasons if r.signal.name == "canary_error_rate")
    assert canary.signal.value == 100.0
    assert "canary dpl_M5 at 10 %: abort" in canary.line()
    assert decision.options == {"app": "abort-rolling-release"}
    assert any("the app step of 'rollback run' is its abort" in note for note in decision.notes)


def test_a_canary_counts_as_bad_sooner_than_a_full_release() -> None:
    """2 % of all requests failing: a full release is P2 (fix forward or roll back); the same 2 % from a
    10 % canary is 20 % of the canary's own requests: P1, abort."""
    full = decide([Signal("error_rate", 2.0, "cloudfront", "%")])
    canary = decide([Signal("error_rate", 2.0, "cloudfront", "%"), _canary(2.0, 0.10)], Context(canary=CANARY))
    assert full.severity == "P2" and canary.severity == "P1"
    assert full.options == {"app": "vercel-instant-rollback"} and canary.options == {"app": "abort-rolling-release"}


def test_a_healthy_canary_is_not_aborted() -> None:
    """Baseline noise (0.2 % overall) at a 10 % stage reads as 2 % of the canary's: within the 5 %."""
    decision = decide([Signal("error_rate", 0.2, "cloudfront", "%"), _canary(0.2, 0.10)], Context(canary=CANARY))
    assert decision.severity is None
