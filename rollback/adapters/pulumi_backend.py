"""Self-managed ("DIY") Pulumi backends read directly: no Pulumi CLI needed.

Layout (from Pulumi's ``pkg/backend/diy``), under the backend URL's root:

- ``.pulumi/meta.yaml``: ``version: 1`` is the project layout; ``version: 0``
  or no file is the legacy layout, which has no ``<project>/`` level below.
- ``.pulumi/stacks/<project>/<stack>.json``: the current checkpoint.
- ``.pulumi/history/<project>/<stack>/<stack>-<unix-nanos>.history.json``: one
  per update (kind, startTime, message, environment, config, result, endTime,
  resourceChanges; ``version`` is always 0), with its
  ``...checkpoint.json`` (the stack file after that update) beside it.
- ``.pulumi/locks/organization/<project>/<stack>/<uuid>.json``: a lock held by
  a running update (legacy: ``.pulumi/locks/<stack>/``).

Any file may be gzip (``.gz``) or zstd (``.zst``) compressed. Because every
version is 0 here, versions are numbered by us, oldest = 1, in the order of the
nanosecond timestamps in the file names.

Listing history reads the history files only; a checkpoint is read when a
command asks for that version's resources (:meth:`DiyBackend.state`). Every
file read is counted (``files_read``, ``checkpoints_read``) so callers and the
benchmark can show it.

Storage is a small :class:`Store` seam: :class:`FileStore` for ``file://`` and
:class:`S3Store` (a boto3 S3 client given to it) for ``s3://bucket/prefix``.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

from rollback.errors import BadInput, PulumiError
from rollback.model.stackdiff import StackState, StackVersion, config_value_from_history, normalize_resource

__all__ = [
    "Counters",
    "DiyBackend",
    "FileStore",
    "LockInfo",
    "S3Store",
    "Store",
    "is_diy_url",
    "open_backend",
]

_COMPRESSIONS = ("", ".gz", ".zst")
_HISTORY_NAME = re.compile(r"^(?P<stack>.+)-(?P<nanos>\d+)\.history\.json(?P<ext>\.gz|\.zst)?$")


class Store(Protocol):
    """The few storage operations the reader needs; keys are ``/``-separated."""

    url: str

    def list(self, prefix: str) -> list[str]:
        """Keys of the files directly or indirectly under ``prefix`` (a directory key)."""

    def read(self, key: str) -> bytes | None:
        """The file's bytes, or ``None`` when it does not exist."""


class FileStore:
    """A ``file://`` backend: a local directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = f"file://{root}"

    def list(self, prefix: str) -> list[str]:
        base = self.root / prefix
        if not base.is_dir():
            return []
        return sorted(str(p.relative_to(self.root).as_posix()) for p in base.rglob("*") if p.is_file())

    def read(self, key: str) -> bytes | None:
        path = self.root / key
        if not path.is_file():  # a stat, not an open: probing extensions opens nothing
            return None
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise PulumiError(f"cannot read {self.root / key}: {exc.strerror}",
                              "check the backend directory and its permissions") from exc


class S3Store:
    """An ``s3://bucket/prefix`` backend, through the boto3 S3 client it is given."""

    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.url = f"s3://{bucket}/{self.prefix}".rstrip("/")

    def list(self, prefix: str) -> list[str]:
        from rollback.adapters.aws import aws_errors

        keys: list[str] = []
        with aws_errors(f"listing {self.url}/{prefix}"):
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix.rstrip("/") + "/"):
                keys += [obj["Key"][len(self.prefix):] for obj in page.get("Contents", [])]
        return sorted(keys)

    def read(self, key: str) -> bytes | None:
        from botocore.exceptions import ClientError

        from rollback.adapters.aws import aws_errors

        with aws_errors(f"reading {self.url}/{key}"):
            try:
                body = self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"]
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                    return None
                raise
            data: bytes = body.read()
            return data


def is_diy_url(url: str | None) -> bool:
    return bool(url) and str(url).startswith(("file://", "s3://"))


