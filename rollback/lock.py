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
- renew: ``PutObject`` with ``If-Match: <our ETag>``, every ``ttl / 4`` seconds
  from a background thread while the run lasts (long waits included: an RDS
  restore, a CloudFront deploy);
- release: ``DeleteObject`` with ``If-Match: <our ETag>``;
- take over: only when the lease has expired (judged on S3's clock: the
  object's ``Last-Modified`` plus its ``ttl`` against the response's ``Date``),
  with ``If-Match`` on the expired object's ETag, so two takers cannot both win.

The object holds holder, host, pid, run id, command and expiry; a refused run
exits 4 naming them. When the lease is set, journals and incidents are copied
to ``<prefix>/runs/`` and ``<prefix>/incidents/`` so the whole team sees one
history.

**Failing closed.** The lease is *lost* when a renewal finds it taken over or
removed, and also when its last successful write is older than ``ttl`` minus a
margin (a quarter of ``ttl``), measured on this machine's monotonic clock from
the moment that write was *sent* (S3 stamps it later, never earlier): a run cut
off from S3 cannot tell whether someone took over, so after that long it must
assume so. :meth:`RunLock.check` (the runner calls it before every step and
again immediately before each step's act; the database swap calls
:func:`ensure_held` right before its COMMIT) raises :class:`LockHeld` (exit 4)
naming the run that holds the lease now, when it can be read. Long waits sleep
through :func:`pause`, which does the same check, so a 20-minute CloudFront
wait stops at its next poll. A lost lease is never written again (the other run
may hold it); it expires on S3 by itself, after which ``rollback resume``
takes it over and continues, unless another run of the environment acted
meanwhile: it reads the other runs' journals (here, and their copies in
``<prefix>/runs/``: :meth:`TeamLock.shared_runs`) and then refuses
(:mod:`rollback.commands.run.resume_guard`).

Each write carries a fresh nonce. A write S3 stored whose answer was lost
(a read timeout; botocore's retry of it then gets 412 against our own new ETag)
is recognised by it: a lease holding one of our nonces is still ours, not
"taken over" by this very run.

The monotonic clock is one that keeps counting while the machine sleeps
(:func:`elapsed`: ``CLOCK_BOOTTIME`` on Linux, ``CLOCK_MONOTONIC`` on macOS):
Python's ``time.monotonic`` stops during a suspend, so a laptop whose lid was
closed for an hour would wake up judging its lease seconds old, and act until
its next renewal found it taken over.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import functools
import hashlib
import json
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rollback.errors import BadInput, LockHeld, RollbackError
from rollback.leasestore import LeaseObject, LeaseStore

__all__ = [
    "Lease",
    "RunLock",
    "TeamLock",
    "acquire",
    "describe_holder",
    "elapsed",
    "ensure_held",
    "lock_dir",
    "lock_path",
    "parse_s3_url",
    "pause",
]

# A lease counts as lost once its last successful write is older than ttl * (1 - MARGIN); renewals
# are sent every ttl * RENEW_EVERY, so two may fail (a blip) before that.
MARGIN = 0.25
RENEW_EVERY = 0.25
# How long a run that lost its lease waits to read who holds it now (S3 may be what is unreachable).
HOLDER_READ_SECONDS = 5.0
SUFFIX = ".jsonl"  # a journal's file name: <run id>.jsonl (rollback.journal), copied as such to <prefix>/runs/


def _suspend_counting_clock() -> Callable[[], float]:
    clock_id = getattr(time, "CLOCK_BOOTTIME", None)  # Linux: CLOCK_MONOTONIC stops during a suspend
    if clock_id is None and sys.platform == "darwin":
        clock_id = getattr(time, "CLOCK_MONOTONIC", None)  # Darwin's counts sleep (time.monotonic's does not)
    if clock_id is None:
        return time.monotonic
    try:
        time.clock_gettime(clock_id)
    except OSError:
        return time.monotonic
    return functools.partial(time.clock_gettime, clock_id)


# Seconds on a clock that never goes back and keeps counting while the machine is suspended: the clock a
# lease's age is judged on (see the module's docstring).
elapsed: Callable[[], float] = _suspend_counting_clock()


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
    monotonic: Callable[[], float] = elapsed  # the clock the lease's age is judged on (tests)
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
                     prefix=self.prefix, monotonic=self.monotonic)

    def copy(self, kind: str, path: Path) -> None:
        """Copy a journal (``runs``) or an incident (``incidents``) file to the shared prefix."""
        self.store().upload(self.key(kind, path.name), path)

    def shared_runs(self, after: str) -> Iterator[tuple[str, str, bytes]]:
        """The journals copied to ``<prefix>/runs/`` of the runs whose id sorts after ``after`` (run ids sort
        by start time): ``(run id, s3 URL, the copy's bytes)``. Read wherever the team's runs ran."""
        folder = self.key("runs") + "/"
        store = self.store()
        for key in store.keys(folder, after=folder + after + SUFFIX):
            name = key[len(folder):]
            if "/" in name or not name.endswith(SUFFIX):
                continue
            data = store.fetch(key)
            if data is not None:
                yield name.removesuffix(SUFFIX), f"s3://{self.bucket}/{key}", data


