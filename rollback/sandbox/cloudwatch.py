"""Percentile statistics for moto's CloudWatch (moto pinned at 5.2.5).

moto stores the datapoints of ``PutMetricData`` and answers ``GetMetricData``
for ``Sum``, ``Average``, ``Minimum``, ``Maximum`` and ``SampleCount``, but a
percentile (``p95``, what ``rollback decide`` and the origin-latency alarm
read) comes back as no value at all. :func:`install` teaches moto's
``Statistics`` the ``pNN`` / ``pNN.N`` statistics, computed from the raw
values in the period with the nearest-rank method, as CloudWatch does for
values published one by one. Idempotent; called by
:func:`rollback.sandbox.aws.start_moto`.
"""

from __future__ import annotations

import math
import re
import threading
from typing import Any

__all__ = ["install", "percentile"]

_PERCENTILE = re.compile(r"^[pP](\d{1,2}(?:\.\d+)?)$")
_LOCK = threading.Lock()
_MARK = "_rollback_percentiles_installed"


def percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile of ``values`` (``None`` when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def install() -> None:
    from moto.cloudwatch import models

    with _LOCK:
        if getattr(models.Statistics, _MARK, False):
            return
        original = models.Statistics.get_statistics_for_type

        def get_statistics_for_type(self: Any, stat: str) -> Any:
            match = _PERCENTILE.match(stat or "")
            if match:
                return percentile([float(v) for v in self.metric_single_values_list], float(match.group(1)))
            return original(self, stat)

        models.Statistics.get_statistics_for_type = get_statistics_for_type  # type: ignore[method-assign]
        setattr(models.Statistics, _MARK, True)
