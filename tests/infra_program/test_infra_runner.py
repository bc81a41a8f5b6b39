"""rollback.adapters.pulumi_mocks: the reusable in-process runner behind the suite and `preview --offline`."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rollback.adapters.pulumi_mocks import (
    SECRET_MASK,
    MockRun,
    diff_declared_inputs,
    run_program,
    run_program_under_mocks,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
PROGRAM_DIR = REPO_ROOT / "infra"
CONFIG = {
    "aws:region": "us-east-1",
    "assetsRelease": "2026-11-20.1",
    "appOriginDomain": "huntaze.vercel.app",
    "originVerifySecret": "correct-horse-battery-staple",
    "dbNetwork": {"access": "public", "vpcId": "vpc-0a1b2c3d4e5f60718", "allowedCidrs": ["0.0.0.0/0"],
                  "subnetIds": ["subnet-0a1b2c3d4e5f60718", "subnet-1a2b3c4d5e6f70819"]},
}


def test_import_has_no_side_effects_and_does_not_import_pulumi() -> None:
    code = "import sys, rollback.adapters.pulumi_mocks; print('pulumi' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    assert result.stdout.strip() == "False"
    assert result.stderr == ""


def test_returns_name_to_type_and_plain_inputs() -> None:
    resources = run_program_under_mocks(PROGRAM_DIR, CONFIG)
    bucket = resources["assets-versioning"]
    assert bucket["type"] == "aws:s3/bucketVersioning:BucketVersioning"
    assert bucket["inputs"]["versioningConfiguration"] == {"status": "Enabled"}
    json.dumps(resources)  # plain data all the way down


def test_reusable_in_one_process_with_other_stacks_and_structured_config() -> None:
    first = run_program(PROGRAM_DIR, CONFIG, stack="staging")
    second = run_program(
        PROGRAM_DIR, {**CONFIG, "dbReleaseSnapshots": ["pre-1"], "dbMultiAz": True}, stack="production"
    )
    assert first.outputs["dbInstanceId"] == "rollback-staging-db"
    assert second.outputs["dbInstanceId"] == "rollback-production-db"
    assert second.resources["db-instance"]["inputs"]["multiAz"] is True
    assert "db-snapshot-pre-1" in second.resources and "db-snapshot-pre-1" not in first.resources


def test_secret_values_are_masked_by_key_name_or_explicitly() -> None:
    def header(run: MockRun) -> str:
        app = run.resources["cdn-distribution"]["inputs"]["origins"][1]
        return str(app["customHeaders"][0]["value"])

    assert header(run_program(PROGRAM_DIR, CONFIG)) == SECRET_MASK
    assert header(run_program(PROGRAM_DIR, CONFIG, secret_keys=[])) == "correct-horse-battery-staple"
    hidden = run_program(PROGRAM_DIR, CONFIG, secret_keys=["appOriginDomain", "originVerifySecret"])
    origins = hidden.resources["cdn-distribution"]["inputs"]["origins"]
    assert origins[1]["domainName"] == SECRET_MASK


def test_program_errors_propagate_and_the_runner_stays_usable() -> None:
    with pytest.raises(Exception, match="rollback:edgeFunctionVersion"):
        run_program(PROGRAM_DIR, {**CONFIG, "edgeFunctionVersion": "newest"})
    assert run_program(PROGRAM_DIR, CONFIG).outputs["edgeFunctionVersion"] == "3"


def test_any_program_directory(tmp_path: Path) -> None:
    program = tmp_path / "tiny"
    program.mkdir()
    (program / "__main__.py").write_text(
        textwrap.dedent(
            """
            import pulumi
            import pulumi_aws as aws

            config = pulumi.Config()
            topic = aws.sns.Topic("alerts", name=config.require("topicName"))
            pulumi.export("topic", topic.arn)
            """
        )
    )
    run = run_program(program, {"topicName": "t1"}, project="tiny")
    assert run.resources == {
        "alerts": {"type": "aws:sns/topic:Topic", "inputs": {"name": "t1"}, "custom": True, "provider": None,
                   "options": {"protect": False, "retain_on_delete": False, "ignore_changes": [],
                               "delete_before_replace": False, "replace_on_changes": [], "depends_on": []}}
    }
    assert run.outputs == {"topic": "arn:aws:sns:us-east-1:123456789012:t1"}


def test_missing_program() -> None:
    with pytest.raises(FileNotFoundError):
        run_program_under_mocks(REPO_ROOT / "nowhere", CONFIG)


def test_diff_declared_inputs() -> None:
    before = {
        "a": {"type": "t", "inputs": {"x": 1, "nested": {"list": [1, 2], "keep": True}}},
        "gone": {"type": "t", "inputs": {}},
    }
    after = {
        "a": {"type": "t", "inputs": {"x": 1, "nested": {"list": [1, 3], "keep": True}, "new": "v"}},
        "added": {"type": "t", "inputs": {}},
    }
    assert diff_declared_inputs(before, after) == {
        "a": [("nested.list[1]", 2, 3), ("new", None, "v")],
        "added": [("", None, {"type": "t", "inputs": {}})],
        "gone": [("", {"type": "t", "inputs": {}}, None)],
    }
    assert diff_declared_inputs(before, before) == {}


def test_a_copy_in_another_directory_leaves_the_callers_modules_alone(tmp_path: Path) -> None:
    """tests/stack runs copies of infra/; the tests here keep the classes they imported (issue 13)."""
    import shutil

    import infra.settings

    before_class, before_path = infra.settings.ConfigError, list(sys.path)
    copy = tmp_path / "checkout"
    shutil.copytree(PROGRAM_DIR, copy / "infra", ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "infra" / "settings.py").write_text(
        (copy / "infra" / "settings.py").read_text().replace('"db.t4g.medium"', '"db.t4g.large"'))
    run = run_program(copy / "infra", CONFIG)
    assert run.resources["db-instance"]["inputs"]["instanceClass"] == "db.t4g.large"  # the copy's code ran
    assert sys.modules["infra.settings"].ConfigError is before_class
    assert sys.path == before_path
    with pytest.raises(Exception) as caught:
        run_program(PROGRAM_DIR, {**CONFIG, "edgeFunctionVersion": "newest"})
    assert isinstance(caught.value.__cause__, before_class)
