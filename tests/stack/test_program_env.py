"""Version N's program runs with version N's dependencies: a virtualenv built from the ``infra/requirements.txt``
of the commit it ran from, cached under ``.rollback/venvs/<sha256>``, never today's ``.venv`` (unless
``--with-current-deps``); refused in one line when pip cannot build it; the pulumi-aws versions of the
checkpoint and of version N's pins are shown.

pip is real and offline: it installs only from the test's own wheel cache (``PIP_NO_INDEX=1``,
``PIP_FIND_LINKS``; tests/stack/wheels.py), so a pin missing from it fails as it does without the network.
The Pulumi CLI is the recorded-CLI double (tests/stack/recorded_pulumi.py, NOT the Pulumi CLI), driven
through the Automation API; it logs the virtualenv it would run the program with (Pulumi.yaml's
``runtime.options.virtualenv`` in its working directory), as the Pulumi CLI's Python host uses it."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest

from rollback.adapters.program_venv import (
    VENVS_ENV,
    ensure_venv,
    installed_version,
    pinned_version,
    requirements_sha,
)
from rollback.model.stackdiff import StackState, provider_version
from tests.stack.backend_fixtures import UPDATES, build_backend, commit_two_programs
from tests.stack.conftest import FakePulumi, StackEnv
from tests.stack.wheels import make_wheel, offline_wheels  # noqa: F401  (a fixture)

OLD_PINS = "pulumi-aws==6.0.0\nrollback-fixture-dep==1.0\n"
TODAYS_PINS = "pulumi-aws==7.51.1\nrollback-fixture-dep==1.0\n"
AWS_PROVIDER = {"urn": "urn:pulumi:staging::rollback::pulumi:providers:aws::default_7_51_1", "custom": True,
                "id": "04f9e5d6-2a1b-4c3d-9e8f-7a6b5c4d3e2f", "type": "pulumi:providers:aws",
                "inputs": {"region": "us-east-1", "version": "7.51.1"},
                "outputs": {"region": "us-east-1", "version": "7.51.1"}}


def two_programs(make_stack: Callable[..., StackEnv], old_pins: str) -> tuple[StackEnv, str]:
    """Versions 1-3 ran from a commit pinning ``old_pins`` (and serving HTTP/3), 4-5 and the work tree from
    one pinning pulumi-aws 7.51.1; the checkpoint was written by pulumi-aws 7.51.1."""
    from dataclasses import replace

    env = make_stack()
    project = env.project
    old, new = commit_two_programs(project, old_requirements=old_pins, new_requirements=TODAYS_PINS)
    shutil.rmtree(env.backend)
    heads = [old, old, old, new, new]
    build_backend(env.backend, updates=tuple(replace(u, git_head=h) for u, h in zip(UPDATES, heads, strict=True)))
    for path in (env.backend / ".pulumi" / "stacks").rglob("*.json"):  # the current checkpoint
        document = json.loads(path.read_text())
        body = document.get("checkpoint", document)
        body["latest"]["resources"].insert(1, AWS_PROVIDER)
        path.write_text(json.dumps(document))
    # Today's environment, which an old version's program must not touch.
    today = project / ".venv"
    (today / "bin").mkdir(parents=True)
    (today / "bin" / "python").symlink_to(shutil.which("python3") or "/usr/bin/python3")
    (today / "marker").write_text("today's\n")
    return env, old


@pytest.fixture(autouse=True)
def _environments_under_the_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests check where a root keeps its environments by default (the suite shares one cache)."""
    monkeypatch.delenv(VENVS_ENV, raising=False)


def listing(path: Path) -> list[tuple[str, float]]:
    return sorted((str(p.relative_to(path)), p.lstat().st_mtime) for p in path.rglob("*"))


@pytest.mark.slow
@pytest.mark.usefixtures("offline_wheels")
def test_the_old_program_runs_in_an_environment_of_its_own_pins(
        make_stack: Callable[..., StackEnv], fake_pulumi: FakePulumi, run_cli: Any) -> None:
    env, old = two_programs(make_stack, OLD_PINS)
    today = listing(env.project / ".venv")
    preview = run_cli("infra", "preview", "--to", "3", "--plan-file", "v3.plan.json", "--json")
    assert preview.code == 0, preview.err
    document = preview.json()
    built = Path(document["program"]["built"])
    assert built == env.root / ".rollback" / "venvs" / requirements_sha(OLD_PINS.encode())
    assert installed_version(built) == "6.0.0" == document["program"]["installed_pulumi_aws"]
    environment = " ".join(document["program"]["environment"])
    assert f"version 3's own dependencies (infra/requirements.txt at commit {old[:12]})" in environment
    assert "pulumi-aws: 7.51.1 in the stack's checkpoint, 6.0.0 in version 3's infra/requirements.txt" in environment
    assert "another major" in environment
    calls = [json.loads(line) for line in fake_pulumi.log.read_text().splitlines()]
    (previewed,) = [c for c in calls if "preview" in c["argv"]]
    assert previewed["virtualenv"] == str(built.resolve())  # the program ran there, not in today's .venv

    restore = run_cli("infra", "restore", "--to", "3", "--plan-file", "v3.plan.json", "--yes")
    assert restore.code == 0, restore.err
    calls = [json.loads(line) for line in fake_pulumi.log.read_text().splitlines()]
    (applied,) = [c for c in calls if "up" in c["argv"]]
    assert applied["virtualenv"] == str(built.resolve())  # the same environment, reused
    assert listing(env.project / ".venv") == today  # today's environment untouched


