"""Pins: each rollback pin changes exactly the declared inputs it should, and bad pins fail clearly.

The program is run twice under mocks (current and pinned config) and the full
set of declared resource inputs is compared, as ``rollback infra preview
--offline`` does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pulumi
import pytest

from infra.settings import ConfigError
from rollback.adapters.pulumi_mocks import MOCK_ACCOUNT_ID, MockRun, diff_declared_inputs

RunInfra = Callable[..., MockRun]
FUNCTION_ARN = f"arn:aws:lambda:us-east-1:{MOCK_ACCOUNT_ID}:function:rollback-dev-security-headers"


def changes(before: MockRun, after: MockRun) -> dict[str, list[tuple[str, Any, Any]]]:
    return diff_declared_inputs(before.resources, after.resources)


def test_same_config_declares_identical_inputs(base: MockRun, run_infra: RunInfra) -> None:
    # Baseline for the "exactly" assertions below: a fresh run of the same config is identical.
    again = run_infra(fresh=True)
    assert changes(base, again) == {}
    assert again.outputs == base.outputs


def test_pinning_edge_version_changes_only_the_association_arn(base: MockRun, run_infra: RunInfra) -> None:
    pinned = run_infra({"edgeFunctionVersion": "2"})
    assert changes(base, pinned) == {
        "cdn-distribution": [
            (
                "defaultCacheBehavior.lambdaFunctionAssociations[0].lambdaArn",
                f"{FUNCTION_ARN}:3",
                f"{FUNCTION_ARN}:2",
            )
        ]
    }
    assert pinned.outputs["edgeFunctionVersion"] == "2"
    assert pinned.outputs["edgeFunctionVersionArn"] == f"{FUNCTION_ARN}:2"
    changed_outputs = {k for k in base.outputs if base.outputs[k] != pinned.outputs[k]}
    assert changed_outputs == {"edgeFunctionVersion", "edgeFunctionVersionArn"}


def test_pinning_the_newest_version_explicitly_changes_nothing(base: MockRun, run_infra: RunInfra) -> None:
    assert changes(base, run_infra({"edgeFunctionVersion": "3"})) == {}


def test_assets_release_changes_only_the_origin_path_and_invalidates(base: MockRun, run_infra: RunInfra) -> None:
    rolled_back = run_infra({"assetsRelease": "2026-11-13.4"})
    assert changes(base, rolled_back) == {
        "cdn-distribution": [("origins[0].originPath", "/releases/2026-11-20.1", "/releases/2026-11-13.4")],
        # The cache key does not include the origin path: the invalidation resource is keyed on it,
        # so this update (pulumi up, or rollback infra restore) invalidates /* after the change.
        "cdn-release-invalidation": [("origin_path", "/releases/2026-11-20.1", "/releases/2026-11-13.4")],
    }
    assert rolled_back.outputs["assetsRelease"] == "2026-11-13.4"


def test_restore_from_snapshot_declares_a_new_instance_from_the_snapshot(base: MockRun, run_infra: RunInfra) -> None:
    restored = run_infra({"dbRestoreFromSnapshot": "rollback-dev-db-pre-2026-11-20-1"})
    db = restored.resources["db-instance"]["inputs"]
    assert db["snapshotIdentifier"] == "rollback-dev-db-pre-2026-11-20-1"
    assert db["identifier"] == "rollback-dev-db-from-rollback-dev-db-pre-2026-11-20-1"
    assert "restoreToPointInTime" not in db
    # Database name and master user come from the snapshot.
    assert "dbName" not in db and "username" not in db
    # Still protected and backed up like the original.
    assert db["deletionProtection"] is True and db["backupRetentionPeriod"] == 7
    assert db["finalSnapshotIdentifier"] == f"{db['identifier']}-final"
    assert restored.outputs["dbInstanceId"] == db["identifier"]

    # What follows the new identifier: the instance and the RDS alarms. The release snapshot keeps its
    # name (from the base identifier) and ignores its source after creation: it is not re-taken.
    # The operator policy names the base and every <base>-* instance, so it does not change either.
    assert set(changes(base, restored)) == {"db-instance", "db-snapshot-pre-2026-11-20-1",
                                            "alarms-db-connections", "alarms-db-free-storage"}
    snapshot = restored.resources["db-snapshot-pre-2026-11-20-1"]
    assert snapshot["inputs"]["dbSnapshotIdentifier"] == "rollback-dev-db-pre-2026-11-20-1"
    assert snapshot["options"]["ignore_changes"] == ["dbInstanceIdentifier", "dbSnapshotIdentifier"]
    assert [path for path, _, _ in changes(base, restored)["db-snapshot-pre-2026-11-20-1"]] == [
        "dbInstanceIdentifier"]  # ignored by the engine: no replacement
    alarm = restored.resources["alarms-db-connections"]["inputs"]
    assert alarm["dimensions"] == {"DBInstanceIdentifier": db["identifier"]}


def test_restore_to_time(base: MockRun, run_infra: RunInfra) -> None:
    value = json.dumps({"sourceInstance": "rollback-dev-db", "time": "2026-01-15T08:30:00Z"})
    restored = run_infra({"dbRestoreToTime": value})
    db = restored.resources["db-instance"]["inputs"]
    assert db["restoreToPointInTime"] == {
        "sourceDbInstanceIdentifier": "rollback-dev-db",
        "restoreTime": "2026-01-15T08:30:00Z",
    }
    assert db["identifier"] == "rollback-dev-db-pitr1-rollback-dev-db-20260115t083000"
    assert "snapshotIdentifier" not in db


def test_restore_to_latest_restorable_time(run_infra: RunInfra) -> None:
    value = json.dumps({"sourceInstance": "rollback-dev-db", "useLatestRestorableTime": True})
    db = run_infra({"dbRestoreToTime": value}).resources["db-instance"]["inputs"]
    assert db["restoreToPointInTime"] == {
        "sourceDbInstanceIdentifier": "rollback-dev-db",
        "useLatestRestorableTime": True,
    }
    assert db["identifier"] == "rollback-dev-db-pitr1-rollback-dev-db-latest"


def test_operator_keeps_the_original_instance_after_a_restore(run_infra: RunInfra) -> None:
    restored = run_infra({"dbRestoreFromSnapshot": "rollback-dev-db-pre-2026-11-20-1"})
    policy = json.loads(restored.resources["operator-policy"]["inputs"]["policy"])
    rds = f"arn:aws:rds:us-east-1:{MOCK_ACCOUNT_ID}:"
    for sid in ("DatabaseDescribe", "DatabaseSnapshot", "DatabaseRestore"):
        (statement,) = [s for s in policy["Statement"] if s["Sid"] == sid]
        # The original (db:<base>, not matched by db:<base>-*) and every instance restored from it.
        assert f"{rds}db:rollback-dev-db" in statement["Resource"]
        assert f"{rds}db:rollback-dev-db-*" in statement["Resource"]


def _future(hours: int) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize(
    ("overrides", "key", "phrase"),
    [
        ({"edgeFunctionVersion": "latest"}, "edgeFunctionVersion", "not a published version number"),
        ({"edgeFunctionVersion": "$LATEST"}, "edgeFunctionVersion", "not a published version number"),
        (
            {"dbRestoreToTime": json.dumps({"sourceInstance": "rollback-dev-db", "time": _future(2)})},
            "dbRestoreToTime",
            "is in the future",
        ),
        ({"dbBackupRetentionDays": "3"}, "dbBackupRetentionDays", "outside 7-35"),
        ({"assetsRelease": None}, "assetsRelease", "is required"),
    ],
)
def test_bad_pin_fails_the_program_with_a_config_error(
    run_infra: RunInfra, overrides: dict[str, str | None], key: str, phrase: str
) -> None:
    with pytest.raises(pulumi.RunError) as caught:
        run_infra(overrides)
    message = str(caught.value)
    assert message.startswith(f"config rollback:{key}: ")
    assert phrase in message
    assert isinstance(caught.value.__cause__, ConfigError)
    assert caught.value.__cause__.key == key
