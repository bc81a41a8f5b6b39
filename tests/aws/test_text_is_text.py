"""Text is text for S3 keys: a key with rich markup or control characters in it is restored,
printed as written (markup) or escaped (control characters), and journaled whole; the
journal commands show it afterwards without a crash (``[/x].html`` used to make every later
``journal list`` raise ``MarkupError``)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from tests.aws.conftest import Project
from tests.aws.test_assets import ASSETS, _body, _put, bucket  # noqa: F401 - the fixture
from tests.conftest import CliResult

RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e]")
KEYS = ["[/x].html", "[red]r[/red].js", "[bold]b.css", "ok\u202eevil.txt"]


def assert_clean(result: CliResult) -> None:
    text = result.out + result.err
    assert "Traceback" not in text and "MarkupError" not in text, text
    assert not RAW_CONTROL.search(text), repr(text)


@pytest.mark.slow
def test_markup_and_control_characters_in_s3_keys(aws: Callable[[str], Any], bucket: tuple[str, Project],  # noqa: F811
                                                  run_cli: Any) -> None:
    name, proj = bucket
    s3 = aws("s3")
    config = ("--config", str(proj.config))
    for key in KEYS:
        good = _put(s3, name, key, f"good {key}")
        _put(s3, name, key, "bad")
        dry = run_cli(*ASSETS, "--key", key, "--to-version", good, "--dry-run", *config)
        assert dry.code == 0, dry.err
        assert_clean(dry)
        done = run_cli(*ASSETS, "--key", key, "--to-version", good, "--yes", *config)
        assert done.code == 0, done.err
        assert_clean(done)
        assert _body(s3, name, key) == f"good {key}"
        shown = key.replace("\u202e", "\\u202e")
        assert shown in done.out + done.err, (shown, done.out, done.err)
    for args in (("journal", "list"), ("journal", "show", "last"), ("journal", "list", "--json"),
                 ("journal", "show", "last", "--json")):
        result = run_cli(*args, *config)
        assert result.code == 0, result.err
        assert_clean(result)
    shown = run_cli("journal", "show", "last", *config)
    assert "ok\\u202eevil.txt" in shown.out
