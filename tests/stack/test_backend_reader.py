"""The DIY backend reader on backends built from the real fixture checkpoints:
layouts, compression, lazy checkpoints, locks, and s3:// through the moto server."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollback.adapters.pulumi_backend import DiyBackend, FileStore, S3Store, open_backend
from rollback.errors import BadInput, PulumiError
from rollback.model.stackdiff import diff_resources
from tests.stack.backend_fixtures import (
    DISTRIBUTION_ID,
    PROJECT,
    SECRET_KEY,
    STACK,
    UPDATES,
    build_backend,
    write_lock,
)

LAYOUTS = ["project", "legacy"]
COMPRESSIONS = [None, "gz", "zst", "mixed"]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_history_lists_every_update_in_order_without_reading_checkpoints(
        tmp_path: Path, layout: str, compression: str | None) -> None:
    backend = open_backend(f"file://{build_backend(tmp_path, layout=layout, compression=compression)}")
    versions = backend.history(PROJECT, STACK)
    assert [v.version for v in versions] == [1, 2, 3, 4, 5]
    assert [v.message for v in versions] == [u.message for u in UPDATES]
    assert all(v.numbered_locally for v in versions)
    assert [v.config["rollback:edgeFunctionVersion"].value for v in versions] == ["5", "6", "6", "7", "7"]
    assert versions[-1].git_head == UPDATES[-1].git_head
    assert versions[0].resource_changes == {"create": 34}
    secret = versions[0].config[SECRET_KEY]
    assert secret.secret and secret.value is None and secret.ciphertext
    assert backend.counters.checkpoints_read == 0
    assert backend.counters.history_files_read == 5
    assert backend.project_layout is (layout == "project")


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_checkpoints_are_read_on_demand_and_diff_names_exactly_the_changed_properties(
        tmp_path: Path, compression: str | None) -> None:
    backend = open_backend(f"file://{build_backend(tmp_path, compression=compression)}")
    versions = backend.history(PROJECT, STACK)
    v3, v5 = backend.state(versions[2]), backend.state(versions[4])
    assert backend.counters.checkpoints_read == 2
    changes = {c.name: [(p.path, p.old, p.new, p.secret) for p in c.properties]
               for c in diff_resources(v3.resources, v5.resources)}
    arn = "arn:aws:lambda:us-east-1:123456789012:function:rollback-staging-security-headers"
    assert changes == {
        "cdn": [("defaultCacheBehavior.lambdaFunctionAssociations[0].lambdaArn", f"{arn}:6", f"{arn}:7", False),
                ("origins[0].originPath", "/releases/2026-11-26.1", "/releases/2026-11-27.2", False),
                ("origins[1].customHeaders[0].value", "[secret]", "[secret]", True)],
    }


def test_old_checkpoint_versions_are_normalised(tmp_path: Path) -> None:
    backend = open_backend(f"file://{build_backend(tmp_path)}")
    versions = backend.history(PROJECT, STACK)
    v1 = backend.state(versions[0])  # checkpoint v0: no "version"/"checkpoint" wrapper
    v2 = backend.state(versions[1])  # checkpoint v1
    assert len(v1.resources) == len(v2.resources) == 34
    assert [c.name for c in diff_resources(v1.resources, v2.resources)] == ["cdn"]


def test_current_state_and_outputs(tmp_path: Path) -> None:
    backend = open_backend(f"file://{build_backend(tmp_path, compression='zst')}")
    state = backend.current(PROJECT, STACK)
    assert state.outputs["distributionId"] == DISTRIBUTION_ID
    assert state.outputs["edgeFunctionVersion"] == "7"
    assert state.pending_operations == ()


def test_pending_operations_are_read(tmp_path: Path) -> None:
    pending = [{"resource": {"urn": "urn:pulumi:staging::rollback::aws:s3/bucket:Bucket::b"}, "type": "creating"}]
    backend = open_backend(f"file://{build_backend(tmp_path, pending=pending)}")
    assert backend.current(PROJECT, STACK).pending_operations[0]["type"] == "creating"


@pytest.mark.parametrize("layout", LAYOUTS)
def test_locks_are_found_in_both_layouts(tmp_path: Path, layout: str) -> None:
    root = build_backend(tmp_path, layout=layout)
    backend = open_backend(f"file://{root}")
    assert backend.locks(PROJECT, STACK) == []
    write_lock(root, layout=layout)
    (lock,) = backend.locks(PROJECT, STACK)
    assert lock.username == "ci" and lock.pid == 4242
    assert "created by ci@runner-7 (pid 4242)" in lock.describe()


def test_unknown_stack_and_unsupported_store(tmp_path: Path) -> None:
    root = build_backend(tmp_path)
    backend = open_backend(f"file://{root}")
    with pytest.raises(BadInput, match=r"stack organization/rollback/prod not found .*"
                                       r"\(stacks there: organization/rollback/staging\)"):
        backend.history(PROJECT, "prod")
    legacy = open_backend(f"file://{build_backend(tmp_path / 'legacy', layout='legacy')}")
    with pytest.raises(BadInput, match=r"stack prod not found .*\(stacks there: staging\)"):
        legacy.history(PROJECT, "prod")
    (root / ".pulumi" / "meta.yaml").write_text("version: 2\n")
    with pytest.raises(PulumiError, match="version 2 is not supported"):
        DiyBackend(FileStore(root)).history(PROJECT, STACK)
    with pytest.raises(BadInput, match="does not exist"):
        open_backend(f"file://{tmp_path / 'missing'}")


def test_corrupt_history_file_is_one_clear_error(tmp_path: Path) -> None:
    root = build_backend(tmp_path, compression="gz")
    victim = sorted((root / ".pulumi" / "history" / PROJECT / STACK).glob("*.history.json.gz"))[0]
    victim.write_bytes(b"not gzip")
    with pytest.raises(PulumiError, match="cannot decode"):
        open_backend(f"file://{root}").history(PROJECT, STACK)


def test_s3_backend_through_moto(tmp_path: Path, aws_env: str) -> None:
    import boto3

    root = build_backend(tmp_path, compression="mixed")
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="state-bucket")
    for path in root.rglob("*"):
        if path.is_file():
            s3.put_object(Bucket="state-bucket", Key=f"pulumi/{path.relative_to(root).as_posix()}",
                          Body=path.read_bytes())
    backend = open_backend("s3://state-bucket/pulumi", s3_client=s3)
    assert isinstance(backend.store, S3Store)
    versions = backend.history(PROJECT, STACK)
    assert [v.version for v in versions] == [1, 2, 3, 4, 5]
    assert backend.counters.checkpoints_read == 0
    assert backend.current(PROJECT, STACK).outputs["distributionId"] == DISTRIBUTION_ID
    assert len(backend.state(versions[3]).resources) == 34
    assert backend.locks(PROJECT, STACK) == []


def test_one_version_reads_one_history_file(tmp_path: Path) -> None:
    backend = open_backend(f"file://{build_backend(tmp_path, compression='gz')}")
    v4 = backend.version(PROJECT, STACK, 4)
    assert v4 is not None and v4.message == UPDATES[3].message and v4.version == 4
    assert backend.version(PROJECT, STACK, 6) is None
    assert backend.counters.history_files_read == 1
    assert backend.counters.checkpoints_read == 0
