"""The Python environment an earlier version's Pulumi program runs in: its own dependencies, not today's.

``infra/requirements.txt`` pins the program's dependencies (``pulumi-aws`` decides the aws plugin, and so
the provider that reads and writes the stack's state). Version N's program is run by the Pulumi CLI from a
worktree of its commit, with the virtualenv ``Pulumi.yaml`` names (``.venv``): :func:`ensure_venv` builds
one per content of that commit's ``requirements.txt``, under ``<root>/.rollback/venvs/<sha256>`` (or
``$ROLLBACK_PROGRAM_VENVS/<sha256>``: one cache for several checkouts or sandboxes, since an environment
depends only on those pins), and reuses it for every later preview and restore of a version with the same
pins. Today's ``.venv`` is never written into.

A build happens in place (a virtualenv's scripts name its path, so it cannot be moved) under a lock file
(``<sha256>.lock``: two runs never build the same environment at once), and is complete only when its
marker is written last: a build a kill interrupted is removed and made again by the next run. It uses
``python -m venv --without-pip`` and this interpreter's pip installing into it (``pip --python``), so
pip's own configuration applies: ``PIP_INDEX_URL``,
``PIP_FIND_LINKS``, ``PIP_NO_INDEX`` for an offline wheel cache. A build that fails (offline with a package
missing from the cache, a pin that does not exist) is refused in one line naming the requirement pip could
not satisfy.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rollback.errors import UnsafePrecondition

__all__ = ["VENVS", "VENVS_ENV", "ProgramVenv", "ensure_venv", "installed_version", "is_complete", "pinned_version",
           "requirements_sha", "shared_venvs", "venv_path", "venvs_dir"]

VENVS = ".rollback/venvs"
VENVS_ENV = "ROLLBACK_PROGRAM_VENVS"  # a directory shared by several roots (checkouts, sandboxes)
_COMPLETE = ".rollback-venv.json"
_TIMEOUT = 900.0


@dataclass(frozen=True)
class ProgramVenv:
    """A built environment: where, for which requirements, and the pulumi-aws it has."""

    path: Path
    sha256: str
    built: bool  # False: it was already in the cache
    pulumi_aws: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "sha256": self.sha256, "built": self.built, "pulumi_aws": self.pulumi_aws}


def requirements_sha(text: bytes) -> str:
    return hashlib.sha256(text).hexdigest()


def shared_venvs() -> Path | None:
    """``$ROLLBACK_PROGRAM_VENVS``: one directory for the environments of every root, else ``None``."""
    shared = os.environ.get(VENVS_ENV, "").strip()
    return Path(shared).expanduser() if shared else None


def venvs_dir(root: Path) -> Path:
    """Where the program environments of ``root`` are kept: :func:`shared_venvs`, else ``root/.rollback/venvs``."""
    return shared_venvs() or root / VENVS


def venv_path(root: Path, sha256: str) -> Path:
    return venvs_dir(root) / sha256


def pinned_version(requirements: str, package: str = "pulumi-aws") -> str | None:
    """The version ``requirements`` pins ``package`` to (``==``), else ``None``."""
    wanted = re.sub(r"[-_.]+", "-", package).lower()
    for line in requirements.splitlines():
        match = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*==\s*([^\s;#]+)", line)
        if match and re.sub(r"[-_.]+", "-", match.group(1)).lower() == wanted:
            return match.group(2)
    return None


def installed_version(venv: Path, package: str = "pulumi_aws") -> str | None:
    """The version of ``package`` installed in ``venv`` (from its ``.dist-info``), else ``None``."""
    name = re.sub(r"[-_.]+", "_", package).lower()
    for info in sorted(venv.glob("lib/python*/site-packages/*.dist-info")):
        stem, _, version = info.name[: -len(".dist-info")].partition("-")
        if re.sub(r"[-_.]+", "_", stem).lower() == name:
            return version
    return None


def is_complete(path: Path, sha256: str) -> bool:
    """Whether ``path`` holds a finished environment of the requirements whose digest is ``sha256`` (a
    build that was killed, or another file's environment, is not)."""
    try:
        marker = json.loads((path / _COMPLETE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and marker.get("sha256") == sha256 and (path / "bin" / "python").exists()


def _pip_error(output: str) -> str:
    """The line of pip's output that says what it could not do."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in lines:
        if line.startswith("ERROR: No matching distribution") or line.startswith("ERROR: Could not find"):
            return line[len("ERROR: "):]
    errors = [line[len("ERROR: "):] for line in lines if line.startswith("ERROR: ")]
    return errors[-1] if errors else (lines[-1] if lines else "pip failed")


def ensure_venv(root: Path, requirements: bytes, *, label: str, python: str | None = None) -> ProgramVenv:
    """The environment for ``requirements`` under :func:`venvs_dir` ``/<sha256>``: reused when complete,
    else built. ``label`` names the requirements in a refusal ("infra/requirements.txt at commit 5d2c0f7e9a41")."""
    import fcntl

    sha = requirements_sha(requirements)
    target = venv_path(root, sha)
    if is_complete(target, sha):
        return ProgramVenv(target, sha, False, installed_version(target))
    python = python or sys.executable
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with (target.parent / f"{sha}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if is_complete(target, sha):  # another run built it while this one waited
                return ProgramVenv(target, sha, False, installed_version(target))
            shutil.rmtree(target, ignore_errors=True)  # what a killed build left
            try:
                _build(target, requirements, python, label)
            except BaseException:
                shutil.rmtree(target, ignore_errors=True)
                raise
            (target / _COMPLETE).write_text(json.dumps({"sha256": sha, "label": label}), encoding="utf-8")
    except OSError as exc:
        raise UnsafePrecondition(f"cannot build the program's environment from {label} in {target.parent}: "
                                 f"{exc.strerror or exc}", "check that directory is writable, or run with today's "
                                 ".venv: --with-current-deps") from exc
    return ProgramVenv(target, sha, True, installed_version(target))


def _build(target: Path, requirements: bytes, python: str, label: str) -> None:
    _run([python, "-m", "venv", "--without-pip", str(target)], label)
    (target / "requirements.txt").write_bytes(requirements)
    result = _run([python, "-m", "pip", "--python", str(target / "bin" / "python"), "install",
                   "--disable-pip-version-check", "--no-input", "--quiet", "-r", str(target / "requirements.txt")],
                  label, check=False)
    if result.returncode != 0:
        raise UnsafePrecondition(
            f"cannot build the program's environment from {label}: {_pip_error(result.stdout + result.stderr)}",
            "make the packages reachable (network, or PIP_FIND_LINKS with PIP_NO_INDEX=1 for a wheel cache), "
            "or run with today's .venv: --with-current-deps")


def _run(argv: list[str], label: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=_TIMEOUT, stdin=subprocess.DEVNULL,
                                check=False)
    except subprocess.TimeoutExpired as exc:
        raise UnsafePrecondition(f"building the program's environment from {label} took longer than "
                                 f"{_TIMEOUT:.0f}s", "run with today's .venv: --with-current-deps") from exc
    if check and result.returncode != 0:
        raise UnsafePrecondition(f"cannot build the program's environment from {label}: "
                                 f"{_pip_error(result.stdout + result.stderr)}",
                                 "run with today's .venv: --with-current-deps")
    return result
