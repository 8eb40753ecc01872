"""Cost of [[scrape]] targets: CPU per scrape, RSS, database growth.

1. CPU per scrape, in this process, of Debian's prometheus-node-exporter (~500 samples) and of a
   synthetic 10,000-sample target (a child process serving prometheus-client metrics, text format
   and OpenMetrics): parse + convert alone (time.process_time over the bodies as fetched), and a
   whole ScrapeProducer.collect (HTTP, gzip, parse, convert), against the exporter's own CPU per
   scrape (/proc/PID/stat utime + stime) in the same run.
2. The agent (a child `infrawatch run`) scraping the 10,000-sample target: RSS against an agent
   without targets, its CPU per scrape (pipeline, detectors and storage included), and the
   database's bytes per stored row (sqlite dbstat, tables and indexes), extrapolated to 10,000
   series at 15 s and the default retentions.

    .venv/bin/python bench/scrape_targets.py [--scrapes 30] [--agent-scrapes 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CLK_TCK = os.sysconf("SC_CLK_TCK")
DAY = 86400.0
SERIES = 10_000  # the stored series the database extrapolation is for
INTERVAL = 15.0  # seconds between scrapes in the extrapolation


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of `pid` (from /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(pid: int) -> int:
    """Resident set size of `pid`."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, limit: float = 60.0) -> None:
    """GET `url` until it answers; bounded."""
    deadline = time.monotonic() + limit
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5):  # noqa: S310 - loopback http only
                return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"{url} did not come up") from None
            time.sleep(0.1)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM and wait."""
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# -- the synthetic target (child process) --------------------------------------------------------


def serve_target(port: int, samples: int) -> None:
    """Serve about `samples` samples at /metrics (negotiated) and /text, changing every scrape.

    A realistic mix: 40 % counters, 40 % gauges, the rest in histograms of 10 buckets (each 13
    samples: 11 buckets with +Inf, _sum, _count), with two labels per series.
    """
    from aiohttp import web
    from prometheus_client import (
        CollectorRegistry,
        Counter,
        Gauge,
        Histogram,
        disable_created_metrics,
    )
    from prometheus_client.exposition import choose_encoder, generate_latest

    disable_created_metrics()  # as most exporters: no _created samples
    registry = CollectorRegistry()
    counters = gauges = int(samples * 0.4) // 10
    histograms = (samples - 20 * counters) // (13 * 10)
    counter = Counter("bench_requests", "c", ["path", "code"], registry=registry)
    gauge = Gauge("bench_queue_depth", "g", ["queue", "shard"], registry=registry)
    histogram = Histogram(
        "bench_latency_seconds",
        "h",
        ["path", "method"],
        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        registry=registry,
    )
    children_c = [
        counter.labels(f"/p{i}", str(200 + j)) for i in range(counters) for j in range(10)
    ]
    children_g = [gauge.labels(f"q{i}", str(j)) for i in range(gauges) for j in range(10)]
    children_h = [histogram.labels(f"/p{i}", m) for i in range(histograms) for m in range(10)]
    tick = 0

    def advance() -> None:
        nonlocal tick
        tick += 1
        for n, c in enumerate(children_c):
            c.inc(1 + (n + tick) % 7)
        for n, g in enumerate(children_g):
            g.set((n * 31 + tick) % 1000)
        for n, h in enumerate(children_h):
            h.observe(((n + tick) % 100) / 40)

    async def metrics(request: web.Request) -> web.Response:
        advance()
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encoder(registry), headers={"Content-Type": content_type})

    async def text(request: web.Request) -> web.Response:
        advance()
        return web.Response(
            body=generate_latest(registry), headers={"Content-Type": "text/plain; version=0.0.4"}
        )

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/text", text)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def start_target(samples: int) -> tuple[subprocess.Popen[bytes], str]:
    """The synthetic target as a child process; its base URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve-target", str(port), "--samples", str(samples)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/text")
    return proc, base


# -- CPU per scrape, in this process -------------------------------------------------------------


