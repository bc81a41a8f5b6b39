"""``Services`` is a typed, required seam: explicit adapters, unknown names refused, settings apart from
adapters, a short-timeout profile; and one run shares one boto3 session and one database target across
every layer's handlers (context.py's promise).

In memory: boto3 sessions and clients are real but never called (creating them sends nothing); the counts
are of our own factories (``make_session``, ``Target.from_url``), wrapped, not replaced."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rollback.context import RunSettings, Services


@pytest.fixture
def config(write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> Any:
    from rollback.config import load_config

    monkeypatch.setenv("SERVICES_TEST_DATABASE_URL", "postgresql://app:secret@127.0.0.1:9/shop")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    return load_config(write_config({"production": {
        "aws": {"region": "eu-west-1", "distribution_id": "E123", "assets_bucket": "assets"},
        "database": {"url_env": "SERVICES_TEST_DATABASE_URL"}}}))


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How many boto3 sessions and database targets were made (by our factories, which still run)."""
    from rollback.adapters import aws
    from rollback.adapters.postgres import Target

    counts = {"sessions": 0, "targets": 0}
    real_session, real_target = aws.make_session, Target.from_url.__func__  # type: ignore[attr-defined]

    def make_session(region: str) -> Any:
        counts["sessions"] += 1
        return real_session(region)

    def from_url(cls: type[Target], url: str, variable: str = "the database URL") -> Target:
        counts["targets"] += 1
        return real_target(cls, url, variable)  # type: ignore[no-any-return]

    monkeypatch.setattr(aws, "make_session", make_session)
    monkeypatch.setattr(Target, "from_url", classmethod(from_url))
    return counts


def test_an_unknown_adapter_name_is_refused_not_built(config: Any) -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'edges'"):
        Services(config, edges=object())  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="no adapter 'edges'"):
        Services(config).existing("edges")


def test_settings_are_not_adapters(config: Any) -> None:
    services = Services(config, settings=RunSettings(poll_ramp=True, edge_interval=2.0))
    assert services.settings.poll_ramp and services.settings.edge_interval == 2.0
    assert Services(config).settings == RunSettings()
    with pytest.raises(TypeError, match="unexpected keyword argument 'poll_ramp'"):
        Services(config, poll_ramp=True)  # type: ignore[call-arg]


def test_the_short_timeout_profile_gives_up_quickly(config: Any) -> None:
    services = Services(config)
    assert services.database().connect_timeout == 10  # the commands' own
    quick = services.quick(2.0)
    assert quick.database().connect_timeout == 2 and quick.database() is not services.database()
    assert services.quick(2.0) is quick and quick.quick(2.0) is quick  # one profile per timeout


def test_one_run_opens_one_boto3_session_and_one_database_target(config: Any, opened: dict[str, int]) -> None:
    """A plan across the db (Postgres and RDS), edge, cdn, invalidation, assets and stack layers: the registry
    builds each layer's handlers with the run's Services, and the planning's adapters are reused."""
    from rollback.commands.registry import handler_objects
    from rollback.commands.run.plan import handler_services

    planning = Services(config)
    planning.database()  # what the planning read
    planning.s3()
    assert opened == {"sessions": 1, "targets": 1}
    services = handler_services(planning, 5.0)
    assert services.settings.edge_interval == 5.0 and services.settings.poll_ramp
    objects = handler_objects(["db.verify_backup", "rds.restore", "edge.wait", "cdn.wait", "cloudfront.invalidate",
                               "s3.restore", "infra.check", "run.check_world", "verify.checklist"], services)
    assert all(obj.services is services for obj in objects.values())
    db: Any = objects["rds.restore"]
    assert objects["db.verify_backup"] is db  # the db jobs' steps share one DbHandlers
    # Every layer uses its adapters as its steps do.
    assert db.db is planning.database()
    db._rds()
    for action in ("edge.wait", "cdn.wait", "cloudfront.invalidate"):
        assert objects[action].adapter is services.edge()
    assert objects["s3.restore"].store is planning.s3()
    assert opened == {"sessions": 1, "targets": 1}
