"""Self-managed (DIY) Pulumi backends written from Python: the sandbox's stack history and
the tests' fixtures.

:func:`build_backend` writes a backend directory with the layout of Pulumi's
``pkg/backend/diy`` (``.pulumi/meta.yaml``, ``stacks/``, ``history/`` with one
``.history.json`` / ``.checkpoint.json`` pair per update), in the project or
legacy layout, plain or gzip- or zstd-compressed; :mod:`rollback.adapters.pulumi_backend`
reads it back. Each :class:`BackendUpdate` carries the checkpoint document as
Pulumi would have saved it after that update, so callers decide what is in it
(the tests use Pulumi's own checkpoint fixtures, the sandbox writes version-3
checkpoints of the resources it seeded).

Secrets use Pulumi's ``b64`` secrets provider format: ciphertext = base64 of the
value (:func:`encrypt`, :func:`secret_property`).
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "SECRET_SIG",
    "SIG",
    "BackendUpdate",
    "build_backend",
    "checkpoint_document",
    "encrypt",
    "history_entry",
    "secret_property",
    "write_file",
    "write_lock",
]

SIG = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"


def encrypt(value: str) -> str:
    """The ``b64`` secrets provider's ciphertext of ``value``."""
    return base64.b64encode(value.encode()).decode()


def secret_property(value: Any) -> dict[str, str]:
    """A secret resource property as a checkpoint stores it."""
    return {SIG: SECRET_SIG, "ciphertext": encrypt(json.dumps(value))}


@dataclass(frozen=True)
class BackendUpdate:
    """One ``pulumi up``: its history entry fields and the checkpoint saved after it."""

    message: str
    start_time: int  # unix seconds
    config: dict[str, Any]  # as a .history.json stores it: plain values or {"secure": ciphertext}
    checkpoint: dict[str, Any]  # the whole stack file document
    changes: dict[str, int] = field(default_factory=lambda: {"same": 1})
    git_head: str = ""
    duration: int = 95
    result: str = "succeeded"


def checkpoint_document(project: str, stack: str, resources: list[dict[str, Any]], *,
                        pending: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A version-3 stack file holding ``resources`` (``b64`` secrets provider)."""
    latest: dict[str, Any] = {
        "manifest": {"time": "2026-01-01T00:00:00Z", "magic": "", "version": "v3.140.0"},
        "secrets_providers": {"type": "b64", "state": {}},
        "resources": resources,
    }
    if pending:
        latest["pending_operations"] = pending
    return {"version": 3, "checkpoint": {"stack": f"organization/{project}/{stack}", "latest": latest}}


def history_entry(update: BackendUpdate) -> dict[str, Any]:
    """The ``.history.json`` document of an update (``version`` is always 0 in a DIY backend)."""
    return {
        "kind": "update",
        "startTime": update.start_time,
        "message": update.message,
        "environment": {"git.head": update.git_head, "git.dirty": "false", "exec.kind": "cli",
                        "git.headName": "refs/heads/main"},
        "config": update.config,
        "result": update.result,
        "endTime": update.start_time + update.duration,
        "version": 0,
        "resourceChanges": update.changes,
    }


def _encode(data: bytes, compression: str | None) -> tuple[bytes, str]:
    if compression == "gz":
        return gzip.compress(data), ".gz"
    if compression == "zst":
        import zstandard

        return bytes(zstandard.ZstdCompressor().compress(data)), ".zst"
    return data, ""


def write_file(path: Path, document: Any, compression: str | None = None) -> Path:
    """Write ``document`` as JSON to ``path`` (+ ``.gz``/``.zst`` when compressed); returns the path written."""
    data, ext = _encode(json.dumps(document, indent=4).encode(), compression)
    target = path.with_name(path.name + ext)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return target


def build_backend(root: Path, *, project: str, stack: str, updates: Sequence[BackendUpdate],
                  layout: str = "project", compression: str | None = None,
                  current: dict[str, Any] | None = None) -> Path:
    """Write a DIY backend with one history/checkpoint pair per update; returns ``root``.

    ``compression`` is ``None``, ``"gz"``, ``"zst"`` or ``"mixed"`` (alternating per update).
    ``current`` is the stack file (default: the last update's checkpoint).
    """
    pulumi_dir = root / ".pulumi"
    pulumi_dir.mkdir(parents=True, exist_ok=True)
    if layout == "project":
        (pulumi_dir / "meta.yaml").write_text("version: 1\n", encoding="utf-8")
        stacks_dir = pulumi_dir / "stacks" / project
        history_dir = pulumi_dir / "history" / project / stack
    else:
        stacks_dir = pulumi_dir / "stacks"
        history_dir = pulumi_dir / "history" / stack
    cycle: list[str | None] = [None, "gz", "zst"]
    for number, update in enumerate(updates, start=1):
        mode = cycle[number % 3] if compression == "mixed" else compression
        nanos = update.start_time * 1_000_000_000 + 123_456_789
        stem = history_dir / f"{stack}-{nanos}"
        write_file(stem.with_name(stem.name + ".history.json"), history_entry(update), mode)
        write_file(stem.with_name(stem.name + ".checkpoint.json"), update.checkpoint, mode)
    mode = "zst" if compression == "mixed" else compression
    write_file(stacks_dir / f"{stack}.json", current if current is not None else updates[-1].checkpoint, mode)
    return root


def write_lock(root: Path, *, project: str, stack: str, layout: str = "project") -> Path:
    """A lock file as a running ``pulumi up`` leaves it (Pulumi's ``lockContent``)."""
    directory = (root / ".pulumi" / "locks" / "organization" / project / stack if layout == "project"
                 else root / ".pulumi" / "locks" / stack)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "8a3c1f2e-6f4e-4c1b-9e0a-5d1f2b3c4d5e.json"
    path.write_text(json.dumps({"pid": 4242, "username": "ci", "hostname": "runner-7",
                                "timestamp": "2026-11-28T09:30:00Z"}), encoding="utf-8")
    return path
