"""A skipped test fails the run, outside CI too, unless ROLLBACK_TESTS_ALLOW_SKIP=1 (and never
in CI): a machine without PostgreSQL or the Vercel CLI must not pass with suites left out."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _pytest(tmp_path: Path, **env: str) -> int:
    test = tmp_path / "test_skips.py"
    test.write_text("import pytest\n\ndef test_needs_a_server():\n    pytest.skip('no server here')\n")
    environ = {k: v for k, v in os.environ.items() if k not in ("CI", "ROLLBACK_TESTS_ALLOW_SKIP")}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest",
                           "--rootdir", str(tmp_path), str(test)], cwd=ROOT, env={**environ, **env},
                          capture_output=True, text=True, check=False)
    return done.returncode


@pytest.mark.slow
@pytest.mark.parametrize(("env", "code"), [
    ({}, 1),
    ({"ROLLBACK_TESTS_ALLOW_SKIP": "1"}, 0),
    ({"CI": "true"}, 1),
    ({"CI": "true", "ROLLBACK_TESTS_ALLOW_SKIP": "1"}, 1),
])
def test_skips_fail_unless_allowed_outside_ci(tmp_path: Path, env: dict[str, str], code: int) -> None:
    assert _pytest(tmp_path, **env) == code
