"""The report's impact figures from CloudWatch: GetMetricData against the moto server (real HTTP)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest

from tests.conftest import CliResult
from tests.report.fixture_incident import DISTRIBUTION, IncidentFixture

Run = Callable[..., CliResult]

# Per minute of the incident window (09:12 deploy .. 09:21:40 restored): requests and 5xx rate (%).
MINUTES = [(dt.datetime(2026, 11, 28, 9, 12 + i, 0, tzinfo=dt.UTC), requests, rate) for i, (requests, rate) in
           enumerate([(1000, 2.0), (1200, 10.0), (900, 40.0), (1100, 25.0), (1000, 20.0), (800, 10.0),
                      (1000, 5.0), (1000, 1.0), (1000, 0.5), (1000, 0.0)])]
OUTSIDE = (dt.datetime(2026, 11, 28, 8, 0, tzinfo=dt.UTC), 50000, 90.0)  # an hour before: not this incident


def _seed(distribution: str) -> None:
    import boto3

    cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
    dimensions = [{"Name": "DistributionId", "Value": distribution}, {"Name": "Region", "Value": "Global"}]
    for moment, requests, rate in [*MINUTES, OUTSIDE]:
        cloudwatch.put_metric_data(Namespace="AWS/CloudFront", MetricData=[
            {"MetricName": "Requests", "Dimensions": dimensions, "Timestamp": moment, "Value": requests,
             "Unit": "None"},
            {"MetricName": "5xxErrorRate", "Dimensions": dimensions, "Timestamp": moment, "Value": rate,
             "Unit": "Percent"},
        ])


def test_requests_failed_and_error_rate_over_the_incident_window(run_cli: Run, incident: IncidentFixture,
                                                                 aws_env: str) -> None:
    _seed(DISTRIBUTION)
    result = run_cli("report", "--json")
    assert result.code == 0, result.err
    impact = result.json()["summary"]["impact"]
    total = sum(r for _, r, _ in MINUTES)
    failed = sum(r * rate / 100 for _, r, rate in MINUTES)
    assert impact["measured"] is True
    assert impact["requests"] == total
    assert impact["requests_failed"] == round(failed)
    assert impact["error_rate"] == pytest.approx(failed / total * 100, abs=1e-3)
    assert impact["peak_error_rate"] == 40.0
    assert impact["window_start"] == "2026-11-28T09:12:00Z" and impact["window_end"] == "2026-11-28T09:22:00Z"
    md = run_cli("report").out
    assert f"- Requests failed: {round(failed)}" in md
    assert f"- Error rate: {failed / total * 100:.2f}% of {total} requests, peak 40.00%" in md


def test_no_datapoints_is_not_measured(run_cli: Run, incident: IncidentFixture, aws_env: str) -> None:
    text = incident.config.read_text(encoding="utf-8").replace(DISTRIBUTION, "E000NODATAPOINTS")
    incident.config.write_text(text, encoding="utf-8")
    impact = run_cli("report", "--json").json()["summary"]["impact"]
    assert impact["measured"] is False
    assert impact["requests_failed_text"] == ("not measured (no CloudFront datapoints for E000NODATAPOINTS in the "
                                              "window)")


def test_unreachable_cloudwatch_does_not_fail_the_report(run_cli: Run, incident: IncidentFixture,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret-key")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    result = run_cli("report", "--json")
    assert result.code == 0, result.err
    impact = result.json()["summary"]["impact"]
    assert impact["measured"] is False
    assert impact["reason"].startswith("CloudWatch: reading CloudFront metrics (cloudwatch:GetMetricData) failed")
    assert "testing-secret-key" not in result.out


def _without_generated_at(text: str) -> str:
    import re

    return re.sub(r"report generated \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "report generated (now)", text)


def test_the_figures_are_measured_once_when_the_incident_closes(run_cli: Run, incident: IncidentFixture,
                                                                  aws_env: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Two renders 11 s apart used to give 28.56 % of 1,191 requests and 25.76 % of 1,291: late datapoints
    kept arriving for the window. ``incident close`` measures the impact once and stores it in the record;
    every render after it shows those numbers, whatever CloudWatch holds or whether it answers."""
    import json
    import secrets

    distribution = f"E{secrets.token_hex(6).upper()}"  # its own datapoints: the moto server is the worker's
    incident.config.write_text(incident.config.read_text(encoding="utf-8").replace(DISTRIBUTION, distribution),
                               encoding="utf-8")
    _seed(distribution)
    closed = run_cli("incident", "close", "--resolution", "rolled back", "--by", "oncall")
    assert closed.code == 0, closed.err
    path = incident.incidents_dir / f"{incident.incident}.jsonl"
    event = [json.loads(line) for line in path.read_text().splitlines()][-1]
    assert event["event"] == "closed" and event["impact"]["measured"] is True
    assert event["impact"]["requests"] == sum(r for _, r, _ in MINUTES) and event["measured_at"]
    renders = {fmt: run_cli("report", "--format", fmt).out for fmt in ("md", "html")}

    # late datapoints arrive for the window; then CloudWatch stops answering at all
    import boto3

    dimensions = [{"Name": "DistributionId", "Value": distribution}, {"Name": "Region", "Value": "Global"}]
    boto3.client("cloudwatch", region_name="us-east-1").put_metric_data(Namespace="AWS/CloudFront", MetricData=[
        {"MetricName": "Requests", "Dimensions": dimensions, "Timestamp": MINUTES[3][0], "Value": 5000.0}])
    again = run_cli("report", "--format", "md").out
    assert _without_generated_at(again) == _without_generated_at(renders["md"])
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    for fmt, first in renders.items():
        later = run_cli("report", "--format", fmt)
        assert later.code == 0, later.err
        assert _without_generated_at(later.out) == _without_generated_at(first), fmt  # all but the generated-at line
    document = run_cli("report", "--json").json()["summary"]["impact"]
    assert document["requests"] == sum(r for _, r, _ in MINUTES) and document["measured_at"] == event["measured_at"]


def test_a_library_caller_measures_through_the_services_it_gives(incident: IncidentFixture, aws_env: str) -> None:
    """``report.build`` reads CloudWatch through the caller's Services (its short-timeout profile shares
    what was injected): the figures come from the injected client, and only through it."""
    import boto3

    from rollback.adapters.cloudwatch import CloudWatch
    from rollback.commands import report
    from rollback.config import load_config
    from rollback.context import Services

    text = incident.config.read_text(encoding="utf-8").replace(DISTRIBUTION, "E0LIBRARYCALLER")
    incident.config.write_text(text, encoding="utf-8")  # its own datapoints: the moto server is shared
    _seed("E0LIBRARYCALLER")
    config = load_config(incident.config)
    client = boto3.client("cloudwatch", region_name="us-east-1")
    calls: list[str] = []
    client.meta.events.register("before-call.cloudwatch.*", lambda model, **_: calls.append(model.name))
    data = report.build(Services(config, cloudwatch=CloudWatch(client)), incident.journal_dir)
    impact = data["summary"]["impact"]
    assert impact["measured"] is True and impact["requests"] == sum(r for _, r, _ in MINUTES)
    assert calls and set(calls) <= {"GetMetricData", "GetMetricStatistics"}
