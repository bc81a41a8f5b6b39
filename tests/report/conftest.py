"""Fixtures for the report and notification tests.

- ``incident``: a realistic incident on disk (``fixture_incident``): the record, two run
  journals, verify documents and a ``rollback.toml``; the working directory is its root.
- ``receiver``: a local webhook receiver (a thread HTTP server, real HTTP) that records
  every post and can be told to answer 500, 429 or to hang.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from rollback.sandbox.serving import QuietDisconnects
from tests.report.fixture_incident import IncidentFixture, write_incident


@pytest.fixture
def incident(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> IncidentFixture:
    fixture = write_incident(tmp_path, monkeypatch)
    monkeypatch.undo()  # the fake clock was only for writing the journals
    monkeypatch.chdir(tmp_path)
    for name in ("ROLLBACK_CONFIG", "ROLLBACK_ENV", "ROLLBACK_JOURNAL_DIR", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    # No AWS credentials and no endpoint: CloudWatch is "not measured" unless a test points it at moto.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    return fixture


@dataclass
class Receiver:
    url: str
    posts: list[dict[str, Any]] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    mode: str = "ok"  # ok | 500 | 429 | hang | 429-once (one 429 with Retry-After, then ok)
    release: threading.Event = field(default_factory=threading.Event)
    got: threading.Condition = field(default_factory=threading.Condition)

    def texts(self) -> list[str]:
        return [str(p.get("text")) for p in self.posts]

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> bool:
        with self.got:
            return self.got.wait_for(lambda: predicate(self), timeout=timeout)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook at ``http://127.0.0.1:PORT/services/T0/B0/<secret path>``."""
    state = Receiver(url="")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with state.got:
                state.raw.append(body)
                state.paths.append(self.path)
            if state.mode == "hang":
                state.release.wait(30)
                return
            answer = state.mode
            if answer == "429-once":
                state.mode, answer = "ok", "429"
            # Recorded before the answer goes out: the sender sends its next post (or ends) as soon as it
            # has the answer, and another handler thread must not record that one first.
            with state.got:
                if answer == "ok":
                    state.posts.append(json.loads(body))
                state.got.notify_all()
            if answer in ("500", "429"):
                self.send_response(int(answer))
                if answer == "429":
                    self.send_header("Retry-After", "1")
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    class Server(QuietDisconnects, http.server.ThreadingHTTPServer):
        pass

    server = Server(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/services/T0/B0/s3cretWebhookPath42"
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()
