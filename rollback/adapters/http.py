"""HTTP for every adapter: httpx imported lean, and :func:`fetch`, the one way an answer is read.

**Reading an answer.** Every HTTP read rollback makes (health checks, verify's flows and timings,
``decide --live``, webhooks, the Vercel API) goes through :func:`fetch`: the answer is streamed and read
at most ``max_body`` bytes (after decompression; 1 MiB unless ``[http] max_body_bytes`` says otherwise)
within an overall ``deadline`` for the whole request, redirects included. A compressed answer is
decoded here, a bounded piece at a time (httpx would inflate each network chunk whole, and chain a decoder
per listed coding: a 600-byte ``gzip, gzip`` answer became 256 MiB before any cap was checked); only gzip
and deflate are asked for and read, any other coding is refused. httpx's own timeouts bound
each operation (connect, one read), not the request: a server that sends one byte a second never trips
them, and one that streams a gigabyte is read to the end. An answer that is longer or slower is not
read further and raises :class:`AnswerTooLarge` / :class:`AnswerTooSlow` (an :class:`AnswerRefused`),
which each caller turns into a failed check (or a failed call) with that reason. The deadline is
checked after every chunk read; each single read is also bounded by the time left, so a request ends
within its deadline plus at most one read timeout.

**Importing httpx.**
``import httpx`` also imports ``httpx._main`` (the ``httpx`` console script),
which pulls in ``rich``, ``pygments`` and the rest of a terminal UI, and
httpcore imports ``anyio`` (and tries ``trio``) for its async primitives;
recent anyio versions read and tokenize their own source on import. Together
that is about half of httpx's import time, paid by every ``rollback app``
command for things it never runs (our clients are synchronous).
:func:`import_httpx` imports httpx with those modules marked missing (httpx
then defines a stub ``main``, httpcore leaves async support off, exactly as
when those extras are not installed) and unmarks them, so an explicit import
of any of them later still works.
"""

from __future__ import annotations

import sys
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

from rollback.errors import OperationFailed

if TYPE_CHECKING:
    import httpx

__all__ = ["DEFAULT_MAX_BODY", "AnswerRefused", "AnswerTooLarge", "AnswerTooSlow", "Exchange", "exchange", "fetch",
           "format_size", "import_httpx", "make_client"]

DEFAULT_MAX_BODY = 1 << 20  # bytes: far more than a health answer, a JSON page of Vercel's API or a webhook reply


# Importing one of these while it maps to None raises ImportError, which httpx and httpcore catch.
UNUSED = ("httpx._main", "anyio", "trio")


def import_httpx() -> ModuleType:
    """``httpx``, imported without :data:`UNUSED` when this process has not imported it yet."""
    module = sys.modules.get("httpx")
    if module is not None:
        return module
    blocked = [name for name in UNUSED if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        import httpcore  # noqa: F401  # httpx imports it on the first Client: do it while anyio is blocked
        import httpx
    finally:
        for name in blocked:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
    return httpx


def make_client(base_url: str, *, timeout: float, concurrency: int, user_agent: str) -> httpx.Client:
    """A client for probing a site (``rollback verify``): redirects followed, ``concurrency`` connections."""
    httpx = import_httpx()
    return httpx.Client(base_url=base_url, timeout=timeout, follow_redirects=True,  # type: ignore[no-any-return]
                        headers={"User-Agent": user_agent},
                        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency))


@dataclass(frozen=True)
class Exchange:
    """One request and what came back: ``status`` is ``None`` when the transport failed (``error`` says how,
    ``timed_out`` whether it was a timeout)."""

    status: int | None
    body: str
    seconds: float
    content_type: str = ""
    error: str = ""
    timed_out: bool = False
    refused: bool = False  # too long or too slow (error says which): not read to its end


