"""A new bad deploy after an incident's restore opens a new incident (issue 18, item 6).

After ``rollback sandbox reset`` (the bad deploy again, a new deployment), every later ``run`` attached to
the old, never-closed incident and printed its metrics (rollback 4.0 s, restored long before). Now a run
whose bad deployment was initiated after the open incident's restore opens a new incident and says why;
``--incident ID`` still adds to the old one.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from rollback.sandbox.world import Sandbox, SandboxInfo
from tests.conftest import CliResult
from tests.sandbox.test_run import incident_of, world  # noqa: F401  (world: the fixture)

RunCli = Callable[..., CliResult]

pytestmark = pytest.mark.slow


def test_a_new_bad_deploy_after_the_restore_opens_a_new_incident(world: SandboxInfo,  # noqa: F811
                                                                 run_cli: RunCli) -> None:
    first = run_cli("run", "--layers", "app", "--yes", "--no-verify", "--json")
    assert first.code == 0, first.err
    old = first.json()["incident"]
    restored = incident_of(run_cli, old)["timeline"]["restored"]
    assert restored

    Sandbox.reset(world.dir)  # a new bad deployment, initiated after that restore; the incident stays open
    second = run_cli("run", "--layers", "app", "--yes", "--no-verify", "--json")
    assert second.code == 0, second.err
    new = second.json()["incident"]
    assert new != old
    assert f"the open incident {old} was restored at" in second.err and "a new incident is opened" in second.err
    incident = incident_of(run_cli, new)
    assert incident["timeline"]["restored"] > restored  # its own restore, not the old one's
    assert incident["runs"] == [second.json()["run"]]
    assert incident_of(run_cli, old)["runs"] == [first.json()["run"]]  # nothing added to the old one
