"""A local wheel cache for the program-environment tests: pip installs from it with ``PIP_NO_INDEX=1`` and
``PIP_FIND_LINKS=<dir>`` (no network, no index), so a requirement that is not in it fails as it does offline.

The wheels are tiny, written here by hand in the wheel format (PEP 427: a zip with the package, its
``.dist-info/METADATA``, ``WHEEL`` and ``RECORD``); a ``pulumi_aws`` one lets a test read the version an
environment got. They exist only in the test's tmp_path."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

import pytest

__all__ = ["make_wheel", "offline_wheels"]


def make_wheel(directory: Path, name: str, version: str) -> Path:
    """Write ``<name>-<version>-py3-none-any.whl`` (module ``<name>``) into ``directory``."""
    module = name.replace("-", "_")
    info = f"{module}-{version}.dist-info"
    files = {
        f"{module}/__init__.py": f'__version__ = "{version}"\n',
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: rollback-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{info}/RECORD,,")
    directory.mkdir(parents=True, exist_ok=True)
    wheel = directory / f"{module}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
        archive.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return wheel


@pytest.fixture
def offline_wheels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """pip sees only ``<tmp>/wheels`` (holding pulumi_aws 6.0.0 and rollback_fixture_dep 1.0): offline."""
    directory = tmp_path / "wheels"
    make_wheel(directory, "pulumi_aws", "6.0.0")
    make_wheel(directory, "rollback_fixture_dep", "1.0")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(directory))
    monkeypatch.delenv("PIP_INDEX_URL", raising=False)
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")  # the machine's pip.conf names other indexes
    return directory
