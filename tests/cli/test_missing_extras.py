"""A command that needs an optional extra which is not installed: one line naming the extra, exit 2,
never a ModuleNotFoundError traceback, whether the module is imported with the command or while it runs."""

from __future__ import annotations

import sys
from collections.abc import Callable

import click
import pytest

from rollback.cli import SUBCOMMANDS
from tests.conftest import CliResult

RunCli = Callable[..., CliResult]


@click.command("needs-pulumi")
def needs_pulumi() -> None:
    """Imports pulumi while it runs."""
    import pulumi  # noqa: F401


@pytest.fixture
def without(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    def hide(module: str) -> None:
        monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ModuleNotFoundError

    return hide


def test_a_module_missing_while_the_command_runs(monkeypatch: pytest.MonkeyPatch, without: Callable[[str], None],
                                                 run_cli: RunCli) -> None:
    monkeypatch.setitem(SUBCOMMANDS, "needs-pulumi", ("tests.cli.test_missing_extras:needs_pulumi", "Setup"))
    without("pulumi")
    result = run_cli("needs-pulumi")
    assert result.code == 2
    assert result.err.strip().splitlines() == [
        "error: this command needs the 'infra' extra: pulumi is not installed (pip install -e '.[infra]' in the "
        "repository (or pip install 'rollback[infra]'))"]
    assert "Traceback" not in result.err


def test_a_module_missing_when_the_command_is_imported(monkeypatch: pytest.MonkeyPatch,
                                                       without: Callable[[str], None], run_cli: RunCli) -> None:
    monkeypatch.setitem(SUBCOMMANDS, "needs-moto", ("tests.cli.missing_extra_module:command", "Practice"))
    monkeypatch.delitem(sys.modules, "tests.cli.missing_extra_module", raising=False)
    without("moto")
    result = run_cli("needs-moto", "--json")
    assert result.code == 2
    assert "the 'sandbox' extra: moto is not installed" in result.err
    assert "the 'sandbox' extra" in result.json()["error"]["message"]
    listing = run_cli("--help")
    assert listing.code == 0
    assert "needs-moto" in listing.out and "(needs the 'sandbox' extra)" in listing.out


def test_other_import_errors_are_bugs(monkeypatch: pytest.MonkeyPatch, without: Callable[[str], None],
                                      run_cli: RunCli) -> None:
    monkeypatch.setitem(SUBCOMMANDS, "needs-pulumi", ("tests.cli.test_missing_extras:needs_pulumi", "Setup"))
    monkeypatch.setitem(sys.modules, "pulumi", None)
    monkeypatch.setattr("rollback.cli.EXTRA_OF", {})
    crashed = run_cli("needs-pulumi")
    assert crashed.code == 1
    assert "Traceback" in crashed.err and "ModuleNotFoundError" in crashed.err  # a bug shows its traceback
