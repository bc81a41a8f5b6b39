"""Backups on disk: the manifest's shape, where a backup came from, listing, resolving, verifying.

A backup is a ``pg_dump`` directory ``<dir>/<name>/`` with its manifest
``<dir>/<name>.manifest.json`` beside it. The manifest is written last (through
a temporary file and a rename), so a dump directory without one is an
incomplete backup: one still being written (its ``<name>.inprogress`` file is
locked by the process writing it) or one whose writer died (the kernel dropped
the lock), which ``rollback db prune`` removes.

Every manifest read here is validated (:class:`Manifest`): a file of the wrong
shape is a damaged backup (:class:`~rollback.errors.UnsafePrecondition`, exit 4),
never a ``KeyError`` deep inside a restore.

A backup belongs to the database it was taken from (:class:`SourceIdentity`: the
server's system identifier, the database name, host and port). ``latest`` means
the newest backup *of this database*; restoring another database's backup needs
an explicit ``--from-other-database``.

No psycopg here: the pg tools are passed in where a check needs them.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rollback.errors import BadInput, DatabaseError, UnsafePrecondition

if TYPE_CHECKING:
    from rollback.adapters.pg_tools import PgTools

__all__ = [
    "INPROGRESS_SUFFIX",
    "MANIFEST_FORMAT",
    "MANIFEST_SUFFIX",
    "BackupInProgress",
    "Manifest",
    "SourceIdentity",
    "check_source",
    "disk_errors",
    "incomplete_backups",
    "list_backups",
    "load_manifest",
    "manifest_path",
    "new_manifest",
    "remove_incomplete",
    "resolve_backup",
    "source_of",
    "verify_backup",
    "write_manifest",
]

MANIFEST_FORMAT = "rollback-db-backup/1"
MANIFEST_SUFFIX = ".manifest.json"
INPROGRESS_SUFFIX = ".inprogress"
TMP_SUFFIX = ".tmp"
# <db>-<YYYYmmddTHHMMSSZ>[-emergency][-N]: the names take_backup gives.
_BACKUP_NAME = re.compile(r"^(?P<db>.+)-\d{8}T\d{6}Z(-emergency)?(-\d+)?$")
_DAMAGED_HINT = "nothing was touched; use another backup"


# -- the manifest ---------------------------------------------------------------------------------------

def _plain_name(value: str) -> str:
    """A single path component: no separator, no ``..``, no NUL (a manifest must not point elsewhere)."""
    if not value or value in (".", "..") or any(ch in value for ch in "/\\\0"):
        raise ValueError(f"{value!r} must be a plain name beside the manifest")
    return value


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class TableRows(_Loose):
    table_schema: str = Field(alias="schema", min_length=1)
    name: str = Field(min_length=1)
    rows: int = Field(ge=0)


class FileEntry(_Loose):
    path: str = Field(min_length=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0)

    @field_validator("path")
    @classmethod
    def _relative(cls, value: str) -> str:
        parts = PurePosixPath(value).parts
        if value.startswith("/") or "\\" in value or "\0" in value or ".." in parts or not parts:
            raise ValueError(f"{value!r} must be a relative path inside the dump directory")
        return value


class Source(_Loose):
    system_identifier: str | None = None
    database: str = Field(min_length=1)
    host: str | None = None
    port: str | None = None


class Manifest(_Loose):
    """What a restore relies on in a manifest; other keys are kept as they are."""

    format: Literal["rollback-db-backup/1"]
    name: str = Field(min_length=1)
    kind: str = "manual"
    created_at: str
    database: str = Field(min_length=1)
    source: Source | None = None
    dump_dir: str
    tables: list[TableRows]
    files: list[FileEntry]
    total_bytes: int = Field(ge=0)
    total_rows: int = Field(ge=0)
    encoding: str | None = None
    prisma_migration_head: str | None = None

    @field_validator("dump_dir", "name")
    @classmethod
    def _plain(cls, value: str) -> str:
        return _plain_name(value)


def manifest_path(dump_dir: Path) -> Path:
    return dump_dir.with_name(dump_dir.name + MANIFEST_SUFFIX)


def new_manifest(*, name: str, kind: str, created: str, target: Mapping[str, Any], source: Mapping[str, Any],
                 server_version: str, encoding: str, pg_dump_version: str, jobs: int, compression: int,
                 tables: Sequence[Mapping[str, Any]], prisma_managed: bool, prisma_migration_head: str | None,
                 files: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The manifest of a new backup (format ``MANIFEST_FORMAT``), before it is verified.

    ``target``: the live database as the URL names it (``database``, ``host``, ``port``, ``user``:
    never the password); ``source``: its identity as the server reports it.
    """
    return {
        "format": MANIFEST_FORMAT,
        "name": name,
        "kind": kind,
        "created_at": created,
        "database": target["database"],
        "host": target.get("host"),
        "port": target.get("port"),
        "user": target.get("user"),
        "source": dict(source),
        "server_version": server_version,
        "encoding": encoding,
        "pg_dump_version": pg_dump_version,
        "dump_format": "directory",
        "dump_dir": name,
        "jobs": jobs,
        "compression": compression,
        "tables": [dict(t) for t in tables],
        "total_rows": sum(int(t["rows"]) for t in tables),
        "prisma_managed": prisma_managed,
        "prisma_migration_head": prisma_migration_head,
        "files": [dict(f) for f in files],
        "total_bytes": sum(int(str(f["bytes"])) for f in files),
    }


