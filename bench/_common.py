"""Shared by the benchmark scripts: a clear message when the Python running them cannot run rollback."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path


def require_rollback(python: str = sys.executable, *, extras: tuple[str, ...] = ()) -> None:
    """Exit 2 with one line when ``python`` cannot import the CLI (e.g. the system python, without the
    project's dependencies) or one of ``extras``' modules; a benchmark must not die in a traceback."""
    modules = ["rollback.cli", *extras]
    probe = subprocess.run([python, "-c", "; ".join(f"import {m}" for m in modules)], capture_output=True,
                           text=True, check=False)
    if probe.returncode == 0:
        return
    lines = [line for line in probe.stderr.strip().splitlines() if line.strip()]
    why = lines[-1] if lines else f"exit {probe.returncode}"
    venv = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "python"
    script = Path(sys.argv[0]).name
    sys.stderr.write(f"error: {python} cannot run rollback ({why}) (run the benchmark with the project's "
                     f"environment: {venv if venv.exists() else '.venv/bin/python'} bench/{script}, after "
                     f"bash tests/run.sh --co -q or pip install -e '.[sandbox]')\n")
    raise SystemExit(2)


def clean_env() -> dict[str, str]:
    """No sandbox exports from the calling shell: each run starts from nothing, as on a fresh machine."""
    prefixes = ("ROLLBACK_", "AWS_", "VERCEL_", "SANDBOX_")
    return {k: v for k, v in os.environ.items()
            if not k.startswith(prefixes) and k not in ("DATABASE_URL", "APP_URL", "SLACK_WEBHOOK_URL")}


def spread(values: list[float], width: int = 8) -> str:
    """``median s  (min-max)``."""
    return f"{statistics.median(values):{width}.2f} s  ({min(values):.2f}-{max(values):.2f})"
