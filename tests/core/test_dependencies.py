"""pyproject.toml declares what the package imports, and no more (BRIEF: "declare only what is imported"),
and bounds the dependencies whose next major version is announced as breaking."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The distribution name where the import name differs.
IMPORT_NAMES = {"ruamel.yaml": "ruamel", "psycopg[binary]": "psycopg"}


def _runtime_dependencies() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    found = {}
    for spec in project["dependencies"]:
        name = re.match(r"[A-Za-z0-9_.\-\[\]]+", spec)
        assert name is not None, spec
        found[name.group(0)] = spec
    return found


def test_every_runtime_dependency_is_imported_by_the_package() -> None:
    sources = "\n".join(p.read_text() for p in (ROOT / "rollback").rglob("*.py"))
    unused = []
    for name in _runtime_dependencies():
        module = IMPORT_NAMES.get(name, name)
        if not re.search(rf"^\s*(import|from) {re.escape(module)}\b", sources, re.MULTILINE):
            unused.append(name)
    assert unused == []


def test_httpx_has_an_upper_bound() -> None:
    # httpx 1.0 changes the transport and client API the adapters use (rollback.adapters.http).
    assert re.search(r"<\s*1\b", _runtime_dependencies()["httpx"])
