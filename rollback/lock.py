"""One state-changing run per environment at a time: a local lock, and a team-wide lease.

Two on-call engineers rolling back the same environment at once is how an
incident gets worse.

**Local lock** (always). :func:`acquire` takes an exclusive ``flock`` on a file
keyed on the environment's identity (the config file's path and the
environment's name, hashed), in one well-known per-user directory,
``~/.cache/rollback/locks`` (``$ROLLBACK_LOCK_DIR`` overrides it). It does not
depend on the journal directory, so two runs with different
``ROLLBACK_JOURNAL_DIR`` cannot both act on one environment. The file holds who
holds it; a second run gets :class:`~rollback.errors.LockHeld` (exit 4) naming
the holder. The kernel drops the lock when the process ends, so a crashed run
never leaves a stale lock.

**Team lease** (``[lock] url = "s3://bucket/prefix"``, global or per
environment). Laptops share no kernel, so the lease is an S3 object,
``<prefix>/locks/<env>.json``, written with conditional writes:

- take: ``PutObject`` with ``If-None-Match: *`` (412 when someone holds it);
- renew: ``PutObject`` with ``If-Match: <our ETag>``, every ``ttl / 3`` seconds
  from a background thread while the run lasts;
- release: ``DeleteObject`` with ``If-Match: <our ETag>``;
- take over: only when the lease has expired (judged on S3's clock: the
  object's ``Last-Modified`` plus its ``ttl`` against the response's ``Date``),
  with ``If-Match`` on the expired object's ETag, so two takers cannot both win.

The object holds holder, host, pid, run id, command and expiry; a refused run
exits 4 naming them. When the lease is set, journals and incidents are copied
to ``<prefix>/runs/`` and ``<prefix>/incidents/`` so the whole team sees one
history. A lease lost while the run lasts (renewals failed past the expiry
and someone took over) stops the run before its next step.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from rollback.errors import BadInput, LockHeld

__all__ = [
    "Lease",
    "LeaseObject",
    "LeaseStore",
    "RunLock",
    "TeamLock",
    "acquire",
    "describe_holder",
    "lock_dir",
    "lock_path",
    "parse_s3_url",
]


def lock_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The one well-known per-user directory of local locks."""
    env = os.environ if environ is None else environ
    override = env.get("ROLLBACK_LOCK_DIR")
    if override:
        return Path(override).expanduser()
    return Path.home() / ".cache" / "rollback" / "locks"


