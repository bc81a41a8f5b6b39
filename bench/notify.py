#!/usr/bin/env python3
"""Benchmark: what notifications cost a rollback, with a healthy, a failing and a hanging webhook.

A simulated rollback of 12 steps (each 20 ms of work) over 3 layers makes the posts a real
`run` makes (start, each step watched, each layer, end). It runs without notifications (the
baseline), then against a local webhook receiver (real HTTP on loopback) that answers 200,
answers 500, or never answers. Prints the median time of the rollback itself (the posts'
cost to it) and of the final flush (``close(timeout=2)``), and each ratio to the baseline.
The rollback's ratio should stay close to 1.0 whatever the receiver does.

    python bench/notify.py            # 5 runs each
    python bench/notify.py --runs 9
"""

from __future__ import annotations

import argparse
import http.server
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rollback.notify import Notifier  # noqa: E402

STEPS, LAYERS, WORK = 12, ("app", "edge", "db"), 0.02


def serve(mode: str) -> tuple[http.server.ThreadingHTTPServer, threading.Event]:
    release = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if mode == "hang":
                release.wait(30)
                return
            self.send_response(200 if mode == "ok" else 500)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, release


def rollback(notifier: Notifier | None) -> tuple[float, float]:
    started = time.perf_counter()
    plan = {"title": "bench", "steps": [{"id": f"s{i}", "layer": LAYERS[i % 3], "description": f"step {i}"}
                                        for i in range(STEPS)]}
    if notifier:
        notifier.start("P1", plan)
    for layer in LAYERS:
        for step in plan["steps"]:
            if step["layer"] != layer:
                continue
            if notifier:
                with notifier.running(str(step["description"])):
                    time.sleep(WORK)
            else:
                time.sleep(WORK)
        if notifier:
            notifier.layer_done(layer, {"status": "done", "seconds": WORK * 4})
    if notifier:
        notifier.end(restored=True, verified=True, metrics={"total": 1.0})
    done = time.perf_counter()
    if notifier:
        notifier.close(timeout=2.0)
    return done - started, time.perf_counter() - done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    results: dict[str, tuple[float, float]] = {}
    base = statistics.median(rollback(None)[0] for _ in range(args.runs))
    results["no notifications"] = (base, 0.0)
    for mode in ("ok", "500", "hang"):
        server, release = serve(mode)
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        runs = [rollback(Notifier(url, env="bench", timeout=0.5, stderr=lambda line: None))
                for _ in range(args.runs)]
        results[f"webhook answers {mode}"] = (statistics.median(r[0] for r in runs),
                                              statistics.median(r[1] for r in runs))
        release.set()
        server.shutdown()
    print(f"simulated rollback: {STEPS} steps x {WORK * 1000:.0f} ms, {args.runs} runs each (medians)")
    print(f"{'':24} {'rollback':>10} {'ratio':>7} {'flush':>9}")
    for name, (seconds, flush) in results.items():
        print(f"{name:24} {seconds * 1000:8.1f}ms {seconds / base:6.2f}x {flush * 1000:7.1f}ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
