#!/usr/bin/env python3
"""How long the sandbox takes to come up, re-seed and go down, as whole processes.

Each run: ``rollback sandbox up`` in a fresh temp directory (start the
supervisor, moto, the Vercel emulator, the app server and PostgreSQL, then seed
every layer), ``rollback sandbox status``, ``rollback sandbox reset`` (re-seed
the running world) and ``rollback sandbox down`` (stop everything, remove the
cluster). Also printed: the supervisor's own time to ready, the CPU time it
spent to get there (a figure the machine's other load does not inflate) and
the seeding time it records, and ``python -c pass`` / ``rollback --help`` measured in the
same run as baselines. The drill (issue 14) must finish in under 60 s on a
2-core machine, so ``up`` should stay a few seconds.

    python bench/sandbox.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import require_rollback


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=True, stdin=subprocess.DEVNULL)
    return time.perf_counter() - started, done.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    python = sys.executable
    require_rollback(python, extras=("moto",))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROLLBACK_", "AWS_", "VERCEL_"))}
    names = ("python -c pass (baseline)", "rollback --help (baseline)", "rollback sandbox up",
             "  supervisor: ready", "  supervisor: CPU to ready", "  supervisor: seeding", "rollback sandbox status",
             "rollback sandbox reset", "  supervisor: re-seeding", "rollback sandbox down")
    samples: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(args.runs):
        samples["python -c pass (baseline)"].append(timed([python, "-c", "pass"], env)[0])
        samples["rollback --help (baseline)"].append(timed([python, "-m", "rollback", "--help"], env)[0])
        with tempfile.TemporaryDirectory() as scratch:
            directory = str(Path(scratch) / ".rollback" / "sandbox")
            try:
                seconds, out = timed([python, "-m", "rollback", "sandbox", "up", "--dir", directory, "--json"], env)
                document = json.loads(out)
                samples["rollback sandbox up"].append(seconds)
                samples["  supervisor: ready"].append(float(document["seconds_to_ready"]))
                samples["  supervisor: CPU to ready"].append(float(document["cpu_seconds_to_ready"]))
                samples["  supervisor: seeding"].append(float(document["world"]["seconds"]))
                samples["rollback sandbox status"].append(
                    timed([python, "-m", "rollback", "sandbox", "status", "--dir", directory], env)[0])
                seconds, out = timed([python, "-m", "rollback", "sandbox", "reset", "--dir", directory, "--json"], env)
                samples["rollback sandbox reset"].append(seconds)
                samples["  supervisor: re-seeding"].append(float(json.loads(out)["world"]["seconds"]))
            finally:
                seconds, _ = timed([python, "-m", "rollback", "sandbox", "down", "--dir", directory], env)
                samples["rollback sandbox down"].append(seconds)

    baseline = statistics.median(samples["python -c pass (baseline)"])
    print(f"runs: {args.runs} (whole processes, median; load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs at the end)")
    print(f"{'step':32} {'median':>10} {'x baseline':>11}")
    for name, values in samples.items():
        if values:
            median = statistics.median(values)
            print(f"{name:32} {median:8.2f} s {median / baseline:10.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
