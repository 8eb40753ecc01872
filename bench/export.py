"""Export benchmarks (issue 14): throughput, CPU per 1,000 samples, lag under ingest, backlog
drain after an outage, and the agent's overhead with one exporter on.

    .venv/bin/python bench/export.py [--samples 200000] [--overhead-seconds 60]

The receiver runs in its own process (this file with --serve), so the exporter's CPU is this
process's alone: the numbers are samples per second of wall time and of this process's CPU
(SQLite reads, encoding, compression, HTTP). Targets: throughput >= 100,000 samples/s on one
core; with one exporter at a 10 s interval, the agent's CPU within 1.5x of host-only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gzip
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from infrawatch.export.config import ExportConfig
from infrawatch.export.cursor import sync_export_log
from infrawatch.export.exporter import Exporter
from infrawatch.export.service import ExportService
from infrawatch.logging import configure
from infrawatch.model import Sample, make_labels
from infrawatch.runtime.stats import AgentStats, ExporterStats
from infrawatch.storage.store import Store

SERIES = 1000
NOW = time.time()


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# -- the receiver (its own process) ---------------------------------------------------------


def serve(port: int, decode: bool) -> None:
    """Accept OTLP (/v1/metrics) and remote-write (/write); with `decode`, record each
    sample's lag (arrival − its timestamp) for GET /stats."""
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )

    from infrawatch.export.remote_write import decode as decode_rw

    lags: list[float] = []
    counts = {"requests": 0}

    async def otlp(request: web.Request) -> web.Response:
        body = await request.read()
        counts["requests"] += 1
        if decode:
            now = time.time()
            message = ExportMetricsServiceRequest()
            message.ParseFromString(body if body[:2] != b"\x1f\x8b" else gzip.decompress(body))
            for rm in message.resource_metrics:
                for sm in rm.scope_metrics:
                    for m in sm.metrics:
                        lags.extend(now - p.time_unix_nano / 1e9 for p in m.gauge.data_points)
        return web.Response(status=200, content_type="application/x-protobuf")

    async def remote_write(request: web.Request) -> web.Response:
        body = await request.read()
        counts["requests"] += 1
        if decode:
            now = time.time()
            for series in decode_rw(body).timeseries:
                lags.extend(now - s.timestamp / 1000 for s in series.samples)
        return web.Response(status=204)

    async def stats(request: web.Request) -> web.Response:
        ordered = sorted(lags) or [float("nan")]

        def pick(q: float) -> float:
            return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

        result = {
            "requests": counts["requests"],
            "samples": len(lags),
            "p50": pick(0.5),
            "p99": pick(0.99),
            "max": ordered[-1],
        }
        lags.clear()
        return web.json_response(result)

    app = web.Application(client_max_size=256 * 1024 * 1024)
    app.router.add_post("/v1/metrics", otlp)
    app.router.add_post("/write", remote_write)
    app.router.add_get("/stats", stats)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


@contextlib.contextmanager
def receiver(decode: bool) -> Any:
    """The receiver subprocess; yields its base URL once it answers."""
    port = free_port()
    cmd = [sys.executable, __file__, "--serve", str(port), *(["--decode"] if decode else [])]
    proc = subprocess.Popen(cmd)
    try:
        for _ in range(200):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                break
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# -- the exporter side ----------------------------------------------------------------------

LABELS = [make_labels({"cpu": str(i % 64), "host": f"h{i // 64}"}) for i in range(SERIES)]


