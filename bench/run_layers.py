#!/usr/bin/env python3
"""How long ``rollback run --layers app,edge,assets,db --yes`` takes against the sandbox, as a whole process.

One sandbox is started in a temp directory; each run re-breaks every layer
(``rollback sandbox reset``), closes the incident left open by the previous
run, then times the whole ``rollback run`` process: the world check, the
emergency backup, the instant rollback and its health check, the edge
association and its deploy, the assets and the invalidation, the database
restore and swap, and the post-rollback checklist (re-checked until the
alarms clear and the CloudFront rates show the time since the restore).
The phases come from the run's journal (restore = until the app's health
check passed; layers = until the database was swapped in; verify = the
checklist). ``rollback --help`` is timed in the same run as a baseline. The
runbook's targets: rollback in under 10 minutes, verification in under 5;
the drill (issue 14) has 60 s for everything on a 2-core machine.

    python bench/run_layers.py [--runs 3] [--layers app,edge,assets,db]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(argv: list[str], env: dict[str, str], *,
          check: bool = True) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    if check and done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[2:])} exited {done.returncode}:\n{done.stderr[-2000:]}")
    return seconds, done


def _ts(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def phases(journal: Path) -> dict[str, float]:
    entries = [json.loads(line) for line in journal.read_text().splitlines() if line.strip()]
    started = _ts(entries[0]["ts"])
    finished = {e["step"]: _ts(e["ts"]) for e in entries if e["event"] == "step_finished"}
    begun = {e["step"]: _ts(e["ts"]) for e in entries if e["event"] == "step_started"}
    out: dict[str, float] = {}
    if "app.health" in finished:
        out["  journal: until restored (app.health)"] = (finished["app.health"] - started).total_seconds()
    last_layer = max((t for step, t in finished.items() if not step.startswith(("verify.", "run."))), default=None)
    if last_layer is not None:
        out["  journal: until every layer is back"] = (last_layer - started).total_seconds()
    if "verify.checklist" in finished:
        out["  journal: checklist"] = (finished["verify.checklist"] - begun["verify.checklist"]).total_seconds()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--layers", default="app,edge,assets,db")
    args = parser.parse_args()

    python = sys.executable
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ROLLBACK_", "AWS_", "VERCEL_"))}
    samples: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        samples.setdefault(name, []).append(value)

    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch) / ".rollback" / "sandbox"
        timed([python, "-m", "rollback", "sandbox", "up", "--dir", str(directory)], base)
        try:
            _, status = timed([python, "-m", "rollback", "sandbox", "status", "--dir", str(directory), "--json"],
                              base)
            env = {**base, **json.loads(status.stdout)["env"]}
            runs = Path(scratch) / ".rollback" / "runs"
            for number in range(args.runs):
                if number:
                    timed([python, "-m", "rollback", "sandbox", "reset", "--dir", str(directory)], base)
                timed([python, "-m", "rollback", "incident", "close", "open", "--resolution", "bench"], env,
                      check=False)
                add("rollback --help (baseline)", timed([python, "-m", "rollback", "--help"], env)[0])
                known = set(runs.glob("*.jsonl")) if runs.is_dir() else set()
                seconds, done = timed([python, "-m", "rollback", "run", "--layers", args.layers, "--yes", "--json"],
                                      env)
                add(f"rollback run --layers {args.layers} --yes", seconds)
                document = json.loads(done.stdout)
                assert document["verification"]["ok"], document["verification"]
                journal = next(p for p in runs.glob("*.jsonl") if p not in known)
                for name, value in phases(journal).items():
                    add(name, value)
                print(f"run {number + 1}: {seconds:.1f} s, {document['verification']['rounds']} checklist "
                      f"round(s)", file=sys.stderr)
        finally:
            timed([python, "-m", "rollback", "sandbox", "down", "--dir", str(directory)], base, check=False)

    baseline = statistics.median(samples["rollback --help (baseline)"])
    print(f"{'what':<48} {'median':>8} {'min':>8} {'max':>8} {'x --help':>9}")
    for name, values in samples.items():
        median = statistics.median(values)
        print(f"{name:<48} {median:>7.2f}s {min(values):>7.2f}s {max(values):>7.2f}s {median / baseline:>8.1f}x")
    print(f"({args.runs} run(s); targets: rollback < 600 s, verify < 300 s, the drill < 60 s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