def open_backend(url: str, *, base_dir: Path | None = None, s3_client: Any = None,
                 region: str = "us-east-1") -> DiyBackend:
    """A reader for ``file://path`` (relative paths against ``base_dir``) or ``s3://bucket/prefix``."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        raw = unquote(url[len("file://"):])
        path = Path(raw).expanduser()
        if not path.is_absolute():
            path = (base_dir or Path.cwd()) / path
        if not path.is_dir():
            raise BadInput(f"backend directory {path} does not exist",
                           "check pulumi.backend_url in rollback.toml")
        return DiyBackend(FileStore(path))
    if parsed.scheme == "s3":
        if s3_client is None:
            from rollback.adapters.aws import AwsClients, make_session

            s3_client = AwsClients(make_session(region)).client("s3")
        return DiyBackend(S3Store(s3_client, parsed.netloc, parsed.path))
    raise BadInput(f"not a self-managed backend URL: {url}", "use file://... or s3://bucket/prefix")


@dataclass
class Counters:
    files_read: int = 0
    checkpoints_read: int = 0
    history_files_read: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"files_read": self.files_read, "checkpoints_read": self.checkpoints_read,
                "history_files_read": self.history_files_read}


@dataclass(frozen=True)
class LockInfo:
    key: str
    pid: int | None
    username: str | None
    hostname: str | None
    timestamp: str | None

    def describe(self) -> str:
        who = f"{self.username or '?'}@{self.hostname or '?'} (pid {self.pid or '?'})"
        return f"{self.key}: created by {who} at {self.timestamp or '?'}"


def _decode(key: str, data: bytes) -> Any:
    try:
        if key.endswith(".gz"):
            data = gzip.decompress(data)
        elif key.endswith(".zst"):
            import zstandard

            data = zstandard.ZstdDecompressor().decompressobj().decompress(data)
        return json.loads(data)
    except (OSError, ValueError, EOFError) as exc:
        raise PulumiError(f"cannot decode {key}: {exc}",
                          "the backend file is corrupt or not JSON; check it by hand") from exc
    except Exception as exc:  # zstandard.ZstdError has no common base we can name without importing it
        if type(exc).__name__ == "ZstdError":
            raise PulumiError(f"cannot decompress {key}: {exc}", "the backend file is corrupt") from exc
        raise


def _latest(document: Any) -> Mapping[str, Any]:
    """The deployment inside a stack file of any checkpoint version (0 to 3)."""
    if not isinstance(document, Mapping):
        return {}
    checkpoint = document.get("checkpoint", document)
    if not isinstance(checkpoint, Mapping):
        return {}
    latest = checkpoint.get("latest") or {}
    return latest if isinstance(latest, Mapping) else {}


def state_from_deployment(deployment: Mapping[str, Any]) -> StackState:
    """A :class:`StackState` from a deployment (checkpoint ``latest`` or ``stack export``'s ``deployment``)."""
    resources = tuple(normalize_resource(r) for r in deployment.get("resources") or [])
    outputs: dict[str, Any] = {}
    for resource in resources:
        if resource["type"] == "pulumi:pulumi:Stack" and not resource["parent"]:
            outputs = dict(resource["outputs"])
            break
    return StackState(resources, tuple(deployment.get("pending_operations") or ()), outputs)


class DiyBackend:
    """Reads one self-managed backend's stacks, history, checkpoints and locks."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.counters = Counters()
        self._project_layout: bool | None = None
        self._keys: dict[tuple[str, str], list[tuple[int, str]]] = {}

    @property
    def url(self) -> str:
        return self.store.url

    def _read(self, key: str) -> bytes | None:
        data = self.store.read(key)
        if data is not None:
            self.counters.files_read += 1
        return data

    @property
    def project_layout(self) -> bool:
        """``meta.yaml`` ``version: 1`` -> project layout; version 0 or no file -> legacy."""
        if self._project_layout is None:
            data = self._read(".pulumi/meta.yaml")
            version = 0
            if data is not None:
                match = re.search(rb"^version:\s*(\d+)\s*$", data, re.MULTILINE)
                version = int(match.group(1)) if match else 0
            if version > 1:
                raise PulumiError(f"{self.url}: state store version {version} is not supported",
                                  "upgrade rollback, or read the stack through the Pulumi CLI")
            self._project_layout = version == 1
        return self._project_layout

    def _stack_dir(self, kind: str, project: str, stack: str) -> str:
        return f".pulumi/{kind}/{project}/{stack}" if self.project_layout else f".pulumi/{kind}/{stack}"

    def _stack_file(self, project: str, stack: str) -> tuple[str, bytes] | None:
        base = f".pulumi/stacks/{project}/{stack}.json" if self.project_layout else f".pulumi/stacks/{stack}.json"
        for ext in _COMPRESSIONS:
            data = self._read(base + ext)
            if data is not None:
                return base + ext, data
        return None

    def history_keys(self, project: str, stack: str) -> list[tuple[int, str]]:
        """``(nanos, key)`` of each ``*.history.json[.gz|.zst]``, oldest first."""
        directory = self._stack_dir("history", project, stack)
        found: list[tuple[int, str]] = []
        for key in self.store.list(directory):
            match = _HISTORY_NAME.match(key.rsplit("/", 1)[-1])
            if match and match.group("stack") == stack:
                found.append((int(match.group("nanos")), key))
        return sorted(found)

    def history(self, project: str, stack: str, *, newest: int | None = None) -> list[StackVersion]:
        """Every update (or the ``newest`` N), oldest first, numbered 1..n (the backend records version 0).

        Numbering needs only the directory listing, so ``newest`` reads just those N history files.
        """
        keys = self._keys_or_fail(project, stack)
        first = max(len(keys) - newest, 0) if newest else 0
        versions = [self._version(number, key) for number, (_, key) in enumerate(keys[first:], start=first + 1)]
        return [v for v in versions if v is not None]

    def stacks(self) -> list[str]:
        """Every stack in the backend as Pulumi names it: ``organization/<project>/<stack>`` (legacy: ``<stack>``)."""
        found: set[str] = set()
        for key in self.store.list(".pulumi/stacks"):
            parts = key.split("/")[2:]
            name = parts[-1]
            for ext in _COMPRESSIONS:
                if ext and name.endswith(ext):
                    name = name[: -len(ext)]
            if not name.endswith(".json") or name.endswith(".json.bak"):
                continue
            name = name[: -len(".json")]
            if self.project_layout and len(parts) == 2:
                found.add(f"organization/{parts[0]}/{name}")
            elif not self.project_layout and len(parts) == 1:
                found.add(name)
        return sorted(found)

    def version(self, project: str, stack: str, number: int) -> StackVersion | None:
        """One update by our number, reading only its history file (numbering needs only the listing)."""
        keys = self._keys_or_fail(project, stack)
        if not 1 <= number <= len(keys):
            return None
        return self._version(number, keys[number - 1][1])

    def count(self, project: str, stack: str) -> int:
        return len(self._keys_or_fail(project, stack))

    def _keys_or_fail(self, project: str, stack: str) -> list[tuple[int, str]]:
        if (project, stack) in self._keys:
            return self._keys[(project, stack)]
        keys = self.history_keys(project, stack)
        if not keys and self._stack_file(project, stack) is None:
            where = f"organization/{project}/{stack}" if self.project_layout else stack
            existing = self.stacks()
            there = f"stacks there: {', '.join(existing)}" if existing else "it has no stacks"
            raise BadInput(f"stack {where} not found in {self.url} ({there})",
                           "check pulumi.stack, pulumi.project_dir (Pulumi.yaml's name) and pulumi.backend_url "
                           "in rollback.toml")
        self._keys[(project, stack)] = keys
        return keys

    def _version(self, number: int, key: str) -> StackVersion | None:
        data = self._read(key)
        if data is None:
            return None
        self.counters.history_files_read += 1
        info = _decode(key, data)
        if not isinstance(info, Mapping):
            raise PulumiError(f"{key}: expected a JSON object", "the history file is corrupt")
        recorded = int(info.get("version") or 0)
        return StackVersion(
            version=recorded or number,
            kind=str(info.get("kind", "")),
            result=str(info.get("result", "")),
            message=str(info.get("message", "")),
            start_time=_int_or_none(info.get("startTime")),
            end_time=_int_or_none(info.get("endTime")),
            environment={str(k): str(v) for k, v in (info.get("environment") or {}).items()},
            config={str(k): config_value_from_history(v) for k, v in (info.get("config") or {}).items()},
            resource_changes={str(k): int(v) for k, v in (info.get("resourceChanges") or {}).items()},
            numbered_locally=not recorded,
            ref=key,
        )

    def state(self, version: StackVersion) -> StackState:
        """The checkpoint saved by that update (read now, not when listing)."""
        if not version.ref:
            raise PulumiError(f"version {version.version} has no checkpoint in {self.url}")
        match = re.match(r"^(.*)\.history\.json(\.gz|\.zst)?$", version.ref)
        assert match is not None
        stem = match.group(1) + ".checkpoint.json"
        for ext in dict.fromkeys((match.group(2) or "", *_COMPRESSIONS)):
            data = self._read(stem + ext)
            if data is not None:
                self.counters.checkpoints_read += 1
                return state_from_deployment(_latest(_decode(stem + ext, data)))
        raise PulumiError(f"version {version.version}: checkpoint {stem} is missing from {self.url}",
                          "the backend's history was pruned; diff against a version that still has one")

    def current(self, project: str, stack: str) -> StackState:
        """The stack's current checkpoint."""
        found = self._stack_file(project, stack)
        if found is None:
            where = f"{project}/{stack}" if self.project_layout else stack
            raise BadInput(f"stack {where} has no state in {self.url}",
                           "check pulumi.stack, pulumi.project and pulumi.backend_url in rollback.toml")
        key, data = found
        self.counters.checkpoints_read += 1
        return state_from_deployment(_latest(_decode(key, data)))

    def locks(self, project: str, stack: str) -> list[LockInfo]:
        """Locks held on the stack: Pulumi's own path, and the short form some tools write."""
        directories = ([f".pulumi/locks/organization/{project}/{stack}", f".pulumi/locks/{project}/{stack}"]
                       if self.project_layout else [f".pulumi/locks/{stack}"])
        found: list[LockInfo] = []
        for directory in directories:
            for key in self.store.list(directory):
                if not key.endswith(".json") or key.count("/") != directory.count("/") + 1:
                    continue
                data = self._read(key) or b"{}"
                try:
                    content = json.loads(data)
                except ValueError:
                    content = {}
                content = content if isinstance(content, Mapping) else {}
                found.append(LockInfo(f"{self.url}/{key}", _int_or_none(content.get("pid")),
                                      content.get("username"), content.get("hostname"), content.get("timestamp")))
        return found


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None
