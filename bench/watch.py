#!/usr/bin/env python3
"""How long ``rollback watch`` takes to bring a bad release back: from its start to the app answering 200.

One sandbox for every run (``rollback sandbox up`` in a temporary directory, ``down`` at the end). Each
run: ``rollback sandbox reset`` (the bad release in every layer again), then ``rollback watch --for 3m
--interval 1s --auto app,edge,assets --json`` as a new process, with a lock directory of its own (a fresh
CI runner: no cooldown from the run before), while a poller GETs ``/api/health`` every 20 ms. Printed per
run and as medians (min-max), in seconds from the start of the process (its imports included):

- first bad reading, decision (``--min-bad`` 3 in a row), service restored (the app layer's health check
  passed), verified (the watch's checklist passed), from the watch's ``--json``;
- **health 200**: the first 200 the poller saw on ``/api/health`` (the target: a median of at most 30 s);
- the whole process.

Baseline, measured in the same run on the same sandbox: ``rollback run --layers app,edge,assets --yes
--no-verify``, what an on-call engineer types once they have noticed and decided, from its start to
health 200; the ratio says what detecting and deciding by itself costs the watch.

    python bench/watch.py [--runs 5]
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
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from _common import clean_env, require_rollback, spread

TARGET_SECONDS = 30.0
PHASES = ("detected", "decided", "restored", "verified")
LABELS = {"detected": "first bad reading", "decided": "decision", "restored": "rollback finished (restored)",
          "verified": "verified"}


class HealthPoller:
    """GET /api/health every ``every`` seconds from ``start()``; ``first_ok`` is when the first 200 came."""

    def __init__(self, url: str, every: float = 0.02) -> None:
        self.url = url
        self.every = every
        self.first_ok: float | None = None
        self.stop = threading.Event()
        self.started = 0.0
        self.thread: threading.Thread | None = None

    def start(self, started: float) -> None:
        self.started = started
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                with urllib.request.urlopen(self.url, timeout=2) as response:
                    if response.status == 200:
                        self.first_ok = time.perf_counter() - self.started
                        return
            except (urllib.error.URLError, OSError):
                pass
            self.stop.wait(self.every)

    def finish(self) -> float | None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(5)
        return self.first_ok


def rollback(python: str, *args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([python, "-m", "rollback", *args], env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, check=False)
    if check and done.returncode != 0:
        raise SystemExit(f"error: rollback {' '.join(args)} exited {done.returncode}: {done.stderr.strip()[-400:]}")
    return done


def close_incidents(python: str, env: dict[str, str]) -> None:
    listed = json.loads(rollback(python, "incident", "list", "--json", env=env).stdout)
    for item in listed.get("incidents", []):
        if item["status"] == "open":
            rollback(python, "incident", "close", item["id"], "--resolution", "bench", env=env)


def timed_to_health(python: str, argv: list[str], env: dict[str, str], health: str
                    ) -> tuple[float, float | None, str, int, dt.datetime]:
    """(process seconds, seconds to the first health 200, stdout, exit code, when it started) of
    ``rollback ARGV``."""
    poller = HealthPoller(health)
    launched = dt.datetime.now(dt.UTC)
    started = time.perf_counter()
    poller.start(started)
    done = subprocess.run([python, "-m", "rollback", *argv], env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, check=False)
    wall = time.perf_counter() - started
    return wall, poller.finish(), done.stdout, done.returncode, launched


def since(launched: dt.datetime, moment: Any) -> float | None:
    """Seconds from the process's start to an ISO time of its document."""
    if not isinstance(moment, str) or not moment:
        return None
    return (dt.datetime.fromisoformat(moment.replace("Z", "+00:00")) - launched).total_seconds()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    python = sys.executable
    require_rollback(python, extras=("moto",))
    base = clean_env()
    phases: dict[str, list[float]] = {name: [] for name in PHASES}
    healthy: list[float] = []
    walls: list[float] = []
    manual: list[float] = []
    failures = 0
    with tempfile.TemporaryDirectory(prefix="rollback-watch-bench-") as scratch:
        directory = Path(scratch) / ".rollback" / "sandbox"
        try:
            rollback(python, "sandbox", "up", "--dir", str(directory), env=base)
            status = json.loads(rollback(python, "sandbox", "status", "--dir", str(directory), "--json",
                                         env=base).stdout)
            env = {**base, **status["env"], "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
            health = f"{env['APP_URL']}/api/health"
            for number in range(1, args.runs + 1):
                # the baseline: a person's command, on the bad release
                rollback(python, "sandbox", "reset", "--dir", str(directory), env=env)
                close_incidents(python, env)
                _, person, _, code, _ = timed_to_health(
                    python, ["run", "--layers", "app,edge,assets", "--severity", "P0", "--yes", "--no-verify"],
                    {**env, "ROLLBACK_LOCK_DIR": str(Path(scratch) / f"locks-run-{number}")}, health)
                if code == 0 and person is not None:
                    manual.append(person)
                # the watch, on the bad release again
                rollback(python, "sandbox", "reset", "--dir", str(directory), env=env)
                close_incidents(python, env)
                watch_env = {**env, "ROLLBACK_LOCK_DIR": str(Path(scratch) / f"locks-watch-{number}")}
                wall, first_ok, out, code, launched = timed_to_health(
                    python, ["watch", "--for", "3m", "--interval", "1s", "--auto", "app,edge,assets", "--json"],
                    watch_env, health)
                try:
                    document: dict[str, Any] = json.loads(out)
                except json.JSONDecodeError:
                    document = {}
                acted = (document.get("acted") or {}).get("status")
                times = {key: since(launched, document.get(f"{key}_at")) for key in PHASES}
                shown = ", ".join(f"{LABELS[k]} {times[k]:.1f} s" for k in PHASES if times.get(k) is not None)
                print(f"run {number}: exit {code} ({document.get('outcome')}, rollback {acted}); {shown}; health 200 "
                      f"after {first_ok:.1f} s" if first_ok is not None else f"run {number}: exit {code}, no health "
                      f"200 ({document.get('error')})", flush=True)
                if first_ok is None or acted != "succeeded":
                    failures += 1
                    continue
                healthy.append(first_ok)
                walls.append(wall)
                for key in PHASES:
                    value = times.get(key)
                    if value is not None:
                        phases[key].append(value)
        finally:
            subprocess.run([python, "-m", "rollback", "sandbox", "down", "--dir", str(directory)], env=base,
                           capture_output=True, check=False)

    load = os.getloadavg()
    print()
    print(f"runs: {args.runs} ({failures} failed); load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
          f"on {os.cpu_count()} CPUs at the end")
    if not healthy:
        print("no watch brought the app back")
        return 1
    print("from the start of rollback watch (median (min-max)):")
    for key in PHASES:
        if phases[key]:
            print(f"  {LABELS[key]:32} {spread(phases[key], 7)}")
    median = statistics.median(healthy)
    print(f"  {'health 200 on /api/health':32} {spread(healthy, 7)}  target <= {TARGET_SECONDS:.0f} s: "
          f"{'met' if median <= TARGET_SECONDS else 'MISSED'}")
    print(f"  {'the whole watch process':32} {spread(walls, 7)}")
    if manual:
        baseline = statistics.median(manual)
        print(f"baseline: rollback run --layers app,edge,assets --yes (a person's command, typed at once) to health "
              f"200: {spread(manual, 7)}; the watch: {median / baseline:.1f}x that, detection and decision included")
    return 0 if failures == 0 and median <= TARGET_SECONDS else 1


if __name__ == "__main__":
    raise SystemExit(main())
