"""The throwaway cluster cleans up after itself even when its owner is killed."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

KILLED_OWNER = """
import os
from rollback.sandbox.postgres import start_postgres
cluster = start_postgres()
print(cluster.base, cluster.port, flush=True)
os.kill(os.getpid(), 9)  # no stop(), no finally, no atexit
"""


def _server_running(base: Path) -> bool:
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    return f"postgres -D {base}/data" in out


def test_a_cluster_whose_owner_is_sigkilled_is_stopped_and_removed() -> None:
    proc = subprocess.run([sys.executable, "-c", KILLED_OWNER], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    base = Path(proc.stdout.split()[0])
    deadline = time.monotonic() + 30
    while (base.exists() or _server_running(base)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _server_running(base)
    assert not base.exists()
