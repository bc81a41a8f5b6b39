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
    config["rollback:originVerifySecret"] = "another-secret-for-the-vercel-origin"
    return config


def keys_read_by_the_program() -> set[str]:
    read: set[str] = set()
    values = {"assetsRelease": "r1", "appOriginDomain": "a.example.com", "dbNetwork": json.dumps({
        "access": "public", "vpcId": "vpc-0a1b2c3d4e5f60718", "allowedCidrs": ["0.0.0.0/0"],
        "subnetIds": ["subnet-0a1b2c3d4e5f60718", "subnet-1a2b3c4d5e6f70819"]})}

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
    assert "another-secret-for-the-vercel-origin" not in text
    # No password in config at all: RDS manages the master password in Secrets Manager.
    assert run.resources["db-instance"]["inputs"]["manageMasterUserPassword"] is True
    assert "password" not in run.resources["db-instance"]["inputs"]


def test_production_is_pinned_and_hardened() -> None:
    raw = load_yaml(REPO_ROOT / "stacks" / "Pulumi.production.yaml")["config"]
    assert raw["rollback:edgeFunctionVersion"].isdigit()
    assert int(raw["rollback:dbBackupRetentionDays"]) >= 7
    assert raw["rollback:dbMultiAz"] == "true"


@pytest.mark.parametrize("stack", STACKS)
def test_stack_files_hold_no_password_and_declare_the_network(stack: str) -> None:
    raw = load_yaml(REPO_ROOT / "stacks" / f"Pulumi.{stack}.yaml")["config"]
    assert "rollback:dbMasterPassword" not in raw
    assert raw["rollback:dbNetwork"]["access"] in {"public", "private"}
    assert raw["rollback:dbEngineVersion"].isdigit()  # the major only


def test_program_dependencies_are_pinned_exactly() -> None:
    """The `up` that applies a saved plan must run the provider that previewed it."""
    import tomllib

    from packaging.requirements import Requirement

    text = (REPO_ROOT / "infra" / "requirements.txt").read_text(encoding="utf-8")
    lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    pins = [Requirement(line) for line in lines if line]
    assert {p.name for p in pins} >= {"pulumi", "pulumi-aws", "boto3"}
    for pin in pins:
        (spec,) = pin.specifier
        assert spec.operator == "==" and not spec.version.endswith("*"), str(pin)
    # ...and within what the CLI's `infra` extra accepts, so the tests run the program as deployed.
    extra = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["infra"]
    ranges = {Requirement(r).name: Requirement(r).specifier for r in extra}
    for pin in pins:
        if pin.name in ranges:
            (spec,) = pin.specifier
            assert spec.version in ranges[pin.name], f"{pin} is outside the infra extra's {ranges[pin.name]}"
