#!/usr/bin/env python3
"""How long ``rollback decide`` takes: the decision from flags, and ``--live`` against the stand-ins.

Starts the moto server, the Vercel emulator and a throwaway PostgreSQL, breaks
the world (production answers 500, the rollback alarm in ALARM, 20 % 5xx, a
failed migration) and times, over several runs:

- the pure decision (``rollback.model.decide.decide``) from flag signals, in process;
- ``run_decide(--live)``: every live source read concurrently (the signals and the recent-change
  sources), then the decision, in process;
- ``rollback decide --live --no-incident`` as a whole process (interpreter start-up included), wall and
  CPU (user + system, from the child's rusage);
- in the same runs, paired with it, one ``aws cloudwatch describe-alarms`` (the AWS CLI of the same
  environment, against the same moto server): the smallest thing an on-call engineer would type to look
  at the alarms, so the baseline of "one command that reads AWS";
- ``python -c pass`` as the baseline of a process.

Whole processes run as an installed package does: with its bytecode compiled (``pip install`` compiles
it; here a warm-up run writes it under a temporary ``PYTHONPYCACHEPREFIX``, also when
``PYTHONDONTWRITEBYTECODE`` is set), so the figure is not the cost of compiling rollback's sources
each time, which the AWS CLI (installed, compiled) does not pay either.

Targets: the decision under 2 s (issue 9), inside the P0 target; the whole ``decide --live`` process
at most 1.5x one ``aws cloudwatch describe-alarms`` (issue 20).

    python bench/decide.py [--runs 9]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_SECONDS = 2.0
TARGET_VS_AWS = 1.5
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _percentile(samples: list[float], pct: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered)) - 1))]


def _timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall, CPU) of one whole process: CPU is the child's user + system time (its rusage)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _aws_cli() -> str:
    """The AWS CLI beside this Python (awscli is in the dev extra), else the one on PATH."""
    beside = Path(sys.executable).with_name("aws")
    found = str(beside) if beside.exists() else shutil.which("aws")
    if not found:
        sys.stderr.write("error: the AWS CLI is not installed (the baseline is one 'aws cloudwatch describe-alarms'; "
                         "pip install awscli, or install the dev extra)\n")
        raise SystemExit(2)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()

    aws = _aws_cli()
    import boto3

    from rollback.commands.decide import Flags, run_decide
    from rollback.config import load_config
    from rollback.context import Services
    from rollback.model.decide import Signal, decide
    from rollback.sandbox.aws import moto_environment, start_moto
    from rollback.sandbox.postgres import start_postgres
    from rollback.sandbox.vercel import start_emulator
    from rollback.sandbox.vercel_state import DEMO
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

        # a fresh Services each call, as a 'rollback decide' process builds one
        run_decide(config, Flags(), services=Services(config), live=True, record=False)  # warm-up
        live, severities, sources = [], set(), 0
        for _ in range(args.runs):
            started = time.perf_counter()
            result = run_decide(config, Flags(), services=Services(config), live=True, record=False)
            live.append(time.perf_counter() - started)
            severities.add(result.decision.severity)
            sources = len(result.live.sources) if result.live is not None else 0
            unmeasured = [s.name for s in result.decision.not_measured]
            if unmeasured:
                print(f"warning: not measured in a run: {unmeasured}")
            if os.environ.get("BENCH_VERBOSE") and result.live is not None:
                print({k: v["seconds"] for k, v in result.live.sources.items()}, round(result.live.seconds, 3))

        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = str(Path(scratch) / "pycache")
        decide_argv = [sys.executable, "-m", "rollback", "decide", "--live", "--no-incident", "--json"]
        aws_argv = [aws, "cloudwatch", "describe-alarms"]
        for argv in (decide_argv, aws_argv):  # warm-up: bytecode written, files in the page cache
            _timed(argv, env)
        process, process_cpu, alarms_cli, alarms_cpu, baseline = [], [], [], [], []
        load_before = os.getloadavg()
        for n in range(args.runs):
            baseline.append(_timed([sys.executable, "-c", "pass"], env)[0])
            # Paired and alternated: a burst of load from elsewhere hits both sides alike.
            for argv, walls, cpus in ((decide_argv, process, process_cpu), (aws_argv, alarms_cli, alarms_cpu))[::(
                    1 if n % 2 == 0 else -1)]:
                wall, cpu = _timed(argv, env)
                walls.append(wall)
                cpus.append(cpu)
        load_after = os.getloadavg()
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
    aws_wall, ratio = statistics.median(alarms_cli), whole / statistics.median(alarms_cli)
    print(f"whole processes, paired ({args.runs} each; load average {load_before[0]:.2f} before, "
          f"{load_after[0]:.2f} after):")
    print(f"  {'rollback decide --live --no-incident':44} wall {whole * 1000:7.1f} ms  CPU "
          f"{statistics.median(process_cpu) * 1000:7.1f} ms")
    print(f"  {'aws cloudwatch describe-alarms':44} wall {aws_wall * 1000:7.1f} ms  CPU "
          f"{statistics.median(alarms_cpu) * 1000:7.1f} ms")
    print(f"decide --live against one aws cloudwatch describe-alarms: {ratio:.2f}x wall, "
          f"{statistics.median(process_cpu) / statistics.median(alarms_cpu):.2f}x CPU (target: at most "
          f"{TARGET_VS_AWS:.1f}x wall): {'OK' if ratio <= TARGET_VS_AWS else 'OVER TARGET'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
