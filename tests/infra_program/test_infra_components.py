"""Each component declares the rollback-relevant inputs (program run under Pulumi mocks)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pulumi
import pytest

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


def test_account_wide_names_come_from_the_stack(base: MockRun, run_infra: RunInfra) -> None:
    # Origin access controls and response-headers policies are named per account: two stacks
    # of the project in one account must not collide.
    other = run_infra(stack="prod")
    for name in ("cdn-oac", "cdn-app-headers"):
        assert inputs(base, name)["name"].startswith("rollback-dev-"), name
        assert inputs(other, name)["name"].startswith("rollback-prod-"), name


def test_assets_bucket_is_protected(base: MockRun) -> None:
    # A replacement would re-point CloudFront at an empty bucket, then fail to delete the old one.
    assert base.resources["assets-bucket"]["options"]["protect"] is True


# --- edge function -----------------------------------------------------------------------------


def test_edge_function_published_from_infra_edge_in_us_east_1(base: MockRun) -> None:
    function = base.resources["edge-function"]
    # The default provider (every aws:* setting applies) and the region named on the function itself.
    assert function["provider"] is None
    declared = function["inputs"]
    assert declared["region"] == "us-east-1"
    # Replicas keep a replaced Lambda@Edge function undeletable for hours: Pulumi forgets it instead.
    assert function["options"]["retain_on_delete"] is True
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
    assert base.resources["edge-role"]["provider"] is None


def test_no_explicit_aws_provider(base: MockRun) -> None:
    # An explicit provider inherits none of the stack's aws:* settings (profile, assumeRoles,
    # defaultTags...): everything uses the default one, whose region settings force to us-east-1.
    assert not [n for n, r in base.resources.items() if r["type"].startswith("pulumi:providers:")]
    assert {r["provider"] for r in base.resources.values()} == {None}


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


def test_app_paths_get_the_security_headers_from_a_response_headers_policy(run_infra: RunInfra) -> None:
    from infra.edge.handler import SECURITY_HEADERS

    run = run_infra({"appPathPatterns": json.dumps(["/api/*", "/auth/*"])})
    behaviours = inputs(run, "cdn-distribution")["orderedCacheBehaviors"]
    assert [b["pathPattern"] for b in behaviours] == ["/api/*", "/auth/*"]
    assert {b["responseHeadersPolicyId"] for b in behaviours} == {"cdn-app-headers-id"}
    headers = inputs(run, "cdn-app-headers")["securityHeadersConfig"]
    # The same values as the edge function's, none overriding what the app already sent.
    assert headers["contentSecurityPolicy"]["contentSecurityPolicy"] == SECURITY_HEADERS["Content-Security-Policy"]
    assert headers["frameOptions"]["frameOption"] == SECURITY_HEADERS["X-Frame-Options"]
    assert headers["referrerPolicy"]["referrerPolicy"] == SECURITY_HEADERS["Referrer-Policy"]
    assert headers["strictTransportSecurity"] == {
        "accessControlMaxAgeSec": 63072000, "includeSubdomains": True, "preload": True, "override": False}
    assert headers["contentTypeOptions"] == {"override": False}
    assert all(h["override"] is False for h in headers.values())
    # The edge function stays the versioned lever on the default behaviour.
    default = inputs(run, "cdn-distribution")["defaultCacheBehavior"]
    assert default["lambdaFunctionAssociations"][0]["eventType"] == "viewer-response"


def test_release_invalidation_follows_the_origin_path(base: MockRun) -> None:
    invalidation = base.resources["cdn-release-invalidation"]
    assert invalidation["type"] == "pulumi-python:dynamic:Resource"
    assert invalidation["inputs"]["distribution_id"] == base.outputs["distributionId"]
    assert invalidation["inputs"]["origin_path"] == "/releases/2026-11-20.1"
    assert invalidation["inputs"]["paths"] == ["/*"]
    # Runs after the distribution update (which waits for Deployed).
    assert "cdn-distribution" in invalidation["options"]["depends_on"]


def test_release_invalidation_provider_invalidates_on_change_only() -> None:
    from infra.invalidation import _ReleaseInvalidationProvider

    provider = _ReleaseInvalidationProvider()
    old = {"distribution_id": "E1", "origin_path": "/releases/a", "paths": ["/*"], "invalidation_id": "I1"}
    assert provider.diff("I1", old, {**old, "invalidation_id": None}).changes is False
    assert provider.diff("I1", old, {**old, "origin_path": "/releases/b"}).changes is True
    assert provider.diff("I1", old, {**old, "origin_path": "/releases/b"}).replaces == []
    assert provider.delete("I1", old) is None  # an invalidation is never undone


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
    # The major pinned, minor upgrades on: RDS cannot go back to an older minor.
    assert db["engineVersion"] == "16" and db["autoMinorVersionUpgrade"] is True
    assert db["allowMajorVersionUpgrade"] is True
    assert db["backupRetentionPeriod"] >= 7
    assert db["deletionProtection"] is True
    assert db["skipFinalSnapshot"] is False
    assert db["finalSnapshotIdentifier"] == "rollback-dev-db-final"
    assert db["copyTagsToSnapshot"] is True
    assert db["deleteAutomatedBackups"] is False
    assert db["storageEncrypted"] is True
    assert "snapshotIdentifier" not in db and "restoreToPointInTime" not in db
    assert base.resources["db-instance"]["options"]["retain_on_delete"] is True


def test_database_password_is_managed_by_rds(base: MockRun, run_infra: RunInfra) -> None:
    db = inputs(base, "db-instance")
    assert db["manageMasterUserPassword"] is True
    assert "password" not in db and "passwordWo" not in db
    # An earlier update's config that still has a password: accepted, never used.
    old = run_infra({"dbMasterPassword": "an-old-password-from-history"})
    assert "password" not in inputs(old, "db-instance")
    assert "an-old-password-from-history" not in json.dumps([old.resources, old.outputs])


def test_database_changes_apply_immediately_by_default(base: MockRun, run_infra: RunInfra) -> None:
    # A rollback of class, storage or Multi-AZ must not wait for the maintenance window.
    assert inputs(base, "db-instance")["applyImmediately"] is True
    assert inputs(run_infra({"dbApplyImmediately": "false"}), "db-instance")["applyImmediately"] is False


def test_database_network_is_declared(base: MockRun, run_infra: RunInfra) -> None:
    db = inputs(base, "db-instance")
    subnets = inputs(base, "db-subnets")
    access = inputs(base, "db-access")
    parameters = inputs(base, "db-parameters")
    assert subnets["subnetIds"] == ["subnet-0a1b2c3d4e5f60718", "subnet-1a2b3c4d5e6f70819"]
    assert db["dbSubnetGroupName"] == subnets["name"] == "rollback-dev-db-subnets"
    assert db["vpcSecurityGroupIds"] == ["db-access-id"]
    assert access["vpcId"] == "vpc-0a1b2c3d4e5f60718"
    (rule,) = access["ingress"]
    assert (rule["protocol"], rule["fromPort"], rule["toPort"]) == ("tcp", 5432, 5432)
    assert rule["cidrBlocks"] == ["0.0.0.0/0"] and access["egress"] == []
    assert db["publiclyAccessible"] is True and db["port"] == 5432
    # TLS is required: the endpoint is public.
    assert parameters["family"] == "postgres16"
    assert parameters["parameters"] == [{"name": "rds.force_ssl", "value": "1", "applyMethod": "immediate"}]
    assert db["parameterGroupName"] == parameters["name"]

    private = run_infra({"dbNetwork": json.dumps({
        "access": "private", "vpcId": "vpc-0a1b2c3d4e5f60718", "allowedSecurityGroupIds": ["sg-0a1b2c3d4e5f60718"],
        "subnetIds": ["subnet-0a1b2c3d4e5f60718", "subnet-1a2b3c4d5e6f70819"]})})
    assert inputs(private, "db-instance")["publiclyAccessible"] is False
    (rule,) = inputs(private, "db-access")["ingress"]
    assert rule["securityGroups"] == ["sg-0a1b2c3d4e5f60718"] and "cidrBlocks" not in rule


def test_program_refuses_an_engine_downgrade_or_storage_shrink_of_the_live_instance(run_infra: RunInfra) -> None:
    from rollback.adapters.pulumi_mocks import run_program
    from tests.infra_program.conftest import BASE_CONFIG, PROGRAM_DIR

    def live(engine: str, storage: int) -> dict[str, object]:
        return {
            "aws:rds/getInstances:getInstances": {"instanceIdentifiers": ["rollback-dev-db"]},
            "aws:rds/getInstance:getInstance": {"engineVersion": engine, "allocatedStorage": storage},
        }

    ok = run_program(PROGRAM_DIR, BASE_CONFIG, invokes=live("16.6", 20))
    assert inputs(ok, "db-instance")["engineVersion"] == "16"
    with pytest.raises(pulumi.RunError, match=r"rollback:dbEngineVersion: 16 would downgrade rollback-dev-db"):
        run_program(PROGRAM_DIR, BASE_CONFIG, invokes=live("17.1", 20))
    with pytest.raises(pulumi.RunError, match=r"rollback:dbAllocatedStorageGb: 20 GiB is less than the 120 GiB"):
        run_program(PROGRAM_DIR, BASE_CONFIG, invokes=live("16.6", 120))


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
    for name in snapshots:
        assert run.resources[name]["options"]["retain_on_delete"] is True
        assert run.resources[name]["options"]["ignore_changes"] == ["dbInstanceIdentifier", "dbSnapshotIdentifier"]


def test_release_snapshots_keep_their_names_after_a_restore(run_infra: RunInfra) -> None:
    restored = run_infra({"dbRestoreFromSnapshot": "rollback-dev-db-pre-2026-11-20-1",
                          "dbReleaseSnapshots": json.dumps(["pre-2026-11-20-1", "pre-2026-11-27-1"])})
    snapshots = of_type(restored, "aws:rds/snapshot:Snapshot")
    # Named from the base identifier, not the restored one; a new one is taken from the instance in use.
    assert {s["dbSnapshotIdentifier"] for s in snapshots.values()} == {
        "rollback-dev-db-pre-2026-11-20-1", "rollback-dev-db-pre-2026-11-27-1"}
    assert {s["dbInstanceIdentifier"] for s in snapshots.values()} == {
        "rollback-dev-db-from-rollback-dev-db-pre-2026-11-20-1"}


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
    assert set(metrics) == {"LambdaExecutionError", "LambdaValidationError", "LambdaLimitExceededErrors"}
    assert all(m["dimensions"] == cdn_dims and m["namespace"] == "AWS/CloudFront" for m in metrics.values())
    # A minute without one kind of error must count as 0, not make the sum missing ("not breaching").
    (expression,) = [q for q in edge["metricQueries"] if "expression" in q]
    assert expression["expression"] == "FILL(executionErrors, 0) + FILL(validationErrors, 0) + FILL(limitErrors, 0)"
    assert expression["returnData"] is True
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
    # Every alarm lives where CloudFront publishes metrics, named on the resource (default provider).
    for name in [*alarms, "alarms-composite", "alarms-topic"]:
        assert base.resources[name]["provider"] is None, name
        assert base.resources[name]["inputs"]["region"] == "us-east-1", name


def test_rds_alarms_can_watch_an_instance_restored_by_the_cli(run_infra: RunInfra) -> None:
    run = run_infra({"dbAlarmInstanceId": "rollback-dev-db-restored-1"})
    by_name = {a["name"]: a for a in of_type(run, "aws:cloudwatch/metricAlarm:MetricAlarm").values()}
    for name in ("rollback-dev-db-connections", "rollback-dev-db-free-storage"):
        assert by_name[name]["dimensions"] == {"DBInstanceIdentifier": "rollback-dev-db-restored-1"}
    assert inputs(run, "db-instance")["identifier"] == "rollback-dev-db"  # the stack's own instance unchanged


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
    assert s["AssetsObjectsRestore"]["Resource"] == [f"{bucket_arn}/*"]
    # CopyObject with TaggingDirective=COPY, delete markers removed (--undelete) and written (--before).
    assert {"s3:GetObjectVersionTagging", "s3:PutObjectTagging", "s3:DeleteObject",
            "s3:DeleteObjectVersion"} <= set(s["AssetsObjectsRestore"]["Action"])
    assert s["DatabaseAutomatedBackups"]["Action"] == ["rds:DescribeDBInstanceAutomatedBackups"]
    assert f"{rds}db:rollback-dev-db" in s["DatabaseDescribe"]["Resource"]
    for sid in ("DatabaseDescribe", "DatabaseSnapshot", "DatabaseRestore"):
        for arn in s[sid]["Resource"]:
            assert arn.startswith(rds), arn
            assert "rollback-dev-db" in arn or ":og:" in arn, arn
    assert set(s["DatabaseRestore"]["Action"]) == {
        "rds:RestoreDBInstanceFromDBSnapshot",
        "rds:RestoreDBInstanceToPointInTime",
        "rds:AddTagsToResource",  # the copy gets the source's tags
    }
    alarm_prefix = f"arn:aws:cloudwatch:us-east-1:{MOCK_ACCOUNT_ID}:alarm:rollback-dev-"
    assert s["AlarmsRead"]["Resource"] == [f"{alarm_prefix}*"]
    assert all(name.startswith("rollback-dev-")
               for name in [*base.outputs["alarmNames"], base.outputs["compositeAlarmName"]])
    assert "PulumiBackendRead" not in s  # only with operatorBackendUrl


def test_operator_may_take_the_team_lease(run_infra: RunInfra) -> None:
    s = statements(run_infra({"operatorLockUrl": "s3://acme-rollback-locks/team/"}))
    assert s["TeamLease"] == {"Sid": "TeamLease", "Effect": "Allow",
                              "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                              "Resource": ["arn:aws:s3:::acme-rollback-locks/team/*"]}


def test_operator_may_read_an_s3_pulumi_backend(run_infra: RunInfra) -> None:
    s = statements(run_infra({"operatorBackendUrl": "s3://acme-pulumi-state/rollback"}))
    assert s["PulumiBackendList"]["Resource"] == ["arn:aws:s3:::acme-pulumi-state"]
    assert s["PulumiBackendList"]["Condition"] == {
        "StringLike": {"s3:prefix": ["rollback/.pulumi", "rollback/.pulumi/*"]}}
    assert s["PulumiBackendRead"] == {"Sid": "PulumiBackendRead", "Effect": "Allow", "Action": ["s3:GetObject"],
                                      "Resource": ["arn:aws:s3:::acme-pulumi-state/rollback/.pulumi/*"]}


def test_operator_policy_has_no_wildcard_where_an_arn_is_accepted(base: MockRun) -> None:
    for sid, statement in statements(base).items():
        assert statement["Effect"] == "Allow"
        resources = as_list(statement["Resource"])
        if sid == "MetricsRead":
            # AWS has no resource-level permissions for this read: "*" is the only option.
            assert resources == ["*"]
            assert as_list(statement["Action"]) == ["cloudwatch:GetMetricData"]
            continue
        for resource in resources:
            assert resource != "*" and resource.startswith("arn:aws:"), (sid, resource)
            # Unknowable names: automated backups' ids, and the secrets RDS manages (rds!db-<uuid>).
            if resource.endswith("*") and sid not in ("DatabaseAutomatedBackups", "DatabaseManagedPasswordSecret"):
                assert "rollback-dev" in resource or resource.endswith(":og:default:postgres-*") or \
                    resource.endswith("/*") or resource.endswith(":*"), (sid, resource)
            if sid == "DatabaseManagedPasswordSecret":
                assert resource.endswith(":secret:rds!*"), resource
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
        "dbAddress",
        "dbMasterSecretArn",
        "dbMasterSecretKmsKeyId",
        "dbMonitoringRoleArn",
        "alarmNames",
        "compositeAlarmName",
        "alertTopicArn",
        "operatorRoleArn",
    }
    # The operator may use the key of the stack's secret: a restore's managed password is made with it.
    policy = json.loads(inputs(base, "operator-policy")["policy"])
    keys = next(s for s in policy["Statement"] if s["Sid"] == "DatabaseManagedPasswordKey")
    assert keys["Resource"] == [outputs["dbMasterSecretKmsKeyId"]] and outputs["dbMasterSecretKmsKeyId"].startswith(
        "arn:aws:kms:")
    # Enhanced monitoring's role: the operator may pass exactly it, and only to RDS monitoring.
    monitoring = next(s for s in policy["Statement"] if s["Sid"] == "DatabaseMonitoringRolePass")
    assert monitoring["Action"] == ["iam:PassRole"] and monitoring["Resource"] == [outputs["dbMonitoringRoleArn"]]
    assert monitoring["Condition"] == {"StringEquals": {"iam:PassedToService": "monitoring.rds.amazonaws.com"}}
    assert outputs["dbMonitoringRoleArn"] == f"arn:aws:iam::{MOCK_ACCOUNT_ID}:role/rollback-dev-db-rds-monitoring"
    instance = inputs(base, "db-instance")
    assert instance["monitoringInterval"] == 60 and instance["monitoringRoleArn"] == outputs["dbMonitoringRoleArn"]
    role = inputs(base, "db-monitoring")
    assert json.loads(role["assumeRolePolicy"])["Statement"][0]["Principal"] == {
        "Service": "monitoring.rds.amazonaws.com"}
    assert role["managedPolicyArns"] == [
        "arn:aws:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"]
    assert outputs["distributionDomain"].endswith(".cloudfront.net")
    assert outputs["edgeFunctionName"] == "rollback-dev-security-headers"
    assert outputs["assetsRelease"] == "2026-11-20.1"
    assert outputs["dbInstanceId"] == "rollback-dev-db"
    assert isinstance(outputs["alarmNames"], list) and len(outputs["alarmNames"]) == 6
    assert outputs["compositeAlarmName"] == "rollback-dev-rollback"
    assert outputs["operatorRoleArn"] == f"arn:aws:iam::{MOCK_ACCOUNT_ID}:role/rollback-dev-rollback-operator"


def test_enhanced_monitoring_off_declares_no_role_and_grants_no_pass(run_infra: Any) -> None:
    off = run_infra({"dbMonitoringInterval": "0"})
    assert "db-monitoring" not in off.resources
    instance = inputs(off, "db-instance")
    assert instance.get("monitoringInterval") == 0 and not instance.get("monitoringRoleArn")
    policy = json.loads(inputs(off, "operator-policy")["policy"])
    assert not [s for s in policy["Statement"] if "iam:PassRole" in s["Action"]]
    assert off.outputs.get("dbMonitoringRoleArn") is None


def test_a_monitoring_interval_rds_does_not_offer_is_refused(run_infra: Any) -> None:
    with pytest.raises(pulumi.RunError, match=r"rollback:dbMonitoringInterval: 45 is not an interval RDS offers"):
        run_infra({"dbMonitoringInterval": "45"}, fresh=True)
