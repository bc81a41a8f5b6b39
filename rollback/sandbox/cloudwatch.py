"""CloudWatch semantics moto (pinned at 5.2.5) lacks and the rollback alarms rely on.

- **Percentiles.** moto computes Sum/Average/Minimum/Maximum/SampleCount only:
  ``GetMetricData`` with ``Stat: "p95"`` answers no values and
  ``GetMetricStatistics`` ignores ``ExtendedStatistics``. The rollback alarm on
  origin latency is a p95 alarm and ``rollback decide``/``verify`` read p95, so
  percentiles are computed here from the raw values (``Value`` or
  ``Values``/``Counts``), as CloudWatch does; a statistic set
  (``StatisticValues``) has no percentiles, in CloudWatch as here.
- **Composite alarms.** ``PutCompositeAlarm`` is not implemented; moto's
  ``PutMetricAlarm`` handler already reads ``AlarmRule`` and
  ``DescribeAlarms`` already lists alarms with a rule as ``CompositeAlarms``,
  so the operation is routed to it. moto never evaluates alarms (nor the
  rule): the sandbox's monitor sets every state itself.
- **Missing data.** :func:`alarm_state` is CloudWatch's evaluation of one alarm over its
  evaluation periods, with ``TreatMissingData`` as the CloudWatch User Guide documents it
  ("Configuring how CloudWatch alarms treat missing data"): ``missing`` (the default) leaves an
  alarm with no datapoint at all in INSUFFICIENT_DATA, ``breaching`` counts a missing datapoint
  as over the threshold, ``notBreaching`` as within it, ``ignore`` keeps the current state.

:func:`install` patches once per process, like :mod:`rollback.sandbox.cloudfront`.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["alarm_state", "install", "percentile"]

_MARK = "_rollback_cloudwatch_installed"
_LOCK = threading.Lock()
_PERCENTILE = re.compile(r"^[pP](\d{1,2}(?:\.\d+)?|100)$")


def percentile(values: list[float], stat: str) -> float | None:
    """``pNN`` of ``values`` (nearest rank, as CloudWatch documents), or None."""
    match = _PERCENTILE.match(stat)
    if not match or not values:
        return None
    ordered = sorted(values)
    rank = math.ceil(float(match.group(1)) / 100 * len(ordered))
    return ordered[min(max(rank, 1), len(ordered)) - 1]


_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "GreaterThanThreshold": lambda value, threshold: value > threshold,
    "GreaterThanOrEqualToThreshold": lambda value, threshold: value >= threshold,
    "LessThanThreshold": lambda value, threshold: value < threshold,
    "LessThanOrEqualToThreshold": lambda value, threshold: value <= threshold,
}


def alarm_state(values: list[float | None], *, comparison: str, threshold: float, datapoints_to_alarm: int,
                treat_missing_data: str = "missing", current: str = "INSUFFICIENT_DATA") -> str:
    """The state CloudWatch gives an alarm whose evaluation periods hold ``values`` (None: no datapoint)."""
    treat = treat_missing_data or "missing"
    if all(value is None for value in values):
        if treat == "breaching":
            return "ALARM" if len(values) >= datapoints_to_alarm else current
        if treat == "notBreaching":
            return "OK"
        return current if treat == "ignore" else "INSUFFICIENT_DATA"
    compare = _COMPARE[comparison]
    breaching = sum(1 for value in values
                    if (value is None and treat == "breaching") or (value is not None and compare(value, threshold)))
    return "ALARM" if breaching >= datapoints_to_alarm else "OK"


def install() -> None:
    """Patch moto's CloudWatch (once per process)."""
    from moto.cloudwatch import models, responses

    with _LOCK:
        if getattr(models.CloudWatchBackend, _MARK, False):
            return
        statistics = models.Statistics
        base_stat = statistics.get_statistics_for_type

        def get_statistics_for_type(self: Any, stat: str) -> Any:
            if _PERCENTILE.match(stat or ""):
                return percentile(list(self.metric_single_values_list), stat)
            return base_stat(self, stat)

        def extended_statistics(self: Any) -> dict[str, float] | None:
            found = {s: percentile(list(self.metric_single_values_list), s) for s in self.stats
                     if _PERCENTILE.match(s)}
            kept = {s: v for s, v in found.items() if v is not None}
            return kept or None

        statistics.get_statistics_for_type = get_statistics_for_type  # type: ignore[method-assign]
        statistics.extended_statistics = property(extended_statistics)  # type: ignore[attr-defined]

        response = responses.CloudWatchResponse
        base_get_statistics = response.get_metric_statistics

        def get_metric_statistics(self: Any) -> Any:
            extended = self._get_param("ExtendedStatistics") or []
            if not extended:
                return base_get_statistics(self)
            from moto.core.responses import ActionResult

            datapoints = self.cloudwatch_backend.get_metric_statistics(
                self._get_param("Namespace"), self._get_param("MetricName"), self._get_param("StartTime"),
                self._get_param("EndTime"), self._get_int_param("Period"),
                list(self._get_param("Statistics", [])) + list(extended), unit=self._get_param("Unit"),
                dimensions=self._get_param("Dimensions", []))
            return ActionResult({"Label": self._get_param("MetricName"), "Datapoints": datapoints})

        response.get_metric_statistics = get_metric_statistics  # type: ignore[method-assign]
        response.put_composite_alarm = response.put_metric_alarm  # type: ignore[attr-defined]
        setattr(models.CloudWatchBackend, _MARK, True)
