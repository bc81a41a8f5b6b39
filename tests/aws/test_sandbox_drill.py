"""The sandbox drill: seed the edge stack, then practise every break-glass command on it,
in-process and against a standalone sandbox server (python -m rollback.sandbox.aws)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from rollback.adapters.stack_config import read_stack_config
from rollback.sandbox.aws import _free_port, moto_environment
from rollback.sandbox.seed_aws import seed_edge, write_workdir
from tests.aws.conftest import unique

# Each test here starts a sandbox or a browser of its own: the full run, not the inner loop.
pytestmark = pytest.mark.slow


def test_drill_in_process(aws: Callable[[str], Any], tmp_path: Path, run_cli: Any) -> None:
    seeded = seed_edge(name=unique("drill"))
    files = write_workdir(tmp_path / "drill", seeded)
    config, export = str(files["config"]), str(files["checkpoint"])

    assert run_cli("infra", "drift", "--checkpoint", export, "--config", config).code == 0
    edge = run_cli("infra", "edge", "--to-version", "2", "--yes", "--poll-interval", "0s", "--config", config)
    assert edge.code == 0, edge.err
    assert read_stack_config(files["stack"])["rollback:edgeFunctionVersion"] == "2"
    drift = run_cli("infra", "drift", "--json", "--checkpoint", export, "--config", config)
    assert drift.code == 3
    assert [d["field"] for d in drift.json()["differences"]] == ["edge association (default, viewer-response)"]

    good = seeded.objects["releases/r42/index.html"][0]
    restored = run_cli("infra", "assets", "--key", "releases/r42/index.html", "--to-version", good, "--yes",
                       "--config", config)
    assert restored.code == 0, restored.err
    undeleted = run_cli("infra", "assets", "--prefix", "releases/r42/", "--undelete", "--yes", "--config", config)
    assert undeleted.code == 0, undeleted.err
    s3 = aws("s3")
    assert s3.get_object(Bucket=seeded.bucket, Key="releases/r42/index.html")["Body"].read() == b"<h1>release 42</h1>"
    assert s3.get_object(Bucket=seeded.bucket, Key="releases/r42/app.js")["Body"].read() == b"console.log(42)"
    assert run_cli("infra", "invalidate", "--wait", "--poll-interval", "0s", "--config", config).code == 0


def test_standalone_sandbox_server(tmp_path: Path) -> None:
    port = _free_port()
    workdir = tmp_path / "drill"
    server = subprocess.Popen(
        [sys.executable, "-m", "rollback.sandbox.aws", "--port", str(port), "--seed", "--workdir", str(workdir),
         "--deploy-seconds", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (workdir / "stack-export.json").exists():
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            assert time.monotonic() < deadline, "the sandbox did not seed within 60 s"
            time.sleep(0.2)
        env = {**os.environ, **moto_environment(f"http://127.0.0.1:{port}")}
        env.pop("ROLLBACK_CONFIG", None)
        env.pop("ROLLBACK_ENV", None)

        def rollback(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "rollback", *args], cwd=workdir, env=env,
                                  capture_output=True, text=True, timeout=120)

        edge = rollback("infra", "edge", "--to-version", "1", "--yes", "--poll-interval", "0.3s")
        assert edge.returncode == 0, edge.stderr
        # The standalone server deploys on a clock: the wait saw InProgress before Deployed.
        assert "InProgress" in edge.stderr
        assert "version 3 -> 1 on behaviours [default]" in edge.stdout
        drift = rollback("infra", "drift", "--checkpoint", "stack-export.json", "--json")
        assert drift.returncode == 3, drift.stderr
        assert len(json.loads(drift.stdout)["differences"]) == 1
        assert httpx.get(f"http://127.0.0.1:{port}/moto-api/", timeout=5).status_code == 200
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            assert server.wait(timeout=15) == 0  # stopped cleanly on SIGTERM
        finally:
            if server.poll() is None:
                server.kill()
                server.wait(timeout=10)
