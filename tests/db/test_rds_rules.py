"""What a restore turns on after it, and the RPO's allowance for RDS's log lag, in memory."""

from __future__ import annotations

import datetime as dt

from rollback.adapters.rds import after_labels, settings_in_effect
from rollback.commands.db.rpo import RDS_LOG_LAG_SECONDS, _point

AFTER = {"ManageMasterUserPassword": True, "MasterUserSecretKmsKeyId": "arn:aws:kms:us-east-1:1:key/k",
         "EnablePerformanceInsights": True, "PerformanceInsightsRetentionPeriod": 93, "MonitoringInterval": 15,
         "MonitoringRoleArn": "arn:aws:iam::1:role/m", "MaxAllocatedStorage": 200}


def test_the_plan_names_what_is_turned_on_after_the_restore() -> None:
    assert after_labels(AFTER) == [
        "managed master password (Secrets Manager, KMS key arn:aws:kms:us-east-1:1:key/k)",
        "Performance Insights (93 days)", "enhanced monitoring every 15 s (role arn:aws:iam::1:role/m)",
        "storage autoscaling up to 200 GiB"]


def test_settings_in_effect_tells_a_resume_what_is_left() -> None:
    restored = {"PerformanceInsightsEnabled": False, "MonitoringInterval": 0}
    assert settings_in_effect(restored, AFTER) == ["managed master password", "Performance Insights",
                                                   "enhanced monitoring", "storage autoscaling"]
    done = {"MasterUserSecret": {"SecretArn": "arn:s"}, "PerformanceInsightsEnabled": True,
            "PerformanceInsightsRetentionPeriod": 93, "MonitoringInterval": 15,
            "MonitoringRoleArn": "arn:aws:iam::1:role/m", "MaxAllocatedStorage": 200}
    assert settings_in_effect(done, AFTER) == []


def test_the_point_in_time_point_allows_for_the_log_lag() -> None:
    now = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
    seven = now - dt.timedelta(minutes=7)
    assert _point("pitr", "db", seven, now, 300.0, allowance=RDS_LOG_LAG_SECONDS)["within_target"] is True
    assert _point("snapshot", "s", seven, now, 300.0)["within_target"] is False
    eleven = now - dt.timedelta(minutes=11)
    assert _point("pitr", "db", eleven, now, 300.0, allowance=RDS_LOG_LAG_SECONDS)["within_target"] is False
