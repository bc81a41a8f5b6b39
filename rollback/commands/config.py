"""``rollback config``: write a starter file, validate and show the resolved settings."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

from rollback.config import CONFIG_FILENAME, Config
from rollback.errors import BadInput, Refused

__all__ = ["check", "init", "template_text"]


def template_text() -> str:
    """The annotated starter ``rollback.toml`` shipped with the package."""
    return resources.files("rollback").joinpath("templates", CONFIG_FILENAME).read_text(encoding="utf-8")


def init(path: str | Path, *, force: bool = False) -> Path:
    """Write the starter config to ``path``: a file, or a directory (an existing one, or a name ending
    in ``/``, created if missing) that gets ``rollback.toml``. Never overwrites without ``force``."""
    raw = os.fspath(path)
    folder = Path(raw)
    if raw.endswith(("/", os.sep)) or folder.is_dir():
        if folder.exists() and not folder.is_dir():
            raise BadInput(f"{raw} is not a directory", "name a directory, or a file such as rollback.toml")
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / CONFIG_FILENAME
    else:
        target = folder
    if target.exists() and not force:
        raise Refused(f"{target} already exists", "pass --force to overwrite it, or edit it")
    if not target.parent.is_dir():
        raise BadInput(f"directory {target.parent} does not exist", "create it first or choose another path")
    target.write_text(template_text(), encoding="utf-8")
    return target


def check(config: Config) -> dict[str, Any]:
    """The resolved settings of one environment, secrets masked."""
    return {"ok": True, **config.describe()}
