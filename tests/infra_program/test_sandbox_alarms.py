"""The sandbox's rollback alarms are the Pulumi program's: rollback.sandbox.seed_aws.alarm_definitions creates in
moto what infra/alarms.py declares (run under Pulumi's mocks as the sandbox's stack, with the defaults),
field for field in CloudWatch's PutMetricAlarm terms. The sandbox cannot import the program (infra/ is not
part of the package), so this test is what keeps the two from drifting apart."""

from __future__ import annotations

from typing import Any

from rollback.adapters.pulumi_mocks import MockRun
from rollback.sandbox.seed_aws import alarm_definitions
from tests.infra_program.conftest import RunInfra

# Dimension values differ by construction (the mocks' ids, the sandbox's own): compared by what they name.
_PLACEHOLDERS = {"DistributionId": "<distribution>", "DBInstanceIdentifier": "<db instance>"}


def _dimensions(given: dict[str, Any]) -> list[dict[str, str]]:
    return sorted(({"Name": k, "Value": _PLACEHOLDERS.get(k, str(v))} for k, v in given.items()),
                  key=lambda d: d["Name"])


def _query(query: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"Id": query["id"], "ReturnData": bool(query.get("returnData", True))}
    for key, api in (("expression", "Expression"), ("label", "Label")):
        if key in query:
            out[api] = query[key]
    if "metric" in query:
        metric = query["metric"]
        out["MetricStat"] = {"Metric": {"Namespace": metric["namespace"], "MetricName": metric["metricName"],
                                        "Dimensions": _dimensions(metric["dimensions"])},
                             "Period": int(metric["period"]), "Stat": metric["stat"]}
    return out


def _program(run: MockRun) -> dict[str, dict[str, Any]]:
    """Each MetricAlarm of the program as the PutMetricAlarm request its inputs make."""
    alarms = {}
    for resource in run.resources.values():
        if resource["type"] != "aws:cloudwatch/metricAlarm:MetricAlarm":
            continue
        inputs = resource["inputs"]
        api: dict[str, Any] = {
            "AlarmName": inputs["name"], "AlarmDescription": inputs["alarmDescription"],
            "ComparisonOperator": inputs["comparisonOperator"], "Threshold": float(inputs["threshold"]),
            "EvaluationPeriods": int(inputs["evaluationPeriods"]), "TreatMissingData": inputs["treatMissingData"]}
        if "datapointsToAlarm" in inputs:
            api["DatapointsToAlarm"] = int(inputs["datapointsToAlarm"])
        if "metricQueries" in inputs:
            api["Metrics"] = [_query(q) for q in inputs["metricQueries"]]
        else:
            api.update(Namespace=inputs["namespace"], MetricName=inputs["metricName"],
                       Dimensions=_dimensions(inputs["dimensions"]), Period=int(inputs["period"]))
            if "statistic" in inputs:
                api["Statistic"] = inputs["statistic"]
            if "extendedStatistic" in inputs:
                api["ExtendedStatistic"] = inputs["extendedStatistic"]
        alarms[api["AlarmName"]] = api
    return alarms


def _sandbox() -> dict[str, dict[str, Any]]:
    """Each alarm rollback.sandbox.seed_aws.seed_aws puts into moto, as its PutMetricAlarm request."""
    alarms = {}
    for alarm in alarm_definitions("E2SANDBOXR42CF"):
        spec = dict(alarm["spec"])
        if "Dimensions" in spec:
            spec["Dimensions"] = _dimensions({d["Name"]: d["Value"] for d in spec["Dimensions"]})
        if "Metrics" in spec:
            spec["Metrics"] = [_query_back(q) for q in spec["Metrics"]]
        alarms[alarm["name"]] = {"AlarmName": alarm["name"], "ComparisonOperator": alarm["comparison"],
                                 "Threshold": float(alarm["threshold"]), **spec}
    return alarms


def _query_back(query: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in query.items() if k != "MetricStat"}
    out.setdefault("ReturnData", True)
    if "MetricStat" in query:
        stat = query["MetricStat"]
        metric = stat["Metric"]
        out["MetricStat"] = {"Metric": {**metric, "Dimensions": _dimensions(
            {d["Name"]: d["Value"] for d in metric["Dimensions"]})}, "Period": stat["Period"], "Stat": stat["Stat"]}
    return out


def test_the_sandbox_creates_the_programs_alarms(run_infra: RunInfra) -> None:
    program = _program(run_infra(stack="sandbox"))
    sandbox = _sandbox()
    assert len(program) == 6
    assert sorted(sandbox) == sorted(program)
    for name, declared in program.items():
        assert sandbox[name] == declared, name
