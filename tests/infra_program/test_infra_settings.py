"""infra.settings: stack config -> validated settings, and the config errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from infra.settings import ConfigError, RestoreToTime, Settings, check_live_database, parse_settings

NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
NETWORK = {
    "access": "public",
    "vpcId": "vpc-0a1b2c3d4e5f60718",
    "subnetIds": ["subnet-0a1b2c3d4e5f60718", "subnet-1a2b3c4d5e6f70819"],
    "allowedCidrs": ["0.0.0.0/0"],
}
MINIMAL = {
    "assetsRelease": "2026-11-20.1",
    "appOriginDomain": "huntaze.vercel.app",
    "dbNetwork": json.dumps(NETWORK),
}


def parse(region: str | None = "us-east-1", **overrides: str) -> Settings:
    config = {**MINIMAL, **overrides}
    return parse_settings(config, project="rollback", stack="staging", region=region, now=NOW)


def test_defaults_are_the_runbook_numbers_and_safe_values() -> None:
    settings = parse()
    assert settings.name_prefix == "rollback-staging"
    assert settings.edge_function_version is None
    assert settings.db_backup_retention_days == 7
    assert settings.db_instance_identifier == "rollback-staging-db"
    assert settings.db_restore_from_snapshot is None and settings.db_restore_to_time is None
    assert settings.app_path_patterns == ("/api/*",)
    alarms = settings.alarms
    assert alarms.error_rate_5xx_percent == 5
    assert alarms.origin_latency_p95_ms == 5000
    assert alarms.cache_hit_rate_min_percent == 70
    assert alarms.db_connections_percent == 90
    # db.t4g.medium: 4 GiB -> LEAST(DBInstanceClassMemory / 9531392, 5000)
    assert 350 < settings.db_max_connections < 451


def test_secrets_stay_out_of_repr() -> None:
    settings = parse(originVerifySecret="vercel-origin-secret")
    assert "correct-horse-battery-staple" not in repr(settings)
    assert "vercel-origin-secret" not in repr(settings)


def test_getter_callable_and_empty_strings_mean_unset() -> None:
    config = {**MINIMAL, "edgeFunctionVersion": "", "dbRestoreFromSnapshot": "  "}
    settings = parse_settings(config.get, project="rollback", stack="dev", region="us-east-1", now=NOW)
    assert settings.edge_function_version is None
    assert settings.db_restore_from_snapshot is None


def test_structured_values_are_json_as_pulumi_passes_them() -> None:
    settings = parse(
        appPathPatterns=json.dumps(["/api/*", "/auth/*"]),
        dbReleaseSnapshots=json.dumps(["pre-1", "pre-2"]),
        cdnAliases=json.dumps(["app.huntaze.com"]),
        cdnCertificateArn="arn:aws:acm:us-east-1:111122223333:certificate/abc",
    )
    assert settings.app_path_patterns == ("/api/*", "/auth/*")
    assert settings.db_release_snapshots == ("pre-1", "pre-2")
    assert settings.cdn_aliases == ("app.huntaze.com",)


@pytest.mark.parametrize("version", ["7", "1", "120"])
def test_edge_version_pin_accepts_numbers(version: str) -> None:
    assert parse(edgeFunctionVersion=version).edge_function_version == version


@pytest.mark.parametrize("version", ["latest", "$LATEST", "0", "-1", "v7", "7.1", "prod"])
def test_edge_version_pin_rejects_non_numeric(version: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(edgeFunctionVersion=version)
    assert caught.value.key == "edgeFunctionVersion"
    message = str(caught.value)
    assert message.startswith("config rollback:edgeFunctionVersion: ")
    assert "not a published version number" in message
    assert "remove the key" in message  # says what to do


@pytest.mark.parametrize("days", ["0", "6", "36"])
def test_backup_retention_must_be_7_to_35_days(days: str) -> None:
    with pytest.raises(ConfigError, match=r"rollback:dbBackupRetentionDays: .* outside 7-35") as caught:
        parse(dbBackupRetentionDays=days)
    assert "at least 7 days" in caught.value.fix


def test_backup_retention_must_be_a_number() -> None:
    with pytest.raises(ConfigError, match="dbBackupRetentionDays: 'a week' is not a whole number"):
        parse(dbBackupRetentionDays="a week")


def test_restore_from_snapshot() -> None:
    settings = parse(dbRestoreFromSnapshot="rollback-staging-db-pre-2026-11-20-1")
    assert settings.db_restore_from_snapshot == "rollback-staging-db-pre-2026-11-20-1"
    # A restore is a new instance: its identifier must differ from the protected one.
    assert settings.db_instance_identifier == "rollback-staging-db-from-rollback-staging-db-pre-2026-11-20-1"


def test_restore_from_snapshot_arn_uses_the_snapshot_name_for_the_identifier() -> None:
    arn = "arn:aws:rds:us-east-1:123456789012:snapshot:pre-release-7"
    settings = parse(dbRestoreFromSnapshot=arn)
    assert settings.db_restore_from_snapshot == arn
    assert settings.db_instance_identifier == "rollback-staging-db-from-pre-release-7"


def test_restore_to_time() -> None:
    value = json.dumps({"sourceInstance": "rollback-staging-db", "time": "2026-11-27T22:15:00Z"})
    settings = parse(dbRestoreToTime=value)
    assert settings.db_restore_to_time == RestoreToTime(
        source_instance="rollback-staging-db", time=datetime(2026, 11, 27, 22, 15, tzinfo=UTC)
    )
    assert settings.db_restore_to_time.restore_time == "2026-11-27T22:15:00Z"
    # The source and the generation are in the name (two restores never collide).
    assert settings.db_instance_identifier == "rollback-staging-db-pitr1-rollback-staging-db-20261127t221500"


def test_long_snapshot_names_give_a_short_unique_identifier() -> None:
    long_name = "rollback-staging-db-pre-release-2026-11-27-2-with-a-very-long-description"
    settings = parse(dbRestoreFromSnapshot=long_name)
    ident = settings.db_instance_identifier
    assert len(ident) <= 63 and ident.startswith("rollback-staging-db-from-")
    assert ident != parse(dbRestoreFromSnapshot=long_name + "-2").db_instance_identifier


def test_restore_to_latest_restorable_time() -> None:
    value = json.dumps({"sourceInstance": "rollback-staging-db", "useLatestRestorableTime": True})
    restore = parse(dbRestoreToTime=value).db_restore_to_time
    assert restore is not None
    assert restore.use_latest_restorable_time and restore.restore_time is None


def test_restore_to_latest_accepts_a_string_flag() -> None:
    value = json.dumps({"sourceInstance": "rollback-staging-db", "useLatestRestorableTime": "true"})
    restore = parse(dbRestoreToTime=value).db_restore_to_time
    assert restore is not None and restore.use_latest_restorable_time


def test_restore_to_time_in_the_future_is_a_config_error() -> None:
    value = json.dumps({"sourceInstance": "rollback-staging-db", "time": "2026-11-28T09:00:01Z"})
    with pytest.raises(ConfigError) as caught:
        parse(dbRestoreToTime=value)
    assert caught.value.key == "dbRestoreToTime"
    assert "is in the future" in caught.value.problem
    assert "useLatestRestorableTime" in caught.value.fix


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({"time": "2026-11-27T22:15:00Z"}, "sourceInstance"),
        ({"sourceInstance": "db"}, "exactly one of time and useLatestRestorableTime"),
        (
            {"sourceInstance": "db", "time": "2026-11-27T22:15:00Z", "useLatestRestorableTime": True},
            "exactly one",
        ),
        ({"sourceInstance": "db", "time": "yesterday"}, "not an ISO 8601 time"),
        ({"sourceInstance": "db", "time": "2026-11-27T22:15:00"}, "no time zone"),
        ({"sourceInstance": "db", "when": "2026-11-27T22:15:00Z"}, "unknown field"),
    ],
)
def test_restore_to_time_shape_errors(value: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfigError, match="rollback:dbRestoreToTime") as caught:
        parse(dbRestoreToTime=json.dumps(value))
    assert problem in caught.value.problem


def test_both_restores_at_once_is_an_error() -> None:
    with pytest.raises(ConfigError, match="choose one restore"):
        parse(
            dbRestoreFromSnapshot="snap-1",
            dbRestoreToTime=json.dumps({"sourceInstance": "db", "useLatestRestorableTime": True}),
        )


@pytest.mark.parametrize("key", ["assetsRelease", "appOriginDomain", "dbNetwork"])
def test_required_keys(key: str) -> None:
    config = {k: v for k, v in MINIMAL.items() if k != key}
    with pytest.raises(ConfigError) as caught:
        parse_settings(config, project="rollback", stack="dev", region="us-east-1", now=NOW)
    assert caught.value.key == key


def test_no_password_in_config_an_old_one_is_reported_not_used() -> None:
    # The master password is managed by RDS (Secrets Manager): an earlier update's config that
    # still carries one is accepted, the value is not used, and the program says so.
    settings = parse(dbMasterPassword="an-old-password-from-history")
    assert "an-old-password-from-history" not in repr(settings)
    (warning,) = settings.warnings
    assert warning.startswith("config rollback:dbMasterPassword is set but no longer used")
    assert "pulumi config rm dbMasterPassword" in warning
    assert parse().warnings == ()


@pytest.mark.parametrize("version", ["16", "17", "15"])
def test_engine_pins_the_major_only(version: str) -> None:
    settings = parse(dbEngineVersion=version)
    assert settings.db_engine_version == settings.db_engine_major == version
    assert parse().db_engine_version == "16"


@pytest.mark.parametrize("version", ["16.4", "16.4.1", "latest", "v16"])
def test_engine_minor_pins_are_refused_with_the_reason(version: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(dbEngineVersion=version)
    assert caught.value.key == "dbEngineVersion"
    assert "pin the major version only" in caught.value.fix
    assert "cannot go back to an older minor" in caught.value.fix


def test_apply_immediately_defaults_to_true() -> None:
    assert parse().db_apply_immediately is True
    assert parse(dbApplyImmediately="false").db_apply_immediately is False


@pytest.mark.parametrize(
    ("live_engine", "live_storage", "overrides", "key", "phrase"),
    [
        ("17.2", None, {}, "dbEngineVersion", "cannot downgrade an engine"),
        ("16.6", None, {"dbEngineVersion": "15"}, "dbEngineVersion", "runs PostgreSQL 16.6"),
        (None, 120, {"dbAllocatedStorageGb": "100"}, "dbAllocatedStorageGb", "cannot shrink storage"),
    ],
)
def test_live_database_refuses_a_downgrade_or_a_shrink(
    live_engine: str | None, live_storage: int | None, overrides: dict[str, str], key: str, phrase: str
) -> None:
    settings = parse(**overrides)
    with pytest.raises(ConfigError) as caught:
        check_live_database(settings, engine_version=live_engine, allocated_storage_gb=live_storage)
    assert caught.value.key == key
    assert phrase in caught.value.problem
    assert "rollback-staging-db" in caught.value.problem  # names the instance


@pytest.mark.parametrize(
    ("live_engine", "live_storage", "overrides"),
    [
        (None, None, {}),  # the instance does not exist yet
        ("16.6", 20, {}),  # minor upgrades are expected: the major pin matches
        ("16.6", 20, {"dbEngineVersion": "17"}),  # a major upgrade is an explicit change
        ("16.6", 20, {"dbAllocatedStorageGb": "50"}),  # growing is fine
    ],
)
def test_live_database_accepts_what_rds_can_do(
    live_engine: str | None, live_storage: int | None, overrides: dict[str, str]
) -> None:
    check_live_database(parse(**overrides), engine_version=live_engine, allocated_storage_gb=live_storage)


def test_restore_identifiers_include_source_and_generation() -> None:
    latest = {"sourceInstance": "rollback-staging-db", "useLatestRestorableTime": True}
    other = {"sourceInstance": "rollback-staging-db-from-snap-1", "useLatestRestorableTime": True}
    first = parse(dbRestoreToTime=json.dumps(latest)).db_instance_identifier
    again = parse(dbRestoreToTime=json.dumps(latest), dbRestoreGeneration="2").db_instance_identifier
    from_other = parse(dbRestoreToTime=json.dumps(other)).db_instance_identifier
    assert len({first, again, from_other}) == 3
    assert first == "rollback-staging-db-pitr1-rollback-staging-db-latest"
    assert again == "rollback-staging-db-pitr2-rollback-staging-db-latest"
    assert all(len(i) <= 63 and i.startswith("rollback-staging-db-pitr") for i in (first, again, from_other))
    # Snapshot restores keep their name at generation 1 (an existing restored instance is not renamed).
    assert parse(dbRestoreFromSnapshot="snap-1").db_instance_identifier == "rollback-staging-db-from-snap-1"
    assert parse(dbRestoreFromSnapshot="snap-1", dbRestoreGeneration="2").db_instance_identifier == (
        "rollback-staging-db-from2-snap-1")


@pytest.mark.parametrize(
    ("network", "problem"),
    [
        ({**NETWORK, "access": "vpn"}, "neither public nor private"),
        ({**NETWORK, "vpcId": "default"}, "vpcId"),
        ({**NETWORK, "subnetIds": ["subnet-0a1b2c3d4e5f60718"]}, "at least two subnets"),
        ({**NETWORK, "allowedCidrs": []}, "nothing may connect"),
        ({**NETWORK, "allowedCidrs": ["everyone"]}, "allowedCidrs"),
        ({**NETWORK, "allowedCidrs": [], "allowedSecurityGroupIds": ["sg-0a1b2c3d4e5f60718"]}, "not reachable"),
        ({**NETWORK, "port": 5433}, "unknown field"),
    ],
)
def test_network_errors(network: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(dbNetwork=json.dumps(network))
    assert caught.value.key == "dbNetwork"
    assert problem in caught.value.problem


def test_private_network_and_the_retired_network_keys() -> None:
    private = {**NETWORK, "access": "private", "allowedCidrs": [], "allowedSecurityGroupIds": ["sg-0a1b2c3d4e5f60718"]}
    network = parse(dbNetwork=json.dumps(private)).db_network
    assert network is not None and not network.publicly_accessible
    with pytest.raises(ConfigError, match="replaced by dbNetwork"):
        parse(dbSubnetGroupName="my-subnets")


@pytest.mark.parametrize("release", ["../2026", "a/b", "", " "])
def test_release_id_must_be_a_folder_name(release: str) -> None:
    with pytest.raises(ConfigError, match="assetsRelease"):
        parse(assetsRelease=release)


def test_region_other_than_us_east_1_is_refused_with_the_reason() -> None:
    with pytest.raises(ConfigError, match=r"config aws:region: .*eu-west-1.*CloudFront metrics exist only"):
        parse(region="eu-west-1")
    with pytest.raises(ConfigError, match="aws:region"):
        parse(region=None)


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("alarm5xxErrorRatePercent", "101", "alarm5xxErrorRatePercent"),
        ("alarmCacheHitRateMinPercent", "lots", "alarmCacheHitRateMinPercent"),
        ("assetsNoncurrentVersionsToKeep", "0", "assetsNoncurrentVersionsToKeep"),
        ("assetsNoncurrentVersionsToKeep", "101", "assetsNoncurrentVersionsToKeep"),
        ("dbReleaseSnapshots", json.dumps(["Pre_Release"]), "dbReleaseSnapshots"),
        ("dbReleaseSnapshots", json.dumps(["pre-1", "pre-1"]), "dbReleaseSnapshots"),
        ("dbReleaseSnapshots", "pre-1", "dbReleaseSnapshots"),
        ("appPathPatterns", json.dumps(["/*"]), "appPathPatterns"),
        # aliases without a certificate: the key to set is the certificate's
        ("cdnAliases", json.dumps(["app.huntaze.com"]), "cdnCertificateArn"),
        ("cdnCertificateArn", "arn:aws:acm:eu-west-1:111122223333:certificate/abc", "cdnCertificateArn"),
        # an instance class without a known connection limit: the key to set is dbMaxConnections
        ("dbInstanceClass", "db.x2g.16xlarge", "dbMaxConnections"),
        ("operatorTrustedPrincipals", json.dumps(["*"]), "operatorTrustedPrincipals"),
        ("dbMultiAz", "yes", "dbMultiAz"),
    ],
)
def test_bad_values_name_their_key(key: str, value: str, named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(**{key: value})
    assert caught.value.key == named
    assert str(caught.value).startswith(f"config rollback:{named}: ")


def test_unknown_instance_class_with_explicit_max_connections() -> None:
    settings = parse(dbInstanceClass="db.x2g.16xlarge", dbMaxConnections="5000")
    assert settings.db_max_connections == 5000
