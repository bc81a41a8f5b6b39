"""Each component declares the rollback-relevant inputs (program run under Pulumi mocks)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from rollback.adapters.pulumi_mocks import MOCK_ACCOUNT_ID, MOCK_FUNCTION_VERSION, MockRun

RunInfra = Callable[..., MockRun]

FUNCTION_ARN = f"arn:aws:lambda:us-east-1:{MOCK_ACCOUNT_ID}:function:rollback-dev-security-headers"


def inputs(run: MockRun, name: str) -> dict[str, Any]:
    assert name in run.resources, f"{name} not declared; have {sorted(run.resources)}"
    declared: dict[str, Any] = run.resources[name]["inputs"]
    return declared


def of_type(run: MockRun, type_token: str) -> dict[str, dict[str, Any]]:
    return {name: r["inputs"] for name, r in run.resources.items() if r["type"] == type_token}


def statements(run: MockRun) -> dict[str, dict[str, Any]]:
    policy = json.loads(inputs(run, "operator-policy")["policy"])
    return {s["Sid"]: s for s in policy["Statement"]}


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


# --- components and naming -------------------------------------------------------------------


def test_one_component_per_concern_children_prefixed(base: MockRun) -> None:
    components = {n: r["type"] for n, r in base.resources.items() if not r["custom"]}
    assert components == {
        "assets": "rollback:infra:AssetsBucket",
        "edge": "rollback:infra:EdgeFunction",
        "cdn": "rollback:infra:Cdn",
        "db": "rollback:infra:Database",
        "alarms": "rollback:infra:RollbackAlarms",
        "operator": "rollback:infra:OperatorRole",
    }
    for name, resource in base.resources.items():
        if resource["custom"] and resource["type"] != "pulumi:providers:aws":
            assert name.split("-")[0] in components, name


# --- assets bucket -----------------------------------------------------------------------------


def test_assets_bucket_versioned_private_with_lifecycle(base: MockRun) -> None:
    bucket = inputs(base, "assets-bucket")
    assert bucket["forceDestroy"] is False
    assert inputs(base, "assets-versioning")["versioningConfiguration"]["status"] == "Enabled"

    block = inputs(base, "assets-public-access-block")
    for flag in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"):
        assert block[flag] is True, flag

    (rule,) = inputs(base, "assets-lifecycle")["rules"]
    assert rule["status"] == "Enabled"
    assert rule["noncurrentVersionExpiration"] == {"noncurrentDays": 30, "newerNoncurrentVersions": 10}
    # No expiration of current objects: only noncurrent versions and dangling delete markers go.
    assert rule["expiration"] == {"expiredObjectDeleteMarker": True}


def test_assets_lifecycle_is_configurable(run_infra: RunInfra) -> None:
    run = run_infra({"assetsNoncurrentVersionDays": "14", "assetsNoncurrentVersionsToKeep": "25"})
    (rule,) = inputs(run, "assets-lifecycle")["rules"]
    assert rule["noncurrentVersionExpiration"] == {"noncurrentDays": 14, "newerNoncurrentVersions": 25}


def test_assets_readable_only_by_this_distribution(base: MockRun) -> None:
    bucket_arn = f"arn:aws:s3:::{base.outputs['assetsBucket']}"
    distribution_arn = f"arn:aws:cloudfront::{MOCK_ACCOUNT_ID}:distribution/{base.outputs['distributionId']}"
    policy = json.loads(inputs(base, "cdn-assets-read")["policy"])
    allows = [s for s in policy["Statement"] if s["Effect"] == "Allow"]
    assert allows == [
        {
            "Sid": "CloudFrontReadsReleases",
            "Effect": "Allow",
            "Principal": {"Service": "cloudfront.amazonaws.com"},
            "Action": "s3:GetObject",
            "Resource": f"{bucket_arn}/releases/*",
            "Condition": {"StringEquals": {"AWS:SourceArn": distribution_arn}},
        }
    ]
    oac = inputs(base, "cdn-oac")
    assert (oac["originAccessControlOriginType"], oac["signingBehavior"], oac["signingProtocol"]) == (
        "s3",
        "always",
        "sigv4",
    )


# --- edge function -----------------------------------------------------------------------------


def test_edge_function_published_from_infra_edge_in_us_east_1(base: MockRun) -> None:
    function = base.resources["edge-function"]
    assert function["provider"] == "us-east-1"
    assert base.resources["us-east-1"]["inputs"]["region"] == "us-east-1"
    declared = function["inputs"]
    assert declared["publish"] is True
    assert declared["runtime"] == "python3.12"
    assert declared["handler"] == "handler.handler"
    assert list(declared["code"]["archive"]) == ["handler.py"]
    assert declared["code"]["archive"]["handler.py"]["sha256"]
    assert declared["timeout"] <= 5 and declared["memorySize"] <= 128  # viewer-trigger limits
    trust = json.loads(inputs(base, "edge-role")["assumeRolePolicy"])
    assert set(trust["Statement"][0]["Principal"]["Service"]) == {
        "lambda.amazonaws.com",
        "edgelambda.amazonaws.com",
    }
    assert base.resources["edge-role"]["provider"] == "us-east-1"


def test_unpinned_edge_uses_newest_published_version(base: MockRun) -> None:
    assert base.outputs["edgeFunctionVersion"] == MOCK_FUNCTION_VERSION
    assert base.outputs["edgeFunctionVersionArn"] == f"{FUNCTION_ARN}:{MOCK_FUNCTION_VERSION}"


# --- CDN -----------------------------------------------------------------------------------------


def test_distribution_origins_behaviours_and_edge_association(base: MockRun) -> None:
    distribution = inputs(base, "cdn-distribution")
    origins = {o["originId"]: o for o in distribution["origins"]}
    assert origins["assets"]["originPath"] == "/releases/2026-11-20.1"
    assert origins["assets"]["domainName"].endswith(".s3.us-east-1.amazonaws.com")
    assert origins["assets"]["originAccessControlId"] == "cdn-oac-id"
    assert origins["app"]["domainName"] == "huntaze.vercel.app"
    assert origins["app"]["customOriginConfig"]["originProtocolPolicy"] == "https-only"

    default = distribution["defaultCacheBehavior"]
    assert default["targetOriginId"] == "assets"
    assert default["lambdaFunctionAssociations"] == [
        {
            "eventType": "viewer-response",
            "lambdaArn": f"{FUNCTION_ARN}:{MOCK_FUNCTION_VERSION}",
            "includeBody": False,
        }
    ]
    dynamic = distribution["orderedCacheBehaviors"]
    assert [(b["pathPattern"], b["targetOriginId"]) for b in dynamic] == [("/api/*", "app")]


def test_additional_metrics_switched_on(base: MockRun) -> None:
    subscription = inputs(base, "cdn-metrics")
    assert subscription["distributionId"] == base.outputs["distributionId"]
    assert subscription["monitoringSubscription"] == {
        "realtimeMetricsSubscriptionConfig": {"realtimeMetricsSubscriptionStatus": "Enabled"}
    }


def test_origin_verify_secret_is_sent_to_the_app_but_never_shown(run_infra: RunInfra) -> None:
    run = run_infra({"originVerifySecret": "s3cr3t-value-for-vercel"})
    origins = {o["originId"]: o for o in inputs(run, "cdn-distribution")["origins"]}
    assert origins["app"]["customHeaders"] == [{"name": "X-Origin-Verify", "value": "[secret]"}]
    assert "s3cr3t-value-for-vercel" not in json.dumps(run.resources)


# --- database ----------------------------------------------------------------------------------


def test_database_backups_protection_snapshots(base: MockRun) -> None:
    db = inputs(base, "db-instance")
    assert db["engine"] == "postgres"
    assert db["engineVersion"] == "16.4" and db["autoMinorVersionUpgrade"] is False
    assert db["backupRetentionPeriod"] >= 7
    assert db["deletionProtection"] is True
    assert db["skipFinalSnapshot"] is False
    assert db["finalSnapshotIdentifier"] == "rollback-dev-db-final"
    assert db["copyTagsToSnapshot"] is True
    assert db["deleteAutomatedBackups"] is False
    assert db["storageEncrypted"] is True and db["publiclyAccessible"] is False
    assert db["password"] == "[secret]"
    assert "snapshotIdentifier" not in db and "restoreToPointInTime" not in db


def test_retention_from_config(run_infra: RunInfra) -> None:
    assert inputs(run_infra({"dbBackupRetentionDays": "21"}), "db-instance")["backupRetentionPeriod"] == 21


def test_release_snapshots_declared_from_config(run_infra: RunInfra) -> None:
    run = run_infra({"dbReleaseSnapshots": json.dumps(["pre-2026-11-13-1", "pre-2026-11-20-1"])})
    snapshots = of_type(run, "aws:rds/snapshot:Snapshot")
    assert {s["dbSnapshotIdentifier"] for s in snapshots.values()} == {
        "rollback-dev-db-pre-2026-11-13-1",
        "rollback-dev-db-pre-2026-11-20-1",
    }
    assert {s["dbInstanceIdentifier"] for s in snapshots.values()} == {"rollback-dev-db"}


# --- alarms --------------------------------------------------------------------------------------


def test_alarms_encode_the_runbook_criteria(base: MockRun) -> None:
    alarms = of_type(base, "aws:cloudwatch/metricAlarm:MetricAlarm")
    by_name = {a["name"]: a for a in alarms.values()}
    assert sorted(by_name) == sorted(base.outputs["alarmNames"])
    cdn_dims = {"DistributionId": base.outputs["distributionId"], "Region": "Global"}
    db_dims = {"DBInstanceIdentifier": "rollback-dev-db"}

    def check(name: str, metric: str, namespace: str, op: str, threshold: float, dims: dict[str, str]) -> None:
        alarm = by_name[f"rollback-dev-{name}"]
        assert (alarm["namespace"], alarm["metricName"]) == (namespace, metric)
        assert (alarm["comparisonOperator"], alarm["threshold"]) == (op, threshold)
        assert alarm["dimensions"] == dims

    check("cdn-5xx-error-rate", "5xxErrorRate", "AWS/CloudFront", "GreaterThanThreshold", 5, cdn_dims)
    check("cdn-origin-latency-p95", "OriginLatency", "AWS/CloudFront", "GreaterThanThreshold", 5000, cdn_dims)
    assert by_name["rollback-dev-cdn-origin-latency-p95"]["extendedStatistic"] == "p95"
    check("cdn-cache-hit-rate", "CacheHitRate", "AWS/CloudFront", "LessThanThreshold", 70, cdn_dims)

    edge = by_name["rollback-dev-edge-function-errors"]
    metrics = {q["metric"]["metricName"]: q["metric"] for q in edge["metricQueries"] if "metric" in q}
    assert set(metrics) == {"LambdaExecutionError", "LambdaValidationError"}
    assert all(m["dimensions"] == cdn_dims and m["namespace"] == "AWS/CloudFront" for m in metrics.values())
    assert (edge["comparisonOperator"], edge["threshold"]) == ("GreaterThanThreshold", 0)

    # db.t4g.medium -> 405 max_connections; 90% of it.
    connections = by_name["rollback-dev-db-connections"]
    assert connections["threshold"] == round(0.9 * 405)
    check("db-connections", "DatabaseConnections", "AWS/RDS", "GreaterThanThreshold", 364, db_dims)
    check("db-free-storage", "FreeStorageSpace", "AWS/RDS", "LessThanThreshold", 2 * 1024**3, db_dims)


def test_alarms_notify_one_topic_and_composite_covers_all(base: MockRun) -> None:
    topic_arn = base.outputs["alertTopicArn"]
    alarms = of_type(base, "aws:cloudwatch/metricAlarm:MetricAlarm")
    assert len(alarms) == 6
    for alarm in alarms.values():
        assert alarm["alarmActions"] == [topic_arn] and alarm["okActions"] == [topic_arn]
    composite = inputs(base, "alarms-composite")
    assert composite["alarmName"] == base.outputs["compositeAlarmName"]
    assert composite["alarmActions"] == [topic_arn]
    assert composite["alarmRule"] == " OR ".join(f'ALARM("{n}")' for n in base.outputs["alarmNames"])
    # Every alarm lives where CloudFront publishes metrics.
    for name in [*alarms, "alarms-composite", "alarms-topic"]:
        assert base.resources[name]["provider"] == "us-east-1", name


def test_alarm_thresholds_from_config(run_infra: RunInfra) -> None:
    run = run_infra(
        {
            "alarm5xxErrorRatePercent": "2.5",
            "alarmOriginLatencyP95Ms": "3000",
            "alarmCacheHitRateMinPercent": "80",
            "alarmDbConnectionsPercent": "75",
        }
    )
    by_name = {a["name"]: a for a in of_type(run, "aws:cloudwatch/metricAlarm:MetricAlarm").values()}
    assert by_name["rollback-dev-cdn-5xx-error-rate"]["threshold"] == 2.5
    assert by_name["rollback-dev-cdn-origin-latency-p95"]["threshold"] == 3000
    assert by_name["rollback-dev-cdn-cache-hit-rate"]["threshold"] == 80
    assert by_name["rollback-dev-db-connections"]["threshold"] == round(0.75 * 405)


# --- operator role -------------------------------------------------------------------------------


def test_operator_policy_scoped_to_this_stack(base: MockRun) -> None:
    distribution_arn = f"arn:aws:cloudfront::{MOCK_ACCOUNT_ID}:distribution/{base.outputs['distributionId']}"
    bucket_arn = f"arn:aws:s3:::{base.outputs['assetsBucket']}"
    rds = f"arn:aws:rds:us-east-1:{MOCK_ACCOUNT_ID}:"
    alarm_arns = sorted(
        f"arn:aws:cloudwatch:us-east-1:{MOCK_ACCOUNT_ID}:alarm:{name}"
        for name in [*base.outputs["alarmNames"], base.outputs["compositeAlarmName"]]
    )
    s = statements(base)

    assert s["CloudFrontConfigAndInvalidations"]["Resource"] == [distribution_arn]
    assert set(s["CloudFrontConfigAndInvalidations"]["Action"]) >= {
        "cloudfront:GetDistributionConfig",
        "cloudfront:UpdateDistribution",
        "cloudfront:CreateInvalidation",
    }
    assert s["EdgeFunctionVersionsRead"]["Resource"] == [FUNCTION_ARN, f"{FUNCTION_ARN}:*"]
    assert "lambda:ListVersionsByFunction" in s["EdgeFunctionVersionsRead"]["Action"]
    assert s["AssetsBucketVersionListing"]["Resource"] == [bucket_arn]
    assert "s3:ListBucketVersions" in s["AssetsBucketVersionListing"]["Action"]
    assert s["AssetsObjectsGetPut"]["Resource"] == [f"{bucket_arn}/*"]
    assert set(s["AssetsObjectsGetPut"]["Action"]) == {"s3:GetObject", "s3:GetObjectVersion", "s3:PutObject"}
    assert f"{rds}db:rollback-dev-db" in s["DatabaseDescribe"]["Resource"]
    for sid in ("DatabaseDescribe", "DatabaseSnapshot", "DatabaseRestore"):
        for arn in s[sid]["Resource"]:
            assert arn.startswith(rds), arn
            assert "rollback-dev-db" in arn or ":subgrp:" in arn or ":pg:" in arn or ":og:" in arn, arn
    assert set(s["DatabaseRestore"]["Action"]) == {
        "rds:RestoreDBInstanceFromDBSnapshot",
        "rds:RestoreDBInstanceToPointInTime",
    }
    assert s["AlarmsRead"]["Resource"] == alarm_arns


def test_operator_policy_has_no_wildcard_where_an_arn_is_accepted(base: MockRun) -> None:
    for sid, statement in statements(base).items():
        assert statement["Effect"] == "Allow"
        resources = as_list(statement["Resource"])
        if sid == "MetricsRead":
            # AWS has no resource-level permissions for these reads: "*" is the only option.
            assert resources == ["*"]
            assert set(as_list(statement["Action"])) == {
                "cloudwatch:GetMetricData",
                "cloudwatch:GetMetricStatistics",
                "cloudwatch:ListMetrics",
            }
            continue
        for resource in resources:
            assert resource != "*" and resource.startswith("arn:aws:"), (sid, resource)
        for action in as_list(statement["Action"]):
            assert not action.endswith(":*") and action != "*", (sid, action)


def test_operator_trust(base: MockRun, run_infra: RunInfra) -> None:
    trust = json.loads(inputs(base, "operator-role")["assumeRolePolicy"])
    assert trust["Statement"][0]["Principal"] == {"AWS": [f"arn:aws:iam::{MOCK_ACCOUNT_ID}:root"]}
    oncall = "arn:aws:iam::123456789012:role/oncall"
    run = run_infra({"operatorTrustedPrincipals": json.dumps([oncall])})
    trust = json.loads(inputs(run, "operator-role")["assumeRolePolicy"])
    assert trust["Statement"][0]["Principal"] == {"AWS": [oncall]}


# --- stack outputs ---------------------------------------------------------------------------------


def test_stack_outputs_the_cli_reads(base: MockRun) -> None:
    outputs = base.outputs
    assert set(outputs) == {
        "distributionId",
        "distributionDomain",
        "edgeFunctionName",
        "edgeFunctionVersionArn",
        "edgeFunctionVersion",
        "assetsBucket",
        "assetsRelease",
        "dbInstanceId",
        "alarmNames",
        "compositeAlarmName",
        "alertTopicArn",
        "operatorRoleArn",
    }
    assert outputs["distributionDomain"].endswith(".cloudfront.net")
    assert outputs["edgeFunctionName"] == "rollback-dev-security-headers"
    assert outputs["assetsRelease"] == "2026-11-20.1"
    assert outputs["dbInstanceId"] == "rollback-dev-db"
    assert isinstance(outputs["alarmNames"], list) and len(outputs["alarmNames"]) == 6
    assert outputs["compositeAlarmName"] == "rollback-dev-rollback"
    assert outputs["operatorRoleArn"] == f"arn:aws:iam::{MOCK_ACCOUNT_ID}:role/rollback-dev-rollback-operator"
