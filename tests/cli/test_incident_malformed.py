"""``incident show`` (and the commands acting on an incident) on a malformed incident file: one line
naming the file and the line, exit 2, never a traceback (issue 18, item 6). Incident files are plain
JSON lines anyone can edit; ``incident list`` still lists the incident, leaving out what it cannot use."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import CliResult

RunCli = Callable[..., CliResult]

INCIDENT = "INC-20261128T093000Z-staging"


@pytest.mark.parametrize(("broken", "problem"), [
    ({"event": "decided", "ts": "2026-11-28T09:31:00Z", "severity": "P1", "reasons": "oops", "signals": 5},
     "line 2: decided: reasons is text, expected a list"),
    ({"event": "decided", "ts": "2026-11-28T09:31:00Z", "layers": [{"app": 1}]},
     "line 2: decided: layers holds something that is not text"),
    ({"event": "verified", "ts": "2026-11-28T09:40:00Z", "ok": "yes", "document": {}},
     "line 2: verified: ok is text, expected true/false"),
    (["not", "an", "object"], "line 2: a line is not a JSON object"),
])
def test_incident_show_of_a_malformed_file_is_one_line(tmp_path: Path, run_cli: RunCli,
                                                       monkeypatch: pytest.MonkeyPatch, broken: object,
                                                       problem: str) -> None:
    config = tmp_path / "rollback.toml"
    config.write_text('[journal]\ndir = "runs"\n[env.staging]\nsandbox = true\n', encoding="utf-8")
    monkeypatch.setenv("ROLLBACK_CONFIG", str(config))
    folder = tmp_path / "incidents"
    folder.mkdir()
    opened = {"event": "opened", "ts": "2026-11-28T09:30:00Z", "env": "staging", "drill": False,
              "detected_at": "2026-11-28T09:30:00Z"}
    (folder / f"{INCIDENT}.jsonl").write_text(json.dumps(opened) + "\n" + json.dumps(broken) + "\n")
    for command in (["incident", "show"], ["incident", "show", INCIDENT, "--json"],
                    ["incident", "close", INCIDENT, "--resolution", "x"]):
        result = run_cli(*command)
        assert result.code == 2, (command, result.err)
        assert "Traceback" not in result.err and len(result.err.strip().splitlines()) == 1, result.err
        assert f"incident file {INCIDENT}.jsonl is malformed: {problem}" in result.err
    listed = run_cli("incident", "list", "--json")
    assert listed.code == 0 and [i["id"] for i in listed.json()["incidents"]] == [INCIDENT]
