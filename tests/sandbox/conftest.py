"""The sandbox for end-to-end tests: one world per session, in a temp dir laid out as a drill's.

- ``sandbox``: session-scoped (per pytest-xdist worker);
  ``rollback.sandbox.world.Sandbox.up`` in ``<tmp>/.rollback/sandbox`` (so
  journals land in ``<tmp>/.rollback/runs``), torn down (``Sandbox.down``) at
  the end of the session.
- ``sandbox_env``: the sandbox with its ``status`` exports set in the environment
  (``ROLLBACK_CONFIG``, ``AWS_ENDPOINT_URL``, ``DATABASE_URL``, ``VERCEL_*``,
  ``APP_URL``...) and the working directory at ``<tmp>`` (where a drill runs).
- ``fresh_sandbox``: as ``sandbox_env``, with the world as seeded: re-broken by
  ``Sandbox.reset`` unless no test has had it since ``up``. Use it in any test
  that changes the world or needs it untouched.

End-to-end tests that use these fixtures live in ``tests/sandbox/`` (the
fixture is session-scoped per conftest: one world for all of them). With
``CI=true`` a sandbox that cannot start fails the run; it is never skipped.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from rollback.sandbox.world import Sandbox, SandboxInfo
from tests.conftest import IN_CI

_handed_out = {"fresh": False}


@pytest.fixture(scope="session")
def sandbox() -> Iterator[SandboxInfo]:
    """A running, seeded sandbox for the whole session (of this worker, under pytest-xdist: the tests that
    use it are grouped onto workers, tests/conftest.py's ``sandbox_group``).

    Its directory is not under pytest's base temp: pytest removes that (tmp_path_retention_policy) before
    it tears session fixtures down, and ``Sandbox.down`` needs the sandbox's state file to stop it."""
    root = Path(tempfile.mkdtemp(prefix="rollback-test-sandbox-"))
    directory = root / "drill" / ".rollback" / "sandbox"
    try:
        info = Sandbox.up(directory)
    except Exception as exc:
        Sandbox.down(directory)
        shutil.rmtree(root, ignore_errors=True)
        if IN_CI:
            pytest.fail(f"the sandbox could not start (CI=true forbids skipping): {exc}")
        pytest.skip(f"the sandbox could not start: {exc}")
    try:
        yield info
    finally:
        Sandbox.down(directory)
        shutil.rmtree(root, ignore_errors=True)


def _export(info: SandboxInfo, monkeypatch: pytest.MonkeyPatch) -> SandboxInfo:
    for name in ("ROLLBACK_JOURNAL_DIR", "AWS_PROFILE", "PULUMI_BACKEND_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in info.exports().items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(info.dir.parent.parent)
    return info


@pytest.fixture
def sandbox_env(sandbox: SandboxInfo, monkeypatch: pytest.MonkeyPatch) -> SandboxInfo:
    """The session's sandbox, as it is now, with its exports in the environment."""
    current = Sandbox.status(sandbox.dir)
    assert current is not None, f"the session's sandbox in {sandbox.dir} stopped (see its logs/)"
    return _export(current, monkeypatch)


@pytest.fixture
def fresh_sandbox(sandbox: SandboxInfo, monkeypatch: pytest.MonkeyPatch) -> SandboxInfo:
    """The session's sandbox with the world as seeded (reset unless untouched since up)."""
    if _handed_out["fresh"]:
        info = Sandbox.reset(sandbox.dir)
    else:
        current = Sandbox.status(sandbox.dir)
        assert current is not None, f"the session's sandbox in {sandbox.dir} stopped (see its logs/)"
        info = current
    _handed_out["fresh"] = True
    return _export(info, monkeypatch)


def tool_env(info: SandboxInfo, home: Path) -> dict[str, str]:
    """An environment for the runbook's own tools (aws, psql, vercel, curl): the sandbox's exports, this
    venv's bin first on PATH (the aws CLI), and a throwaway HOME so nothing reads the user's config."""
    import sys

    home.mkdir(parents=True, exist_ok=True)
    env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}", "HOME": str(home),
           "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "LANG": "C.UTF-8",
           "PAGER": "cat", "AWS_PAGER": "", "PSQLRC": os.devnull, "VERCEL_TELEMETRY_DISABLED": "1",
           "NO_UPDATE_NOTIFIER": "1", "NO_COLOR": "1", "FORCE_COLOR": "0", "CI": "1",
           "XDG_CONFIG_HOME": str(home / ".config"), "XDG_DATA_HOME": str(home / ".local" / "share"),
           "XDG_CACHE_HOME": str(home / ".cache")}
    env.update(info.exports())
    return env
