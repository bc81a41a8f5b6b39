"""Benchmark: ``rollback infra history`` and ``rollback infra diff`` on a large self-managed backend.

Generates a DIY backend (project layout) holding 1,000 updates of a 300-resource
stack, the resources modelled on the real checkpoints in
tests/stack/fixtures/ (lambda functions, IAM roles, SNS topics, log
groups, ... plus a CloudFront distribution whose edge version and origin path
change between updates). Checkpoints are gzip-compressed, as with
``PULUMI_DIY_BACKEND_GZIP=true``.

Then times whole processes (the real console entry point in a fresh
interpreter, as an operator runs it):

- ``rollback infra history --json`` (every update);
- ``rollback infra diff 500 1000 --json`` (two checkpoints read and compared);
- ``rollback --version`` as the baseline (interpreter + CLI start-up).

Files opened are counted from outside the command, with a Python audit hook
(``open`` events under the backend directory), split into history files,
checkpoint files and others: ``history`` must open no checkpoint.

Usage: python bench/infra_history.py [--updates 1000] [--resources 300] [--runs 5]
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "stack" / "fixtures" / "checkpoint-v3.json"
PROJECT, STACK = "rollback", "bench"
START = 1_700_000_000

AUDIT_RUNNER = r"""
import atexit, json, os, sys
root = os.environ["BENCH_BACKEND_ROOT"]
counts = {"history": 0, "checkpoint": 0, "other": 0}
def hook(event, args):
    if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
        path = os.fsdecode(args[0])
        if path.startswith(root) and not os.path.isdir(path):
            kind = "history" if ".history.json" in path else "checkpoint" if ".checkpoint.json" in path else "other"
            counts[kind] += 1
