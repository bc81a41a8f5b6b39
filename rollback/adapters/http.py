"""Import httpx for an adapter, without what a synchronous client never uses.

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
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

__all__ = ["Exchange", "exchange", "import_httpx", "make_client"]


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


def exchange(http: httpx.Client, method: str, path: str, *, content: str | None = None,
             content_type: str | None = None) -> Exchange:
    """Send one request; a transport failure is an :class:`Exchange` without a status, never an exception."""
    httpx = import_httpx()
    headers = {"Content-Type": content_type} if content is not None and content_type else None
    started = time.monotonic()
    try:
        response = http.request(method, path, content=content.encode() if content is not None else None,
                                headers=headers)
        body = response.text
    except httpx.TimeoutException as exc:
        return Exchange(None, "", time.monotonic() - started, error=f"{type(exc).__name__}: {exc}", timed_out=True)
    except httpx.HTTPError as exc:
        return Exchange(None, "", time.monotonic() - started, error=f"{type(exc).__name__}: {exc}")
    return Exchange(response.status_code, body, time.monotonic() - started,
                    content_type=response.headers.get("Content-Type", ""))
