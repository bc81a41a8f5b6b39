"""A real local HTTP server whose answers a broken origin or proxy could give (issue 18, item 4).

- ``/endless``: 200 and a body that never ends (64 KiB chunks, no Content-Length), as a misbehaving
  origin streams a gigabyte. For the sake of the code before the fix (which read it all), the stand-in
  gives up after ``ENDLESS_CAP`` bytes: the old code then fails an assertion instead of exhausting
  the machine.
- ``/drip``: 200 with ``Content-Length: DRIP_BYTES`` and one byte every ``DRIP_PACE`` s (30 s in all):
  every single read is quick, so httpx's per-operation timeouts (1 s in the tests) never trip, even on
  a loaded machine; only a deadline for the whole request stops it. (At one byte a second each read
  waited as long as the read timeout, and a loaded machine tripped it first.)
- ``/announced``: 200 and ``Content-Length`` of 2 GiB (nothing more sent): refused before reading.
- ``/bomb``: a gzip body of 20 MiB of zeros (a few KiB on the wire): the cap counts decoded bytes.
- anything else: ``{"ok": true}``.

The first path segment chooses, so ``URL/endless`` works as a base URL; every path answers any
method. ``served`` counts the bytes each path sent.
"""

from __future__ import annotations

import gzip
import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

ENDLESS_CAP = 200 << 20
DRIP_PACE = 0.2
DRIP_BYTES = 150  # 30 s at DRIP_PACE
CHUNK = b"x" * 65536
BOMB = gzip.compress(b"\0" * (20 << 20))


@dataclass
class HostileServer:
    url: str
    served: dict[str, int] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)


@contextmanager
def hostile_server() -> Iterator[HostileServer]:
    state = HostileServer(url="")

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return

        def _count(self, path: str, size: int) -> None:
            state.served[path] = state.served.get(path, 0) + size

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            # the first path segment chooses (/endless/v9/projects/x: a Vercel API base URL of /endless)
            path = self.path.split("?", 1)[0].lstrip("/").split("/", 1)[0]
            try:
                if path == "endless":
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    sent = 0
                    while sent < ENDLESS_CAP and not state.stop.is_set():
                        self.wfile.write(CHUNK)
                        sent += len(CHUNK)
                        self._count(path, len(CHUNK))
                elif path == "drip":
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(DRIP_BYTES))
                    self.end_headers()
                    for _ in range(DRIP_BYTES):
                        self.wfile.write(b" ")
                        self.wfile.flush()
                        self._count(path, 1)
                        if state.stop.wait(DRIP_PACE):  # the stand-in's own pace, not a test's wait
                            return
                elif path == "announced":
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(2 << 30))
                    self.end_headers()
                    self.wfile.write(b"x" * 1024)
                    self.wfile.flush()
                    state.stop.wait(30)
                elif path == "bomb":
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Encoding", "gzip")
                    self.send_header("Content-Length", str(len(BOMB)))
                    self.end_headers()
                    self.wfile.write(BOMB)
                    self._count(path, len(BOMB))
                else:
                    body = b'{"ok": true}'
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                return  # the client stopped reading: what a capped reader does

        do_GET = do_POST = do_PATCH = do_HEAD = _answer

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.stop.set()
        server.shutdown()
        server.server_close()
