"""Start-up restore cost: time `restore_detectors` on a realistic database.

Usage: python bench/restore.py [--db PATH] [--raw-only] [--series 50] [--days 7] [--step 10]

Builds (once; reused if PATH exists) a database like a host agent's after a week: `--series`
series sampled every `--step` seconds for `--days` days through `Store.write`, rolled up by
`rollup.catch_up` as the agent's maintenance job does. Then restores the default detector set
(`max_history` = the default raw retention, as `Agent.startup` does) and prints the wall time,
the samples replayed and the longest stall of the event loop meanwhile (a 1 ms ticker task).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from infrawatch.config import StorageConfig
from infrawatch.detect import build_detectors
from infrawatch.detect.config import AnalysisConfig
from infrawatch.detect.restore import restore_detectors
from infrawatch.model import Sample
from infrawatch.storage import rollup
from infrawatch.storage.store import Store

END = 1_750_000_000.0  # fixed "now", so a cached database is reused as is


async def build(path: Path, series: int, days: float, step: float) -> int:
    """Write `series` daily-wave series with noise (some quantised) and roll them up."""
    rng = random.Random(7)
    start = END - days * 86400
    n = int(days * 86400 / step)
    chunk = max(1, 20_000 // series)
    async with Store(path) as store:
        for first in range(0, n, chunk):
            batch = []
            for i in range(first, min(n, first + chunk)):
                ts = start + i * step
                day = math.sin(2 * math.pi * ts / 86400)
                for s in range(series):
                    value = 40 + 10 * s % 30 + 15 * day + rng.gauss(0, 2)
                    if s % 5 == 0:
                        value = round(value)  # a quantised series
                    batch.append(Sample(f"bench.m{s % 10}", value, ts, (("i", str(s)),)))
            await store.write(batch)
        await rollup.catch_up(
            store, now=END, raw_retention=days * 86400 + 86400, rollup_1m_retention=30 * 86400
        )
    return n * series


async def stall_meter(stop: asyncio.Event, worst: list[float]) -> None:
    """Record the longest gap between 1 ms ticks: how long the loop was blocked."""
    last = time.perf_counter()
    while not stop.is_set():
        await asyncio.sleep(0.001)
        now = time.perf_counter()
        worst[0] = max(worst[0], now - last)
        last = now


async def measure(path: Path, *, use_rollups: bool) -> None:
    """Restore the default detector set once and print the numbers."""
    async with Store(path) as store:
        detectors = build_detectors(AnalysisConfig())
        stop = asyncio.Event()
        worst = [0.0]
        meter = asyncio.create_task(stall_meter(stop, worst))
        started = time.perf_counter()
        result = await restore_detectors(
            store,
            detectors,
            now=END,
            max_history=StorageConfig().retention,
            use_rollups=use_rollups,
        )
        elapsed = time.perf_counter() - started
        stop.set()
        await meter
    print(
        f"restore: {elapsed:.2f} s wall, {result.samples} raw samples replayed,"
        f" {result.series} series ({result.seeded} seeded from rollups),"
        f" longest event-loop stall {worst[0] * 1000:.0f} ms"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Build the database if needed, then time one restore."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default_db = Path(tempfile.gettempdir()) / "infrawatch-restore-bench.db"
    parser.add_argument("--db", type=Path, default=default_db)
    parser.add_argument("--series", type=int, default=50)
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--step", type=float, default=10.0)
    parser.add_argument("--raw-only", action="store_true", help="replay raw samples only")
    args = parser.parse_args(argv)
    if not args.db.exists():
        started = time.perf_counter()
        rows = asyncio.run(build(args.db, args.series, args.days, args.step))
        print(f"built {args.db}: {rows} samples in {time.perf_counter() - started:.0f} s")
    asyncio.run(measure(args.db, use_rollups=not args.raw_only))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
