"""A hand-edited snapshot whose config is not a ``DistributionConfig`` is refused in one line, before anything
is done (found attacking issue 19, items 1-2).

A snapshot is a file an engineer may edit during an incident. One whose ``Origins.Items`` was a string, or
whose origin had ``CustomHeaders`` as a list, crashed ``infra cdn restore`` (even ``--dry-run``) with a
traceback (``AttributeError: 'str' object has no attribute 'get'``); one with a field CloudFront does not
know was refused only by botocore at the update, after the run had saved a snapshot and journaled itself.
The config is now checked against the ``DistributionConfig`` shape of botocore's CloudFront model (what
``UpdateDistribution`` accepts) when the file is read: a damaged snapshot is exit 2, naming the field, and
never its value (an origin header value is a secret).

Against the moto server, through the CLI.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.aws.conftest import EdgeStack, Project
from tests.aws.test_cdn_restore_whole import CDN, SECRET, full_stack  # noqa: F401  (fixture)


def edited(proj: Project, snapshot_id: str, edit: Callable[[dict[str, Any]], None]) -> None:
    path: Path = next((proj.root / ".rollback" / "cdn-snapshots").glob(f"*/{snapshot_id}.distribution.json"))
    data = json.loads(path.read_text())
    edit(data["config"])
    path.write_text(json.dumps(data))


def _items_a_string(config: dict[str, Any]) -> None:
    config["Origins"]["Items"] = "assets"


def _headers_a_list(config: dict[str, Any]) -> None:
    config["Origins"]["Items"][1]["CustomHeaders"] = [{"HeaderName": "X-Origin-Verify", "HeaderValue": SECRET}]


def _header_value_a_number(config: dict[str, Any]) -> None:
    config["Origins"]["Items"][1]["CustomHeaders"]["Items"][0]["HeaderValue"] = 918273645546372


def _unknown_field(config: dict[str, Any]) -> None:
    config["Bogus"] = True


@pytest.mark.parametrize(("edit", "named"), [
    (_items_a_string, "DistributionConfig.Origins.Items"),
    (_headers_a_list, "DistributionConfig.Origins.Items[1].CustomHeaders"),
    (_header_value_a_number, "DistributionConfig.Origins.Items[1].CustomHeaders.Items[0].HeaderValue"),
    (_unknown_field, 'Unknown parameter in DistributionConfig: "Bogus"'),
])
@pytest.mark.parametrize("dry_run", [True, False])
def test_a_snapshot_that_is_not_a_distribution_config_is_refused_in_one_line(
        aws: Callable[[str], Any], full_stack: EdgeStack, project: Callable[..., Project],  # noqa: F811
        run_cli: Any, edit: Callable[[dict[str, Any]], None], named: str, dry_run: bool) -> None:
    proj = project(full_stack)
    snapshot_id = run_cli(*CDN, "snapshot", "--json", "--config", str(proj.config)).json()["snapshot"]
    edited(proj, snapshot_id, edit)
    runs_before = sorted(proj.journal_dir.glob("*.jsonl"))
    etag_before = aws("cloudfront").get_distribution_config(Id=full_stack.distribution_id)["ETag"]

    result = run_cli(*CDN, "restore", snapshot_id, "--poll-interval", "0s", "--dry-run" if dry_run else "--yes",
                     "--config", str(proj.config))
    assert result.code == 2, result.err
    assert "Traceback" not in result.err
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: snapshot {snapshot_id} is damaged"), result.err
    assert named in lines[0]
    assert "918273645546372" not in result.err and SECRET not in result.err
    # refused before anything was done: no run journaled, the distribution untouched
    assert sorted(proj.journal_dir.glob("*.jsonl")) == runs_before
    assert aws("cloudfront").get_distribution_config(Id=full_stack.distribution_id)["ETag"] == etag_before


def test_a_damaged_snapshot_is_listed_as_damaged_not_a_traceback(
        aws: Callable[[str], Any], full_stack: EdgeStack, project: Callable[..., Project],  # noqa: F811
        run_cli: Any) -> None:
    proj = project(full_stack)
    snapshot_id = run_cli(*CDN, "snapshot", "--json", "--config", str(proj.config)).json()["snapshot"]
    edited(proj, snapshot_id, _items_a_string)
    result = run_cli(*CDN, "list", "--config", str(proj.config))
    assert "Traceback" not in result.err
    assert result.code in (0, 2), result.err
