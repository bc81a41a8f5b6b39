"""Fixtures for the stack-state commands: DIY backends built from the real checkpoints,
a copy of the Pulumi project, a rollback.toml pointing at both, and the recorded-CLI
double of ``pulumi`` on PATH."""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.stack.backend_fixtures import PROJECT, STACK, build_backend, build_project

DOUBLE = Path(__file__).with_name("recorded_pulumi.py")


@dataclass
class StackEnv:
    root: Path
    backend: Path
    project: Path
    config: Path
    layout: str

    @property
    def stack_file(self) -> Path:
        return self.project / "stacks" / f"Pulumi.{STACK}.yaml"


def _write_config(root: Path, backend_url: str | None) -> Path:
    lines = ['default_env = "staging"', "[journal]", f'dir = "{root / "runs"}"', "[env.staging.pulumi]",
             f'stack = "{STACK}"', f'project = "{PROJECT}"', 'project_dir = "project"']
    if backend_url:
        lines.append(f'backend_url = "{backend_url}"')
    # No CloudFront here: a restore that changes assetsRelease notes that it cannot invalidate instead of
    # calling AWS (tests/stack/test_restore_fidelity.py gives it a distribution in the moto server).
    lines += ["[env.staging.aws]", "from_stack_outputs = false"]
    path = root / "rollback.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def make_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., StackEnv]:
    """``make_stack(layout="project", compression=None, backend_in_config=True)``."""
    monkeypatch.delenv("PULUMI_BACKEND_URL", raising=False)
    monkeypatch.delenv("ROLLBACK_JOURNAL_DIR", raising=False)

    def make(layout: str = "project", compression: str | None = None, backend_in_config: bool = True,
             **kwargs: Any) -> StackEnv:
        root = tmp_path / "site"
        backend = build_backend(root / "state", layout=layout, compression=compression, **kwargs)
        project = build_project(root / "project")
        config = _write_config(root, f"file://{backend}" if backend_in_config else None)
        monkeypatch.setenv("ROLLBACK_CONFIG", str(config))
        monkeypatch.chdir(root)
        return StackEnv(root, backend, project, config, layout)

    return make


@pytest.fixture
def stack_env(make_stack: Callable[..., StackEnv]) -> StackEnv:
    return make_stack()


@dataclass
class FakePulumi:
    bin_dir: Path
    log: Path

    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [json.loads(line)["argv"] for line in self.log.read_text().splitlines()]


@pytest.fixture
def fake_pulumi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakePulumi:
    """Puts the recorded-CLI double first on PATH as ``pulumi``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "pulumi"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{DOUBLE}" "$@"\n', encoding="utf-8")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    log = tmp_path / "pulumi-calls.jsonl"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE_PULUMI_LOG", str(log))
    monkeypatch.setenv("PULUMI_SKIP_UPDATE_CHECK", "true")
    return FakePulumi(bin_dir, log)


@pytest.fixture
def no_pulumi(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make sure no pulumi executable is found (the machine has none; CI neither)."""
    import shutil

    if shutil.which("pulumi"):
        monkeypatch.setenv("PATH", "/usr/bin:/bin")