class Lease:
    """A lease on one S3 object, held while a run lasts (see the module's docstring: it fails closed)."""

    def __init__(self, store: LeaseStore, key: str, holder: dict[str, Any], ttl: float, env: str, *,
                 prefix: str = "", clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
                 monotonic: Callable[[], float] = elapsed) -> None:
        self.store = store
        self.prefix = prefix
        self.key = key
        self.holder = holder
        self.ttl = ttl
        self.env = env
        self.clock = clock
        self.monotonic = monotonic
        self.etag: str | None = None
        self.taken_over: dict[str, Any] | None = None  # the expired holder we replaced
        self.lost: str | None = None
        self.holder_now: dict[str, Any] = {}  # who holds it now, when it was lost and that could be read
        self._named = False  # lost is followed by who holds the lease now (or why that is unknown)
        self.renewed_at: float | None = None  # monotonic moment the last successful write was sent
        self.last_error: str | None = None  # why the last renewal failed (cleared by a success)
        self.renewals = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._mutex = threading.Lock()
        self._sent: dict[str, float] = {}  # nonce -> when sent, for writes whose outcome is not known yet
        self.mirrors: list[tuple[str, Path]] = []  # (kind, file) copied on each renewal and at release

    @property
    def margin(self) -> float:
        return self.ttl * MARGIN

    def _body(self, sent: float) -> bytes:
        """The lease's next content; its nonce is remembered with ``sent`` until the write's outcome is known."""
        nonce = secrets.token_hex(8)
        with self._mutex:
            self._sent[nonce] = sent
        now = self.clock()
        expires = now + dt.timedelta(seconds=self.ttl)
        body = {**self.holder, "env": self.env, "ttl": self.ttl,
                "renewed_at": now.isoformat(timespec="seconds").replace("+00:00", "Z"),
                "expires_at": expires.isoformat(timespec="seconds").replace("+00:00", "Z"),
                # a fresh nonce each write: the ETag (an MD5 of the body) changes even within one second
                "nonce": nonce}
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
            sent = self.monotonic()
            etag = self.store.create(self.key, self._body(sent))
            if etag is not None:
                self._taken(etag, sent)
                return
            current = self.store.read(self.key)
            if current is None:
                continue  # released between our two calls: try again
            landed = self._ours(current)
            if landed is not None:  # our own write, whose answer was lost (then a retry got 412)
                self._taken(current.etag, landed)
                return
            if not current.expired(self.clock()):
                raise self._refuse(current.body, _expires_in(current))
            sent = self.monotonic()
            etag = self.store.replace(self.key, self._body(sent), current.etag)
            if etag is None:
                now = self.store.read(self.key)
                landed = self._ours(now) if now is not None else None
                if now is not None and landed is not None:
                    etag, sent = now.etag, landed
            if etag is not None:
                self._taken(etag, sent)
                self.taken_over = current.body
                return
            # someone else renewed or took it over in between: look again
        current = self.store.read(self.key)
        raise self._refuse(current.body if current else {})

    def _taken(self, etag: str, sent: float) -> None:
        with self._mutex:
            self.etag, self.renewed_at, self.lost, self.last_error = etag, sent, None, None
            self._sent.clear()

    def _ours(self, current: LeaseObject) -> float | None:
        """When the lease on S3 is a write of ours whose answer never came (a timeout after S3 stored it;
        botocore's retry of it then finds our new ETag and gets 412): the moment that write was sent."""
        nonce = current.body.get("nonce")
        with self._mutex:
            return self._sent.get(nonce) if isinstance(nonce, str) else None

    def age(self) -> float | None:
        """Seconds since the last successful write was sent (None before the lease is taken)."""
        return None if self.renewed_at is None else self.monotonic() - self.renewed_at

    def _too_old(self) -> bool:
        age = self.age()
        return self.lost is None and age is not None and age > self.ttl - self.margin

    def _expire(self) -> None:
        """Count the lease as lost: not renewed for ``ttl - margin`` seconds. Called under the mutex."""
        age = self.age() or 0.0
        why = f"; the last renewal failed: {self.last_error}" if self.last_error else ""
        self.lost = (f"the team lease on env {self.env!r} was not renewed for {age:.0f} s (ttl {self.ttl:g} s"
                     f"{why}): it counts as lost, another run may have taken it over")

    def _name_holder(self) -> None:
        """Add who holds the lease now to :attr:`lost` (read within :data:`HOLDER_READ_SECONDS`)."""
        found: list[LeaseObject | None] = []
        failed: list[str] = []

        def read() -> None:
            try:
                found.append(self.store.read(self.key))
            except Exception as exc:  # S3 unreachable: say so
                failed.append(_error_text(exc))

        reader = threading.Thread(target=read, name=f"rollback-lease-holder-{self.env}", daemon=True)
        reader.start()
        reader.join(HOLDER_READ_SECONDS)
        with self._mutex:
            if self.lost is None or self._named:
                return
            self._named = True
            if found:
                current = found[0]
                if current is None:
                    self.lost += "; nobody holds it now"
                elif current.etag == self.etag:
                    self.lost += "; S3 still shows this run's last renewal"
                else:
                    self.holder_now = dict(current.body)
                    self.lost += f"; {describe_holder(current.body)} holds it now"
            else:
                self.lost += ("; who holds it now could not be read (" + (failed[0] if failed else
                              f"S3 did not answer within {HOLDER_READ_SECONDS:g} s") + ")")

    def check(self) -> None:
        """Raise :class:`LockHeld` when the lease is lost (taken over, removed, or not renewed for
        ``ttl - margin`` seconds): call it before each step and right before each destructive act."""
        with self._mutex:
            expired = self._too_old()
            if expired:
                self._expire()
            lost = self.lost
        if lost is None:
            return
        if expired:
            self._name_holder()
        raise LockHeld(f"stopped: {self.lost}",
                       "nothing more was done by this run; check 'rollback journal list' and the other run "
                       "before anything else; 'rollback resume' continues this run once the lease is free, "
                       "unless another run acted meanwhile",
                       holder=dict(self.holder_now))

    def renew(self) -> bool:
        """Extend the lease (If-Match on our ETag). False (and ``lost`` set) when it is no longer ours,
        or was not renewed for ``ttl - margin`` seconds. A failure to reach S3 raises (``last_error``)."""
        with self._mutex:
            if self.etag is None or self.lost:
                return False
            if self._too_old():
                self._expire()
                expired = True
            else:
                expired = False
            etag = self.etag
        if expired:
            self._name_holder()
            return False
        sent = self.monotonic()
        try:
            new_etag = self.store.replace(self.key, self._body(sent), etag)
        except Exception as exc:
            with self._mutex:
                self.last_error = _error_text(exc)
            raise
        current = self.store.read(self.key) if new_etag is None else None
        landed = self._ours(current) if current is not None else None
        if current is not None and landed is not None:
            new_etag, sent = current.etag, landed  # our own write stored without its answer: still ours
        with self._mutex:
            if self.etag != etag or self.lost:
                return False  # released, or counted as lost, while the request was out
            if new_etag is None:
                self.holder_now = dict(current.body) if current else {}
                self.lost = ("the team lease was taken over: " + describe_holder(current.body)) if current else (
                    "the team lease was removed by someone else")
                return False
            self.etag, self.renewed_at, self.last_error = new_etag, sent, None
            self._sent.clear()
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
        interval = max(0.1, self.ttl * RENEW_EVERY)
        while not self._stop.wait(interval):
            try:
                if not self.renew():
                    return
            except Exception:  # a network blip: try again next tick; check() judges how old the lease is
                continue
            self._mirror()

    def start_renewing(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"rollback-lease-{self.env}", daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Stop renewing, copy the mirrored files, delete the lease (If-Match): all skipped once the lease
        is lost (another run may hold it; S3 may be what is unreachable: it expires by itself)."""
        self._stop.set()
        with self._mutex:
            lost = self.lost is not None or (self.last_error is not None and self._too_old())
        if self._thread is not None and not lost:
            self._thread.join(timeout=5)  # a renewal in flight ends first: its ETag is the one to delete
        with self._mutex:
            etag, self.etag = self.etag, None
        if lost or etag is None:
            return
        self._mirror()
        with contextlib.suppress(Exception):
            self.store.delete(self.key, etag)


def _error_text(exc: BaseException) -> str:
    message = exc.one_line() if isinstance(exc, RollbackError) else f"{type(exc).__name__}: {exc}"
    return " ".join(message.split())[:300]


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
        """Raise :class:`LockHeld` when the team lease is lost (see :meth:`Lease.check`)."""
        if self.lease is not None:
            self.lease.check()

    def mirror(self, kind: str, path: Path) -> None:
        """Copy ``path`` to the team prefix on every renewal and at release (no-op without a lease)."""
        if self.lease is not None:
            self.lease.mirrors.append((kind, path))

    def sync(self) -> None:
        """Copy the mirrored files to the team prefix now (best effort)."""
        if self.lease is not None:
            self.lease.mirror_now()

    def release(self) -> None:
        with contextlib.suppress(ValueError):
            _HELD.remove(self)
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


# The run locks with a team lease this process holds: what ensure_held() and pause() check.
_HELD: list[RunLock] = []


def ensure_held() -> None:
    """Raise :class:`LockHeld` when a team lease this process holds is lost. Cheap (no I/O until it
    is lost): call it right before an irreversible act that runs inside a step."""
    for held in list(_HELD):
        held.check()


def pause(seconds: float) -> None:
    """Sleep between two polls of a long wait, then :func:`ensure_held`: a wait whose lease was lost
    stops at its next poll."""
    ensure_held()
    if seconds > 0:
        time.sleep(seconds)
    ensure_held()


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
        _HELD.append(run_lock)
    return run_lock
