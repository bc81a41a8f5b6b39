"""The impact of an incident as CloudFront's CloudWatch metrics saw it.

CloudFront publishes ``Requests`` (a count) and ``5xxErrorRate`` (a percentage)
in the ``AWS/CloudFront`` namespace, in us-east-1, with the dimensions
``DistributionId`` and ``Region=Global``. Summing a rate means nothing, so the
failed requests are counted period by period: ``Requests`` (Sum) times
``5xxErrorRate`` (Average) of the same minute, then added up over the window.
One ``GetMetricData`` call (paginated) reads both.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from rollback.adapters.aws import aws_errors
from rollback.report import Impact

__all__ = ["CLOUDFRONT_REGION", "CloudFrontMetrics"]

CLOUDFRONT_REGION = "us-east-1"  # CloudFront's metrics live here whatever the stack's region
PERIOD = 60


def _floor(moment: dt.datetime, period: int) -> dt.datetime:
    stamp = int(moment.timestamp())
    return dt.datetime.fromtimestamp(stamp - stamp % period, dt.UTC)


def _ceil(moment: dt.datetime, period: int) -> dt.datetime:
    floor = _floor(moment, period)
    return floor if floor == moment else floor + dt.timedelta(seconds=period)


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class CloudFrontMetrics:
    """Reads a distribution's request and 5xx figures; ``cloudwatch`` is a boto3 CloudWatch client."""

    def __init__(self, cloudwatch: Any) -> None:
        self.cloudwatch = cloudwatch

    def _series(self, distribution_id: str, start: dt.datetime, end: dt.datetime,
                period: int) -> dict[str, dict[dt.datetime, float]]:
        dimensions = [{"Name": "DistributionId", "Value": distribution_id}, {"Name": "Region", "Value": "Global"}]
        queries = [
            {"Id": qid, "ReturnData": True, "MetricStat": {
                "Metric": {"Namespace": "AWS/CloudFront", "MetricName": metric, "Dimensions": dimensions},
                "Period": period, "Stat": stat}}
            for qid, metric, stat in (("requests", "Requests", "Sum"), ("errors", "5xxErrorRate", "Average"))
        ]
        series: dict[str, dict[dt.datetime, float]] = {"requests": {}, "errors": {}}
        token: str | None = None
        with aws_errors("reading CloudFront metrics (cloudwatch:GetMetricData)"):
            while True:
                kwargs: dict[str, Any] = {"MetricDataQueries": queries, "StartTime": start, "EndTime": end,
                                          "ScanBy": "TimestampAscending"}
                if token:
                    kwargs["NextToken"] = token
                page = self.cloudwatch.get_metric_data(**kwargs)
                for result in page.get("MetricDataResults", []):
                    target = series.get(str(result.get("Id")))
                    if target is None:
                        continue
                    for stamp, value in zip(result.get("Timestamps", []), result.get("Values", []), strict=False):
                        moment = stamp if isinstance(stamp, dt.datetime) else dt.datetime.fromisoformat(str(stamp))
                        target[moment.astimezone(dt.UTC)] = float(value)
                token = page.get("NextToken")
                if not token:
                    break
        return series

    def impact(self, distribution_id: str, start: dt.datetime, end: dt.datetime, *,
               period: int = PERIOD) -> Impact:
        """Requests, failed requests and the error rate of ``distribution_id`` between ``start`` and ``end``."""
        first, last = _floor(start, period), _ceil(end, period)
        if last <= first:
            last = first + dt.timedelta(seconds=period)
        series = self._series(distribution_id, first, last, period)
        requests, errors = series["requests"], series["errors"]
        source = f"CloudWatch AWS/CloudFront, distribution {distribution_id}, {period} s periods"
        window_start, window_end = _iso(first), _iso(last)
        if not requests and not errors:
            return Impact(measured=False, reason=f"no CloudFront datapoints for {distribution_id} in the window",
                          source=source, window_start=window_start, window_end=window_end)
        peak = max(errors.values()) if errors else None
        if not requests:
            average = sum(errors.values()) / len(errors)
            return Impact(measured=True, error_rate=round(average, 4), peak_error_rate=round(peak or 0.0, 4),
                          source=source, reason="no Requests datapoints: the error rate is a plain average",
                          window_start=window_start, window_end=window_end)
        total = sum(requests.values())
        failed = sum(count * errors.get(moment, 0.0) / 100.0 for moment, count in requests.items())
        rate = failed / total * 100.0 if total else 0.0
        return Impact(measured=True, requests=round(total), requests_failed=round(failed),
                      error_rate=round(rate, 4), peak_error_rate=None if peak is None else round(peak, 4),
                      source=source, window_start=window_start, window_end=window_end)
