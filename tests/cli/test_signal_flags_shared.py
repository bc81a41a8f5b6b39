"""decide's signal flags are declared once (rollback.cli.decide_cmd.signal_flags) and shared by
'rollback decide' and 'rollback run', which decides first from them: the two take the same flags, each a
field of commands.decide.Flags, so a signal 'decide' knows cannot be missing from 'run'."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import click
import pytest

from rollback.cli.decide_cmd import decide
from rollback.cli.run_cmd import run
from rollback.commands.decide import Flags
from tests.conftest import CliResult

RunCli = Callable[..., CliResult]


def _signal_options(command: click.Command) -> dict[str, tuple[str, bool]]:
    fields = {f.name for f in dataclasses.fields(Flags)}
    return {p.name: (type(p.type).__name__, bool(getattr(p, "is_flag", False)))
            for p in command.params if p.name in fields}


def test_decide_and_run_take_the_same_signal_flags() -> None:
    assert _signal_options(decide) == _signal_options(run)
    assert set(_signal_options(run)) == {f.name for f in dataclasses.fields(Flags)}


@pytest.fixture
def plain(write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    path = write_config({"production": {"vercel": {"project": "demo"}}}, default_env="production",
                        journal_dir=str(tmp_path / "runs"))
    monkeypatch.setenv("ROLLBACK_CONFIG", str(path))
    for name in ("ROLLBACK_ENV", "ROLLBACK_JOURNAL_DIR", "VERCEL_TOKEN", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


@pytest.mark.parametrize(("flag", "said"), [
    # The runbook's P3: nothing to roll back, so the run stops at its decision.
    ("--cosmetic", "fix forward in the next deployment"),
    # P1 (a pool exhausted), app: it plans the app rollback and stops at the missing Vercel token.
    ("--db-connections-exhausted", "decided P1: app"),
])
def test_run_decides_from_every_signal_flag(run_cli: RunCli, plain: Path, flag: str, said: str) -> None:
    result = run_cli("run", flag, "--dry-run")
    assert result.code == 2
    assert said in result.out + result.err
    assert "no such option" not in result.err