def write_manifest(path: Path, manifest: Mapping[str, Any]) -> None:
    """Write a manifest atomically (a temporary file, then a rename): a reader sees the old or the new one."""
    tmp = path.with_name(path.name + TMP_SUFFIX)
    # Not redact()ed: it holds catalog names and checksums that a short password could
    # match by chance; it never holds the password (host, port and user only).
    tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


@contextlib.contextmanager
def disk_errors(directory: Path) -> Iterator[None]:
    """A full disk or a read-only directory is the environment's fault: one line, not a traceback.

    The one place where file-system errors of backups (writing, removing, recording) become a
    :class:`~rollback.errors.DatabaseError`.
    """
    try:
        yield
    except OSError as exc:
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        raise DatabaseError(f"writing the backup to {directory} failed: {exc.strerror or exc}",
                            "a disk is full: free space where the backup is written (backups_dir), then run the "
                            "command again" if full else
                            "check the permissions of the backups directory") from exc


def _damaged(name: str, detail: str) -> UnsafePrecondition:
    return UnsafePrecondition(f"backup {name} is damaged: {detail}", _DAMAGED_HINT, details={"damaged": True})


def _first_problem(exc: ValidationError) -> str:
    errors = exc.errors()
    first = errors[0]
    where = ".".join(str(part) for part in first.get("loc", ())) or "the document"
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first.get('msg', 'invalid')}{more}"


