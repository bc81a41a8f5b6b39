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


@pytest.fixture
def vercel_config(write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> Any:
    from rollback.config import load_config

    monkeypatch.setenv("VERCEL_TOKEN", "token-for-the-services-test")
    monkeypatch.setenv("VERCEL_API_URL", "http://127.0.0.1:9")
    # A transaction-mode pooler's port (6543): the commands' database refuses it, the readers' does not.
    monkeypatch.setenv("SERVICES_TEST_DATABASE_URL", "postgresql://app:secret@127.0.0.1:6543/shop")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    return load_config(write_config({"production": {
        "vercel": {"project": "shop", "team": "team_quick"},
        "aws": {"region": "eu-west-1", "distribution_id": "E123", "assets_bucket": "assets"},
        "database": {"url_env": "SERVICES_TEST_DATABASE_URL"}}}))


def test_the_short_timeout_profile_serves_the_live_readers_their_clients(vercel_config: Any) -> None:
    """What ``signals`` and ``status`` read through: Vercel within the budget and two attempts, boto3 clients
    with the profile's timeouts in the right regions (CloudFront in us-east-1, S3 in the environment's), and
    a database that a pooled URL still reaches for a read."""
    from rollback.adapters.cloudwatch import make_client
    from rollback.errors import ConfigError

    services = Services(vercel_config)
    quick = services.quick(2.0)

    client = quick.vercel()
    assert (client.deadline, client.max_attempts, client.team) == (2.0, 2, "team_quick")
    assert client.max_body == vercel_config.max_body and client.http.timeout.read == 2.0
    assert services.vercel().deadline == 30.0 and services.vercel().max_attempts == 5  # the commands' own
    assert quick.vercel() is client

    # The process's short-timeout clients (cloudwatch.make_client: two attempts, shared by every reader).
    cloudfront = quick.edge().cloudfront
    assert cloudfront is make_client(timeout=2.0, service="cloudfront", region="us-east-1")
    assert (cloudfront.meta.config.read_timeout, cloudfront.meta.config.connect_timeout) == (2.0, 2.0)
    s3 = quick.s3().s3
    assert s3 is make_client(timeout=2.0, service="s3", region="eu-west-1") and s3.meta.config.read_timeout == 2.0
    assert quick.aws_client("s3") is s3
    assert services.s3().s3.meta.config.read_timeout == 30  # the commands' own

    with pytest.raises(ConfigError, match="connection pooler"):
        quick.database()
    reads = quick.read_database()
    assert reads.connect_timeout == 2 and reads.target.dbname == "shop" and quick.read_database() is reads


def test_the_short_timeout_edge_builds_its_lambda_client_only_when_used(vercel_config: Any) -> None:
    from rollback.adapters import cloudwatch

    edge = Services(vercel_config).quick(1.5).edge()
    assert "lambda" not in {key[1] for key in cloudwatch._CLIENTS if key[3] == 1.5}
    assert edge.lambda_.meta.region_name == "us-east-1" and edge.lambda_.meta.config.read_timeout == 1.5
    assert "lambda" in {key[1] for key in cloudwatch._CLIENTS if key[3] == 1.5}


def test_readers_on_threads_build_an_adapter_once(config: Any) -> None:
    """The live readers ask one profile from several threads at once: the first builds, the others wait."""
    import threading
    import time

    services = Services(config)
    built: list[int] = []
    start = threading.Barrier(8)

    def build() -> object:
        built.append(1)
        time.sleep(0.05)  # a build long enough for the others to arrive while it runs
        return object()

    found: list[object] = []

    def ask() -> None:
        start.wait()
        found.append(services._get("vercel", build))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(built) == 1 and len({id(item) for item in found}) == 1
    assert services.quick(2.0) is services.quick(2.0)


def test_the_short_timeout_aws_clients_make_two_attempts_in_all(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two requests, not three: botocore's ``retries.max_attempts`` counts the retries after the first
    request ("setting this value to 2 will result in the request being retried at most two times"), so
    the profile sets ``total_max_attempts``. Against a local server that answers every request 503."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from botocore.exceptions import ClientError

    from rollback.adapters.cloudwatch import make_client

    seen: list[str] = []

    class Unavailable(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append(self.path)
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Unavailable)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.server_address[1]}")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        with pytest.raises(ClientError):
            make_client(timeout=2.0, service="cloudwatch").describe_alarms()
    finally:
        server.shutdown()
        server.server_close()
    assert len(seen) == 2
