"""Fixtures for the app layer: the Vercel API emulator served in a thread (one for
the session, reset before each test), a rollback.toml pointing at it, and the
environment (VERCEL_API_URL, VERCEL_TOKEN, ROLLBACK_CONFIG)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rollback.sandbox.vercel import VercelEmulator, start_emulator
from rollback.sandbox.vercel_state import DEMO

# Vercel's CLI refuses tokens with "-" in them; this one is also long enough to be masked.
TOKEN = "vercelTestToken8c1d2e"


@pytest.fixture(scope="session")
def emulator_server() -> Iterator[VercelEmulator]:
    server = start_emulator(token=TOKEN, seed="demo", job_seconds=0.0)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def emulator(emulator_server: VercelEmulator) -> Iterator[VercelEmulator]:
    """The session's emulator, back to the demo seed, zero job latency, no faults.

    Every API response it serves during the test is captured; afterwards each one
    of an operation in the published spec (at a documented status) is validated
    against that operation's response schema.
    """
    from tests.app import openapi_check

    state = emulator_server.state
    state.reset("demo")
    state.configure(job_seconds=0.0, fail_aliases=[])
    state.captured = []
    yield emulator_server
    captured, state.captured = state.captured, None
    problems = []
    for method, path, status, body in captured or []:
        operation_id = openapi_check.operation_for(method, path)
        if operation_id is None or not openapi_check.is_documented(operation_id, status):
            continue  # not in the slice, or an injected fault's status
        try:
            openapi_check.validate(operation_id, status, body)
        except AssertionError as exc:
            problems.append(f"{method} {path}: {exc}")
    assert not problems, "responses that do not match the published schema:\n" + "\n".join(problems)


def app_config(journal_dir: Path, url: str, **health: Any) -> dict[str, Any]:
    return {
        "production": {
            "vercel": {"project": DEMO.project_name, "team": DEMO.team_id},
            "health": {"base_url": f"{url}/_app/{DEMO.project_name}", "paths": ["/", "/api/health"],
                       "version_path": "/api/version", "timeout": 1.0, **health},
        },
    }


@pytest.fixture
def app_env(emulator: VercelEmulator, write_config: Callable[..., Path], tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> Path:
    """A rollback.toml for the demo project, and the environment pointing at the emulator.
    Returns the journal directory."""
    journal_dir = tmp_path / "runs"
    path = write_config(app_config(journal_dir, emulator.url), default_env="production",
                        journal_dir=str(journal_dir))
    monkeypatch.setenv("ROLLBACK_CONFIG", str(path))
    monkeypatch.setenv("VERCEL_API_URL", emulator.url)
    monkeypatch.setenv("VERCEL_TOKEN", TOKEN)
    monkeypatch.delenv("ROLLBACK_ENV", raising=False)
    monkeypatch.delenv("ROLLBACK_JOURNAL_DIR", raising=False)
    return journal_dir


@pytest.fixture
def client(emulator: VercelEmulator) -> Iterator[Any]:
    """A VercelClient on the emulator, with a recording (non-sleeping) sleep and a clock
    that moves only when it sleeps, so deadlines and grace periods cost no real time."""
    import httpx

    from rollback.adapters.vercel import VercelClient

    sleeps: list[float] = []
    now = [0.0]

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    with httpx.Client(base_url=emulator.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5) as http:
        vercel = VercelClient(http, team=DEMO.team_id, sleep=sleep, clock=lambda: now[0])
        vercel.sleeps = sleeps  # type: ignore[attr-defined]
        yield vercel
