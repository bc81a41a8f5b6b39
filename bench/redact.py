#!/usr/bin/env python3
"""Redaction cost: linear in the size of the text, whatever the text.

For each input shape (plain text and shapes built to make a backtracking regex
blow up: long runs of URL, header and key=value fragments), times
``redact_text`` at 100 kB and at 1 MB and prints the seconds and the ratio
1 MB / 100 kB. Linear time gives a ratio near 10; quadratic time near 100 (the
old patterns took 0.9 s for 40 kB of 'x' and over 10 minutes for 20 MB).
Targets: ``'x' * 1_000_000`` under 0.1 s; every ratio under 30 (linear). The
adversarial shapes that are mostly secrets to mask (``password="`` and a backslash, repeated)
cost more per byte, but still grow linearly.

    python bench/redact.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from rollback.redact import register_secret

TARGET_SECONDS = 0.1
TARGET_RATIO = 30
SMALL = 100_000
LARGE = 1_000_000

# name -> a function building a text of (about) n characters.
SHAPES: dict[str, Callable[[int], str]] = {
    "x * n": lambda n: "x" * n,
    "words": lambda n: ("lorem ipsum dolor sit amet " * (n // 27 + 1))[:n],
    "a://b:c": lambda n: ("a://b:c" * (n // 7 + 1))[:n],
    "://": lambda n: "://" * (n // 3),
    "scheme run": lambda n: "a" * (n - 20) + "://u:pw@host/db",
    "@ run": lambda n: "postgresql://u:" + "@" * (n - 20),
    "password=": lambda n: ("password=" * (n // 9 + 1))[:n],
    "password=\"\\": lambda n: ('password="\\' * (n // 11 + 1))[:n],
    "password spaces": lambda n: "password" + " " * (n - 8),
    "authorization:": lambda n: ("authorization: " * (n // 15 + 1))[:n],
    "bearer": lambda n: ("bearer " * (n // 7 + 1))[:n],
    "\"token\": \"": lambda n: ('"token": "\\' * (n // 11 + 1))[:n],
    "?token=&": lambda n: ("?token=&" * (n // 8 + 1))[:n],
    "registered secrets": lambda n: ("s3cret-value-1 " * (n // 15 + 1))[:n],
}


def timed(func: Callable[[str], object], text: str, runs: int) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        func(text)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    from rollback.redact import redact_text

    for index in range(20):
        register_secret(f"registered-secret-{index:02d}")
    register_secret("s3cret-value-1")
    print(f"{'shape':<22} {'100 kB (s)':>11} {'1 MB (s)':>10} {'ratio':>7}")
    plain = worst_ratio = 0.0
    for name, build in SHAPES.items():
        small, large = build(SMALL), build(LARGE)
        t_small = timed(redact_text, small, args.runs)
        t_large = timed(redact_text, large, args.runs)
        ratio = t_large / max(t_small, 1e-9)
        worst_ratio = max(worst_ratio, ratio)
        plain = t_large if name == "x * n" else plain
        print(f"{name:<22} {t_small:>11.4f} {t_large:>10.4f} {ratio:>7.1f}")
    print(f"'x' * 1_000_000: {plain:.4f} s (target < {TARGET_SECONDS} s): "
          f"{'ok' if plain < TARGET_SECONDS else 'SLOW'}")
    print(f"largest 1 MB / 100 kB ratio: {worst_ratio:.1f} (target < {TARGET_RATIO}, linear ~10): "
          f"{'ok' if worst_ratio < TARGET_RATIO else 'NOT LINEAR'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