def exchange(http: httpx.Client, method: str, path: str, *, content: str | None = None,
             content_type: str | None = None, max_body: int = DEFAULT_MAX_BODY,
             deadline: float | None = None) -> Exchange:
    """Send one request (:func:`fetch`: at most ``max_body`` bytes, within ``deadline`` seconds, by
    default the client's read timeout); a transport failure, or an answer too long or too slow, is an
    :class:`Exchange` without a status, never an exception."""
    httpx = import_httpx()
    headers = {"Content-Type": content_type} if content is not None and content_type else None
    started = time.monotonic()
    try:
        response = fetch(http, method, path, content=content.encode() if content is not None else None,
                         headers=headers, max_body=max_body, deadline=deadline)
        body = response.text
    except AnswerRefused as exc:
        return Exchange(None, "", time.monotonic() - started, error=exc.reason, timed_out=exc.timed_out,
                        refused=True)
    except httpx.TimeoutException as exc:
        return Exchange(None, "", time.monotonic() - started, error=f"{type(exc).__name__}: {exc}", timed_out=True)
    except httpx.HTTPError as exc:
        return Exchange(None, "", time.monotonic() - started, error=f"{type(exc).__name__}: {exc}")
    return Exchange(response.status_code, body, time.monotonic() - started,
                    content_type=response.headers.get("Content-Type", ""))


# ------------------------------------------------------------------------------------------ fetch


class AnswerRefused(OperationFailed):
    """An answer :func:`fetch` stopped reading; ``reason`` says why in one line. Each caller turns it
    into its own failure (a failed check, a :class:`~rollback.errors.VercelError`); one that does not
    still ends as one line (exit 1)."""

    timed_out = False

    def __init__(self, reason: str, *, status: int | None = None, received: int = 0) -> None:
        super().__init__(reason, "check the server or the proxy in front of it")
        self.reason = reason
        self.status = status
        self.received = received


class AnswerTooLarge(AnswerRefused):
    """Longer than ``max_body`` bytes (announced by Content-Length, or read)."""


class AnswerTooSlow(AnswerRefused):
    """Not complete within the request's deadline."""

    timed_out = True


def format_size(size: int) -> str:
    """``1 MiB``, ``512 KiB``, ``300 bytes``."""
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= factor:
            value = size / factor
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{size} bytes"


def _capped_timeout(httpx: Any, current: Any, left: float) -> Any:
    """The client's per-operation timeouts, none longer than ``left`` seconds."""
    parts = {name: getattr(current, name) for name in ("connect", "read", "write", "pool")}
    return httpx.Timeout(**{name: left if value is None else min(value, left) for name, value in parts.items()})


_DROPPED_HEADERS = ("content-encoding", "content-length", "transfer-encoding")


def fetch(http: httpx.Client, method: str, url: str, *, max_body: int = DEFAULT_MAX_BODY,
          deadline: float | None = None, clock: Callable[[], float] = time.monotonic,
          **request: Any) -> httpx.Response:
    """Send one request through ``http`` and read its answer, streamed: at most ``max_body`` bytes
    (decoded) within ``deadline`` seconds for the whole request (default: the client's read timeout),
    redirects included (followed as the client is set to, at most ``http.max_redirects``).

    Returns the response with its body read (``.content``, ``.text``, ``.json()`` as usual; the
    ``Content-Encoding`` is gone: the body is decoded). Raises :class:`AnswerTooLarge`,
    :class:`AnswerTooSlow`, or httpx's errors (a refused connection, one read longer than its
    timeout). ``request``: ``build_request``'s keywords (``params``, ``json``, ``content``, ``headers``).
    """
    httpx = import_httpx()
    limit = float(deadline if deadline is not None else (http.timeout.read or 30.0))
    started = clock()
    ends = started + limit

    def left() -> float:
        remaining = ends - clock()
        if remaining <= 0:
            raise AnswerTooSlow(f"no complete answer within {limit:g} s (the request's deadline)")
        return remaining

    # Only what _decoded() reads with a bound: httpx would advertise (and inflate without one) zstd and br.
    headers = httpx.Headers(request.pop("headers", None))
    headers.setdefault("Accept-Encoding", ACCEPTED_CODINGS)
    outgoing = http.build_request(method, url, timeout=_capped_timeout(httpx, http.timeout, left()), headers=headers,
                                  **request)
    history: list[Any] = []  # the redirects followed (closed, their bodies unread)
    while True:
        response = http.send(outgoing, stream=True, follow_redirects=False)
        try:
            following = http.follow_redirects and response.next_request is not None
            if following and len(history) < http.max_redirects:
                history.append(response)
                assert response.next_request is not None
                outgoing = response.next_request
                outgoing.extensions["timeout"] = _capped_timeout(httpx, http.timeout, left()).as_dict()
                continue  # the redirect's own body is never read
            if following:
                raise httpx.TooManyRedirects("Exceeded maximum allowed redirects.", request=outgoing)
            body = _read_capped(response, max_body, limit, ends, clock)
        finally:
            response.close()
        headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in _DROPPED_HEADERS]
        read = httpx.Response(response.status_code, headers=headers, content=body, request=response.request,
                              extensions={k: v for k, v in response.extensions.items() if k == "http_version"})
        read.history = history
        return read  # type: ignore[no-any-return]


