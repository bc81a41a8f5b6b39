"""Every HTTP read is streamed with a byte cap and a deadline for the whole request (issue 18, item 4).

Against a real local server (tests/app/hostile_http.py) that streams an endless body, sends one byte a
second, announces 2 GiB, or sends a gzip bomb: the health checks (``verify``, ``run``'s health step,
``decide --live``), the verify flows and timings, the Vercel client and the webhook each stop reading at
``[http] max_body_bytes`` (1 MiB by default, decoded bytes) or at their deadline (``health.timeout``,
the Vercel client's read timeout, ``notify.timeout``), and report a failed check or call with the reason.
httpx's own ``timeout`` bounds each read, not the request: before this, the byte-a-second answer passed
after 30 s (or hung ``run`` for as long as the origin kept dripping) and the endless one was read whole.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rollback.adapters.health import HealthChecker, make_health_client
from rollback.config import HealthSettings
from tests.app.hostile_http import DRIP_BYTES, DRIP_PACE, HostileServer, hostile_server
from tests.conftest import CliResult, render_config

RunCli = Callable[..., CliResult]


@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    with hostile_server() as server:
        yield server


def check(server: HostileServer, path: str, *, timeout: float = 5.0, **kwargs: int) -> tuple[bool, str]:
    settings = HealthSettings(base_url=server.url, paths=[path], timeout=timeout)
    with make_health_client(settings) as http:
        result = HealthChecker(http, settings, **kwargs).check_path(path)
    return result.ok, result.detail


def test_an_endless_body_is_a_failed_check_at_the_cap(hostile: HostileServer) -> None:
    ok, detail = check(hostile, "/endless")
    assert not ok and detail == "the answer is longer than 1 MiB (stopped reading it there)"
    assert hostile.served["endless"] < 64 << 20  # the origin was cut off, not read to its end


def test_a_byte_a_second_is_a_failed_check_at_the_deadline(hostile: HostileServer) -> None:
    started = time.monotonic()
    ok, detail = check(hostile, "/drip", timeout=1.5)
    assert not ok and detail.startswith("the answer was not complete within 1.5 s (the request's deadline;")
    assert hostile.served["drip"] < DRIP_BYTES  # given up long before the answer ended
    assert time.monotonic() - started < DRIP_BYTES * DRIP_PACE  # (a sanity bound, not a performance figure)


def test_an_announced_length_over_the_cap_is_not_read(hostile: HostileServer) -> None:
    ok, detail = check(hostile, "/announced")
    assert not ok and detail == "the answer is 2 GiB, more than the 1 MiB rollback reads (not read)"


def test_the_cap_counts_decoded_bytes_and_is_configurable(hostile: HostileServer) -> None:
    ok, detail = check(hostile, "/bomb")  # 20 KiB on the wire, 20 MiB decoded
    assert not ok and "longer than 1 MiB" in detail
    ok, detail = check(hostile, "/bomb", max_body=32 << 20)
    assert ok, detail


def _config(tmp_path: Path, server: HostileServer, *paths: str, max_body: int | None = None) -> Path:
    path = tmp_path / "rollback.toml"
    text = render_config({"test": {"health": {"base_url": server.url, "paths": list(paths), "timeout": 1.5},
                                   "verify": {"flows": [{"name": "home", "path": paths[0], "status": 200}],
                                              "requests": 2, "concurrency": 2}}},
                         default_env="test", journal_dir=str(tmp_path / "runs"))
    if max_body is not None:
        text += f"[http]\nmax_body_bytes = {max_body}\n"
    path.write_text(text, encoding="utf-8")
    return path


def test_verify_fails_with_the_reason_instead_of_reading_for_ever(hostile: HostileServer, tmp_path: Path,
                                                                  run_cli: RunCli,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROLLBACK_CONFIG", str(_config(tmp_path, hostile, "/endless", "/drip")))
    result = run_cli("verify", "--json")
    assert result.code == 3, result.err
    items = {i["id"]: i for i in result.json()["items"]}
    assert items["health./endless"]["status"] == "fail"
    assert "longer than 1 MiB" in items["health./endless"]["detail"]
    assert items["health./drip"]["status"] == "fail"
    assert "not complete within 1.5 s" in items["health./drip"]["detail"]
    flow = next(i for i in items.values() if i["id"].startswith("flow"))
    assert flow["status"] == "fail" and "longer than 1 MiB" in flow["detail"], flow


def test_the_cap_comes_from_the_config(hostile: HostileServer, tmp_path: Path, run_cli: RunCli,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROLLBACK_CONFIG", str(_config(tmp_path, hostile, "/bomb", max_body=32 << 20)))
    result = run_cli("verify", "--json")
    items = {i["id"]: i for i in result.json()["items"]}
    assert items["health./bomb"]["status"] == "pass", items["health./bomb"]
    shown = run_cli("config", "check", "--json").json()
    assert shown["http"] == {"max_body_bytes": 32 << 20}


def test_the_vercel_client_refuses_an_endless_or_dripping_answer(hostile: HostileServer) -> None:
    from rollback.adapters.vercel import VercelClient, make_http_client
    from rollback.errors import VercelError

    with make_http_client(f"{hostile.url}/endless", "token") as http, pytest.raises(VercelError) as endless:
        VercelClient(http, max_attempts=1).get_project("demo")
    assert endless.value.code == "too_large" and "longer than 1 MiB" in endless.value.message
    with make_http_client(f"{hostile.url}/drip", "token", timeout=1.0) as http, pytest.raises(VercelError) as drip:
        VercelClient(http, deadline=3.0, max_attempts=2, sleep=lambda s: None).get_project("demo")
    assert drip.value.code == "timeout" and "not complete within 1 s" in drip.value.message
    assert hostile.served["drip"] < DRIP_BYTES


def test_a_webhook_that_drips_is_given_up_at_its_timeout(hostile: HostileServer) -> None:
    from rollback.notify import Notifier

    lines: list[str] = []
    notifier = Notifier(f"{hostile.url}/drip/services/T0/B0/secret", env="production", timeout=1.0, attempts=1,
                        stderr=lines.append)
    notifier.post("rolling back")
    report = notifier.close(timeout=10)
    assert report.failed == 1 and report.sent == 0
    assert any("not complete within 1 s" in line for line in lines), lines
    endless = Notifier(f"{hostile.url}/endless/services/T0/B0/secret", env="production", timeout=5.0, attempts=1,
                       stderr=lines.append)
    endless.post("rolling back")
    assert endless.close(timeout=10).sent == 1  # a 200 with a body too long to read: delivered all the same
