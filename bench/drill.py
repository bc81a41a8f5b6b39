#!/usr/bin/env python3
"""How long ``rollback drill --sandbox`` takes, phase by phase, as a whole process.

Each run: ``rollback drill --sandbox --json`` in a fresh temporary directory (nothing running there:
it starts the sandbox, detects, decides, rolls back, verifies, writes the report and stops the
sandbox). Printed: the median (and min-max) of each drill phase's wall time, of the incident's
rollback metrics (time to detect, decide, roll back, verify, total, from the incident record), and
of the whole process (the target: under 60 s on a 2-core machine), with ``python -c pass`` and
``rollback --help`` measured in the same run as baselines, the CPU time of the drill process (the
sandbox's supervisor runs detached and is not counted), and the load average (the machine's other
load inflates wall time).

    python bench/drill.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import clean_env, require_rollback, spread

PHASES = ("sandbox", "detect", "decide", "rollback", "verify", "report", "teardown")
METRICS = ("detect", "decide", "rollback", "verify", "total")
TARGET_SECONDS = 60.0


def timed(argv: list[str], env: dict[str, str], cwd: str | None = None) -> tuple[float, float, str, int]:
    """(wall seconds, CPU seconds of the process and its children, stdout, exit code)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0 and not done.stdout.strip():
        sys.stderr.write(done.stderr)
    return wall, cpu, done.stdout, done.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    python = sys.executable
    require_rollback(python, extras=("moto",))
    env = clean_env()
    baselines: dict[str, list[float]] = {"python -c pass": [], "rollback --help": []}
    phases: dict[str, list[float]] = {name: [] for name in PHASES}
    metrics: dict[str, list[float]] = {name: [] for name in METRICS}
    walls: list[float] = []
    cpus: list[float] = []
    failures = 0
    for number in range(1, args.runs + 1):
        baselines["python -c pass"].append(timed([python, "-c", "pass"], env)[0])
        baselines["rollback --help"].append(timed([python, "-m", "rollback", "--help"], env)[0])
        with tempfile.TemporaryDirectory(prefix="rollback-drill-bench-") as scratch:
            wall, cpu, out, code = timed([python, "-m", "rollback", "drill", "--sandbox", "--json"], env, cwd=scratch)
            try:
                document = json.loads(out)
            except json.JSONDecodeError:
                document = {}
            finally:
                # Whatever happened, nothing may stay running.
                subprocess.run([python, "-m", "rollback", "sandbox", "down", "--dir",
                                str(Path(scratch) / ".rollback" / "sandbox")], env=env, capture_output=True,
                               check=False)
        print(f"run {number}: exit {code}, {wall:.1f} s wall, {cpu:.1f} s CPU"
              + (f" ({document.get('error')})" if code else ""), flush=True)
        if code != 0:
            failures += 1
            continue
        walls.append(wall)
        cpus.append(cpu)
        for phase in document.get("phases") or []:
            if phase.get("phase") in phases and isinstance(phase.get("seconds"), (int, float)):
                phases[phase["phase"]].append(float(phase["seconds"]))
        for row in document.get("metrics") or []:
            if row.get("phase") in metrics and isinstance(row.get("seconds"), (int, float)):
                metrics[row["phase"]].append(float(row["seconds"]))

    load = os.getloadavg()
    print()
    print(f"runs: {args.runs} ({failures} failed); load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
          f"on {os.cpu_count()} CPUs at the end")
    baseline = statistics.median(baselines["python -c pass"])
    for name, values in baselines.items():
        print(f"{name + ' (baseline)':32} {spread(values)}")
    if not walls:
        print("no drill completed")
        return 1
    print()
    print("drill phases (wall time, median (min-max)):")
    for name in PHASES:
        if phases[name]:
            print(f"  {name:30} {spread(phases[name])}")
    print()
    print("rollback metrics from the incident record (median (min-max)):")
    for name in METRICS:
        if metrics[name]:
            print(f"  {name:30} {spread(metrics[name])}")
    print()
    median_wall = statistics.median(walls)
    print(f"{'rollback drill --sandbox':32} {spread(walls)}  = {median_wall / baseline:.0f}x python -c pass; "
          f"target < {TARGET_SECONDS:.0f} s: {'met' if median_wall < TARGET_SECONDS else 'MISSED'}")
    print(f"{'  CPU of the drill process':32} {spread(cpus)}  (the sandbox runs detached: not counted)")
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