def lock_path(identity: str, environ: Mapping[str, str] | None = None) -> Path:
    digest = hashlib.sha256(identity.encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return lock_dir(environ) / f"{digest}.lock"


def describe_holder(holder: Mapping[str, Any]) -> str:
    who = f"{holder.get('who', '?')}@{holder.get('host', '?')} (pid {holder.get('pid', '?')})"
    return f"run {holder.get('run', '?')} by {who}: {holder.get('command', '?')}"


# ------------------------------------------------------------------------------------------ the S3 lease


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


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ``("bucket", "some/prefix")``."""
    if not url.startswith("s3://"):
        raise BadInput(f"lock.url {url!r} is not an s3:// URL", 'write it as lock.url = "s3://bucket/prefix"')
    bucket, _, prefix = url[len("s3://"):].partition("/")
    if not bucket:
        raise BadInput(f"lock.url {url!r} names no bucket", 'write it as lock.url = "s3://bucket/prefix"')
    return bucket, prefix.strip("/")


@dataclass
class TeamLock:
    """Where the team lease and the shared history live."""

    url: str
    ttl: float = 60.0
    store_factory: Callable[[str], LeaseStore] | None = None  # bucket -> store; default: S3 via boto3
    _store: LeaseStore | None = field(default=None, repr=False)

    @property
    def bucket(self) -> str:
        return parse_s3_url(self.url)[0]

    @property
    def prefix(self) -> str:
        return parse_s3_url(self.url)[1]

    def key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def store(self) -> LeaseStore:
        if self._store is None:
            if self.store_factory is not None:
                self._store = self.store_factory(self.bucket)
            else:
                from rollback.adapters.s3_lease import open_store

                self._store = open_store(self.bucket)
        return self._store

    def lease(self, env: str, holder: Mapping[str, Any]) -> Lease:
        return Lease(self.store(), self.key("locks", f"{env}.json"), dict(holder), self.ttl, env,
                     prefix=self.prefix)

    def copy(self, kind: str, path: Path) -> None:
        """Copy a journal (``runs``) or an incident (``incidents``) file to the shared prefix."""
        self.store().upload(self.key(kind, path.name), path)


class Lease:
    """A lease on one S3 object, held while a run lasts."""

    def __init__(self, store: LeaseStore, key: str, holder: dict[str, Any], ttl: float, env: str, *,
                 prefix: str = "", clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> None:
        self.store = store
        self.prefix = prefix
        self.key = key
        self.holder = holder
        self.ttl = ttl
        self.env = env
        self.clock = clock
        self.etag: str | None = None
        self.taken_over: dict[str, Any] | None = None  # the expired holder we replaced
        self.lost: str | None = None
        self.renewals = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._mutex = threading.Lock()
        self.mirrors: list[tuple[str, Path]] = []  # (kind, file) copied on each renewal and at release

    def _body(self) -> bytes:
        now = self.clock()
        expires = now + dt.timedelta(seconds=self.ttl)
        body = {**self.holder, "env": self.env, "ttl": self.ttl,
                "renewed_at": now.isoformat(timespec="seconds").replace("+00:00", "Z"),
                "expires_at": expires.isoformat(timespec="seconds").replace("+00:00", "Z"),
                # a fresh nonce each write: the ETag (an MD5 of the body) changes even within one second
                "nonce": secrets.token_hex(8)}
        return json.dumps(body, sort_keys=True).encode()

    def _refuse(self, other: Mapping[str, Any], expires_in: str = "") -> LockHeld:
        return LockHeld(
            f"another rollback run holds the team lock on env {self.env!r}: {describe_holder(other)}{expires_in}",
            f"wait for it to finish; the lease ({self.key}) expires {self.ttl:g} s after its holder stops "
            "renewing it",
            holder=dict(other),
        )

    def take(self) -> None:
        """Take the lease, or take over an expired one; :class:`LockHeld` when someone holds it."""
        for _ in range(3):
            etag = self.store.create(self.key, self._body())
            if etag is not None:
                self.etag = etag
                return
            current = self.store.read(self.key)
            if current is None:
                continue  # released between our two calls: try again
            if not current.expired(self.clock()):
                raise self._refuse(current.body, _expires_in(current))
            etag = self.store.replace(self.key, self._body(), current.etag)
            if etag is not None:
                self.etag = etag
                self.taken_over = current.body
                return
            # someone else renewed or took it over in between: look again
        current = self.store.read(self.key)
        raise self._refuse(current.body if current else {})

    def renew(self) -> bool:
        """Extend the lease (If-Match on our ETag). False (and ``lost`` set) when it is no longer ours."""
        with self._mutex:
            if self.etag is None or self.lost:
                return False
            etag = self.store.replace(self.key, self._body(), self.etag)
            if etag is None:
                current = self.store.read(self.key)
                self.lost = ("the team lease was taken over: " + describe_holder(current.body)) if current else (
                    "the team lease was removed by someone else")
                return False
            self.etag = etag
            self.renewals += 1
            return True

    def mirror_now(self) -> None:
        self._mirror()

    def _mirror(self) -> None:
        for kind, path in list(self.mirrors):
            with contextlib.suppress(Exception):
                if path.exists():
                    self.store.upload("/".join(p for p in (self.prefix, kind, path.name) if p), path)

    def _loop(self) -> None:
        interval = max(1.0, self.ttl / 3)
        while not self._stop.wait(interval):
            try:
                if not self.renew():
                    return
            except Exception:  # a network blip: try again next tick; the lease outlives two missed renewals
                continue
            self._mirror()

    def start_renewing(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"rollback-lease-{self.env}", daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._mirror()
        with self._mutex:
            if self.etag is not None and not self.lost:
                with contextlib.suppress(Exception):
                    self.store.delete(self.key, self.etag)
            self.etag = None


def _expires_in(current: LeaseObject) -> str:
    ttl = current.body.get("ttl")
    if current.last_modified and current.server_now and isinstance(ttl, (int, float)):
        left = (current.last_modified + dt.timedelta(seconds=float(ttl)) - current.server_now).total_seconds()
        return f" (lease expires in {max(0, round(left))} s unless renewed)"
    return ""


# ------------------------------------------------------------------------------------------ the run lock


class RunLock:
    """The local lock (and the team lease, when configured) of one run."""

    def __init__(self, path: Path, fd: int, lease: Lease | None = None) -> None:
        self.path = path
        self._fd: int | None = fd
        self.lease = lease

    def check(self) -> None:
        """Raise :class:`LockHeld` when the team lease was lost (call between steps)."""
        if self.lease is not None and self.lease.lost:
            raise LockHeld(f"stopped: {self.lease.lost}",
                           "the other run now owns the environment; check 'rollback journal list' before "
                           "doing anything else", holder={})

    def mirror(self, kind: str, path: Path) -> None:
        """Copy ``path`` to the team prefix on every renewal and at release (no-op without a lease)."""
        if self.lease is not None:
            self.lease.mirrors.append((kind, path))

    def sync(self) -> None:
        """Copy the mirrored files to the team prefix now (best effort)."""
        if self.lease is not None:
            self.lease.mirror_now()

    def release(self) -> None:
        if self.lease is not None:
            self.lease.release()
            self.lease = None
        if self._fd is not None:
            with contextlib.suppress(OSError):
                # Unlink while still holding it: a run that opens the file after this takes a new
                # inode; one that opened the old inode re-checks the path after locking (see _lock_file).
                self.path.unlink()
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                os.close(self._fd)
            self._fd = None


def _holder(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _lock_file(path: Path, env: str) -> int:
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            other = _holder(path)
            raise LockHeld(
                f"another rollback run is in progress on env {env!r}: {describe_holder(other)}",
                "wait for it to finish and check 'rollback journal show last'; the lock is released when that "
                "process exits",
                holder=other,
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the holder released and unlinked it between our open and our lock: take the new file


def acquire(env: str, holder: dict[str, Any], *, identity: str, team: TeamLock | None = None,
            environ: Mapping[str, str] | None = None) -> RunLock:
    """Take the environment's run lock (and the team lease) or raise :class:`LockHeld`.

    ``identity`` names what is locked (``Config.identity``: the config file and
    the environment). The holder record goes into the lock file and the lease.
    """
    path = lock_path(identity, environ)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = _lock_file(path, env)
    record = {**holder, "env": env, "identity": identity.replace("\0", " env ")}
    try:
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(record).encode())
        os.fsync(fd)
    except OSError:
        pass  # the lock is held; only the note of who holds it could not be written
    run_lock = RunLock(path, fd)
    if team is not None:
        lease = team.lease(env, {k: v for k, v in record.items() if k != "identity"})
        try:
            lease.take()
        except BaseException:
            run_lock.release()
            raise
        lease.start_renewing()
        run_lock.lease = lease
    return run_lock
