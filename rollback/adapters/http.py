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
from types import ModuleType

__all__ = ["import_httpx"]


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
