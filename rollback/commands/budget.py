"""How long the live reads may take, together: ``decide --live`` has :data:`LIVE_BUDGET` (its decision must
take under 2 s), ``rollback status`` its own; ``$ROLLBACK_DECIDE_BUDGET`` replaces both (a slow link to the
sources, or a loaded test machine, trades the 2 s target for measuring every source).
"""

from __future__ import annotations

import os

from rollback.errors import BadInput

__all__ = ["BUDGET_ENV", "LIVE_BUDGET", "live_budget"]

LIVE_BUDGET = 1.5  # seconds for every live source together (the decision must take < 2 s)
BUDGET_ENV = "ROLLBACK_DECIDE_BUDGET"


def live_budget(given: float | None = None, environ: dict[str, str] | None = None, *,
                default: float = LIVE_BUDGET) -> float:
    """The live sources' budget: ``given``, else ``$ROLLBACK_DECIDE_BUDGET``, else ``default``
    (:data:`LIVE_BUDGET`)."""
    if given is not None:
        return given
    raw = (os.environ if environ is None else environ).get(BUDGET_ENV, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0.1 <= value <= 600:
        raise BadInput(f"{BUDGET_ENV}={raw!r} is not a number of seconds between 0.1 and 600",
                       f"unset it, or give seconds, e.g. {BUDGET_ENV}=1.5")
    return value