sys.addaudithook(hook)
atexit.register(lambda: sys.stderr.write("BENCH-OPENS " + json.dumps(counts) + "\n"))
from rollback.cli import main
code = main(sys.argv[1:])
sys.stdout.flush()
os._exit(code) if False else sys.exit(code)
"""


def resources(count: int, version: int) -> list[dict[str, Any]]:
    """``count`` resources cloned from the real fixture, plus the distribution that changes."""
    base = json.loads(FIXTURE.read_text())["checkpoint"]["latest"]["resources"]
    base = json.loads(json.dumps(base).replace("foo::countdown", f"{STACK}::{PROJECT}"))
    out: list[dict[str, Any]] = [{"urn": f"urn:pulumi:{STACK}::{PROJECT}::pulumi:pulumi:Stack::{PROJECT}-{STACK}",
                                  "custom": False, "type": "pulumi:pulumi:Stack",
                                  "outputs": {"distributionId": "EBENCH", "edgeFunctionVersion": str(version)}}]
    arn = "arn:aws:lambda:us-east-1:123456789012:function:bench-headers"
    out.append({
        "urn": f"urn:pulumi:{STACK}::{PROJECT}::aws:cloudfront/distribution:Distribution::cdn",
        "custom": True, "id": "EBENCH", "type": "aws:cloudfront/distribution:Distribution",
        "inputs": {"defaultCacheBehavior": {"lambdaFunctionAssociations": [
            {"eventType": "viewer-response", "lambdaArn": f"{arn}:{version}"}]},
            "origins": [{"originId": "assets", "originPath": f"/releases/r{version}"}]},
    })
    copy_index = 0
    while len(out) < count:
        for resource in base:
            if len(out) >= count:
                break
            clone = copy.deepcopy(resource)
            clone["urn"] = f"{clone['urn']}-{copy_index}"
            if clone.get("parent"):
                clone["parent"] = f"{clone['parent']}-{copy_index}"
            out.append(clone)
        copy_index += 1
    return out


def generate(root: Path, updates: int, resource_count: int) -> dict[str, int]:
    """Write the backend; returns file counts and bytes."""
    history_dir = root / ".pulumi" / "history" / PROJECT / STACK
    history_dir.mkdir(parents=True)
    (root / ".pulumi" / "meta.yaml").write_text("version: 1\n")
    variants = 10  # the edge version cycles: identical states give identical checkpoints
    blobs: dict[int, bytes] = {}
    for variant in range(variants):
        document = {"version": 3, "checkpoint": {"stack": f"organization/{PROJECT}/{STACK}", "latest": {
            "manifest": {"time": "2026-11-28T00:00:00Z", "magic": "", "version": "v3.205.0"},
            "secrets_providers": {"type": "b64", "state": {}},
            "resources": resources(resource_count, variant + 1)}}}
        blobs[variant] = gzip.compress(json.dumps(document).encode(), compresslevel=6)
    total = 0
    for number in range(1, updates + 1):
        variant = number % variants
        nanos = (START + number * 600) * 1_000_000_000
        info = {"kind": "update", "startTime": START + number * 600, "message": f"update {number}",
                "environment": {"git.head": f"{number:040x}", "exec.kind": "cli"},
                "config": {"aws:region": "us-east-1", "rollback:edgeFunctionVersion": str(variant + 1),
                           "rollback:assetsRelease": f"r{variant + 1}", "rollback:originVerifySecret":
                           {"secure": "djE6YmVuY2g="}},
                "result": "succeeded", "endTime": START + number * 600 + 60, "version": 0,
                "resourceChanges": {"same": resource_count - 1, "update": 1}}
        (history_dir / f"{STACK}-{nanos}.history.json").write_text(json.dumps(info))
        (history_dir / f"{STACK}-{nanos}.checkpoint.json.gz").write_bytes(blobs[variant])
        total += len(blobs[variant])
    stacks = root / ".pulumi" / "stacks" / PROJECT
    stacks.mkdir(parents=True)
    (stacks / f"{STACK}.json.gz").write_bytes(blobs[updates % variants])
    return {"history_files": updates, "checkpoint_files": updates, "checkpoint_bytes_gz": total}


def run(args: list[str], env: dict[str, str], audit: bool = False) -> tuple[float, subprocess.CompletedProcess[str]]:
    command = [sys.executable, "-c", AUDIT_RUNNER, *args] if audit else [sys.executable, "-m", "rollback", *args]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"rollback {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return elapsed, done


def median_of(args: list[str], env: dict[str, str], runs: int) -> float:
    return statistics.median(run(args, env)[0] for _ in range(runs))


def opens(args: list[str], env: dict[str, str]) -> dict[str, int]:
    _, done = run(args, env, audit=True)
    line = next(l for l in done.stderr.splitlines() if l.startswith("BENCH-OPENS "))  # noqa: E741
    counts: dict[str, int] = json.loads(line.split(" ", 1)[1])
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--updates", type=int, default=1000)
    parser.add_argument("--resources", type=int, default=300)
    parser.add_argument("--runs", type=int, default=5)
    options = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="rollback-bench-") as tmp:
        root = Path(tmp)
        backend = root / "state"
        started = time.perf_counter()
        sizes = generate(backend, options.updates, options.resources)
        generated = time.perf_counter() - started
        config = root / "rollback.toml"
        config.write_text(f'[env.bench.pulumi]\nstack = "{STACK}"\nproject = "{PROJECT}"\n'
                          f'backend_url = "file://{backend}"\n')
        env = {**os.environ, "ROLLBACK_CONFIG": str(config), "BENCH_BACKEND_ROOT": str(backend)}
        env.pop("PULUMI_BACKEND_URL", None)

        # Correctness first: the whole history, and a diff naming the changed properties.
        _, done = run(["infra", "history", "--json"], env)
        history = json.loads(done.stdout)
        assert history["count"] == options.updates, history["count"]
        assert history["source"]["checkpoints_read"] == 0
        last = options.updates
        first = last // 2 + 3  # another edge version than the last one
        _, done = run(["infra", "diff", str(first), str(last), "--json"], env)
        diff = json.loads(done.stdout)

        baseline = median_of(["--version"], env, options.runs)
        history_s = median_of(["infra", "history", "--json"], env, options.runs)
        diff_s = median_of(["infra", "diff", str(first), str(last), "--json"], env, options.runs)
        history_opens = opens(["infra", "history", "--json"], env)
        diff_opens = opens(["infra", "diff", str(first), str(last), "--json"], env)

    print(f"backend: {options.updates} updates x {options.resources} resources "
          f"({sizes['history_files']} history + {sizes['checkpoint_files']} gzip checkpoint files, "
          f"{sizes['checkpoint_bytes_gz'] / 1e6:.1f} MB of checkpoints; generated in {generated:.1f} s)")
    print(f"whole-process medians of {options.runs} runs:")
    print(f"  rollback --version (start-up baseline)   {baseline * 1000:8.0f} ms")
    print(f"  rollback infra history --json            {history_s * 1000:8.0f} ms  "
          f"({history_s / baseline:.1f}x baseline; {history['count']} versions)")
    print(f"  rollback infra diff {first} {last} --json       {diff_s * 1000:8.0f} ms  "
          f"({diff_s / baseline:.1f}x baseline; {diff['summary']})")
    print("files opened under the backend (audit hook):")
    print(f"  history: {history_opens['history']} history, {history_opens['checkpoint']} checkpoint, "
          f"{history_opens['other']} other")
    print(f"  diff:    {diff_opens['history']} history, {diff_opens['checkpoint']} checkpoint, "
          f"{diff_opens['other']} other")
    if history_opens["checkpoint"]:
        raise SystemExit("FAIL: history opened checkpoint files")


if __name__ == "__main__":
    main()
