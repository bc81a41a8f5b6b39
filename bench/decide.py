#!/usr/bin/env python3
"""How long ``rollback decide`` takes: the decision from flags, and ``--live`` against the stand-ins.

Starts the moto server, the Vercel emulator and a throwaway PostgreSQL, breaks
the world (production answers 500, the rollback alarm in ALARM, 20 % 5xx, a
failed migration) and times, over several runs:

- the pure decision (``rollback.decide.decide``) from flag signals, in process;
- ``run_decide(--live)``: every live source read concurrently (the signals and the recent-change
  sources), then the decision, in process;
- ``rollback decide --live --no-incident`` as a whole process (interpreter start-up included);
- ``python -c pass`` as the baseline of a process in the same run.

Target (issue 9): the decision under 2 s, inside the P0 target.

    python bench/decide.py [--runs 9]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_SECONDS = 2.0
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _percentile(samples: list[float], pct: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered)) - 1))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()

    import boto3

    from rollback.commands.decide import Flags, run_decide
    from rollback.config import load_config
    from rollback.decide import Signal, decide
    from rollback.sandbox.aws import moto_environment, start_moto
    from rollback.sandbox.postgres import start_postgres
    from rollback.sandbox.vercel import DEMO, start_emulator
    from tests.conftest import render_config
    from tests.db.conftest import SCHEMA
    from tests.incident.conftest import world_config

    moto = start_moto()
    emulator = start_emulator(token="benchToken12345678", seed="demo")
    pg = start_postgres()
    scratch = tempfile.mkdtemp(prefix="bench-decide-")
    try:
        os.environ.update(moto_environment(moto.url))
        pg.execute(SCHEMA, dbname="app", user="app")
        pg.execute("""INSERT INTO "_prisma_migrations" VALUES ('00000000-0000-0000-0000-0000000000ff',
                      repeat('c', 64), NULL, '20261128000000_bad', 'boom', NULL, now(), 0)""", dbname="app",
                   user="app")
        distribution = "EBENCH0000001"
        alarm = "bench-cdn-5xx-error-rate"
        cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
        dims = [{"Name": "DistributionId", "Value": distribution}, {"Name": "Region", "Value": "Global"}]
        cloudwatch.put_metric_alarm(AlarmName=alarm, MetricName="5xxErrorRate", Namespace="AWS/CloudFront",
                                    Statistic="Average", Period=60, EvaluationPeriods=5, Threshold=5.0,
                                    ComparisonOperator="GreaterThanThreshold", Dimensions=dims)
        cloudwatch.set_alarm_state(AlarmName=alarm, StateValue="ALARM", StateReason="bench")
        now = dt.datetime.now(dt.UTC)
        cloudwatch.put_metric_data(Namespace="AWS/CloudFront", MetricData=[
            {"MetricName": "5xxErrorRate", "Value": 20.0, "Timestamp": now, "Dimensions": dims},
            {"MetricName": "OriginLatency", "Value": 900.0, "Timestamp": now, "Dimensions": dims}])
        emulator.state.configure(unhealthy=[DEMO.current])
        config_path = Path(scratch) / "rollback.toml"
        config_path.write_text(render_config(world_config(emulator.url, "BENCH_DATABASE_URL", distribution, [alarm],
                                                          "true"), default_env="production",
                                             journal_dir=str(Path(scratch) / "runs")), encoding="utf-8")
        os.environ.update({"ROLLBACK_CONFIG": str(config_path), "VERCEL_API_URL": emulator.url,
                           "VERCEL_TOKEN": "benchToken12345678", "BENCH_DATABASE_URL": pg.url("app", "app")})
        config = load_config(config_path)

        flags = [Signal("error_rate", 7.0), Signal("service_down", True), Signal("data_loss", True)]
        pure = []
        for _ in range(args.runs * 100):
            started = time.perf_counter()
            decide(flags)
            pure.append(time.perf_counter() - started)

        run_decide(config, Flags(), live=True, record=False)  # warm-up: imports, first connections
        live, severities, sources = [], set(), 0
        for _ in range(args.runs):
            started = time.perf_counter()
            result = run_decide(config, Flags(), live=True, record=False)
            live.append(time.perf_counter() - started)
            severities.add(result.decision.severity)
            sources = len(result.live.sources) if result.live is not None else 0
            unmeasured = [s.name for s in result.decision.not_measured]
            if unmeasured:
                print(f"warning: not measured in a run: {unmeasured}")
            if os.environ.get("BENCH_VERBOSE") and result.live is not None:
                print({k: v["seconds"] for k, v in result.live.sources.items()}, round(result.live.seconds, 3))

        env = dict(os.environ)
        process, baseline = [], []
        for _ in range(args.runs):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], env=env, check=True)
            baseline.append(time.perf_counter() - started)
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "rollback", "decide", "--live", "--no-incident", "--json"],
                           env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            process.append(time.perf_counter() - started)
    finally:
        emulator.stop()
        moto.stop()
        pg.stop()

    base = statistics.median(baseline)
    print(f"runs: {args.runs} (in-process pure decision: {len(pure)}); severity found: {sorted(map(str, severities))}")
    print(f"{'case':52} {'median':>10} {'p95':>10} {'x baseline':>11}")
    rows = [
        ("decide(): pure decision from 3 flag signals", pure),
        (f"run_decide(live): {sources} live sources + decision", live),
        ("rollback decide --live (whole process)", process),
        ("python -c pass (baseline)", baseline),
    ]
    for name, samples in rows:
        median = statistics.median(samples)
        print(f"{name:52} {median * 1000:8.2f} ms {_percentile(samples, 95) * 1000:8.2f} ms {median / base:10.2f}x")
    worst = max(live)
    whole = statistics.median(process)
    verdict = "OK" if worst < TARGET_SECONDS and whole < TARGET_SECONDS else "OVER TARGET"
    print(f"live decision: worst {worst:.2f} s, whole process median {whole:.2f} s, against a "
          f"{TARGET_SECONDS:.0f} s target: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
