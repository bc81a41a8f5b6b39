"""``rollback sandbox reset`` keeps the user's edits to the sandbox's rollback.toml (issue 18, item 7).

It used to write the file anew on every reset, dropping whatever the user had added or changed (an
environment of their own, a longer timeout). The sandbox now remembers what it wrote last and carries
only its own changes over to an edited file."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from rollback.sandbox.world import Sandbox, SandboxInfo
from tests.conftest import CliResult

RunCli = Callable[..., CliResult]


@pytest.mark.slow
def test_sandbox_reset_keeps_the_users_edits(sandbox_env: SandboxInfo, run_cli: RunCli) -> None:
    path = sandbox_env.config_path
    original = path.read_text(encoding="utf-8")
    edited = original.replace("timeout = 5\n", "timeout = 7  # the app is slow to answer here\n") \
        + "\n# my own practice environment\n[env.practice]\nsandbox = true\n[env.practice.health]\nbase_url = " \
        + '"http://127.0.0.1:9"\n'
    assert edited != original
    path.write_text(edited, encoding="utf-8")
    try:
        Sandbox.reset(sandbox_env.dir)
        assert path.read_text(encoding="utf-8") == edited
        shown = run_cli("config", "check", "--json")
        assert shown.code == 0, shown.err
        assert shown.json()["settings"]["health"]["timeout"] == 7.0
        assert "practice" in shown.json()["environments"]
    finally:
        path.write_text(original, encoding="utf-8")
