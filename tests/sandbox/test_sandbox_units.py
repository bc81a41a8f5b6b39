"""The sandbox's pure parts: percentiles, the app's measurement window, exports, where journals go."""

from __future__ import annotations

import shlex
import time
from pathlib import Path

import pytest

from rollback.sandbox.app import AppServer
from rollback.sandbox.cloudwatch import percentile
from rollback.sandbox.processes import ProcessRef, process_ref, start_time_of
from rollback.sandbox.seed_config import journal_dir_for
from rollback.sandbox.world import SandboxInfo


@pytest.mark.parametrize(("values", "stat", "expected"), [
    ([float(i) for i in range(1, 101)], "p95", 95.0),
    ([float(i) for i in range(1, 101)], "p50", 50.0),
    ([float(i) for i in range(1, 101)], "p99.9", 100.0),
    ([3.0], "p95", 3.0),
    ([], "p95", None),
    ([1.0, 2.0], "Average", None),
    ([1.0, 2.0], "p101", None),
])
def test_percentile_nearest_rank(values: list[float], stat: str, expected: float | None) -> None:
    assert percentile(values, stat) == expected


def test_measurement_counts_requests_by_start_time_after_they_settle() -> None:
    app = AppServer("http://127.0.0.1:1", "demo")
    now = time.monotonic()
    # A probe batch sent 3 s ago: one fast 200, one slow 500 that took 1.5 s; and one sent just now.
    app.record(now - 3.0, 200, 0.01)
    app.record(now - 3.0, 500, 1.5)
    app.record(now - 0.1, 200, 0.01)
    settled = app.measure(4.0, settle=2.0)
    assert (settled.requests, settled.errors_5xx, settled.error_rate) == (2, 1, 50.0)
    assert settled.p95_ms == pytest.approx(1500)
    assert app.measure(4.0, settle=2.0, since=now - 1).requests == 0  # a new world ignores older answers
    assert app.measure(4.0).requests == 3


def test_shell_exports_survive_eval_quoting() -> None:
    info = SandboxInfo(dir=Path("/tmp/x"), state="ready", pids={}, ports={}, urls={},
                       env={"ROLLBACK_CONFIG": "/tmp/a b/rollback.toml", "VERCEL_ARGS": "--api http://h --token t",
                            "DATABASE_URL": "postgresql://app:p'w$x@h:1/app"}, world={})
    lines = info.shell().splitlines()
    assert lines[0].startswith("export ROLLBACK_CONFIG=")
    parsed = dict(shlex.split(line)[1].split("=", 1) for line in lines)
    assert parsed == {"ROLLBACK_CONFIG": "/tmp/a b/rollback.toml", "DATABASE_URL": "postgresql://app:p'w$x@h:1/app",
                      "VERCEL_ARGS": "--api http://h --token t", "DATABASE_NAME": "app"}


@pytest.mark.parametrize(("directory", "expected"), [
    ("/w/.rollback/sandbox", "/w/.rollback/runs"),
    ("/tmp/practice", "/tmp/practice/runs"),
])
def test_journals_go_beside_a_dot_rollback_sandbox(directory: str, expected: str) -> None:
    assert journal_dir_for(Path(directory)) == Path(expected)


def test_process_identity_includes_the_start_time() -> None:
    import os

    me = process_ref("me", os.getpid())
    assert me.start_time == start_time_of(os.getpid()) is not None
    assert ProcessRef.from_dict(me.to_dict()) == me


def test_a_client_that_hangs_up_is_not_a_server_error(capsys: pytest.CaptureFixture[str]) -> None:
    """socketserver prints a traceback for every error of a request; a client that hung up (a timeout, a byte
    cap) is not one, and its traceback would land in whatever the process prints (a drill's progress, the
    captured stderr of another test)."""
    import socketserver

    from rollback.sandbox.serving import QuietDisconnects, quiet_disconnects

    class Server(QuietDisconnects, socketserver.TCPServer):
        pass

    server = Server(("127.0.0.1", 0), socketserver.BaseRequestHandler)
    plain = socketserver.TCPServer(("127.0.0.1", 0), socketserver.BaseRequestHandler)
    quiet_disconnects(plain)
    try:
        for each in (server, plain):
            for error in (BrokenPipeError(32, "Broken pipe"), ConnectionResetError(104, "reset")):
                try:
                    raise error
                except OSError:
                    each.handle_error(None, ("127.0.0.1", 1))
            assert capsys.readouterr().err == ""
            try:
                raise ValueError("a real bug")
            except ValueError:
                each.handle_error(None, ("127.0.0.1", 1))
            assert "ValueError: a real bug" in capsys.readouterr().err
    finally:
        server.server_close()
        plain.server_close()
