"""/api/v1 latency through a real loopback aiohttp server, over a database the size of the goals.

    .venv/bin/python bench/api.py [--rounds 15] [--db PATH] [--series-only]

Builds, in a temporary directory, one series with 24 h of 1 s data (86,400 rows) and 10,000
series with the last hour of 10 s data (3.6 M rows), rolled up as the agent's maintenance task
leaves them (the last two minutes still raw), plus live values and detector states for every
series. Prints the median and 90th percentile of whole requests (sent, answered, body read and
parsed) and the process's CPU time per request; `--db` keeps the database for a re-run, and
`--series-only` measures only the `series` requests.
Targets (issue 12): `samples` over 24 h of 1 s data <= 50 ms; `series` with 10,000 series
<= 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from infrawatch.config import StorageConfig
from infrawatch.detect.base import Detector
from infrawatch.detect.config import (
    NoveltyConfig,
    ThresholdRule,
    ZScoreConfig,
    default_threshold_rules,
)
from infrawatch.detect.novelty import NoveltyDetector
from infrawatch.detect.threshold import ThresholdDetector
from infrawatch.detect.zscore import ZScoreDetector
from infrawatch.model import Sample, SeriesKey
from infrawatch.runtime.latest import Latest
from infrawatch.runtime.stats import AgentStats
from infrawatch.storage.retention import maintain
from infrawatch.storage.store import Store, labels_json
from infrawatch.web.api import api_routes
from infrawatch.web.api_source import AlertEntry

NOW = 1_800_000_000.0  # an hour boundary
DAY = 86400
SERIES = 10_000
EVERY = 10  # seconds between samples of the 10,000 series
TAIL = 120  # seconds of raw data the rollups have not reached yet
DAY_METRIC = "bench.day"
MANY_METRIC = "bench.many"


def _many_keys() -> list[SeriesKey]:
    return [(MANY_METRIC, (("host", f"h{i % 100:02d}"), ("id", f"{i:05d}"))) for i in range(SERIES)]


async def build(path: Path) -> None:
    """The database: direct executemany into the Store's schema, then the real rollup job."""
    async with Store(path) as store:
        await store.write([Sample(DAY_METRIC, 0.0, NOW - DAY)])  # creates the schema, series 1
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")  # a throwaway file: no fsync while building
    conn.execute("PRAGMA cache_size = -200000")  # KiB
    keys = _many_keys()
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO series (id, name, labels) VALUES (?, ?, ?)",
        [(i + 2, name, labels_json(labels)) for i, (name, labels) in enumerate(keys)],
    )
    conn.execute("COMMIT")

    def insert(start: float, end: float) -> None:
        conn.execute("BEGIN")
        # A day of 1 s data with one 1-second spike an hour: the chart must keep each.
        conn.executemany(
            "INSERT OR REPLACE INTO samples VALUES (1, ?, ?)",
            (
                (float(t), 100.0 if t % 3600 == 1234 else float(t % 600) / 10)
                for t in range(int(start), int(end))
            ),
        )
        first = max(start, NOW - 3600)
        conn.executemany(
            "INSERT INTO samples VALUES (?, ?, ?)",
            (  # in primary-key order: appending to the b-tree, not scattering over it
                (sid, float(t), float((sid * 7 + t) % 100) / 100)
                for sid in range(2, SERIES + 2)
                for t in range(int(first), int(end), EVERY)
            ),
        )
        conn.execute(
            "UPDATE rollup_pending SET dirty_from = min(coalesce(dirty_from, ?1), ?1),"
            " dirty_until = max(coalesce(dirty_until, ?2), ?2) WHERE id = 1",
            (start, end),
        )
        conn.execute("COMMIT")

    started = time.perf_counter()
    insert(NOW - DAY, NOW - TAIL)
    print(f"  rows written in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    async with Store(path) as store:
        await maintain(store, StorageConfig(path=path), now=NOW - TAIL)
    print(f"  rolled up in {time.perf_counter() - started:.1f} s")
    insert(NOW - TAIL, NOW)
    conn.close()


@dataclass
class _Depth:
    batches: int = 0


@dataclass
class BenchSource:
    """What the agent would show: live values and detector states for every series."""

    database: Path
    host: str = "bench"
    version: str = "bench"
    started: float = NOW - DAY
    stats: AgentStats = field(default_factory=AgentStats)
    live: list[tuple[SeriesKey, Latest]] = field(default_factory=list)
    running: list[Detector] = field(default_factory=list)

    def producer_intervals(self) -> Mapping[str, float]:
        return {"host": float(EVERY)}

    def producer_health(self) -> Mapping[str, bool]:
        return {"host": True}

    def queue_depth(self) -> _Depth:
        return _Depth()

    def queue_capacity(self) -> int:
        return 1000

    def latest_values(self) -> Iterable[tuple[SeriesKey, Latest]]:
        return list(self.live)

    def detectors(self) -> Sequence[Detector]:
        return self.running

    def threshold_rules(self) -> Sequence[ThresholdRule]:
        return default_threshold_rules()

    def alert_records(self) -> Iterable[AlertEntry]:
        return []

    def silenced(self, labels: Mapping[str, str]) -> bool:
        return False


def source(path: Path) -> BenchSource:
    """Detectors with state for every series (three samples each) and a live value each."""
    running: list[Detector] = [
        ThresholdDetector(default_threshold_rules()),
        ZScoreDetector(ZScoreConfig()),
        NoveltyDetector(NoveltyConfig()),
    ]
    live = []
    for i, (name, labels) in enumerate([(DAY_METRIC, ()), *_many_keys()]):
        for n in range(3):
            sample = Sample(name, float((i + n) % 100), NOW - 30 + 10 * n, labels)
            for detector in running:
                detector.observe(sample)
        live.append(((name, labels), Latest(float(i % 100), NOW - 10, "host", 0.0)))
    return BenchSource(path, live=live, running=running)


async def measure(
    path: Path, rounds: int, series_only: bool = False
) -> list[tuple[str, list[float], list[float], str]]:
    """(label, wall ms, CPU ms, what came back) per request kind; CPU is the whole process's
    (server and client), a steadier figure than wall time on a busy machine."""
    routes = api_routes(source(path), clock=lambda: NOW)

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        route = routes.get(request.path)
        return web.Response(status=404) if route is None else await route(request)

    runner = web.ServerRunner(web.Server(handle), handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}/api/v1/"
    cases: list[tuple[str, str, dict[str, str], int]] = [
        ("samples 24 h of 1 s data (86,400 rows), points=1000", "samples",
         {"metric": DAY_METRIC, "since": "24h"}, rounds),
        ("samples 6 h of 1 s data (21,600 rows), points=1000", "samples",
         {"metric": DAY_METRIC, "since": "6h"}, rounds),
        ("samples 1 h of 1 s data (3,600 rows), points=1000", "samples",
         {"metric": DAY_METRIC, "since": "1h"}, rounds),
        ("series over 10,000 series, limit=100", "series", {"limit": "100"}, rounds),
        ("series over 10,000 series, limit=500", "series", {"limit": "500"}, rounds),
        ("series over 10,000 series, limit=10000", "series", {"limit": "10000"}, 1),
        ("series label=host=h07 (100 of 10,000 series)", "series", {"label": "host=h07"}, rounds),
        ("status", "status", {}, rounds),
    ]  # fmt: skip
    if series_only:
        cases = [case for case in cases if case[1] == "series"]
    out = []
    try:
        async with aiohttp.ClientSession() as session:
            for label, path_, params, n_rounds in cases:
                wall: list[float] = []
                cpu: list[float] = []
                shown = ""
                warm = 2 if n_rounds > 1 else 1
                for n in range(n_rounds + warm):
                    started, started_cpu = time.perf_counter(), time.process_time()
                    async with session.get(base + path_, params=params) as resp:
                        body = await resp.read()
                        if resp.status != 200:
                            raise RuntimeError(f"{label}: HTTP {resp.status}: {body[:200]!r}")
                    data: Any = json.loads(body)["data"]
                    if n >= warm:  # the first ones warm SQLite's page cache and the code paths
                        wall.append((time.perf_counter() - started) * 1000)
                        cpu.append((time.process_time() - started_cpu) * 1000)
                    shown = _describe(data, len(body))
                out.append((label, wall, cpu, shown))
    finally:
        await runner.cleanup()
    return out


def _describe(data: Any, size: int) -> str:
    if isinstance(data, dict) and "series" in data:
        s = data["series"][0]
        return (
            f"{data['resolution']}, step {data['step_seconds']} s, {len(s['t'])} points,"
            f" max {max(s['max'])}, {size / 1024:.0f} KiB"
        )
    if isinstance(data, list):
        return f"{len(data)} series, {size / 1024:.0f} KiB"
    return f"{size / 1024:.1f} KiB"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--db", type=Path, help="build here, or reuse if it exists (default: tmp)")
    parser.add_argument("--series-only", action="store_true", help="measure only /series")
    args = parser.parse_args()
    print(
        f"python {sys.version.split()[0]}, sqlite {sqlite3.sqlite_version}, cpus {os.cpu_count()},"
        f" load average {os.getloadavg()[0]:.1f}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = args.db or Path(tmp) / "api.db"
        if not path.exists():
            started = time.perf_counter()
            asyncio.run(build(path))
            print(f"database built and rolled up in {time.perf_counter() - started:.1f} s")
        for label, wall, cpu, shown in asyncio.run(measure(path, args.rounds, args.series_only)):
            wall.sort()
            p90 = wall[int(0.9 * (len(wall) - 1))]
            print(
                f"{label}: median {statistics.median(wall):.1f} ms, p90 {p90:.1f} ms,"
                f" CPU {statistics.median(cpu):.1f} ms ({shown})"
            )
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
