#!/usr/bin/env python3
"""Benchmark: time from command start to a confirmed instant rollback.

Runs, in one process and against one Vercel API emulator with zero alias-job
latency (``rollback.sandbox.vercel``, real HTTP on loopback):

- ``rollback app rollback --yes`` (picks the previous stable production
  deployment itself, requests the rollback, polls until the job succeeded);
- when Vercel's CLI is found (``$VERCEL_CLI``, ``vercel`` on PATH, or
  ``.cache/vercel-cli/node_modules/.bin/vercel``): ``vercel rollback <url> --yes``
  doing the same (it is given the target; it also waits for success).

Both are whole processes, interleaved, the emulator reset to the demo seed
before every run; every run is checked to have moved production. Prints the
medians and the ratio. Target: ours <= 0.5x Vercel's.

    python bench/app_rollback.py            # 9 runs each
    python bench/app_rollback.py --runs 21
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rollback.sandbox.vercel import DEMO, VercelEmulator, start_emulator  # noqa: E402

TOKEN = "benchToken7f3a9c"  # Vercel's CLI refuses tokens with '-'
TARGET_RATIO = 0.5


def find_vercel_cli() -> str | None:
    for candidate in (os.environ.get("VERCEL_CLI"), shutil.which("vercel"),
                      str(ROOT / ".cache" / "vercel-cli" / "node_modules" / ".bin" / "vercel")):
        if candidate and Path(candidate).is_file() and shutil.which("node"):
            return candidate
    return None


def write_config(directory: Path) -> Path:
    path = directory / "rollback.toml"
    path.write_text(
        'default_env = "production"\n'
        f'[journal]\ndir = "{directory / "runs"}"\n'
        f'[env.production.vercel]\nproject = "{DEMO.project_name}"\nteam = "{DEMO.team_id}"\n',
        encoding="utf-8",
    )
    return path


def timed(command: list[str], *, env: dict[str, str], cwd: Path) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    proc = subprocess.run(command, env=env, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=120, check=False)
    return time.perf_counter() - started, proc


def check(emulator: VercelEmulator, proc: subprocess.CompletedProcess[str], who: str) -> None:
    live = emulator.state.project(DEMO.project_id).production_id
    if proc.returncode != 0 or live != DEMO.previous:
        sys.exit(f"{who} did not roll back (exit {proc.returncode}, production {live}):\n{proc.stdout}\n{proc.stderr}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()

    emulator = start_emulator(token=TOKEN, seed="demo", job_seconds=0.0)
    work = Path(tempfile.mkdtemp(prefix="bench-app-rollback-"))
    try:
        config = write_config(work)
        ours_env = {**os.environ, "ROLLBACK_CONFIG": str(config), "VERCEL_API_URL": emulator.url,
                    "VERCEL_TOKEN": TOKEN}
        ours_cmd = [sys.executable, "-m", "rollback", "app", "rollback", "--yes"]
        cli = find_vercel_cli()
        home = work / "home"
        home.mkdir()
        theirs_env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "VERCEL_TELEMETRY_DISABLED": "1",
                      "NO_UPDATE_NOTIFIER": "1", "NO_COLOR": "1", "CI": "1"}
        target_url = emulator.state.deployments[DEMO.previous].url
        theirs_cmd = ([cli, "rollback", target_url, "--yes", "--api", emulator.url, "--token", TOKEN,
                       "--scope", DEMO.team_slug, "--global-config", str(home / "vercel-global")] if cli else None)

        ours: list[float] = []
        theirs: list[float] = []
        # one warm-up of each (disk caches, .pyc, node's compile cache), not counted
        for counted in [False] + [True] * args.runs:
            emulator.state.reset("demo")
            seconds, proc = timed(ours_cmd, env=ours_env, cwd=work)
            check(emulator, proc, "rollback app rollback")
            if counted:
                ours.append(seconds)
            if theirs_cmd:
                emulator.state.reset("demo")
                seconds, proc = timed(theirs_cmd, env=theirs_env, cwd=work)
                check(emulator, proc, "vercel rollback")
                if counted:
                    theirs.append(seconds)
    finally:
        emulator.stop()
        shutil.rmtree(work, ignore_errors=True)

    ours_median = statistics.median(ours)
    print(f"emulator: {emulator.url}, alias job latency 0 s, {args.runs} runs each (after one warm-up)")
    print(f"rollback app rollback --yes     median {ours_median * 1000:7.1f} ms  "
          f"(min {min(ours) * 1000:.1f}, max {max(ours) * 1000:.1f})")
    if not theirs:
        print("vercel rollback                 not measured: Vercel's CLI not found "
              "(npm i -E --prefix .cache/vercel-cli vercel@58.10.0, or set VERCEL_CLI)")
        return 0
    theirs_median = statistics.median(theirs)
    ratio = ours_median / theirs_median
    print(f"vercel rollback URL --yes       median {theirs_median * 1000:7.1f} ms  "
          f"(min {min(theirs) * 1000:.1f}, max {max(theirs) * 1000:.1f})")
    verdict = "meets" if ratio <= TARGET_RATIO else "MISSES"
    print(f"ratio ours / vercel: {ratio:.2f} ({verdict} the target <= {TARGET_RATIO})")
    return 0 if ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    raise SystemExit(main())
