"""A dead database must reach ALARM: the RDS rollback alarms treat missing data as breaching.

An RDS instance that stopped, crashed or was deleted publishes no DatabaseConnections or
FreeStorageSpace datapoints. CloudWatch (User Guide, "Configuring how CloudWatch alarms treat
missing data"): with ``missing`` an alarm whose evaluation periods hold no datapoint goes to
INSUFFICIENT_DATA, with ``breaching`` the missing datapoints count as over the threshold.
:func:`rollback.sandbox.cloudwatch.alarm_state` evaluates an alarm that way; here it evaluates
the alarms as the Pulumi program declares them (under mocks) and as the sandbox creates them.
"""

from __future__ import annotations

from typing import Any

import pytest

from rollback.adapters.pulumi_mocks import MockRun
from rollback.sandbox.cloudwatch import alarm_state
from rollback.sandbox.seed_aws import alarm_definitions


def _states(alarms: list[dict[str, Any]], values: list[float | None]) -> dict[str, str]:
    return {a["name"]: alarm_state(values[-int(a["evaluation_periods"]):], comparison=a["comparison"],
                                   threshold=float(a["threshold"]), datapoints_to_alarm=int(a["datapoints"]),
                                   treat_missing_data=a["treat"]) for a in alarms}


def _program_alarms(base: MockRun) -> list[dict[str, Any]]:
    return [{"name": r["inputs"]["name"], "comparison": r["inputs"]["comparisonOperator"],
             "threshold": r["inputs"]["threshold"], "evaluation_periods": r["inputs"]["evaluationPeriods"],
             "datapoints": r["inputs"].get("datapointsToAlarm") or r["inputs"]["evaluationPeriods"],
             "treat": r["inputs"].get("treatMissingData")}
            for r in base.resources.values() if r["type"] == "aws:cloudwatch/metricAlarm:MetricAlarm"]


def _sandbox_alarms() -> list[dict[str, Any]]:
    return [{"name": a["name"], "comparison": a["comparison"], "threshold": a["threshold"],
             "evaluation_periods": a["spec"]["EvaluationPeriods"],
             "datapoints": a["spec"].get("DatapointsToAlarm") or a["spec"]["EvaluationPeriods"],
             "treat": a["spec"].get("TreatMissingData")} for a in alarm_definitions("E123")]


def test_the_evaluator_follows_cloudwatch() -> None:
    gone: list[float | None] = [None] * 5
    assert alarm_state(gone, comparison="GreaterThanThreshold", threshold=1, datapoints_to_alarm=3) == \
        "INSUFFICIENT_DATA"
    assert alarm_state(gone, comparison="GreaterThanThreshold", threshold=1, datapoints_to_alarm=3,
                       treat_missing_data="breaching") == "ALARM"
    assert alarm_state([5, None, None, 0, 0], comparison="GreaterThanThreshold", threshold=1, datapoints_to_alarm=3,
                       treat_missing_data="breaching") == "ALARM"
    assert alarm_state([5, None, None, 0, 0], comparison="GreaterThanThreshold", threshold=1,
                       datapoints_to_alarm=3) == "OK"


@pytest.mark.parametrize("source", ["program", "sandbox"])
def test_a_dead_database_reaches_alarm(base: MockRun, source: str) -> None:
    alarms = _program_alarms(base) if source == "program" else _sandbox_alarms()
    db = [a for a in alarms if a["name"].endswith(("-db-connections", "-db-free-storage"))]
    assert len(db) == 2
    no_data = _states(db, [None] * 15)
    assert set(no_data.values()) == {"ALARM"}, no_data
    healthy = _states(db, [7.0 if a["comparison"] == "GreaterThanThreshold" else 18.0 * 1024**3
                           for a in db][:1] * 15)
    assert healthy[db[0]["name"]] == "OK"
    # CloudFront publishes nothing in a quiet minute: those alarms stay OK without traffic.
    cdn = [a for a in alarms if "-cdn-" in a["name"]]
    assert set(_states(cdn, [None] * 15).values()) == {"OK"}