@pytest.mark.slow
@pytest.mark.usefixtures("offline_wheels")
def test_an_environment_that_cannot_be_built_is_refused_in_one_line(
        make_stack: Callable[..., StackEnv], fake_pulumi: FakePulumi, run_cli: Any) -> None:
    env, old = two_programs(make_stack, "pulumi-aws==5.42.0\nrollback-fixture-dep==1.0\n")
    before = env.stack_file.read_text()
    refused = run_cli("infra", "preview", "--to", "3", "--plan-file", "v3.plan.json")
    assert refused.code == 4, refused.err
    (error,) = [line for line in refused.err.splitlines() if line.startswith("error: ")]
    assert (f"cannot build the program's environment from version 3's infra/requirements.txt at commit "
            f"{old[:12]}: Could not find a version that satisfies the requirement pulumi-aws==5.42.0") in error
    assert "--with-current-deps" in error
    assert env.stack_file.read_text() == before  # refused before the config was written
    assert not [c for c in fake_pulumi.calls() if "preview" in c]
    assert not any((env.root / ".rollback" / "venvs").glob("*/bin"))  # no half-built environment kept

    current = run_cli("infra", "preview", "--to", "3", "--plan-file", "v3.plan.json", "--with-current-deps")
    assert current.code == 0, current.err
    assert "program environment: today's .venv (--with-current-deps)" in current.out
    calls = [json.loads(line) for line in fake_pulumi.log.read_text().splitlines()]
    (previewed,) = [c for c in calls if "preview" in c["argv"]]
    assert previewed["virtualenv"] == str((env.project / ".venv").resolve())


@pytest.mark.slow
@pytest.mark.usefixtures("offline_wheels")
def test_a_built_environment_is_reused_and_a_killed_build_is_redone(tmp_path: Path) -> None:
    pins = b"rollback-fixture-dep==1.0\n"
    first = ensure_venv(tmp_path, pins, label="pins")
    assert first.built and (first.path / "bin" / "python").exists()
    again = ensure_venv(tmp_path, pins, label="pins")
    assert not again.built and again.path == first.path
    (first.path / ".rollback-venv.json").unlink()  # as a build killed before its marker leaves it
    redone = ensure_venv(tmp_path, pins, label="pins")
    assert redone.built and (redone.path / ".rollback-venv.json").is_file()


@pytest.mark.slow
@pytest.mark.usefixtures("offline_wheels")
def test_a_shared_cache_serves_every_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``$ROLLBACK_PROGRAM_VENVS``: one cache for several checkouts (or sandboxes); the second root reuses
    the environment the first built, and neither root gets a .rollback/venvs of its own."""
    monkeypatch.setenv(VENVS_ENV, str(tmp_path / "cache"))
    pins = b"rollback-fixture-dep==1.0\n"
    first = ensure_venv(tmp_path / "checkout-a", pins, label="pins")
    second = ensure_venv(tmp_path / "checkout-b", pins, label="pins")
    assert first.built and not second.built
    assert first.path == second.path == tmp_path / "cache" / requirements_sha(pins)
    assert not (tmp_path / "checkout-a" / ".rollback").exists() and not (tmp_path / "checkout-b").exists()


def test_versions_from_pins_and_checkpoints() -> None:
    assert pinned_version("# deps\npulumi==3.272.0\npulumi_aws == 7.51.1  # provider\nboto3") == "7.51.1"
    assert pinned_version("pulumi-aws>=6\n") is None
    state = StackState(resources=(AWS_PROVIDER, {**AWS_PROVIDER, "inputs": {}, "outputs": {},
                                                 "urn": "urn:pulumi:s::p::pulumi:providers:aws::default_6_83_0"}))
    assert provider_version(state) == "7.51.1"
    assert provider_version(StackState(resources=())) is None


def test_make_wheel_is_installable_by_name(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "pulumi_aws", "6.0.0")
    assert wheel.name == "pulumi_aws-6.0.0-py3-none-any.whl"


def test_the_plan_counts_only_a_finished_environment_of_the_same_requirements_as_built(
        tmp_path: Path, write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """The step's check and the builder judge an environment with one function (``is_complete``): a
    directory with a python but a marker of other requirements (or none: a killed build) gets built."""
    from rollback.adapters.program_venv import is_complete, venv_path
    from rollback.commands.infra.stack_handlers import StackHandlers
    from rollback.config import load_config
    from rollback.context import Services
    from rollback.plan import Step
    from rollback.runner import StepContext

    monkeypatch.setenv(VENVS_ENV, str(tmp_path / "venvs"))
    config = load_config(write_config({"staging": {"vercel": {"project": "web"}}}))
    sha = requirements_sha(b"rollback-fixture-dep==1.0\n")
    path = venv_path(config.root, sha)
    (path / "bin").mkdir(parents=True)
    (path / "bin" / "python").write_text("")
    step = Step(id="program-env", action="infra.program_env", target="program", summary="build",
                params={"program": {"requirements": {"sha256": sha, "path": "infra/requirements.txt"}},
                        "version": 3})
    check = StackHandlers(Services(config)).check_program_env(step, StepContext(dry_run=True, plan=cast(Any, None)))
    assert not check.done and not is_complete(path, sha)  # no marker: a killed build
    (path / ".rollback-venv.json").write_text(json.dumps({"sha256": "0" * 64}))
    check = StackHandlers(Services(config)).check_program_env(step, StepContext(dry_run=True, plan=cast(Any, None)))
    assert not check.done and not is_complete(path, sha)  # another file's environment
    (path / ".rollback-venv.json").write_text(json.dumps({"sha256": sha}))
    check = StackHandlers(Services(config)).check_program_env(step, StepContext(dry_run=True, plan=cast(Any, None)))
    assert check.done and check.result["path"] == str(path) and is_complete(path, sha)
