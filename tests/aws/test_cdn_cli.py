"""``rollback infra cdn snapshot | list | restore | release`` through the CLI, against the moto server with the
sandbox's CloudFront semantics (ETags that change on every update, IfMatch checked with a 412, invalidations):
a concurrent change is a 412 and exit 4 with nothing overwritten; every change saves a snapshot first,
invalidates what it changed, pins the stack config and is journaled."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from rollback.adapters.cloudfront import set_origin_path
from tests.aws.conftest import EdgeStack, Project, journal_events

CDN = ("infra", "cdn")
FAST = ("--poll-interval", "0s")


def origin_path(aws: Callable[[str], Any], distribution_id: str) -> str:
    config = aws("cloudfront").get_distribution_config(Id=distribution_id)["DistributionConfig"]
    return str(config["Origins"]["Items"][0]["OriginPath"])


def invalidations(aws: Callable[[str], Any], distribution_id: str) -> list[list[str]]:
    client = aws("cloudfront")
    found = []
    for item in client.list_invalidations(DistributionId=distribution_id)["InvalidationList"].get("Items", []):
        batch = client.get_invalidation(DistributionId=distribution_id, Id=item["Id"])["Invalidation"]
        found.append(batch["InvalidationBatch"]["Paths"]["Items"])
    return found


def put_release(aws: Callable[[str], Any], bucket: str, release: str, *keys: str) -> None:
    for key in keys or ("index.html",):
        aws("s3").put_object(Bucket=bucket, Key=f"releases/{release}/{key}", Body=b"<html></html>")


def test_release_switches_the_origin_path_invalidates_and_pins(
        aws: Callable[[str], Any], edge_stack: Callable[..., EdgeStack], project: Callable[..., Project],
        run_cli: Any) -> None:
    stack = edge_stack()
    proj = project(stack)
    dry = run_cli(*CDN, "release", "r41", "--dry-run", "--config", str(proj.config))
    assert dry.code == 0, dry.err
    assert origin_path(aws, stack.distribution_id) == "/releases/r42"  # the dry run changed nothing
    result = run_cli(*CDN, "release", "r41", *FAST, "--yes", "--json", "--config", str(proj.config))
    assert result.code == 0, result.err
    document = result.json()
    assert origin_path(aws, stack.distribution_id) == "/releases/r41"
    assert document["invalidate"] == ["/*"]  # the default behaviour serves that origin
    assert ["/*"] in invalidations(aws, stack.distribution_id)
    assert 'rollback:assetsRelease: r41' in proj.stack_file.read_text()
    assert "# Edge: pinned to the version verified in staging." in proj.stack_file.read_text()  # comments kept
    # The config before the change was saved, and the run was journaled step by step.
    saved = document["results"]["snapshot"]["snapshot"]
    listed = run_cli(*CDN, "list", "--json", "--config", str(proj.config)).json()["snapshots"]
    assert [s["id"] for s in listed] == [saved]
    assert listed[0]["origins"][0]["origin_path"] == "/releases/r42"
    finished = [e["step"] for e in journal_events(proj.journal_dir) if e["event"] == "step_finished"]
    assert finished == ["snapshot", "update", "wait", "invalidate", "pin"]

    # Put the snapshot back: the release returns, /* invalidated again, the pin follows.
    back = run_cli(*CDN, "restore", saved, *FAST, "--yes", "--config", str(proj.config))
    assert back.code == 0, back.err
    assert origin_path(aws, stack.distribution_id) == "/releases/r42"
    assert "rollback:assetsRelease: r42" in proj.stack_file.read_text()
    assert len(invalidations(aws, stack.distribution_id)) == 2


class SomeoneChangesItAfterThePlan:
    """The edge adapter, with someone else's change landing right after the plan's read of the distribution."""

    def __init__(self, adapter: Any, change: Callable[[], object]) -> None:
        self.adapter = adapter
        self.change: Callable[[], object] | None = change

    def get_config(self, distribution_id: str) -> Any:
        read = self.adapter.get_config(distribution_id)
        if self.change is not None:
            change, self.change = self.change, None
            change()
        return read

    def __getattr__(self, name: str) -> Any:
        return getattr(self.adapter, name)


def test_a_concurrent_change_is_a_412_and_nothing_is_overwritten(
        aws: Callable[[str], Any], edge_stack: Callable[..., EdgeStack], project: Callable[..., Project],
        run_cli: Any) -> None:
    """The restore as a library caller runs it (prepare_restore, then run_cdn, journaled); the CLI runs the
    same two and prints the refusal's one_line() with exit code 4."""
    import pytest

    from rollback.commands.infra import cdn as infra_cdn
    from rollback.config import load_config
    from rollback.context import Services
    from rollback.errors import RollbackError
    from rollback.journal import Journal

    stack = edge_stack()
    proj = project(stack)
    snapshot = run_cli(*CDN, "snapshot", "--reason", "before", "--json", "--config", str(proj.config)).json()
    before_pin = proj.stack_file.read_text()

    def someone_changes_it_after_the_plan() -> None:
        client = aws("cloudfront")
        current = client.get_distribution_config(Id=stack.distribution_id)
        client.update_distribution(Id=stack.distribution_id, IfMatch=current["ETag"],
                                   DistributionConfig=set_origin_path(current["DistributionConfig"], "assets",
                                                                      "/releases/hotfix"))

    # The distribution moves on between the snapshot and the restore's plan...
    client = aws("cloudfront")
    current = client.get_distribution_config(Id=stack.distribution_id)
    client.update_distribution(Id=stack.distribution_id, IfMatch=current["ETag"],
                               DistributionConfig=set_origin_path(current["DistributionConfig"], "assets",
                                                                  "/releases/r43"))
    # ...and again between the plan and the update: the planned ETag is stale.
    config = load_config(proj.config)
    real = Services(config).edge()
    services = Services(config, edge=SomeoneChangesItAfterThePlan(real, someone_changes_it_after_the_plan))
    planned = infra_cdn.prepare_restore(config, services, snapshot["snapshot"])
    with Journal.start(config.journal_dir, command="rollback infra cdn restore", env=config.env_name,
                       details={}, lock=True) as journal, pytest.raises(RollbackError) as refused:
        infra_cdn.run_cdn(planned, services, interval=0, journal=journal)
    assert refused.value.exit_code == 4, refused.value
    error = f"error: {refused.value.one_line()}"
    assert "changed since the plan" in error and "412 PreconditionFailed" in error
    assert "nothing was overwritten" in error
    assert origin_path(aws, stack.distribution_id) == "/releases/hotfix"  # the other change stands
    assert proj.stack_file.read_text() == before_pin  # no pin for a change that did not happen
    events = journal_events_of(proj, "refused")
    assert events and events[-1]["stopped_at"] == "update"


