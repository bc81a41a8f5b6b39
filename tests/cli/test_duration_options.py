"""Every duration option (--timeout, --poll-interval, --wait, --interval, watch's --for...) takes its
value through one click type, rollback.cli.support.Duration: a bad value is a click usage error (exit 2,
naming the option) raised while the command line is parsed, before any config is read or anything runs."""

from __future__ import annotations

from collections.abc import Callable

import click
import pytest

from rollback.cli.support import DURATION, Duration
from tests.cli.test_fuzz_cli import _leaf_commands, assert_one_error_line
from tests.conftest import CliResult

RunCli = Callable[..., CliResult]

DURATION_OPTIONS = [(path, param) for path, command in _leaf_commands() for param in command.params
                    if isinstance(param, click.Option) and "DURATION" in (param.metavar or "")]


def test_every_duration_option_is_the_duration_type() -> None:
    assert len(DURATION_OPTIONS) >= 16
    untyped = [f"{' '.join(path)} {param.opts[0]}" for path, param in DURATION_OPTIONS
               if not isinstance(param.type, Duration)]
    assert untyped == []


def test_defaults_go_through_the_type() -> None:
    seconds = {(" ".join(path), param.opts[0]): param.type.convert(param.default, param, None)
               for path, param in DURATION_OPTIONS if isinstance(param.default, str)}
    assert seconds[("app rollback", "--timeout")] == 180.0
    assert seconds[("infra edge", "--poll-interval")] == 15.0
    assert seconds[("watch", "--baseline")] == 600.0
    assert all(isinstance(value, float) for value in seconds.values())


@pytest.mark.parametrize(("text", "seconds"), [("90", 90.0), ("1h30m", 5400.0), ("500ms", 0.5), (" 5m ", 300.0)])
def test_the_type_converts(text: str, seconds: float) -> None:
    assert DURATION.convert(text, None, None) == seconds
    assert Duration(off_words=("none",)).convert("None", None, None) == 0.0


@pytest.mark.parametrize("argv", [
    ("app", "rollback", "--timeout", "soon"),
    ("app", "revert", "HEAD", "--timeout", "soon"),
    ("infra", "edge", "--to-version", "2", "--poll-interval", "soon"),
    ("infra", "invalidate", "--timeout", "5 minutes"),
    ("infra", "cdn", "restore", "snap-1", "--timeout", "-3s"),
    ("verify", "--wait", "m5"),
    ("run", "--poll-interval", "fast"),
    ("watch", "--cooldown", "never"),
])
def test_a_bad_duration_is_a_usage_error_before_anything_runs(run_cli: RunCli, argv: tuple[str, ...]) -> None:
    option = next(a for a in argv if a.startswith("--") and a != "--to-version")
    # No config file at all: had the command started, it would have said so instead.
    result = run_cli("--config", "/nonexistent/rollback.toml", *argv)
    line = assert_one_error_line(result)
    assert result.code == 2
    assert f"Invalid value for '{option}'" in line and "is not a duration" in line and "rollback.toml" not in line