async def measure_scrapes(name: str, url: str, pid: int, scrapes: int) -> dict[str, Any]:
    """Per scrape: our parse+convert CPU, our whole-collect CPU, the target's own CPU (ms)."""
    import aiohttp

    from infrawatch.collectors.openmetrics import Converter, ParseCache, parse
    from infrawatch.collectors.scrape import ScrapeProducer
    from infrawatch.collectors.scrape_config import ScrapeTarget

    target = ScrapeTarget(name=name, url=url, interval=60, max_body_bytes=64 * 1024 * 1024)
    # Whole scrapes as the agent does them.
    collect_cpu, target_cpu, samples = [], [], 0
    async with ScrapeProducer(target, quiet=True) as producer:
        await producer.collect()  # warm-up: imports, connection, the parse cache's layout
        for _ in range(scrapes):
            ours, theirs = time.process_time(), cpu_seconds(pid)
            await producer.collect()
            collect_cpu.append(time.process_time() - ours)
            target_cpu.append(cpu_seconds(pid) - theirs)
        if producer.last is None or not producer.last.ok:
            raise SystemExit(f"{name}: {producer.last}")
        samples, series = producer.last.samples_scraped, producer.last.series
        content_type = producer.last.content_type
    # Parse + convert alone, over bodies fetched as the agent fetches them (values change).
    bodies: list[bytes] = []
    async with aiohttp.ClientSession() as session:
        for _ in range(scrapes + 1):
            async with session.get(url, headers={"Accept": target.accept}) as resp:
                bodies.append(await resp.read())
    converter = Converter(labels={"job": name, "instance": "x"}, max_series=1_000_000)
    cache = ParseCache()
    ts = time.time()
    converter.convert(parse(bodies[0], content_type, cache), ts)
    parse_cpu = []
    for n, body in enumerate(bodies[1:], 1):
        started = time.process_time()
        converter.convert(parse(body, content_type, cache), ts + n * INTERVAL)
        parse_cpu.append(time.process_time() - started)
    return {
        "target": name,
        "format": "OpenMetrics" if "openmetrics" in content_type else "text",
        "samples": samples,
        "stored_series": series,
        "body_kb": round(len(bodies[-1]) / 1024, 1),
        "parse_convert_ms": round(statistics.median(parse_cpu) * 1000, 2),
        "collect_ms": round(statistics.median(collect_cpu) * 1000, 2),
        "target_own_ms": round(statistics.mean(target_cpu) * 1000, 2),
    }


# -- the agent: RSS, CPU per scrape, database ---------------------------------------------------


def agent_config(tmp: Path, name: str, scrape: str, *, detectors: bool = True) -> Path:
    """A config file: no host producer, no HTTP, the database in `tmp`."""
    path = tmp / f"{name}.toml"
    off = "[analysis.zscore]\nenabled = false\n[analysis.novelty]\nenabled = false\n"
    path.write_text(
        '[host]\nenabled = false\n[http]\nenabled = false\n[logging]\nformat = "json"\n'
        f'[storage]\npath = "{tmp / name}.db"\n{"" if detectors else off}{scrape}'
    )
    return path