def samples(start: int, count: int, ts: float | None = None) -> list[Sample]:
    """`count` samples cycling over SERIES series, 1 s apart per round (or all at `ts`)."""
    return [
        Sample(
            "system.cpu.utilization",
            (i % 997) / 997,
            ts if ts is not None else NOW - 86400 + (i // SERIES),
            LABELS[i % SERIES],
        )
        for i in range(start, start + count)
    ]


def config(kind: str, base: str, batch: int) -> ExportConfig:
    """An exporter of `kind` pointed at the receiver."""
    url = base if kind == "otlp" else f"{base}/write"
    return ExportConfig(name=f"bench-{kind}", type=kind, url=url, batch_samples=batch)  # type: ignore[arg-type]


async def fill(store: Store, total: int, chunk: int = 10_000) -> None:
    """Store `total` samples (the export log records them: an exporter is configured)."""
    for start in range(0, total, chunk):
        await store.write(samples(start, min(chunk, total - start)))


@contextlib.asynccontextmanager
async def exporter(store: Store, cfg: ExportConfig) -> AsyncIterator[Exporter]:
    """One running exporter."""
    service = ExportService(
        [cfg], store, AgentStats(), retention=30 * 86400.0, external_labels={"host": "bench"}
    )
    async with service:
        yield service.exporters[0]


async def drain(path: Path, cfg: ExportConfig, total: int) -> tuple[float, float]:
    """Send `total` stored samples; (wall seconds, CPU seconds of this process)."""
    async with Store(path) as store:
        await sync_export_log(store, [cfg.name])
        await fill(store, total)
        wall, cpu = time.perf_counter(), time.process_time()
        async with exporter(store, cfg) as exp:
            await exp.wait_until(lambda s: s.sent >= total)
            return time.perf_counter() - wall, time.process_time() - cpu


async def throughput(base: str, total: int, tmp: Path) -> None:
    """Samples/s from a backlog already stored, per protocol and batch size."""
    for kind in ("remote_write", "otlp"):
        for batch in (2000, 10_000):
            cfg = config(kind, base, batch)
            wall, cpu = await drain(tmp / f"tp-{kind}-{batch}.db", cfg, total)
            print(
                f"throughput {kind:>12} batch {batch:>6}: {total / wall:>9,.0f} samples/s wall, "
                f"{total / cpu:>9,.0f} samples per CPU-second, "
                f"{1000 * cpu / total * 1000:.2f} ms CPU per 1,000 samples"
            )


async def lag(base: str, rate: int, seconds: float, tmp: Path) -> None:
    """Ingest `rate` samples/s (a write every 0.1 s, stamped now) and measure the lag."""
    per_write = rate // 10
    for kind in ("remote_write", "otlp"):
        cfg = config(kind, base, 2000)
        async with (
            Store(tmp / f"lag-{kind}.db") as store,
            exporter(store, cfg) as exp,
            aiohttp.ClientSession() as http,
        ):
            await (await http.get(f"{base}/stats")).read()  # reset
            cpu0, start = time.process_time(), time.monotonic()
            written = 0
            tick = start
            while tick - start < seconds:
                await store.write(samples(written, per_write, ts=time.time()))
                written += per_write
                tick += 0.1
                await asyncio.sleep(max(0.0, tick - time.monotonic()))
            await exp.wait_until(functools.partial(_sent_at_least, written))
            cpu = time.process_time() - cpu0
            async with http.get(f"{base}/stats") as resp:
                result = await resp.json()
        print(
            f"lag {kind:>12} at {written / seconds:,.0f} samples/s ingest: "
            f"p50 {result['p50'] * 1000:.0f} ms, p99 {result['p99'] * 1000:.0f} ms, "
            f"max {result['max'] * 1000:.0f} ms over {result['samples']:,} samples; "
            f"this process (store writes + export) {100 * cpu / seconds:.0f} % of one core"
        )


def _sent_at_least(count: int, stats: ExporterStats) -> bool:
    return stats.sent >= count


async def outage(base: str, rate: int, minutes: float, tmp: Path) -> None:
    """A backlog of `minutes` of ingest at `rate`/s, then the receiver is back: drain rate."""
    total = int(rate * minutes * 60)
    for kind in ("remote_write", "otlp"):
        cfg = config(kind, base, 2000)
        wall, cpu = await drain(tmp / f"outage-{kind}.db", cfg, total)
        print(
            f"backlog {kind:>12} after {minutes:g} min at {rate:,}/s ({total:,} samples): "
            f"drained in {wall:.1f} s, {total / wall:,.0f} samples/s "
            f"({total / wall / rate:.0f}x the ingest rate), CPU {cpu:.1f} s"
        )


def overhead(base: str, seconds: float) -> None:
    """The agent at a 10 s host interval: host-only vs one remote-write exporter."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench.overhead import measure

    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        for label, export in (("host-only", []), ("one exporter", None)):
            entry = [{"name": "bench", "type": "remote_write", "url": f"{base}/write"}]
            env = {
                **{k: v for k, v in os.environ.items() if not k.startswith("INFRAWATCH_")},
                "INFRAWATCH_HOST__INTERVAL": "10",
                "INFRAWATCH_STORAGE__PATH": f"{tmp}/{label.replace(' ', '-')}.db",
                "INFRAWATCH_HTTP__ENABLED": "true",
                "INFRAWATCH_HTTP__LISTEN": "127.0.0.1:0",
                "INFRAWATCH_LOGGING__LEVEL": "warning",
                "INFRAWATCH_EXPORT": json.dumps(export if export is not None else entry),
            }
            cmd = [sys.executable, "-m", "infrawatch", "run"]
            results[label] = measure(cmd, seconds, 5.0, env)
            cpu, rss = results[label]
            print(
                f"overhead {label:>12}, interval 10 s: CPU {cpu:.2f} % of one core, "
                f"peak RSS {rss:.1f} MB ({seconds:.0f} s)"
            )
        ratio = results["one exporter"][0] / max(results["host-only"][0], 1e-9)
        print(f"overhead ratio (one exporter / host-only CPU): {ratio:.2f} (target <= 1.5)")


async def run(args: argparse.Namespace) -> None:
    """Every benchmark against one receiver process."""
    with tempfile.TemporaryDirectory() as tmp:
        with receiver(decode=False) as base:
            await throughput(base, args.samples, Path(tmp))
            await outage(base, args.outage_rate, args.outage_minutes, Path(tmp))
        with receiver(decode=True) as base:
            await lag(base, args.ingest_rate, args.lag_seconds, Path(tmp))
    if args.overhead_seconds:
        with receiver(decode=False) as base:
            overhead(base, args.overhead_seconds)


def main() -> None:
    """Parse arguments; run the receiver or the benchmarks."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=200_000, help="backlog for throughput")
    parser.add_argument("--ingest-rate", type=int, default=10_000, help="samples/s for lag")
    parser.add_argument("--lag-seconds", type=float, default=10.0)
    parser.add_argument("--outage-rate", type=int, default=1_000, help="ingest during outage")
    parser.add_argument("--outage-minutes", type=float, default=10.0)
    parser.add_argument("--overhead-seconds", type=float, default=0.0, help="0: skip")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--decode", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.decode)
        return
    configure("warning", "console")
    print(f"{os.cpu_count()} cores, Python {sys.version.split()[0]}, {SERIES} series")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
