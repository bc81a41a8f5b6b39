"""Hostile or unlucky input gets one line and the contract's exit code: never a traceback,
never a secret, never a document that is not JSON.

Each case here was a traceback, a leak or invalid JSON before: a 20 MB config, a 5,000-deep
list, ``targets.total = inf``, ``VERCEL_API_URL='http://[::1'``, ``AWS_ENDPOINT_URL='not a
url'``, malformed journal files, a database URL password with an unencoded '/', and
``--traceback`` printing exceptions unredacted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CliResult

RunCli = Callable[..., CliResult]
BASE = '[env.p.vercel]\nproject = "x"\n[env.p.aws]\ndistribution_id = "E1"\nedge_function = "f"\n' \
       "from_stack_outputs = false\n"


def strict_json(text: str) -> Any:
    def refuse(constant: str) -> Any:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def one_line(result: CliResult, code: int, *needles: str) -> str:
    assert result.code == code, (result.code, result.out, result.err)
    assert "Traceback" not in result.out + result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], Path]:
    for name in ("ROLLBACK_CONFIG", "ROLLBACK_ENV", "VERCEL_API_URL", "AWS_ENDPOINT_URL", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ROLLBACK_JOURNAL_DIR", str(tmp_path / "runs"))

    def write(text: str) -> Path:
        path = tmp_path / "rollback.toml"
        path.write_text(text, encoding="utf-8")
        return path

    return write


def test_a_config_file_over_1_mib_is_refused(run_cli: RunCli, config: Callable[[str], Path]) -> None:
    path = config(BASE + "[env.p.database]\ntables = [" + ", ".join(['"t"'] * 300_000) + "]\n")
    assert path.stat().st_size > 1 << 20
    one_line(run_cli("--config", str(path), "config", "check"), 2, "larger than 1024 KiB")


def test_a_5000_deep_list_is_exit_2(run_cli: RunCli, config: Callable[[str], Path]) -> None:
    path = config(BASE + "[env.p.database]\ntables = " + "[" * 5000 + "]" * 5000 + "\n")
    one_line(run_cli("--config", str(path), "config", "check"), 2, "nest more than")
    inline = config(BASE + "[env.p.health]\nbase_url = " + "{a = " * 5000 + "1" + "}" * 5000 + "\n")
    one_line(run_cli("--config", str(inline), "config", "check"), 2, "nest more than")


@pytest.mark.parametrize(("section", "key", "value"), [
    ("targets", "total", "inf"), ("targets", "detect", "nan"), ("targets", "verify", "+inf"),
    ("health", "timeout", "inf"), ("health", "timeout", "nan"),
])
def test_non_finite_numbers_are_rejected_naming_their_key(run_cli: RunCli, config: Callable[[str], Path],
                                                           section: str, key: str, value: str) -> None:
    path = config(BASE + f"[env.p.{section}]\n{key} = {value}\n")
    one_line(run_cli("--config", str(path), "config", "check"), 2, f"env.p.{section}.{key}", "finite")
    as_json = run_cli("--config", str(path), "config", "check", "--json")
    assert as_json.code == 2
    assert strict_json(as_json.out)["ok"] is False


@pytest.mark.parametrize(("variable", "value", "command"), [
    ("VERCEL_API_URL", "http://[::1", ("app", "status")),
    ("VERCEL_API_URL", "http://[::1]:99999", ("app", "status")),
    ("VERCEL_API_URL", "ftp://example.com", ("app", "status")),
    ("VERCEL_API_URL", "http://[::1", ("config", "check")),
    ("AWS_ENDPOINT_URL", "not a url", ("infra", "drift")),
    ("AWS_ENDPOINT_URL", "http://[::1", ("infra", "drift")),
    ("AWS_ENDPOINT_URL", "not a url", ("config", "check")),
])
def test_a_bad_endpoint_variable_is_exit_2_naming_it(run_cli: RunCli, config: Callable[[str], Path],
                                                    monkeypatch: pytest.MonkeyPatch, variable: str, value: str,
                                                    command: tuple[str, ...]) -> None:
    path = config(BASE)
    monkeypatch.setenv("VERCEL_TOKEN", "a-token-long-enough")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret")
    monkeypatch.setenv(variable, value)
    one_line(run_cli("--config", str(path), *command), 2, variable, "not a usable URL")


def _journal_line(run: str, event: str, **fields: Any) -> str:
    return json.dumps({"ts": "2026-11-28T09:00:00.000Z", "run": run, "event": event, **fields}) + "\n"


def test_malformed_journals_are_skipped_with_a_warning(run_cli: RunCli, config: Callable[[str], Path],
                                                       tmp_path: Path) -> None:
    config(BASE)
    runs = tmp_path / "runs"
    runs.mkdir()
    good = "20261128T090000.000000Z-aaaaaa"
    (runs / f"{good}.jsonl").write_text(
        _journal_line(good, "run_started", command="rollback app rollback", env="p")
        + _journal_line(good, "step_planned", steps=[{"id": "one", "description": "step one"}])
        + _journal_line(good, "step_finished", step="one", result={})
        + _journal_line(good, "run_finished", status="succeeded", exit_code=0))
    strings = "20261128T090001.000000Z-bbbbbb"
    (runs / f"{strings}.jsonl").write_text(
        _journal_line(strings, "run_started", command="x", env="p")
        + _journal_line(strings, "step_planned", steps="not a list")
        + _journal_line(strings, "step_planned", steps=["not a dict", 7, None])
        + "[1, 2, 3]\n\"a string\"\n" + "[" * 5000 + "]" * 5000 + "\n")
    (runs / "20261128T090002.000000Z-cccccc.jsonl").mkdir()
    (runs / "20261128T090003.000000Z-dddddd.jsonl").symlink_to(tmp_path / "nowhere")

    listed = run_cli("journal", "list")
    assert listed.code == 0, listed.err
    assert "Traceback" not in listed.out + listed.err
    warnings = [line for line in listed.err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 2, listed.err
    assert any("cccccc.jsonl: a directory" in w for w in warnings)
    assert any("dddddd.jsonl: a symlink to nothing" in w for w in warnings)
    assert good in listed.out and strings in listed.out

    document = strict_json(run_cli("journal", "list", "--json").out)
    assert [r["run"] for r in document["runs"]] == [strings, good]
    assert len(document["skipped"]) == 2

    for run in (good, strings, "last"):
        shown = run_cli("journal", "show", run)
        assert shown.code == 0, shown.err
        assert "Traceback" not in shown.out + shown.err
    odd = strict_json(run_cli("journal", "show", strings, "--json").out)
    assert odd["steps"] == [] and odd["torn_lines"] == 3
    assert strict_json(run_cli("journal", "show", "last", "--json").out)["run"] == strings
    one_line(run_cli("journal", "show", "20261128T090002"), 2, "a directory")
    one_line(run_cli("journal", "show", "20261128T090003"), 2, "a symlink to nothing")


def test_a_database_url_libpq_would_misread_is_exit_2_without_the_password(
        run_cli: RunCli, config: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch) -> None:
    path = config(BASE + "[env.p.database]\ntables = [\"User\"]\n")
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:Zm9v/YmFy+cXV4@db.internal:5432/app")
    for args in (("config", "check"), ("--traceback", "config", "check"), ("db", "verify"),
                 ("--traceback", "db", "backup")):
        result = run_cli("--config", str(path), *args)
        assert result.code == 2, result.err
        assert "DATABASE_URL" in result.err and "'/'" in result.err
        for piece in ("Zm9v/YmFy+cXV4", "Zm9v", "YmFy+cXV4"):
            assert piece not in result.out + result.err


def test_traceback_output_goes_through_the_redactor(run_cli: RunCli, config: Callable[[str], Path],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from rollback.errors import ConfigError

    path = config(BASE)
    monkeypatch.setenv("VERCEL_TOKEN", "tok-in-a-traceback-0123")

    def fails(config: Any) -> Any:
        try:
            raise RuntimeError("GET https://api.vercel.com/v9?token=tok-in-a-traceback-0123 from "
                               "postgresql://app:pw-in-a-traceback@db/app")
        except RuntimeError as exc:
            raise ConfigError("it failed: postgresql://app:pw-in-a-traceback@db/app") from exc

    monkeypatch.setattr("rollback.commands.config.check", fails)
    result = run_cli("--config", str(path), "--traceback", "config", "check")
    assert result.code == 2
    assert "Traceback" in result.err and "RuntimeError" in result.err
    assert "pw-in-a-traceback" not in result.err and "tok-in-a-traceback-0123" not in result.err

    def bug(config: Any) -> Any:
        raise KeyError("postgresql://app:pw-in-a-bug@db/app")

    monkeypatch.setattr("rollback.commands.config.check", bug)
    crashed = run_cli("--config", str(path), "config", "check")
    assert crashed.code == 1
    assert "Traceback" in crashed.err and "KeyError" in crashed.err  # a bug still shows its traceback
    assert "pw-in-a-bug" not in crashed.err


def test_every_json_document_goes_through_the_strict_dumper() -> None:
    """Every --json path prints with rollback.safetext.dumps (allow_nan=False); a json.dumps
    elsewhere in the CLI would print NaN/Infinity for a non-finite number it meets."""
    from rollback.safetext import dumps

    assert strict_json(dumps({"a": float("nan"), "b": [float("inf"), -float("inf")], "c": 1.5})) == \
        {"a": None, "b": [None, None], "c": 1.5}
    root = Path(__file__).resolve().parents[2] / "rollback"
    offenders = [f"{path.relative_to(root)}:{number}" for path in sorted((root / "cli").glob("*.py"))
                 for number, line in enumerate(path.read_text().splitlines(), 1)
                 if re.search(r"\bjson\.dumps?\(", line)]
    assert offenders == []


def test_table_names_with_markup_in_config_check(run_cli: RunCli, config: Callable[[str], Path]) -> None:
    path = config(BASE + '[env.p.database]\ntables = ["[/x]", "[red]t", "a\\u001b[2Jb"]\n')
    result = run_cli("--config", str(path), "config", "check")
    assert result.code == 0, result.err
    assert "[/x]" in result.out and "[red]t" in result.out and "a\\x1b[2Jb" in result.out
    assert "\x1b" not in result.out + result.err
