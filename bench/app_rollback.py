#!/usr/bin/env python3
"""Benchmark: an instant rollback of production, as a whole process, start to verified.

Runs against one Vercel API emulator (``rollback.sandbox.vercel``, real HTTP on
loopback) whose alias jobs take ``--job-seconds`` (default 0.5 s, like a quick
real one):

- ``rollback app rollback --yes``: picks the previous stable production
  deployment itself, requests the rollback, watches the job until it succeeded,
  then runs its health and version checks against the emulator's app stand-in
  (``/_app/<project>/``: ``/``, ``/api/health``, ``/api/version`` must report the
  target's commit);
- when Vercel's CLI is found (``$VERCEL_CLI``, ``vercel`` on PATH, or
  ``.cache/vercel-cli/node_modules/.bin/vercel``, installed by tests/run.sh):
  ``vercel rollback <url> --yes``, which is given the target and also waits for
  the job to succeed (it checks no health).

Both are whole processes, interleaved, the emulator reset to the demo seed
before every run; every run is checked to have moved production. Prints the
median wall time of each, the ratio, and the peak resident memory of ours (from
``wait4``'s rusage of each run). Targets: ours <= 0.8 s, <= 0.75x Vercel's CLI,
peak <= 60 MiB. It prints figures; it asserts nothing.

    python bench/app_rollback.py                 # 9 runs each
    python bench/app_rollback.py --runs 21 --job-seconds 0.5
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

from rollback.sandbox.vercel import VercelEmulator, start_emulator  # noqa: E402
from rollback.sandbox.vercel_state import DEMO  # noqa: E402

TOKEN = "benchToken7f3a9c"  # Vercel's CLI refuses tokens with '-'
TARGET_SECONDS = 0.8
TARGET_RATIO = 0.75
TARGET_MIB = 60.0


def find_vercel_cli() -> str | None:
    for candidate in (os.environ.get("VERCEL_CLI"), shutil.which("vercel"),
                      str(ROOT / ".cache" / "vercel-cli" / "node_modules" / ".bin" / "vercel")):
        if candidate and Path(candidate).is_file() and shutil.which("node"):
            return candidate
    return None


def write_config(directory: Path, emulator_url: str) -> Path:
    path = directory / "rollback.toml"
    path.write_text(
        'default_env = "production"\n'
        f'[journal]\ndir = "{directory / "runs"}"\n'
        f'[env.production.vercel]\nproject = "{DEMO.project_name}"\nteam = "{DEMO.team_id}"\n'
        f'[env.production.health]\nbase_url = "{emulator_url}/_app/{DEMO.project_name}"\n'
        'paths = ["/", "/api/health"]\nversion_path = "/api/version"\ntimeout = 2.0\n',
        encoding="utf-8",
    )
    return path


def timed(command: list[str], *, env: dict[str, str], cwd: Path) -> tuple[float, float, float, int, str]:
    """``(wall seconds, CPU seconds, peak RSS MiB, exit code, output)`` of one whole process."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return (seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, proc.returncode,
            output.decode(errors="replace"))


def check(emulator: VercelEmulator, code: int, output: str, who: str) -> None:
    live = emulator.state.project(DEMO.project_id).production_id
    if code != 0 or live != DEMO.previous:
        sys.exit(f"{who} did not roll back (exit {code}, production {live}):\n{output}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--job-seconds", type=float, default=0.5, help="how long the emulator's alias job takes")
    args = parser.parse_args()

    emulator = start_emulator(token=TOKEN, seed="demo", job_seconds=args.job_seconds)
    work = Path(tempfile.mkdtemp(prefix="bench-app-rollback-"))
    try:
        config = write_config(work, emulator.url)
        # As installed, rollback's modules have their bytecode cached: let the warm-up write it.
        inherited = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        ours_env = {**inherited, "ROLLBACK_CONFIG": str(config), "VERCEL_API_URL": emulator.url,
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
        cpu: list[float] = []
        peaks: list[float] = []
        theirs: list[float] = []
        # one warm-up of each (disk caches, .pyc, node's compile cache), not counted
        for counted in [False] + [True] * args.runs:
            emulator.state.reset("demo")
            emulator.state.configure(job_seconds=args.job_seconds)
            seconds, used, peak, code, output = timed(ours_cmd, env=ours_env, cwd=work)
            check(emulator, code, output, "rollback app rollback")
            if counted:
                ours.append(seconds)
                cpu.append(used)
                peaks.append(peak)
            if theirs_cmd:
                emulator.state.reset("demo")
                emulator.state.configure(job_seconds=args.job_seconds)
                seconds, _, _, code, output = timed(theirs_cmd, env=theirs_env, cwd=work)
                check(emulator, code, output, "vercel rollback")
                if counted:
                    theirs.append(seconds)
    finally:
        emulator.stop()
        shutil.rmtree(work, ignore_errors=True)

    ours_median = statistics.median(ours)
    print(f"emulator: {emulator.url}, alias job {args.job_seconds:g} s, {args.runs} runs each (after one warm-up)")
    print(f"rollback app rollback --yes     median {ours_median * 1000:7.1f} ms  "
          f"(min {min(ours) * 1000:.1f}, max {max(ours) * 1000:.1f}); with its health and version checks; "
          f"target <= {TARGET_SECONDS * 1000:.0f} ms")
    print(f"CPU time (user + system)        median {statistics.median(cpu) * 1000:7.1f} ms")
    print(f"peak memory (max RSS)           {max(peaks):7.1f} MiB (median {statistics.median(peaks):.1f}); "
          f"target <= {TARGET_MIB:.0f} MiB")
    if not theirs:
        print("vercel rollback                 not measured: Vercel's CLI not found "
              "(npm i -E --prefix .cache/vercel-cli vercel@58.10.0, or set VERCEL_CLI)")
        return 0
    theirs_median = statistics.median(theirs)
    ratio = ours_median / theirs_median
    print(f"vercel rollback URL --yes       median {theirs_median * 1000:7.1f} ms  "
          f"(min {min(theirs) * 1000:.1f}, max {max(theirs) * 1000:.1f})")
    print(f"ratio ours / vercel: {ratio:.2f} (target <= {TARGET_RATIO})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
