"""CloudWatch: the rollback alarms' states, the CloudFront metrics ``decide`` and ``verify`` read,
and an incident's impact as CloudFront saw it (``report``).

:class:`CloudWatch` wraps an injected boto3 ``cloudwatch`` client (us-east-1:
CloudFront metrics live only there, see ``infra/alarms.py``) and returns our
types. Errors become :class:`~rollback.errors.AwsError` through
:func:`rollback.adapters.aws.aws_errors`.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rollback.adapters.aws import aws_errors

if TYPE_CHECKING:
    from rollback.model.report import Impact

__all__ = [
    "CLOUDFRONT_REGION",
    "AlarmState",
    "CloudFrontMetrics",
    "CloudWatch",
    "MetricWindow",
    "clean_start",
    "cloudfront_dimensions",
    "make_client",
]

_CLIENTS: dict[tuple[str | None, str, str, float], Any] = {}
_SESSIONS: dict[str | None, Any] = {}
_CLIENTS_LOCK = threading.Lock()


def make_client(*, timeout: float, service: str = "cloudwatch", region: str | None = None) -> Any:
    """A boto3 client with short timeouts and two attempts in all (botocore's ``total_max_attempts``; its
    ``max_attempts`` counts only the retries after the first request), for reads that must not stall (live
    signals), shared by every reader of this process for the same endpoint, service, region and timeout (clients
    are thread-safe, and building one costs more than the calls it makes).

    ``region`` defaults to us-east-1, where CloudFront's metrics, the rollback alarms, CloudFront's API
    and Lambda@Edge live. The clients share one session per endpoint, so the endpoint and model data
    botocore loads for the first client serve the next ones. A plain botocore session: boto3 adds
    nothing these reads use, and importing it costs a sixth more CPU than botocore alone.
    """
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    chosen = region or CLOUDFRONT_REGION
    key = (endpoint, service, chosen, round(timeout, 1))
    with _CLIENTS_LOCK:  # botocore sessions are not thread-safe: clients are built one at a time
        client = _CLIENTS.get(key)
        if client is None:
            import botocore.session
            from botocore.config import Config as BotoConfig

            session = _SESSIONS.get(endpoint)
            if session is None:
                session = _SESSIONS[endpoint] = botocore.session.Session()
            client = session.create_client(service, region_name=chosen,
                                           config=BotoConfig(retries={"total_max_attempts": 2, "mode": "standard"},
                                                             connect_timeout=timeout, read_timeout=timeout))
            _CLIENTS[key] = client
    return client


@dataclass(frozen=True)
class AlarmState:
    name: str
    state: str  # OK | ALARM | INSUFFICIENT_DATA
    updated_at: dt.datetime | None
    reason: str
    composite: bool
    namespace: str | None = None
    metric: str | None = None
    dimensions: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "state": self.state,
                "updated_at": self.updated_at.isoformat() if self.updated_at else None,
                "reason": self.reason, "composite": self.composite, "metric": self.metric,
                "namespace": self.namespace}


@dataclass(frozen=True)
class MetricWindow:
    """One statistic of one metric over a window: its value (None without data) and datapoints."""

    namespace: str
    metric: str
    stat: str
    value: float | None
    datapoints: int
    newest: dt.datetime | None


def cloudfront_dimensions(distribution_id: str) -> list[dict[str, str]]:
    return [{"Name": "DistributionId", "Value": distribution_id}, {"Name": "Region", "Value": "Global"}]


def clean_start(since: dt.datetime, end: dt.datetime) -> dt.datetime:
    """Where a window of datapoints that hold nothing from before ``since`` starts.

    A datapoint covers its whole period, so the one whose period holds ``since`` mixes the
    minutes before it. CloudFront publishes one datapoint a minute, and CloudWatch rounds a
    start time down to the minute: once a whole minute after ``since`` has ended, the window
    starts at the next minute boundary. Until then it starts at the next whole second (finer
    datapoints, as the sandbox's monitor publishes, are clean from there; CloudWatch's own
    rounding makes it the minute of ``since``, i.e. the newest datapoint, which is judged as is).
    """
    moment = since.astimezone(dt.UTC)
    second = moment.replace(microsecond=0) + (dt.timedelta(seconds=1) if moment.microsecond else dt.timedelta())
    minute = second.replace(second=0) + (dt.timedelta(minutes=1) if second.second else dt.timedelta())
    return minute if end - minute >= dt.timedelta(minutes=1) else second


def _aware(value: Any) -> dt.datetime | None:
    if not isinstance(value, dt.datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


class CloudWatch:
    def __init__(self, client: Any) -> None:
        self.client = client

    def alarms(self, *, names: Sequence[str] = (), prefix: str | None = None) -> list[AlarmState]:
        """Alarms by name (metric and composite) or by name prefix."""
        found: dict[str, AlarmState] = {}
        requests: list[dict[str, Any]] = []
        wanted = list(dict.fromkeys(names))
        for start in range(0, len(wanted), 100):
            requests.append({"AlarmNames": wanted[start:start + 100]})
        if prefix:
            requests.append({"AlarmNamePrefix": prefix})
        with aws_errors("reading the rollback alarms"):
            for request in requests:
                paginator = self.client.get_paginator("describe_alarms")
                for page in paginator.paginate(AlarmTypes=["MetricAlarm", "CompositeAlarm"], **request):
                    for item in page.get("MetricAlarms", []):
                        dims = tuple((str(d.get("Name")), str(d.get("Value"))) for d in item.get("Dimensions", []))
                        found[item["AlarmName"]] = AlarmState(
                            item["AlarmName"], str(item.get("StateValue", "")),
                            _aware(item.get("StateUpdatedTimestamp")), str(item.get("StateReason") or ""), False,
                            item.get("Namespace"), item.get("MetricName"), dims)
                    for item in page.get("CompositeAlarms", []):
                        found[item["AlarmName"]] = AlarmState(
                            item["AlarmName"], str(item.get("StateValue", "")),
                            _aware(item.get("StateUpdatedTimestamp")), str(item.get("StateReason") or ""), True)
        return [found[name] for name in sorted(found)]

    def statistic(self, namespace: str, metric: str, dimensions: Sequence[Mapping[str, str]], *, stat: str,
                  minutes: float, now: dt.datetime | None = None) -> MetricWindow:
        """``stat`` (``Average``, ``Sum``, ``p95``...) of a metric over the last ``minutes``, as one value."""
        return self.statistics(namespace, [(metric, stat)], dimensions, minutes=minutes, now=now)[0]

    def statistics(self, namespace: str, wanted: Sequence[tuple[str, str]], dimensions: Sequence[Mapping[str, str]],
                   *, minutes: float, now: dt.datetime | None = None,
                   since: dt.datetime | None = None) -> list[MetricWindow]:
        """Several ``(metric, stat)`` of one dimension set over the last ``minutes``, in one GetMetricData call.

        Each statistic is one query with a period of the whole window: CloudWatch
        aggregates the window itself (a p95 of per-minute p95s would be wrong).
        A second query per metric (per minute, ``SampleCount``) tells how many
        datapoints there were and the newest one's time, so "no data" is never
        taken for 0.

        ``since`` starts the window later than ``minutes`` ago (never earlier): a verification
        after a rollback judges the time since the service was restored, not the bad minutes
        before it that a plain 5-minute average would still hold (see :func:`clean_start`).
        """
        end = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0) + dt.timedelta(seconds=1)
        start = end - dt.timedelta(minutes=minutes)
        if since is not None:
            start = min(max(start, clean_start(since, end)), end - dt.timedelta(seconds=1))
        # A period is a whole number of minutes (standard-resolution metrics), covering the window.
        period = max(60, -(-int((end - start).total_seconds()) // 60) * 60)
        queries: list[dict[str, Any]] = []
        for index, (metric, stat) in enumerate(wanted):
            spec = {"Namespace": namespace, "MetricName": metric, "Dimensions": list(dimensions)}
            queries.append({"Id": f"v{index}", "MetricStat": {"Metric": spec, "Period": period, "Stat": stat},
                            "ReturnData": True})
            queries.append({"Id": f"c{index}", "MetricStat": {"Metric": spec, "Period": 60, "Stat": "SampleCount"},
                            "ReturnData": True})
        names = ", ".join(metric for metric, _ in wanted)
        with aws_errors(f"reading CloudWatch metrics {namespace}/{names}"):
            response = self.client.get_metric_data(MetricDataQueries=queries, StartTime=start, EndTime=end,
                                                   ScanBy="TimestampDescending")
        results = {r["Id"]: r for r in response.get("MetricDataResults", [])}
        windows: list[MetricWindow] = []
        for index, (metric, stat) in enumerate(wanted):
            values = [float(v) for v in results.get(f"v{index}", {}).get("Values", [])
                      if isinstance(v, (int, float)) and math.isfinite(v)]
            counts = results.get(f"c{index}", {})
            stamps = [_aware(t) for t in counts.get("Timestamps", [])]
            present = [t for t, c in zip(stamps, counts.get("Values", []), strict=False) if t is not None and c]
            windows.append(MetricWindow(namespace, metric, stat, values[0] if values else None, len(present),
                                        max(present) if present else None))
        return windows

    def newest(self, namespace: str, metric: str, stat: str, dimensions: Sequence[Mapping[str, str]], *,
               minutes: float, now: dt.datetime | None = None) -> MetricWindow:
        """``stat`` of the newest one-minute datapoint of the last ``minutes`` (``value`` None without any)."""
        end = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0) + dt.timedelta(seconds=1)
        start = end - dt.timedelta(minutes=minutes)
        spec = {"Namespace": namespace, "MetricName": metric, "Dimensions": list(dimensions)}
        with aws_errors(f"reading CloudWatch metric {namespace}/{metric}"):
            response = self.client.get_metric_data(
                MetricDataQueries=[{"Id": "v", "MetricStat": {"Metric": spec, "Period": 60, "Stat": stat},
                                    "ReturnData": True}],
                StartTime=start, EndTime=end, ScanBy="TimestampDescending")
        result: Mapping[str, Any] = next(iter(response.get("MetricDataResults", [])), {})
        points = sorted(((t, float(v)) for t, v in zip((_aware(t) for t in result.get("Timestamps", [])),
                                                       result.get("Values", []), strict=False)
                         if t is not None and isinstance(v, (int, float)) and math.isfinite(v)),
                        key=lambda point: point[0], reverse=True)
        if not points:
            return MetricWindow(namespace, metric, stat, None, 0, None)
        return MetricWindow(namespace, metric, stat, points[0][1], 1, points[0][0])


# -- impact (report) --------------------------------------------------------------------------------------
# The impact of an incident as CloudFront's CloudWatch metrics saw it.
#
# CloudFront publishes ``Requests`` (a count) and ``5xxErrorRate`` (a percentage)
# in the ``AWS/CloudFront`` namespace, in us-east-1, with the dimensions
# ``DistributionId`` and ``Region=Global``. Summing a rate means nothing, so the
# failed requests are counted period by period: ``Requests`` (Sum) times
# ``5xxErrorRate`` (Average) of the same minute, then added up over the window.
# One ``GetMetricData`` call (paginated) reads both.

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
        # Imported here: the report's module brings the journal's, which reading alarms does not need.
        from rollback.model.report import Impact

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
