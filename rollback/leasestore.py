"""What the team lease needs of an object store (:class:`LeaseStore`), and the lease as read from it
(:class:`LeaseObject`). :mod:`rollback.lock` holds the lease through it; :mod:`rollback.adapters.s3_lease`
is the S3 store. Pure: no I/O here.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

__all__ = ["LeaseObject", "LeaseStore"]


@dataclass(frozen=True)
class LeaseObject:
    """The lease as read from the store."""

    body: dict[str, Any]
    etag: str
    last_modified: dt.datetime | None
    server_now: dt.datetime | None  # the response's Date: S3's clock

    def expired(self, local_now: dt.datetime) -> bool:
        ttl = self.body.get("ttl")
        if self.last_modified is not None and self.server_now is not None and isinstance(ttl, (int, float)):
            return self.server_now > self.last_modified + dt.timedelta(seconds=float(ttl))
        expires = self.body.get("expires_at")
        try:
            moment = dt.datetime.fromisoformat(str(expires).replace("Z", "+00:00"))
        except ValueError:
            return True  # a lease nobody can read protects nothing
        return local_now > moment


class LeaseStore(Protocol):
    """Conditional writes on one object store (``rollback.adapters.s3_lease.S3LeaseStore``)."""

    def create(self, key: str, body: bytes) -> str | None:
        """Put if absent (``If-None-Match: *``): the new ETag, or None when it exists."""

    def replace(self, key: str, body: bytes, etag: str) -> str | None:
        """Put if unchanged (``If-Match``): the new ETag, or None when it changed or is gone."""

    def read(self, key: str) -> LeaseObject | None:
        """The object, or None when there is none."""

    def delete(self, key: str, etag: str) -> bool:
        """Delete if unchanged (``If-Match``); False when it changed."""

    def upload(self, key: str, path: Path) -> None:
        """Copy a local file (a journal, an incident) to the store."""

    def keys(self, prefix: str, *, after: str = "") -> list[str]:
        """The keys under ``prefix`` that sort after ``after``."""

    def fetch(self, key: str) -> bytes | None:
        """An object's bytes, or None when there is none."""