def journal_events_of(proj: Project, status: str) -> list[dict[str, Any]]:
    found = []
    for path in sorted(proj.journal_dir.glob("*.jsonl")):
        events = [json.loads(line) for line in path.read_text().splitlines()]
        found += [e for e in events if e["event"] == "run_finished" and e.get("status") == status]
    return found


def test_edge_rollback_saves_the_distribution_first(aws: Callable[[str], Any], edge_stack: Callable[..., EdgeStack],
                                                    project: Callable[..., Project], run_cli: Any) -> None:
    stack = edge_stack()
    proj = project(stack)
    result = run_cli("infra", "edge", "--to-version", "2", "--poll-interval", "0s", "--yes", "--json",
                     "--config", str(proj.config))
    assert result.code == 0, result.err
    (saved,) = run_cli(*CDN, "list", "--json", "--config", str(proj.config)).json()["snapshots"]
    assert {a["version"] for a in saved["associations"]} == {"3"}  # as it was before the edge rollback


def test_unknown_snapshot_and_release_are_bad_input(edge_stack: Callable[..., EdgeStack],
                                                    project: Callable[..., Project], run_cli: Any) -> None:
    proj = project(edge_stack())
    missing = run_cli(*CDN, "restore", "nope", "--yes", "--config", str(proj.config))
    assert missing.code == 2 and "no distribution snapshot nope" in missing.err
    bad = run_cli(*CDN, "release", "../x", "--yes", "--config", str(proj.config))
    assert bad.code == 2 and "is not a release id" in bad.err
    origin = run_cli(*CDN, "release", "r1", "--origin", "media", "--yes", "--config", str(proj.config))
    assert origin.code == 2 and "no origin 'media' (origins: assets)" in origin.err


def test_a_missing_or_empty_release_is_refused_listing_the_releases(
        aws: Callable[[str], Any], edge_stack: Callable[..., EdgeStack], project: Callable[..., Project],
        run_cli: Any) -> None:
    """A typo at 3 a.m. (``r14`` for ``r41``) must not point CloudFront at an empty prefix, invalidate ``/*``
    and pin it: S3 answers 403/404 for every key of a prefix that holds no object. A folder whose objects were
    all deleted (delete markers on top) and a console "folder" (a zero-byte ``releases/r40/`` object) are empty
    too; the releases listed are those that hold an object now."""
    stack = edge_stack()  # releases r41 and r42 in its bucket
    proj = project(stack)
    put_release(aws, stack.bucket, "r43")
    put_release(aws, stack.bucket, "r39")
    aws("s3").delete_object(Bucket=stack.bucket, Key="releases/r39/index.html")  # a delete marker on top
    aws("s3").put_object(Bucket=stack.bucket, Key="releases/r40/", Body=b"")  # a console "folder"
    before = aws("cloudfront").get_distribution_config(Id=stack.distribution_id)["ETag"]
    for release in ("r14", "r39", "r40"):
        for extra in ("--yes", "--dry-run"):
            refused = run_cli(*CDN, "release", release, extra, "--json", "--config", str(proj.config))
            assert refused.code == 2, refused.err
            assert f"release '{release}' has no objects in s3://{stack.bucket}/releases/{release}/" in refused.err
            assert "name one of the releases" in refused.err and ": r41, r42, r43)" in refused.err
    assert aws("cloudfront").get_distribution_config(Id=stack.distribution_id)["ETag"] == before  # nothing sent
    assert invalidations(aws, stack.distribution_id) == []
    assert "rollback:assetsRelease: r42" in proj.stack_file.read_text()  # nothing pinned
    assert not list(proj.journal_dir.glob("*.jsonl"))  # nothing journaled: refused before the plan
    done = run_cli(*CDN, "release", "r43", *FAST, "--yes", "--config", str(proj.config))
    assert done.code == 0, done.err
    assert origin_path(aws, stack.distribution_id) == "/releases/r43"
