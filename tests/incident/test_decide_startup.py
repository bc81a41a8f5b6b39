"""``rollback decide --live`` loads what the sources it reads use, and builds only their AWS clients (issue 20).

A whole ``decide --live --no-incident`` process against the stand-ins (the moto server, the Vercel
emulator, PostgreSQL) of a world with no Pulumi stack, no grow-only table and no assets bucket: the
decision is made from every source, and the process has not imported the Pulumi backend, the backups'
manifests or the S3 adapter, nor built an S3 client (the distribution is read with CloudFront's client
only; S3 is asked only for the objects of an assets release, which this environment does not have).
The time this saves is measured by ``python bench/decide.py``, not asserted here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.incident.conftest import World

ROOT = Path(__file__).resolve().parents[2]

# The CLI in a fresh process, then what that process loaded: its rollback modules and the services of
# the AWS clients it built (rollback.adapters.cloudwatch.make_client keeps one per service).
PROBE = """
import json, sys
from rollback.cli import main
code = main(["decide", "--live", "--no-incident", "--json"])
from rollback.adapters import cloudwatch
print(json.dumps({"code": code, "modules": sorted(m for m in sys.modules if m.startswith("rollback")),
                  "clients": sorted({key[1] for key in cloudwatch._CLIENTS})}))
"""

NOT_USED_HERE = ("rollback.adapters.pulumi", "rollback.adapters.pulumi_backend", "rollback.adapters.pulumi_project",
                 "rollback.model.stackdiff", "rollback.backups", "rollback.adapters.s3_versions")


def test_decide_live_loads_and_builds_only_what_its_sources_use(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROLLBACK_DECIDE_BUDGET", "30")  # a timed-out source would be "not measured"
    world.break_it()
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=dict(os.environ), capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    *decision_lines, probe_line = done.stdout.strip().splitlines()
    decision, probe = json.loads("\n".join(decision_lines)), json.loads(probe_line)
    assert probe["code"] == 0 and decision["severity"] == "P0"
    sources = decision["live_sources"]
    assert sources["alarms"]["ok"] and sources["cloudfront"]["ok"], sources
    assert sources["changes.cdn"]["seconds"] > 0  # the distribution was asked for (moto: it does not exist)
    assert not sources["changes.stack"]["ok"] and "not configured" in sources["changes.stack"]["problem"]
    assert [m for m in NOT_USED_HERE if m in probe["modules"]] == []
    assert probe["clients"] == ["cloudfront", "cloudwatch"]