def load_manifest(path: Path) -> dict[str, Any]:
    """Read and validate one manifest; a missing, unreadable or malformed one is a damaged backup."""
    name = path.name.removesuffix(MANIFEST_SUFFIX)
    try:
        raw = path.read_text(encoding="utf-8")
        data = json.loads(raw)
    except (OSError, UnicodeDecodeError) as exc:
        raise _damaged(name, f"its manifest cannot be read ({getattr(exc, 'strerror', None) or exc})") from exc
    except ValueError as exc:
        raise _damaged(name, f"its manifest is not JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise _damaged(name, f"its manifest is a JSON {type(data).__name__}, not an object")
    try:
        Manifest.model_validate(data)
    except ValidationError as exc:
        raise _damaged(name, f"its manifest is malformed ({_first_problem(exc)})") from exc
    return data


def dump_dir_of(path: Path, manifest: Mapping[str, Any]) -> Path:
    return path.parent / str(manifest["dump_dir"])


# -- where a backup came from ---------------------------------------------------------------------------

@dataclass(frozen=True)
class SourceIdentity:
    """One database: the server's system identifier (``pg_control_system()``), its name, host and port.

    Two identities name the same database when the system identifiers and the
    names match; without a system identifier on either side (an old manifest, a
    role that may not read it), when name, host and port match.
    """

    database: str
    host: str | None = None
    port: str | None = None
    system_identifier: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SourceIdentity:
        def text(key: str) -> str | None:
            value = data.get(key)
            return None if value in (None, "") else str(value)

        return cls(str(data.get("database") or ""), text("host"), text("port"), text("system_identifier"))

    def to_dict(self) -> dict[str, Any]:
        return {"system_identifier": self.system_identifier, "database": self.database, "host": self.host,
                "port": self.port}

    def describe(self) -> str:
        where = f"{self.host or 'localhost'}:{self.port or '5432'}"
        system = f", system {self.system_identifier}" if self.system_identifier else ""
        return f"{self.database} on {where}{system}"

    def same_database(self, other: SourceIdentity) -> bool:
        if self.database != other.database:
            return False
        if self.system_identifier and other.system_identifier:
            return self.system_identifier == other.system_identifier
        return ((self.host or "localhost"), (self.port or "5432")) == ((other.host or "localhost"),
                                                                       (other.port or "5432"))


def source_of(manifest: Mapping[str, Any]) -> SourceIdentity:
    """The identity a manifest records (``source``; older manifests: their top-level fields)."""
    source = manifest.get("source")
    if isinstance(source, Mapping):
        return SourceIdentity.from_dict(source)
    return SourceIdentity.from_dict(manifest)


def check_source(manifest: Mapping[str, Any], live: SourceIdentity, *, allow_other: bool) -> str | None:
    """Refuse a backup of another database unless ``allow_other``; returns a note when allowed."""
    source = source_of(manifest)
    if source.same_database(live):
        return None
    name = str(manifest.get("name"))
    if not allow_other:
        raise UnsafePrecondition(
            f"backup {name} was taken from database {source.describe()}, not from this environment's database "
            f"{live.describe()}",
            "nothing was touched; restore a backup of this database ('rollback db backups' marks them), or pass "
            "--from-other-database to restore it anyway", details={"source": source.to_dict()})
    return f"backup {name} comes from ANOTHER database ({source.describe()}); restoring it was asked for with " \
           "--from-other-database"


# -- listing and resolving --------------------------------------------------------------------------------

def _locked(path: Path) -> bool:
    """True while another process holds the ``flock`` on ``path`` (a backup being written)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
    return False


def _belongs_by_name(manifest: Mapping[str, Any], live: SourceIdentity | None) -> bool | None:
    if live is None:
        return None
    return source_of(manifest).same_database(live)


def list_backups(directory: Path, live: SourceIdentity | None = None) -> list[dict[str, Any]]:
    """Backups in ``directory``, newest first: complete ones with their manifests, damaged ones,
    and incomplete dump directories (``status``: ok, damaged, missing dump, incomplete, in progress).

    With ``live``, each complete backup says whether it was taken from that database (``this_database``).
    """
    out: list[dict[str, Any]] = []
    if not directory.is_dir():
        return out
    for path in directory.glob("*" + MANIFEST_SUFFIX):
        name = path.name[: -len(MANIFEST_SUFFIX)]
        try:
            manifest = load_manifest(path)
        except UnsafePrecondition as exc:
            out.append({"name": name, "manifest_path": str(path), "created_at": "", "status": "damaged",
                        "error": exc.message, "present": (directory / name).is_dir()})
            continue
        dump_dir = dump_dir_of(path, manifest)
        present = dump_dir.is_dir()
        source = source_of(manifest)
        out.append({**manifest, "manifest_path": str(path), "path": str(dump_dir), "present": present,
                    "status": "ok" if present else "missing dump", "source": source.to_dict(),
                    "this_database": _belongs_by_name(manifest, live)})
    for item in incomplete_backups(directory):
        out.append({"name": item["name"], "path": item["path"], "created_at": item["created_at"],
                    "status": "in progress" if item["in_progress"] else "incomplete", "present": True,
                    "kind": item["kind"], "bytes": item["bytes"],
                    "error": "being written by a running backup" if item["in_progress"] else
                    "no manifest: the backup was interrupted (remove it with 'rollback db prune')"})
    out.sort(key=lambda m: (str(m.get("created_at", "")), str(m.get("name", ""))), reverse=True)
    return out


def _created_from_name(name: str) -> str:
    match = re.search(r"-(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z", name)
    if not match:
        return ""
    y, mo, d, h, mi, s = match.groups()
    return f"{y}-{mo}-{d}T{h}:{mi}:{s}Z"


def incomplete_backups(directory: Path, database: str | None = None) -> list[dict[str, Any]]:
    """Dump directories (and leftover ``.inprogress``/``.tmp`` files) without a manifest.

    Only names of the form rollback gives backups (``<db>-<time>[-emergency][-N]``), of
    ``database`` when given; ``in_progress`` while a running backup holds the lock.
    """
    if not directory.is_dir():
        return []
    names: set[str] = set()
    for entry in directory.iterdir():
        base = entry.name
        for suffix in (INPROGRESS_SUFFIX, MANIFEST_SUFFIX + TMP_SUFFIX):
            if base.endswith(suffix):
                base = base[: -len(suffix)]
                break
        else:
            if not entry.is_dir():
                continue
        names.add(base)
    out = []
    for name in sorted(names):
        match = _BACKUP_NAME.match(name)
        if not match or (database is not None and match.group("db") != database):
            continue
        if (directory / (name + MANIFEST_SUFFIX)).exists():
            continue
        dump_dir = directory / name
        size = sum(p.stat().st_size for p in dump_dir.rglob("*") if p.is_file()) if dump_dir.is_dir() else 0
        out.append({"name": name, "path": str(dump_dir), "database": match.group("db"),
                    "kind": "emergency" if "-emergency" in name else "manual",
                    "created_at": _created_from_name(name), "bytes": size,
                    "in_progress": _locked(directory / (name + INPROGRESS_SUFFIX))})
    return out


def remove_incomplete(directory: Path, name: str) -> dict[str, Any]:
    """Remove one incomplete backup (dump directory and leftovers); refuses one still being written."""
    _plain_name(name)
    if (directory / (name + MANIFEST_SUFFIX)).exists():
        raise UnsafePrecondition(f"backup {name} has a manifest: it is complete", "nothing was removed")
    lock = directory / (name + INPROGRESS_SUFFIX)
    if _locked(lock):
        raise UnsafePrecondition(f"backup {name} is being written by a running backup", "nothing was removed")
    dump_dir = directory / name
    if dump_dir.is_dir():
        shutil.rmtree(dump_dir)
    for leftover in (lock, directory / (name + MANIFEST_SUFFIX + TMP_SUFFIX)):
        leftover.unlink(missing_ok=True)
    return {"removed": str(dump_dir)}


@contextlib.contextmanager
def backup_in_progress(directory: Path, name: str, details: Mapping[str, Any]) -> Iterator[BackupInProgress]:
    """Hold ``<name>.inprogress`` (an ``flock``) while a backup is written; removed when done."""
    marker = BackupInProgress(directory / (name + INPROGRESS_SUFFIX), details)
    try:
        yield marker
    finally:
        marker.release()


class BackupInProgress:
    """The lock file of a backup being written: exclusive ``flock``, released by the kernel on any death."""

    def __init__(self, path: Path, details: Mapping[str, Any]) -> None:
        self.path = path
        self._fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        os.write(self._fd, json.dumps(dict(details)).encode())

    def release(self) -> None:
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._fd = None


def resolve_backup(backups_dir: Path, ref: str, *, live: SourceIdentity | None = None) -> tuple[dict[str, Any], Path]:
    """A backup given as a manifest path, a dump directory, a name in ``backups_dir``, or
    ``latest`` / ``latest-emergency`` (the newest of the database ``live``, when given)."""
    if ref in ("latest", "latest-emergency"):
        # "latest" skips emergency backups: a restore takes one, and restoring that
        # one again by accident would undo nothing.
        emergency = ref == "latest-emergency"
        complete = [b for b in list_backups(backups_dir, live) if b.get("status") == "ok"
                    and (b.get("kind") == "emergency") == emergency]
        found = [b for b in complete if live is None or b.get("this_database")]
        what = "emergency backups" if emergency else "backups"
        if not found:
            if complete and live is not None:
                other = complete[0]
                raise UnsafePrecondition(
                    f"no {what} of this environment's database {live.describe()} in {backups_dir}; the newest "
                    f"there, {other['name']}, is of database {source_of(other).describe()}",
                    "take one with 'rollback db backup', or name another database's backup and pass "
                    "--from-other-database")
            raise BadInput(f"no {what} in {backups_dir}", "take one with 'rollback db backup'")
        ref = str(found[0]["manifest_path"])
    path = Path(ref).expanduser()
    candidates = [path, backups_dir / ref] if not path.is_absolute() else [path]
    for candidate in candidates:
        found_path = candidate if candidate.name.endswith(MANIFEST_SUFFIX) else manifest_path(candidate)
        if found_path.is_file():
            manifest = load_manifest(found_path)
            return manifest, dump_dir_of(found_path, manifest)
    raise BadInput(f"no backup {ref!r} (looked for its manifest in {backups_dir})",
                   "list backups with 'rollback db backups'")


# -- verifying ---------------------------------------------------------------------------------------------

def verify_backup(manifest: Mapping[str, Any], dump_dir: Path, tools: PgTools) -> dict[str, Any]:
    """Refuse a damaged backup: a well-formed manifest, every file present with its size and
    sha256, and a readable TOC."""
    from rollback.adapters.pg_tools import sha256_file

    name = str(manifest.get("name", dump_dir.name))
    try:
        Manifest.model_validate(manifest)
    except ValidationError as exc:
        raise _damaged(name, f"its manifest is malformed ({_first_problem(exc)})") from exc
    if not dump_dir.is_dir():
        raise UnsafePrecondition(f"backup {name}: dump directory {dump_dir} is missing", _DAMAGED_HINT)
    files: Sequence[Mapping[str, Any]] = manifest["files"]
    expected = {str(f["path"]): f for f in files}
    actual = {p.relative_to(dump_dir).as_posix() for p in dump_dir.rglob("*") if p.is_file()}
    problems: list[str] = []
    for missing in sorted(set(expected) - actual):
        problems.append(f"{missing} is missing")
    for extra in sorted(actual - set(expected)):
        problems.append(f"{extra} is not in the manifest")
    for rel in sorted(set(expected) & actual):
        path = dump_dir / rel
        if path.stat().st_size != int(expected[rel]["bytes"]):
            problems.append(f"{rel} has {path.stat().st_size} bytes, the manifest says {expected[rel]['bytes']} "
                            "(truncated?)")
        elif sha256_file(path) != expected[rel]["sha256"]:
            problems.append(f"{rel} checksum does not match")
    if problems:
        more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        raise UnsafePrecondition(f"backup {name} is damaged: {'; '.join(problems[:3])}{more}", _DAMAGED_HINT,
                                 details={"problems": problems})
    try:
        toc = tools.list_archive(dump_dir)
    except DatabaseError as exc:
        raise _damaged(name, exc.message) from exc
    return {"backup": name, "files": len(expected), "toc_entries": len(toc), "ok": True}