def run_agent(config: Path, seconds: float) -> tuple[int, float]:
    """Run the agent for `seconds` after its first collection; (RSS bytes, CPU seconds used
    in that time). With `seconds` 0: RSS once started, no CPU."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "infrawatch", "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    if proc.stdout is None:
        raise RuntimeError("no stdout pipe")
    wanted = "producer.first_collection" if seconds else "agent.started"
    try:
        for raw in proc.stdout:
            try:
                event = json.loads(raw)
            except json.JSONDecodeError:
                continue
            if event.get("event") == wanted:
                break
        else:
            raise SystemExit("agent exited early")
        cpu = cpu_seconds(proc.pid)
        time.sleep(seconds)  # the agent works meanwhile; its stdout pipe holds its few lines
        return rss_bytes(proc.pid), cpu_seconds(proc.pid) - cpu
    finally:
        stop(proc)


def table_bytes(db: Path) -> dict[str, tuple[int, int]]:
    """(bytes in pages, rows) per table, its indexes counted with it (sqlite dbstat)."""
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        owners = dict(
            conn.execute("SELECT name, tbl_name FROM sqlite_master WHERE type IN ('table','index')")
        )
        sizes: dict[str, int] = {}
        for name, size in conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name"):
            table = owners.get(name, name)
            sizes[table] = sizes.get(table, 0) + size
        out = {}
        for table in ("samples", "rollup_1m", "rollup_1h"):
            (rows,) = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608
            out[table] = (sizes.get(table, 0), rows)
        return out
    finally:
        conn.close()


async def roll_up(db: Path) -> None:
    """Run one maintenance pass as if two hours had passed, so 1m and 1h rollups exist."""
    from infrawatch.config import StorageConfig
    from infrawatch.storage.retention import maintain
    from infrawatch.storage.store import Store

    async with Store(db) as store:
        await maintain(store, StorageConfig(path=db), now=time.time() + 2 * 3600)


def measure_agent(base: str, tmp: Path, scrapes: int, interval: float) -> dict[str, Any]:
    """RSS and CPU of an agent scraping the synthetic target, against one without targets."""
    from infrawatch.config import StorageConfig

    idle = agent_config(tmp, "idle", "")
    rss_idle, _ = run_agent(idle, 0.0)
    scrape = f'[[scrape]]\nname = "bench"\nurl = "{base}/text"\ninterval = {interval}\n'
    busy = agent_config(tmp, "busy", scrape)
    rss_busy, cpu = run_agent(busy, scrapes * interval)
    bare = agent_config(tmp, "bare", scrape, detectors=False)
    rss_bare, cpu_bare = run_agent(bare, scrapes * interval)
    db = tmp / "busy.db"
    asyncio.run(roll_up(db))
    tables = table_bytes(db)
    raw_bytes, raw_rows = tables["samples"]
    m_bytes, m_rows = tables["rollup_1m"]
    h_bytes, h_rows = tables["rollup_1h"]
    per_raw = raw_bytes / raw_rows
    per_m = m_bytes / max(m_rows, 1)
    per_h = h_bytes / max(h_rows, 1)
    defaults = StorageConfig(path=db)
    raw_day = SERIES * DAY / INTERVAL * per_raw
    m_day = SERIES * 1440 * per_m
    h_day = SERIES * 24 * per_h
    raw_kept = raw_day * defaults.retention / DAY
    m_kept = m_day * defaults.rollup_1m_retention / DAY
    h_kept = h_day * defaults.rollup_1h_retention / DAY
    gib = 1024**3
    return {
        "rss_idle_mb": round(rss_idle / 1024**2, 1),
        "rss_scraping_mb": round(rss_busy / 1024**2, 1),
        "rss_scraping_no_statistical_detectors_mb": round(rss_bare / 1024**2, 1),
        "agent_cpu_ms_per_scrape": round(cpu / scrapes * 1000, 1),
        "agent_cpu_ms_per_scrape_no_statistical_detectors": round(cpu_bare / scrapes * 1000, 1),
        "bytes_per_raw_sample": round(per_raw, 1),
        "bytes_per_rollup_1m_row": round(per_m, 1),
        "bytes_per_rollup_1h_row": round(per_h, 1),
        "raw_gib_per_day_10k_series_15s": round(raw_day / gib, 2),
        "raw_gib_at_retention": round(raw_kept / gib, 1),
        "rollup_1m_gib_at_retention": round(m_kept / gib, 1),
        "rollup_1h_gib_at_retention": round(h_kept / gib, 1),
        "total_gib_at_default_retention": round((raw_kept + m_kept + h_kept) / gib, 1),
        "retention_days": [
            defaults.retention / DAY,
            defaults.rollup_1m_retention / DAY,
            defaults.rollup_1h_retention / DAY,
        ],
    }


def main() -> None:
    """Parse arguments; serve the synthetic target (child) or measure (parent)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scrapes", type=int, default=30, help="scrapes per CPU measurement")
    parser.add_argument("--samples", type=int, default=10_000, help="synthetic target size")
    parser.add_argument("--agent-scrapes", type=int, default=20)
    parser.add_argument("--agent-interval", type=float, default=2.0)
    parser.add_argument("--serve-target", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_target is not None:
        serve_target(args.serve_target, args.samples)
        return
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    exporter = shutil.which("prometheus-node-exporter")
    if exporter is None:
        raise SystemExit("prometheus-node-exporter is not installed")
    port = free_port()
    node = subprocess.Popen(
        [exporter, f"--web.listen-address=127.0.0.1:{port}", "--log.level=error"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    target, base = start_target(args.samples)
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        wait_http(url)
        rows = [
            asyncio.run(measure_scrapes("node_exporter", url, node.pid, args.scrapes)),
            asyncio.run(measure_scrapes("synthetic", f"{base}/text", target.pid, args.scrapes)),
            asyncio.run(measure_scrapes("synthetic", f"{base}/metrics", target.pid, args.scrapes)),
        ]
        for row in rows:
            print(json.dumps(row))
        with tempfile.TemporaryDirectory() as tmp:
            print(
                json.dumps(measure_agent(base, Path(tmp), args.agent_scrapes, args.agent_interval))
            )
    finally:
        stop(target)
        stop(node)


if __name__ == "__main__":
    main()
