"""The byte cap holds for compressed answers too: memory stays bounded, whatever the encoding.

The cap counts decoded bytes, but httpx decodes each network chunk (up to 64 KiB) in one call with no
limit on what it produces, and chains one decoder per ``Content-Encoding`` it lists. So a 590-byte answer
sent as ``Content-Encoding: gzip, gzip`` (RFC 9110 section 8.4: codings listed in the order applied) made
``fetch`` hold 256 MiB at once before the cap was checked, and a plain gzip chunk of 64 KiB grew to 64 MiB;
``zstd`` (httpx decodes it when ``zstandard`` is installed, as rollback's own dependencies install it)
has no such bound at all. A broken proxy or a hostile origin must not exhaust the machine in the
incident: fetch decodes gzip and deflate itself, a bounded piece at a time, asks for nothing else
(``Accept-Encoding: gzip, deflate``), and refuses any other coding as a failed answer.

Against a real local HTTP server; memory measured with tracemalloc (zlib's output buffers are Python
bytes objects, which it tracks).
"""

from __future__ import annotations

import http.server
import threading
import tracemalloc
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from rollback.adapters.health import HealthChecker, make_health_client
from rollback.adapters.http import AnswerRefused, AnswerTooLarge, fetch, import_httpx
from rollback.config import HealthSettings

MiB = 1 << 20


def _gzip(data: bytes) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    return packer.compress(data) + packer.flush()


def _gzip_zeros(size: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b"\0" * MiB
    return b"".join(packer.compress(block) for _ in range(size // MiB)) + packer.flush()


def _zstd_zeros(size: int) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor().compress(b"\0" * size)


ANSWERS: dict[str, tuple[str, bytes]] = {}  # path -> (Content-Encoding, body), built once


def answers() -> dict[str, tuple[str, bytes]]:
    if not ANSWERS:
        ANSWERS["/double"] = ("gzip, gzip", _gzip(_gzip_zeros(256 * MiB)))  # 590 bytes -> 256 MiB
        ANSWERS["/single"] = ("gzip", _gzip_zeros(100 * MiB))  # 64 KiB chunks of ~64 MiB each
        ANSWERS["/zstd"] = ("zstd", _zstd_zeros(64 * MiB))
        ANSWERS["/small"] = ("gzip", _gzip(b'{"ok": true}'))
        ANSWERS["/deflate"] = ("deflate", zlib.compress(b'{"ok": "deflate"}'))
        raw = zlib.compressobj(9, zlib.DEFLATED, -15)
        ANSWERS["/raw-deflate"] = ("deflate", raw.compress(b'{"ok": "raw"}') + raw.flush())
        ANSWERS["/chained"] = ("deflate, gzip", _gzip(zlib.compress(b'{"ok": "chained"}')))
    return ANSWERS


@contextmanager
def encoded_server() -> Iterator[tuple[str, list[str]]]:
    asked: list[str] = []  # the Accept-Encoding of each request

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return

        def do_GET(self) -> None:
            asked.append(self.headers.get("Accept-Encoding", ""))
            coding, body = answers()[self.path]
            try:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Encoding", coding)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", asked
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, list[str]]]:
    answers()  # built before any measurement
    with encoded_server() as made:
        yield made


def peak_while(path: str, url: str) -> tuple[BaseException | None, int]:
    httpx = import_httpx()
    with httpx.Client(timeout=10) as http:
        tracemalloc.start()
        try:
            fetch(http, "GET", url + path)
        except AnswerRefused as exc:
            return exc, tracemalloc.get_traced_memory()[1]
        finally:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    return None, peak


@pytest.mark.parametrize("path", ["/double", "/single"])
def test_a_gzip_bomb_is_refused_at_the_cap_without_inflating_it(server: tuple[str, list[str]], path: str) -> None:
    url, _ = server
    error, peak = peak_while(path, url)
    assert isinstance(error, AnswerTooLarge), error
    assert error.reason == "the answer is longer than 1 MiB (stopped reading it there)"
    assert peak < 16 * MiB, f"{peak / MiB:.0f} MiB held to read a {len(ANSWERS[path][1])}-byte answer"


def test_a_coding_rollback_did_not_ask_for_is_refused(server: tuple[str, list[str]]) -> None:
    url, asked = server
    error, peak = peak_while("/zstd", url)
    assert isinstance(error, AnswerRefused), error
    assert error.reason == "the answer is encoded as 'zstd', which rollback does not read (it asks for gzip or deflate)"
    assert peak < 16 * MiB
    assert asked[-1] == "gzip, deflate"  # never advertised


@pytest.mark.parametrize(("path", "text"), [("/small", '{"ok": true}'), ("/deflate", '{"ok": "deflate"}'),
                                            ("/raw-deflate", '{"ok": "raw"}'), ("/chained", '{"ok": "chained"}')])
def test_ordinary_compressed_answers_still_read(server: tuple[str, list[str]], path: str, text: str) -> None:
    url, _ = server
    httpx = import_httpx()
    with httpx.Client(timeout=10) as http:
        response = fetch(http, "GET", url + path)
    assert response.text == text
    assert "content-encoding" not in response.headers  # the body is decoded


def test_a_health_check_against_a_bomb_fails_with_the_reason(server: tuple[str, list[str]]) -> None:
    url, _ = server
    settings = HealthSettings(base_url=url, paths=["/double"], timeout=5)
    with make_health_client(settings) as http:
        result = HealthChecker(http, settings).check_path("/double")
    assert not result.ok and result.detail == "the answer is longer than 1 MiB (stopped reading it there)"
