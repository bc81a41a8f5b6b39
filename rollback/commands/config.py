"""``rollback config``: write a starter file, validate and show the resolved settings."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from rollback.config import CONFIG_FILENAME, Config
from rollback.errors import BadInput, Refused

__all__ = ["check", "init", "template_text"]


def template_text() -> str:
    """The annotated starter ``rollback.toml`` shipped with the package."""
    return resources.files("rollback").joinpath("templates", CONFIG_FILENAME).read_text(encoding="utf-8")


def init(path: Path, *, force: bool = False) -> Path:
    """Write the starter config to ``path`` (a file or a directory). Never overwrites without ``force``."""
    target = path / CONFIG_FILENAME if path.is_dir() else path
    if target.exists() and not force:
        raise Refused(f"{target} already exists", "pass --force to overwrite it, or edit it")
    if not target.parent.is_dir():
        raise BadInput(f"directory {target.parent} does not exist", "create it first or choose another path")
    target.write_text(template_text(), encoding="utf-8")
    return target


def check(config: Config) -> dict[str, Any]:
    """The resolved settings of one environment, secrets masked."""
    return {"ok": True, **config.describe()}
