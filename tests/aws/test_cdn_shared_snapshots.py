"""Distribution snapshots shared in S3 (``[cdn] snapshots_url``, else under the team lease's ``[lock] url``):
written encrypted (SSE-S3) and private, listed and restored by another engineer from another checkout; the
local copy is written as before. Real boto3 calls against the moto server.

S3's documented behaviour followed: "By default, all objects are private. Only the owner has full access
control" (PutObject's ``ACL``: so no ACL is sent, which a bucket with ACLs disabled would refuse anyway), and
``ServerSideEncryption=AES256`` is reported back by ``HeadObject``."""

from __future__ import annotations

import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.aws.conftest import EdgeStack, Project, unique

CDN = ("infra", "cdn")
FAST = ("--poll-interval", "0s")


def shared_bucket(aws: Callable[[str], Any]) -> str:
    bucket = unique("cdn-snapshots")
    aws("s3").create_bucket(Bucket=bucket)
    return bucket


def with_section(proj: Project, section: str, **values: str) -> None:
    with Path(proj.config).open("a", encoding="utf-8") as handle:
        handle.write(f"[{section}]\n" + "".join(f'{k} = "{v}"\n' for k, v in values.items()))


def another_checkout(proj: Project, where: Path) -> Path:
    """The same rollback.toml and Pulumi project in another directory: another engineer's machine."""
    where.mkdir()
    for name in ("rollback.toml", "Pulumi.yaml"):
        shutil.copy2(Path(proj.root) / name, where / name)
    shutil.copytree(Path(proj.root) / "stacks", where / "stacks")
    return where / "rollback.toml"


def test_a_snapshot_is_shared_and_another_engineer_lists_and_restores_it(
        aws: Callable[[str], Any], edge_stack: Callable[..., EdgeStack], project: Callable[..., Project],
        run_cli: Any, tmp_path_factory: Any) -> None:
    stack = edge_stack()
    proj = project(stack)
    bucket = shared_bucket(aws)
    with_section(proj, "cdn", snapshots_url=f"s3://{bucket}/team/")

    taken = run_cli(*CDN, "snapshot", "--reason", "before the release", "--json", "--config", str(proj.config))
    assert taken.code == 0, taken.err
    document = taken.json()
    snapshot_id = document["snapshot"]
    key = f"team/{stack.distribution_id}/{snapshot_id}.distribution.json"
    assert document["shared"] == f"s3://{bucket}/{key}"
    local = Path(document["path"])
    assert stat.S_IMODE(local.stat().st_mode) == 0o600  # the local copy as before
    head = aws("s3").head_object(Bucket=bucket, Key=key)
    assert head["ServerSideEncryption"] == "AES256"
    grants = aws("s3").get_object_acl(Bucket=bucket, Key=key)["Grants"]
    assert [g["Permission"] for g in grants] == ["FULL_CONTROL"]  # the owner only
    assert grants[0]["Grantee"]["Type"] == "CanonicalUser"

    # Someone changes the release by hand; another engineer, elsewhere, finds the snapshot and restores it.
    client = aws("cloudfront")
    current = client.get_distribution_config(Id=stack.distribution_id)
    config = current["DistributionConfig"]
    config["Origins"]["Items"][0]["OriginPath"] = "/releases/broken"
    client.update_distribution(Id=stack.distribution_id, IfMatch=current["ETag"], DistributionConfig=config)
    other = another_checkout(proj, tmp_path_factory.mktemp("other-engineer") / "repo")
    listed = run_cli(*CDN, "list", "--json", "--config", str(other))
    assert listed.code == 0, listed.err
    (found,) = listed.json()["snapshots"]
    assert (found["id"], found["where"], found["reason"]) == (snapshot_id, [f"s3://{bucket}/team"],
                                                              "before the release")
    human = run_cli(*CDN, "list", "--config", str(other))
    assert f"[s3://{bucket}/team]" in human.out
    restored = run_cli(*CDN, "restore", snapshot_id, *FAST, "--yes", "--json", "--config", str(other))
    assert restored.code == 0, restored.err
    assert f"comes from s3://{bucket}/team" in " ".join(restored.json()["plan"]["notes"])
    origin = client.get_distribution_config(Id=stack.distribution_id)["DistributionConfig"]["Origins"]["Items"][0]
    assert origin["OriginPath"] == stack.origin_path
    # The restore took its own snapshot first, shared too; the fetched one was kept on that machine.
    assert (other.parent / ".rollback" / "cdn-snapshots" / stack.distribution_id /
            f"{snapshot_id}.distribution.json").is_file()
    keys = [o["Key"] for o in aws("s3").list_objects_v2(Bucket=bucket)["Contents"]]
    assert len(keys) == 2 and key in keys


def test_under_the_team_lease_when_no_snapshots_url(
        aws: Callable[[str], Any], edge_stack: Callable[..., EdgeStack], project: Callable[..., Project],
        run_cli: Any) -> None:
    stack = edge_stack()
    proj = project(stack)
    bucket = shared_bucket(aws)
    with_section(proj, "lock", url=f"s3://{bucket}/locks")
    result = run_cli(*CDN, "release", "r41", *FAST, "--yes", "--json", "--config", str(proj.config))
    assert result.code == 0, result.err
    saved = result.json()["results"]["snapshot"]
    key = f"locks/cdn-snapshots/{stack.distribution_id}/{saved['snapshot']}.distribution.json"
    assert saved["shared"] == f"s3://{bucket}/{key}"
    assert aws("s3").head_object(Bucket=bucket, Key=key)["ServerSideEncryption"] == "AES256"


def test_an_unreachable_shared_store_is_a_warning_and_the_local_copy_stands(
        aws: Callable[[str], Any], edge_stack: Callable[..., EdgeStack], project: Callable[..., Project],
        run_cli: Any) -> None:
    stack = edge_stack()
    proj = project(stack)
    with_section(proj, "cdn", snapshots_url=f"s3://{unique('no-such-bucket')}/x")
    result = run_cli(*CDN, "release", "r41", *FAST, "--yes", "--json", "--config", str(proj.config))
    assert result.code == 0, result.err
    saved = result.json()["results"]["snapshot"]
    assert saved["shared"] is None and "NoSuchBucket" in saved["shared_error"]
    assert Path(saved["path"]).is_file()
    assert "is on this machine only" in result.err
