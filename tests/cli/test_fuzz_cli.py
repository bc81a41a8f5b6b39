"""Property tests: malformed config files and arguments never produce a traceback.

Whatever hypothesis writes into rollback.toml or puts on the command line, the
CLI answers with exit 0 or 2 (bad input) and, on error, exactly one line
``error: ...`` on stderr.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import CliResult

RunCli = Callable[..., CliResult]

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

HEADERS = ["[env.production.vercel]", "[env.production.health]", "[env.production.database]",
           "[env.production.aws]", "[env.production.pulumi]", "[env.production.targets]", "[journal]",
           "[env.staging]", "[env]", "[[env.production.database.relations]]", "[env.\"odd name\".vercel]"]
KEYS = ["project", "team", "base_url", "paths", "version_path", "url_env", "tables", "backups_dir", "region",
        "distribution_id", "stack", "backend_url", "detect", "total", "default_env", "dir", "token", "url",
        "password", "child", "parent", "timeout", "expect_status", "relations", "nonsense"]
SCALARS = st.one_of(
    st.integers(min_value=-10**20, max_value=10**20).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(lambda f: repr(f).replace("inf", "inf")),
    st.booleans().map(lambda b: "true" if b else "false"),
    st.text(max_size=20).map(lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'),
    st.sampled_from(['"postgresql://u:pw@h/db"', '"https://app.example.com"', '"us-east-1"', "1979-05-27",
                     '"file:///tmp"', "{ child = \"A.b\", parent = \"C.d\" }", "{}", "[]"]),
)
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]"))
LINES = st.one_of(
    st.sampled_from(HEADERS),
    st.tuples(st.sampled_from(KEYS), VALUES).map(lambda kv: f"{kv[0]} = {kv[1]}"),
    st.text(max_size=30),
)
TOML_ISH = st.lists(LINES, max_size=12).map(lambda lines: "\n".join(lines) + "\n")


def assert_clean(result: CliResult) -> None:
    assert "Traceback" not in result.out + result.err
    assert result.code in (0, 2), (result.code, result.err)
    if result.code:
        lines = result.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.err


@SETTINGS
@given(text=TOML_ISH)
def test_tomlish_config_files_never_traceback(run_cli: RunCli, tmp_path: Path, text: str) -> None:
    path = tmp_path / "rollback.toml"
    path.write_bytes(text.encode("utf-8", errors="replace"))
    assert_clean(run_cli("--config", str(path), "config", "check", "--json"))


@SETTINGS
@given(data=st.binary(max_size=200))
def test_random_bytes_config_files_never_traceback(run_cli: RunCli, tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "rollback.toml"
    path.write_bytes(data)
    assert_clean(run_cli("--config", str(path), "config", "check"))


ARGS = st.lists(
    st.one_of(
        st.sampled_from(["config", "check", "journal", "list", "show", "last", "--json", "--env", "--config",
                         "--limit", "0", "-1", "999", "--help", "--bogus", "--", "-", "production", "x.toml",
                         "--dry-run", "--yes", "app", "db", "infra"]),
        st.text(min_size=0, max_size=12).filter(lambda s: "\x00" not in s),
    ),
    max_size=6,
)


@SETTINGS
@given(args=ARGS)
def test_random_arguments_never_traceback(run_cli: RunCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          args: list[str]) -> None:
    # No rollback.toml anywhere and no credentials: layer commands can only parse
    # their arguments and stop at the missing config, never act.
    for name in ("ROLLBACK_CONFIG", "ROLLBACK_ENV", "VERCEL_TOKEN", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    with tempfile.TemporaryDirectory() as scratch:  # fresh per example: nothing carries over
        monkeypatch.chdir(scratch)
        monkeypatch.setenv("ROLLBACK_JOURNAL_DIR", str(Path(scratch) / "runs"))
        assert_clean(run_cli(*args))
        monkeypatch.chdir(tmp_path)
