"""The health adapter against real HTTP (the emulator's app stand-in, and a closed port)."""

from __future__ import annotations

import socket

import httpx
import pytest

from rollback.adapters.health import HealthChecker, extract_version, make_health_client, versions_match
from rollback.config import HealthSettings
from rollback.errors import ConfigError
from rollback.sandbox.vercel import VercelEmulator
from rollback.sandbox.vercel_state import DEMO


def settings(base_url: str, **extra: object) -> HealthSettings:
    values: dict[str, object] = {"base_url": base_url, "paths": ["/", "/api/health"], "version_path": "/api/version",
                                 "timeout": 1.0, **extra}
    return HealthSettings.model_validate(values)


def test_all_checks_pass_and_the_version_matches(emulator: VercelEmulator) -> None:
    config = settings(f"{emulator.url}/_app/demo")
    sha = emulator.state.deployments[DEMO.current].sha
    with make_health_client(config) as http:
        results = HealthChecker(http, config).run(expected_version=sha[:7])
    assert [r.ok for r in results] == [True, True, True]
    assert results[-1].value == sha
    assert results[0].to_dict()["status"] == 200


def test_an_unhealthy_app_and_a_wrong_version_fail(emulator: VercelEmulator) -> None:
    emulator.state.configure(unhealthy=[DEMO.current])
    config = settings(f"{emulator.url}/_app/demo")
    with make_health_client(config) as http:
        results = HealthChecker(http, config).run(expected_version="0" * 40)
    assert [r.ok for r in results] == [False, False, False]
    assert "HTTP 500, expected 200" in results[1].detail
    assert "expected 0000" in results[2].detail


def test_a_refused_connection_is_a_failed_check_not_an_exception() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = settings(f"http://127.0.0.1:{port}")
    with make_health_client(config) as http:
        results = HealthChecker(http, config).run()
    assert not any(r.ok for r in results)
    assert "ConnectError" in results[0].detail


def test_no_version_path_means_no_version_check(emulator: VercelEmulator) -> None:
    config = settings(f"{emulator.url}/_app/demo", version_path=None)
    with httpx.Client(base_url=config.base_url or "") as http:
        checker = HealthChecker(http, config)
        assert checker.check_version("abc") is None
        assert len(checker.run()) == 2


def test_missing_base_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        make_health_client(HealthSettings())


@pytest.mark.parametrize(("body", "content_type", "expected"), [
    ('{"commit": "abc1234"}', "application/json", "abc1234"),
    ('{"data": {"gitSha": "def5678"}}', "application/json", "def5678"),
    ("abc1234\n", "text/plain", "abc1234"),
    ("", "text/plain", None),
    ('{"unrelated": 1}', "application/json", None),
])
def test_extract_version(body: str, content_type: str, expected: str | None) -> None:
    assert extract_version(body, content_type) == expected


@pytest.mark.parametrize(("found", "expected", "ok"), [
    ("abc1234def", "abc1234", True), ("abc1234", "abc1234def", True), ("abc", "abcdef0", False),
    ("1.2.3", "1.2.3", True), (None, "abc1234", False), ("abc1235", "abc1234", False),
])
def test_versions_match(found: str | None, expected: str, ok: bool) -> None:
    assert versions_match(found, expected) is ok
