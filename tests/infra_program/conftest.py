"""Fixtures for the infra/ mocks suite.

The program runs under Pulumi's mocks through ``rollback.adapters.pulumi_mocks``:
config is set before the program is executed, and every resource's declared
inputs are recorded. Runs are cached per config, so the whole suite executes
the program only a handful of times.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    # The program's components are imported as the ``infra`` package.
    sys.path.insert(0, str(REPO_ROOT))

from rollback.adapters.pulumi_mocks import MockRun, run_program  # noqa: E402

PROGRAM_DIR = REPO_ROOT / "infra"

NETWORK = {
    "access": "public",
    "vpcId": "vpc-0a1b2c3d4e5f60718",
    "subnetIds": ["subnet-0a1b2c3d4e5f60718", "subnet-1a2b3c4d5e6f70819"],
    "allowedCidrs": ["0.0.0.0/0"],
}

BASE_CONFIG: dict[str, str] = {
    "aws:region": "us-east-1",
    "rollback:assetsRelease": "2026-11-20.1",
    "rollback:appOriginDomain": "huntaze.vercel.app",
    "rollback:dbNetwork": json.dumps(NETWORK),
    "rollback:dbReleaseSnapshots": json.dumps(["pre-2026-11-20-1"]),
}

RunInfra = Callable[..., MockRun]


@pytest.fixture(scope="session")
def run_infra() -> RunInfra:
    """Run the program with BASE_CONFIG plus overrides (a None value removes a key); cached unless fresh."""
    cache: dict[str, MockRun] = {}

    def run(overrides: Mapping[str, Any] | None = None, stack: str = "dev", fresh: bool = False) -> MockRun:
        config: dict[str, Any] = dict(BASE_CONFIG)
        for key, value in (overrides or {}).items():
            full = key if ":" in key else f"rollback:{key}"
            if value is None:
                config.pop(full, None)
            else:
                config[full] = value
        cache_key = json.dumps([config, stack], sort_keys=True)
        if fresh or cache_key not in cache:
            cache[cache_key] = run_program(PROGRAM_DIR, config, stack=stack)
        return cache[cache_key]

    return run


@pytest.fixture(scope="session")
def base(run_infra: RunInfra) -> MockRun:
    """The program run with BASE_CONFIG."""
    return run_infra()
