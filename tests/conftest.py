"""Fixtures shared by every test directory.

- ``run_cli``: runs the real CLI entry point in-process and returns exit code,
  stdout and stderr.
- ``write_config``: writes a rollback.toml into a temp dir from a dict of
  sections.
- ``moto_server``: one moto server for the session (real HTTP); tests get the
  AWS environment pointing at it through ``aws_env``.

In CI (``CI=true``) nothing may be skipped: tests that need a local server
fail loudly when it cannot start.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        import json

        return json.loads(self.out)


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    from rollback.cli import main

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        code = main(list(args))
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


def render_config(envs: dict[str, dict[str, dict[str, Any]]], default_env: str | None = None,
                  journal_dir: str | None = None) -> str:
    lines: list[str] = []
    if default_env:
        lines.append(f'default_env = "{default_env}"')
    if journal_dir:
        lines += ["[journal]", f"dir = {_toml_value(journal_dir)}"]
    for env, sections in envs.items():
        for section, values in sections.items():
            lines.append(f"[env.{env}.{section}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """``write_config({"production": {"vercel": {"project": "p"}}}, default_env="production")``."""

    def write(envs: dict[str, dict[str, dict[str, Any]]], default_env: str | None = None,
              journal_dir: str | None = None, name: str = "rollback.toml") -> Path:
        path = tmp_path / name
        path.write_text(render_config(envs, default_env, journal_dir), encoding="utf-8")
        return path

    return write


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    from rollback.sandbox.aws import start_moto

    server = start_moto()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def aws_env(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    from rollback.sandbox.aws import moto_environment

    for key, value in moto_environment(moto_server).items():
        monkeypatch.setenv(key, value)
    return moto_server


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """In CI a skipped test (marker or pytest.skip) fails instead: nothing is skipped silently."""
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which is not allowed: {report.longrepr}"


# --- every AWS call the CLI makes, for the operator-role test (tests/aws_calls.py) ---------------------


def pytest_configure(config: pytest.Config) -> None:
    from tests import aws_calls

    aws_calls.install()
    config.addinivalue_line(
        "markers", "after_aws_tests: runs after every other test (it reads the AWS calls they recorded)")


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    last = [item for item in items if item.get_closest_marker("after_aws_tests")]
    if last:
        items[:] = [item for item in items if not item.get_closest_marker("after_aws_tests")] + last


def pytest_runtest_setup(item: pytest.Item) -> None:
    from tests import aws_calls

    aws_calls.current_test(item.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    from tests import aws_calls

    aws_calls.dump()
