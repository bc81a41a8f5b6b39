"""Text is text for table names: a table called ``[/x]`` (or with an ESC in its name) is
counted, verified and backed up like any other, and shown as written (markup) or escaped
(control characters); it once made ``db verify`` and ``db backups`` raise ``MarkupError``."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from tests.conftest import CliResult
from tests.db.conftest import LiveDb

RunCli = Callable[..., CliResult]
RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def test_markup_and_control_characters_in_table_names(run_cli: RunCli, live_db: LiveDb) -> None:
    live_db.sql('CREATE TABLE "[/x]" (id int); INSERT INTO "[/x]" VALUES (1), (2);'
                'CREATE TABLE "[red]t\x1b[2J" (id int)', user="app")
    config = live_db.config_path.read_text()
    tables = 'tables = ["User", "Integration", "UserStats"'
    assert tables in config
    live_db.config_path.write_text(config.replace(tables, tables + ', "[/x]", "[red]t\\u001b[2J"'))
    results = [run_cli("db", "verify"), run_cli("db", "backup"), run_cli("db", "backups"),
               run_cli("journal", "show", "last")]
    for result in results:
        assert result.code == 0, result.err
        text = result.out + result.err
        assert "Traceback" not in text and "MarkupError" not in text, text
        assert not RAW_CONTROL.search(text.replace("\n", "")), repr(text)
    verify = results[0].out
    assert "rows.[/x]" in verify and "rows.[red]t\\x1b[2J" in verify
    document = run_cli("db", "verify", "--json")
    assert document.code == 0
    names = {c["check"] for c in json.loads(document.out)["checks"]}
    assert {"rows.[/x]", "rows.[red]t\x1b[2J"} <= names
