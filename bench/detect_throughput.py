"""Detector throughput and memory per series.

Usage: python bench/detect_throughput.py [--series 100000] [--rounds 5] [--detectors NAMES]
       [--warmup N --warmup-step SECONDS] [--mem-steps 300]

The default set is `--detectors threshold,zscore,novelty,art`. The adaptive-resonance detector
learns for 107 steps of the longer of 7 samples and 30 minutes: `--warmup 800 --warmup-step 300`
takes it past learning (at 5-minute sampling) before the timed 10 s rounds, and `--rounds 400`
makes the timed part include its step closes (one per 181 samples at 10 s) in proportion.

Builds the default detectors, feeds them as the pipeline does (`DetectorFeed`: one series lookup
per sample) one sample per series per round (10 s apart; 10 % of the series are host
utilizations the default threshold rules match), and prints steady-state samples/s on one core
(the mean over the timed rounds), the median round and the best one (the first round, which
creates the per-series state, is timed apart), and the bytes of detector state per series
(tracemalloc, after a day of samples so seasonal rings are allocated and warm).
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from infrawatch.detect import build_detectors
from infrawatch.detect.base import Detector
from infrawatch.detect.config import AnalysisConfig
from infrawatch.detect.feed import DetectorFeed
from infrawatch.model import Anomaly, Sample


def series_keys(n: int) -> list[tuple[str, tuple[tuple[str, str], ...]]]:
    """n series: 10 % system.memory.utilization per host, the rest app metrics."""
    keys: list[tuple[str, tuple[tuple[str, str], ...]]] = []
    for i in range(n):
        if i % 10 == 0:
            keys.append(("system.memory.utilization", (("host", f"h{i}"),)))
        else:
            keys.append((f"app.metric_{i % 50}", (("host", f"h{i // 50}"), ("region", "r1"))))
    return keys


def _raise(detector: Detector, sample: Sample, exc: Exception) -> None:
    raise exc


class _Loop:
    """Each detector's own `observe`, one after the other: what the pipeline did before the feed."""

    def __init__(self, detectors: list[Detector]) -> None:
        self.detectors = detectors

    def observe(self, sample: Sample, out: list[Anomaly], on_error: object) -> None:
        for detector in self.detectors:
            out += detector.observe(sample)


def main() -> int:
    """Print throughput and bytes per series."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--series", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--detectors", default="threshold,zscore")
    parser.add_argument(
        "--warmup", type=int, default=0, help="untimed rounds first (novelty scores after 300)"
    )
    parser.add_argument("--warmup-step", type=float, default=10.0, help="seconds between them")
    parser.add_argument("--loop", action="store_true", help="observe() per detector, no feed")
    parser.add_argument("--per-round", action="store_true", help="print every round's cost")
    parser.add_argument("--mem-steps", type=int, default=300, help="5-minute steps for memory")
    args = parser.parse_args()
    wanted = set(args.detectors.split(","))
    keys = series_keys(args.series)
    rng = random.Random(1)
    detectors = [d for d in build_detectors(AnalysisConfig()) if d.name in wanted]
    print(
        f"detectors={[d.name for d in detectors]} series={args.series} rounds={args.rounds}"
        f" warmup={args.warmup}"
    )
    t0 = 1_700_000_000.0
    # As the pipeline feeds them (one series lookup per sample), or with --loop one detector at
    # a time, each looking the series up itself (before DetectorFeed).
    feed = _Loop(detectors) if args.loop else DetectorFeed(detectors)
    out: list[Anomaly] = []
    gc.collect()
    gc.disable()  # the loop allocates no cycles; collections would only add noise
    started = time.perf_counter()
    for name, labels in keys:
        feed.observe(Sample(name, rng.random(), t0, labels), out, _raise)
    first = time.perf_counter() - started
    for w in range(args.warmup):
        for name, labels in keys:
            feed.observe(
                Sample(name, rng.random(), t0 + args.warmup_step * (w + 1), labels), out, _raise
            )
    out.clear()
    per_round: list[float] = []
    last = t0 + args.warmup_step * args.warmup
    for r in range(args.rounds):
        # Each round's samples are made just before it, as the pipeline receives a batch a
        # collector has just parsed (samples made long before would be cold in the CPU cache).
        batch = [Sample(name, rng.random(), last + 10.0 * (r + 1), labels) for name, labels in keys]
        started = time.perf_counter()
        for s in batch:
            feed.observe(s, out, _raise)
        per_round.append(time.perf_counter() - started)
    gc.enable()
    # Each round is timed on its own. The mean over all of them is the throughput: it counts the
    # periodic work (ring slots closing every 5 minutes, ART steps every 30) in proportion when
    # the rounds span those periods. The median round is the usual sample's cost, and the best
    # round the one least disturbed by other work on a shared machine (as timeit's minimum).
    total = sum(per_round)
    median = statistics.median(per_round)
    best = min(per_round)
    n = len(keys)
    print(f"first round (creates state): {args.series / first:,.0f} samples/s")
    print(
        f"steady state: {n * len(per_round) / total:,.0f} samples/s"
        f" ({total / (n * len(per_round)) * 1e6:.2f} µs/sample) over {len(per_round)} rounds;"
        f" median round {n / median:,.0f}/s ({median / n * 1e6:.2f} µs), best {n / best:,.0f}/s"
    )
    if args.per_round:
        print("per round µs/sample:", " ".join(f"{t / n * 1e6:.1f}" for t in per_round))

    # Memory: a separate, smaller population fed a day of 5-minute samples.
    n_mem = min(args.series, 2000)
    mem_keys = keys[:n_mem]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    mem_feed = DetectorFeed([d for d in build_detectors(AnalysisConfig()) if d.name in wanted])
    for step in range(args.mem_steps):
        for name, labels in mem_keys:
            mem_feed.observe(Sample(name, rng.random(), t0 + 300.0 * step, labels), out, _raise)
        out.clear()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    print(f"detector state: {(after - before) / n_mem:,.0f} bytes per series (all detectors)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
