"""Manifests of the wrong shape are damaged backups (exit 4), never a traceback."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CliResult
from tests.db.conftest import LiveDb

RunCli = Callable[..., CliResult]


def without_bytes(manifest: dict[str, Any]) -> Any:
    del manifest["files"][0]["bytes"]
    return manifest


BREAKAGES: dict[str, Callable[[dict[str, Any]], Any]] = {
    "a list": lambda m: [],
    "a string": lambda m: "manifest",
    "files is a string": lambda m: {**m, "files": "abc"},
    "a file without bytes": without_bytes,
    "negative bytes": lambda m: {**m, "files": [{**m["files"][0], "bytes": -1}]},
    "a file outside the dump": lambda m: {**m, "files": [{**m["files"][0], "path": "../../etc/passwd"}]},
    "dump_dir pointing elsewhere": lambda m: {**m, "dump_dir": "../elsewhere"},
    "dump_dir absolute": lambda m: {**m, "dump_dir": "/var/lib/postgresql"},
    "tables is a dict": lambda m: {**m, "tables": {"User": 300}},
    "rows is text": lambda m: {**m, "tables": [{**m["tables"][0], "rows": "many"}]},
    "no format": lambda m: {k: v for k, v in m.items() if k != "format"},
}


@pytest.mark.parametrize("how", list(BREAKAGES))
def test_a_malformed_manifest_is_a_damaged_backup(run_cli: RunCli, live_db: LiveDb, how: str) -> None:
    result = run_cli("db", "backup", "--json")
    assert result.code == 0, result.err
    backup = result.json()["backup"]
    path = Path(backup["manifest_path"])
    path.write_text(json.dumps(BREAKAGES[how](json.loads(path.read_text()))))
    before = live_db.databases()
    for args in (("db", "restore", backup["name"], "--swap", "--yes"), ("db", "restore", "latest", "--dry-run"),
                 ("db", "verify", "--baseline", backup["name"])):
        refused = run_cli(*args)
        assert refused.code in (2, 4), (args, refused.code, refused.err)
        assert "Traceback" not in refused.err
        lines = [line for line in refused.err.splitlines() if line.startswith("error: ")]
        assert len(lines) == 1, refused.err
        if args[2] != "latest":  # latest skips a damaged backup: there is then no backup to restore
            assert refused.code == 4 and f"backup {backup['name']} is damaged" in lines[0], lines[0]
    assert live_db.databases() == before
    listed = run_cli("db", "backups", "--json")
    assert listed.code == 0, listed.err
    assert [b["status"] for b in listed.json()["backups"]] == ["damaged"]
    human = run_cli("db", "backups")
    assert human.code == 0 and "damaged" in human.out


def test_an_unreadable_manifest_is_a_damaged_backup(run_cli: RunCli, live_db: LiveDb) -> None:
    backup = run_cli("db", "backup", "--json").json()["backup"]
    Path(backup["manifest_path"]).write_bytes(b"\xff\xfe{not json")
    refused = run_cli("db", "restore", backup["name"], "--yes")
    assert refused.code == 4 and "is damaged" in refused.err and "Traceback" not in refused.err
