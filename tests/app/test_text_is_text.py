"""Text is text: rich markup and control characters in free-text arguments are shown as
written (markup) or escaped (control characters), never interpreted, never a crash.

``--reason "checkout [/api/pay] 500s"`` once made every later ``journal list`` raise
``MarkupError``; ``[red]`` vanished; an ESC or OSC sequence in a reason reached the terminal raw.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rollback.sandbox.vercel import VercelEmulator
from tests.conftest import CliResult

RunCli = Callable[..., CliResult]
# Markup (a closing tag with nothing open, a style, a link), ESC/OSC/CSI, BEL, a C1 CSI, a bidi override.
HOSTILE = "pay [/api/pay] [red]x[/red] [link=http://e]l[/link] \x1b[2J\x1b]0;pwn\x07 \x9b31m \u202eevil"
RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e]")


def strict_json(text: str) -> Any:
    def refuse(constant: str) -> Any:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in strings(item)]
    return []


def assert_shown_not_acted_on(result: CliResult) -> None:
    text = result.out + result.err
    assert "Traceback" not in text and "MarkupError" not in text, text
    assert not RAW_CONTROL.search(text), repr(text)


def test_a_hostile_reason_is_journaled_whole_and_shown_escaped(run_cli: RunCli, app_env: Path,
                                                               emulator: VercelEmulator) -> None:
    rolled = run_cli("app", "rollback", "--reason", HOSTILE, "--yes")
    assert rolled.code == 0, rolled.err
    assert_shown_not_acted_on(rolled)
    listed, shown = run_cli("journal", "list"), run_cli("journal", "show", "last")
    for result in (listed, shown):
        assert result.code == 0, result.err
        assert_shown_not_acted_on(result)
    flat = re.sub(r"[\s│┃|]+", "", listed.out)  # the table may fold a long cell over several lines
    for token in ("[/api/pay]", "[red]x[/red]", "[link=http://e]l[/link]", "\\x1b[2J", "\\x07", "\\x9b31m",
                  "\\u202eevil"):
        assert token in shown.out, (token, shown.out)
        assert re.sub(r"\s", "", token) in flat, (token, listed.out)
    for args in (("journal", "list", "--json"), ("journal", "show", "last", "--json")):
        result = run_cli(*args)
        assert result.code == 0, result.err
        assert_shown_not_acted_on(result)
        assert any(HOSTILE in text for text in strings(strict_json(result.out)))  # kept whole, as data


def test_a_hostile_deployment_ref_is_one_escaped_error_line(run_cli: RunCli, app_env: Path) -> None:
    result = run_cli("app", "rollback", "--to", "dpl_[/x][red]\x1b[31m\x07", "--yes")
    assert result.code in (1, 2), result.err
    assert_shown_not_acted_on(result)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "[/x][red]\\x1b[31m\\x07" in lines[0], lines


def test_a_secret_quoted_in_an_argument_is_redacted_before_the_journal(run_cli: RunCli, app_env: Path,
                                                                      journal_redaction: bool) -> None:
    reason = "db at postgresql://app:hunter2-in-a-reason@db.internal/app is fine; token=tok-in-a-reason-1"
    result = run_cli("app", "rollback", "--reason", reason, "--yes")
    assert result.code == 0, result.err
    journal = "".join(p.read_text() for p in app_env.glob("*.jsonl"))
    assert "rollback app rollback --reason" in journal
    for secret in ("hunter2-in-a-reason", "tok-in-a-reason-1"):
        assert secret not in journal and secret not in result.out + result.err