ACCEPTED_CODINGS = "gzip, deflate"
PIECE = 64 << 10  # bytes one decoding step produces at most


class _Inflater:
    """One content coding undone with a bound on what each step produces (``zlib``'s ``max_length``)."""

    def __init__(self, coding: str) -> None:
        self.coding = coding
        # gzip: the gzip header; deflate: RFC 9110 says zlib-wrapped, some servers send it raw (as httpx allows)
        self.unpacker = zlib.decompressobj(zlib.MAX_WBITS | 16 if coding in ("gzip", "x-gzip") else zlib.MAX_WBITS)
        self.first = True

    def feed(self, data: bytes) -> Iterator[bytes]:
        while True:
            try:
                piece = self.unpacker.decompress(data, PIECE)
            except zlib.error as exc:
                if self.first and self.coding == "deflate":
                    self.unpacker, self.first = zlib.decompressobj(-zlib.MAX_WBITS), False
                    continue
                raise AnswerRefused(f"the answer's {self.coding} encoding is broken ({exc})") from None
            self.first = False
            data = self.unpacker.unconsumed_tail
            if piece:
                yield piece
            if not data and len(piece) < PIECE:
                return

    def drain(self, pieces: Iterable[bytes]) -> Iterator[bytes]:
        for data in pieces:
            yield from self.feed(data)
        rest = self.unpacker.flush()
        if rest:
            yield rest


def _decoded(response: httpx.Response) -> Iterator[bytes]:
    """The body, its content codings undone (last applied, first undone), in pieces of at most :data:`PIECE`."""
    if hasattr(response, "_content"):  # read and decoded already (an in-process transport: httpx.MockTransport)
        return iter((response.content,))
    codings = [c.strip().lower() for c in response.headers.get("Content-Encoding", "").split(",") if c.strip()]
    codings = [c for c in codings if c != "identity"]
    for coding in codings:
        if coding not in ("gzip", "x-gzip", "deflate"):
            raise AnswerRefused(f"the answer is encoded as {coding!r}, which rollback does not read (it asks for "
                                f"{' or '.join(ACCEPTED_CODINGS.split(', '))})", status=response.status_code)
    pieces: Iterable[bytes] = response.iter_raw()
    for coding in reversed(codings):
        pieces = _Inflater(coding).drain(pieces)
    return iter(pieces)


def _read_capped(response: httpx.Response, max_body: int, limit: float, ends: float,
                 clock: Callable[[], float]) -> bytes:
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_body and not response.headers.get("Content-Encoding"):
        raise AnswerTooLarge(f"the answer is {format_size(int(declared))}, more than the {format_size(max_body)} "
                             "rollback reads (not read)", status=response.status_code)
    chunks: list[bytes] = []
    size = 0
    for chunk in _decoded(response):
        size += len(chunk)
        if size > max_body:
            raise AnswerTooLarge(f"the answer is longer than {format_size(max_body)} (stopped reading it there)",
                                 status=response.status_code, received=size)
        chunks.append(chunk)
        if clock() > ends:
            raise AnswerTooSlow(f"the answer was not complete within {limit:g} s (the request's deadline; "
                                f"{format_size(size)} read)", status=response.status_code, received=size)
    return b"".join(chunks)
