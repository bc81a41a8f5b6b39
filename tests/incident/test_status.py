"""``rollback status`` against the three stand-ins at once (the Vercel emulator, the moto server, PostgreSQL):
every source read concurrently within the budget; what cannot be read is shown as "not read" with why."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.incident.conftest import FAILED_MIGRATION, World


def sections(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in document["sections"]}


def test_status_reads_what_it_can_and_says_why_not_the_rest(run_cli: Callable[..., Any], world: World,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROLLBACK_DECIDE_BUDGET", "60")  # what is shown, not how fast: a loaded machine is slow
    world.break_it()
    broken = run_cli("status", "--json")
    assert broken.code == 3, broken.err
    found = sections(broken.json())
    assert found["app"]["status"] == "bad"
    assert any(d.startswith("health GET /api/health: HTTP 500") for d in found["app"]["details"])
    assert found["db"]["status"] == "bad" and f"failed migration(s): {FAILED_MIGRATION}" in found["db"]["details"]
    assert found["alarms"]["status"] == "bad" and found["alarms"]["summary"] == "1 of 1 rollback alarm(s) in ALARM"
    # no such distribution in this world: read, refused, said
    assert found["edge"]["status"] == "not read" and found["edge"]["problems"][0].startswith("CloudFront: ")
    assert found["stack"]["status"] == "not read"
    assert found["stack"]["problems"] == ["stack: not configured: [env.production.pulumi] is not set"]
    assert found["incident"]["summary"] == "none open" and "no run in progress" in found["incident"]["details"]
    assert found["backups"]["summary"].startswith("no recovery point (RPO target 5 min)")
    human = run_cli("status")
    assert human.code == 3 and "not read: stack: not configured: [env.production.pulumi] is not set" in human.out

    # fixed: the deployment healthy, the alarm OK, the migration repaired; what was not read stays so
    from rollback.sandbox.vercel_state import DEMO

    world.emulator.state.configure(unhealthy=[])
    world.set_alarm("OK")
    world.sql(f"""DELETE FROM "_prisma_migrations" WHERE migration_name = '{FAILED_MIGRATION}'""")
    healthy = run_cli("status", "--json")
    # no section is BAD, but the distribution could not be read: healthy cannot be said (exit 1)
    assert healthy.code == 1, healthy.out
    found = sections(healthy.json())
    assert {found[name]["status"] for name in ("app", "db", "alarms")} == {"ok"}
    assert found["edge"]["status"] == "not read"
    assert [u.split(":")[0] for u in healthy.json()["unread"]] == ["CloudFront", "CloudFront"]  # edge, assets
    assert DEMO.current in found["app"]["summary"]


@pytest.fixture
def black_hole() -> Iterator[str]:
    """An endpoint that takes connections and never answers (a hung API)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(32)
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


def test_a_source_that_never_answers_is_not_read_and_the_rest_is(run_cli: Callable[..., Any], world: World,
                                                                black_hole: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VERCEL_API_URL", black_hole)
    monkeypatch.setenv("ROLLBACK_DECIDE_BUDGET", "3")
    result = run_cli("status", "--json")
    document = result.json()
    assert document["budget"] == 3.0 and len(document["sections"]) == 8
    assert result.code in (1, 3) and any(u.startswith("Vercel: ") for u in document["unread"])
    app = sections(document)["app"]
    # the hung API is not read, and says so: by the client's own timeout or the budget's, whichever first
    assert app["problems"] and app["problems"][0].startswith("Vercel: ") and "timed out" in app["problems"][0], app
