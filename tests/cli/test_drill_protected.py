"""A drill refuses a protected environment without --i-know-this-is-production (issue 18, item 5).

The guard used to be keyed on exact names (production, prod): ``--env prod-eu`` ran a real rollback of
every layer. Now an environment is protected when ``protected = true``, or, unset, when it is marked
``production = true``, when its name starts with prod or live, or when it is not marked ``sandbox = true``
(a name is no safe guess of what an environment is). The refusal comes before anything is read or
opened: no incident, no journal.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from rollback.config import load_config
from tests.conftest import CliResult

RunCli = Callable[..., CliResult]


def _write(tmp_path: Path, name: str, table: str) -> Path:
    path = tmp_path / "rollback.toml"
    # Nothing to measure: decide --live sees no bad deploy, so an allowed drill stops at detect.
    path.write_text(f"[env.{name}]\n{table}\n[env.{name}.targets]\ndetect = 5\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(("name", "table", "why"), [
    ("prod-eu", "", "its name starts with prod"),
    ("PRODUCTION", "", "its name starts with prod"),
    ("live-us", "sandbox = true", "its name starts with live"),
    ("staging", "", "[env.staging] is not marked sandbox = true"),
    ("qa", "sandbox = true\nprotected = true", "[env.qa] protected = true"),
    ("eu", "production = true\nsandbox = true", "[env.eu] production = true"),
])
def test_protected_environments(tmp_path: Path, name: str, table: str, why: str) -> None:
    config = load_config(_write(tmp_path, name, table), name, environ={})
    assert config.protection == why and config.is_protected


@pytest.mark.parametrize(("name", "table"), [("staging", "sandbox = true"), ("prod-copy", "protected = false")])
def test_unprotected_environments(tmp_path: Path, name: str, table: str) -> None:
    config = load_config(_write(tmp_path, name, table), name, environ={})
    assert config.protection is None and not config.is_protected


def test_a_drill_of_prod_eu_is_refused_and_one_of_a_sandbox_environment_is_not(
        tmp_path: Path, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for variable in ("ROLLBACK_CONFIG", "ROLLBACK_ENV"):
        monkeypatch.delenv(variable, raising=False)
    _write(tmp_path, "prod-eu", "")
    refused = run_cli("drill", "--env", "prod-eu", "--json")
    assert refused.code == 4, refused.err
    assert "environment 'prod-eu' is protected (its name starts with prod)" in refused.err
    assert "--i-know-this-is-production" in refused.err and "Traceback" not in refused.err
    assert json.loads(refused.out)["error"]["exit_code"] == 4
    assert not (tmp_path / ".rollback").exists()  # nothing opened, nothing journaled

    _write(tmp_path, "staging", "sandbox = true")
    allowed = run_cli("drill", "--env", "staging", "--detect-timeout", "1s", "--json")
    assert allowed.code == 1, allowed.err  # it went on: nothing detects a bad deploy here
    assert "not detected" in json.loads(allowed.out)["error"]
