"""Pulumi.yaml and the stack configs in stacks/: valid, realistic, and accepted by the program."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from infra.settings import parse_settings
from rollback.adapters.pulumi_mocks import MockRun, run_program

REPO_ROOT = Path(__file__).resolve().parents[2]
STACKS = ["staging", "production"]


def load_yaml(path: Path) -> Any:
    return YAML(typ="safe").load(path.read_text(encoding="utf-8"))


def as_pulumi_config(value: object) -> str:
    """How the Pulumi CLI hands a stack config value to the program."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value)


def stack_config(stack: str) -> dict[str, str]:
    """Project defaults from Pulumi.yaml overlaid with the stack file, plus the secrets README says to set."""
    project = load_yaml(REPO_ROOT / "Pulumi.yaml")
    config = {
        f"rollback:{key}": as_pulumi_config(spec["default"])
        for key, spec in project["config"].items()
        if isinstance(spec, dict) and "default" in spec
    }
    stack_file = load_yaml(REPO_ROOT / "stacks" / f"Pulumi.{stack}.yaml")
    config.update({key: as_pulumi_config(value) for key, value in stack_file["config"].items()})
    config["rollback:dbMasterPassword"] = "a-secret-set-with-pulumi-config-set"
    config["rollback:originVerifySecret"] = "another-secret-for-the-vercel-origin"
    return config


def keys_read_by_the_program() -> set[str]:
    read: set[str] = set()
    values = {"assetsRelease": "r1", "appOriginDomain": "a.example.com", "dbMasterPassword": "x" * 16}

    def get(key: str) -> str | None:
        read.add(key)
        return values.get(key)

    parse_settings(get, project="rollback", stack="dev", region="us-east-1")
    return read


def test_project_file() -> None:
    project = load_yaml(REPO_ROOT / "Pulumi.yaml")
    assert project["name"] == "rollback"
    assert project["main"] == "infra/"
    assert project["stackConfigDir"] == "stacks"
    assert project["runtime"] == {"name": "python", "options": {"toolchain": "pip", "virtualenv": ".venv"}}
    assert (REPO_ROOT / "infra" / "__main__.py").is_file()
    assert (REPO_ROOT / "infra" / "requirements.txt").is_file()
    for key, spec in project["config"].items():
        assert ":" not in key, "project keys are declared without the namespace"
        assert spec["type"] == "string" and spec["description"], key


@pytest.mark.parametrize("stack", STACKS)
def test_stack_files_only_use_keys_the_program_reads(stack: str) -> None:
    known = keys_read_by_the_program()
    for key in load_yaml(REPO_ROOT / "stacks" / f"Pulumi.{stack}.yaml")["config"]:
        namespace, name = key.split(":", 1)
        assert namespace in {"rollback", "aws"}, key
        if namespace == "rollback":
            assert name in known, f"{key} is not read by infra/settings.py (typo?)"


@pytest.fixture(scope="module", params=STACKS)
def stack_run(request: pytest.FixtureRequest) -> tuple[str, MockRun]:
    stack: str = request.param
    return stack, run_program(REPO_ROOT / "infra", stack_config(stack), stack=stack)


def test_stack_config_runs_and_pins_what_it_says(stack_run: tuple[str, MockRun]) -> None:
    stack, run = stack_run
    raw = load_yaml(REPO_ROOT / "stacks" / f"Pulumi.{stack}.yaml")["config"]
    assert run.outputs["assetsRelease"] == raw["rollback:assetsRelease"]
    distribution = run.resources["cdn-distribution"]["inputs"]
    origins = {o["originId"]: o for o in distribution["origins"]}
    assert origins["assets"]["originPath"] == f"/releases/{raw['rollback:assetsRelease']}"
    assert origins["app"]["domainName"] == raw["rollback:appOriginDomain"]
    db = run.resources["db-instance"]["inputs"]
    assert db["backupRetentionPeriod"] == int(raw["rollback:dbBackupRetentionDays"]) >= 7
    pinned = raw.get("rollback:edgeFunctionVersion") or None
    association = distribution["defaultCacheBehavior"]["lambdaFunctionAssociations"][0]["lambdaArn"]
    assert association.endswith(f":{pinned or '3'}")


def test_secrets_never_appear_in_declared_inputs(stack_run: tuple[str, MockRun]) -> None:
    _, run = stack_run
    text = json.dumps([run.resources, run.outputs])
    for secret in ("a-secret-set-with-pulumi-config-set", "another-secret-for-the-vercel-origin"):
        assert secret not in text


def test_production_is_pinned_and_hardened() -> None:
    raw = load_yaml(REPO_ROOT / "stacks" / "Pulumi.production.yaml")["config"]
    assert raw["rollback:edgeFunctionVersion"].isdigit()
    assert int(raw["rollback:dbBackupRetentionDays"]) >= 7
    assert raw["rollback:dbMultiAz"] == "true"
