#!/usr/bin/env python3
"""Start-up cost of the CLI, measured as whole processes.

Times ``rollback --help`` and ``rollback config check`` (against the shipped
starter config) over several runs, and ``python -c pass`` in the same run as
the baseline, then prints medians and ratios. Target: ``rollback --help``
median under 0.25 s.

    python bench/startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import require_rollback

TARGET_HELP_SECONDS = 0.25


def timed(argv: list[str], env: dict[str, str], runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        samples.append(time.perf_counter() - started)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()

    python = sys.executable
    require_rollback(python)
    with tempfile.TemporaryDirectory() as scratch:
        config = Path(scratch) / "rollback.toml"
        subprocess.run([python, "-m", "rollback", "config", "init", "--path", str(config)], check=True,
                       stderr=subprocess.DEVNULL)
        env = {**os.environ, "ROLLBACK_CONFIG": str(config)}
        cases = {
            "python -c pass (baseline)": [python, "-c", "pass"],
            "rollback --help": [python, "-m", "rollback", "--help"],
            "rollback config check": [python, "-m", "rollback", "config", "check"],
        }
        # One warm-up each, so the first run's disk cache misses do not count.
        for argv in cases.values():
            timed(argv, env, 1)
        medians = {name: statistics.median(timed(argv, env, args.runs)) for name, argv in cases.items()}

    baseline = medians["python -c pass (baseline)"]
    print(f"runs per command: {args.runs} (whole processes, median)")
    print(f"{'command':32} {'median':>10} {'x baseline':>11}")
    for name, median in medians.items():
        print(f"{name:32} {median * 1000:8.1f} ms {median / baseline:10.1f}x")
    help_median = medians["rollback --help"]
    verdict = "OK" if help_median < TARGET_HELP_SECONDS else "OVER TARGET"
    print(f"rollback --help: {help_median * 1000:.1f} ms against a {TARGET_HELP_SECONDS * 1000:.0f} ms target: "
          f"{verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
