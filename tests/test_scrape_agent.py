"""Scraping through the real agent (a subprocess): known values reach the database as the
documented rates and quantiles, SIGHUP adds/removes/changes targets, and a 100,000-series target
is capped while the others go on."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from infrawatch.storage.points import samples
from infrawatch.storage.read import list_series, open_readonly
from tests.agentproc import AgentProcess, run_cli, write_config
from tests.support_scrape import (
    MANY,
    MetricsApp,
    NodeExporter,
    RawServer,
    db_path,
    many_series_body,
    scrape_toml,
)

BASE = """
[host]
enabled = false
"""


async def query_samples(db: Path, metric: str, **labels: str) -> list[dict[str, Any]]:
    """`infrawatch query samples METRIC --format json` against `db` (read-only, works live)."""
    args = ["query", "samples", metric, "--db", str(db), "--format", "json", "--since", "1h"]
    for key, value in labels.items():
        args += ["--label", f"{key}={value}"]
    code, out, err = await run_cli(*args)
    assert code == 0, err
    rows: list[dict[str, Any]] = json.loads(out)
    return rows


def points(db: Path, metric: str, **labels: str) -> list[tuple[float, float]]:
    """(ts, value) of the one series `metric` with `labels`, through the read API `query` uses."""
    conn = open_readonly(db)
    try:
        (found,) = samples(conn, metric, labels=labels, since=0.0, until=time.time() + 60)
    finally:
        conn.close()
    return found.points


async def series_samples(db: Path, match: str, **labels: str) -> int:
    """Raw samples stored for the series matching `match` and `labels` (0 before any)."""

    def read() -> int:
        if not db.exists():
            return 0
        conn = open_readonly(db)
        try:
            return sum(s["samples"] for s in list_series(conn, match=match, labels=labels))
        finally:
            conn.close()

    return await asyncio.to_thread(read)


async def wait_stored(db: Path, match: str, count: int, limit: float = 30.0, **labels: str) -> None:
    """Poll the database (another process writes it) until `count` samples of `match` are in."""
    deadline = time.monotonic() + limit
    while (found := await series_samples(db, match, **labels)) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{match} {labels}: {found} of {count} samples stored")
        await asyncio.sleep(0.1)


@pytest.fixture
async def app() -> AsyncIterator[MetricsApp]:
    async with MetricsApp(gzip_body=True) as server:
        yield server


def _clean_exit(proc: AgentProcess) -> None:
    for text in ("Unclosed client session", "Unclosed connector", "Task was destroyed"):
        assert text not in proc.stderr + "".join(proc.raw_lines), text


async def test_known_values_arrive_as_rates_and_quantiles_across_a_counter_reset(
    tmp_path: Path, app: MetricsApp
) -> None:
    reset_at = 4

    def on_scrape(n: int) -> None:
        if n == reset_at:
            app.reset_counter()  # 30 → 0, then +10: a drop, which is a reset, not a -20/s rate
        app.counter.inc(10)
        app.gauge.set(40 + n)
        for value, times in ((0.05, 50), (0.3, 40), (0.7, 10)):
            for _ in range(times):
                app.histogram.observe(value)

    app.on_scrape = on_scrape
    config = write_config(
        tmp_path,
        BASE + scrape_toml("app", f"{app.base}/metrics", interval=0.3, labels={"env": "t"}),
    )
    proc = await AgentProcess(config).start()
    try:
        await app.wait_scrapes(7)
    finally:
        assert await proc.stop() == 0, proc.stderr
    _clean_exit(proc)
    db = db_path(tmp_path)
    labels = {"job": "app", "instance": f"127.0.0.1:{app.port}", "env": "t"}
    up = await query_samples(db, "up", job="app")
    assert up, proc.stderr
    assert {r["value"] for r in up} == {1.0}
    assert all(r["labels"] == labels for r in up)
    scrape_ts = [r["ts"] for r in up]
    previous = dict(zip(scrape_ts[1:], scrape_ts, strict=False))  # scrape ts → the one before

    # What `infrawatch query samples` shows is what the read API returns (asked once above).
    gauge = points(db, "app_queue_depth")
    assert [v for _, v in gauge] == [40.0 + n for n in range(1, len(gauge) + 1)]

    rates = points(db, "app_requests_total.rate")
    assert len(rates) == len(up) - 1  # the first scrape gives no rate
    for ts, value in rates:
        # 10 requests per interval, the interval after the reset included; never negative.
        assert value * (ts - previous[ts]) == pytest.approx(10.0)

    counts = points(db, "app_latency_seconds.count.rate")
    assert len(counts) == len(up) - 1
    for ts, value in counts:
        assert value * (ts - previous[ts]) == pytest.approx(100.0)
    # 50 × 0.05, 40 × 0.3, 10 × 0.7 per interval, buckets 0.1, 0.5, 1: histogram_quantile
    # interpolates to 0.1, 0.5 and 0.95.
    for name, expected in (("p50", 0.1), ("p90", 0.5), ("p99", 0.95)):
        found = points(db, f"app_latency_seconds.{name}")
        assert len(found) == len(up) - 1
        assert all(v == pytest.approx(expected) for _, v in found), (name, found)

    durations = points(db, "scrape.duration_seconds", job="app")
    assert len(durations) == len(up)
    assert all(v > 0 for _, v in durations)
    # OpenMetrics: the counter gives 2 samples (_total, _created), the gauge 1, the histogram 7.
    assert {v for _, v in points(db, "scrape.samples_scraped", job="app")} == {10.0}


async def test_sighup_adds_removes_and_restarts_targets(tmp_path: Path, app: MetricsApp) -> None:
    with NodeExporter("loadavg", "meminfo") as node:
        config = write_config(
            tmp_path, BASE + scrape_toml("one", f"{app.base}/metrics", interval=0.3)
        )
        proc = await AgentProcess(config).start()
        try:
            # The schema exists from here on: the database is polled by another process.
            await proc.wait_for("agent.started")
            await app.wait_scrapes(2)
            # `one` goes, node_exporter comes.
            text = config.read_text().replace(
                scrape_toml("one", f"{app.base}/metrics", interval=0.3),
                scrape_toml("node", node.url, interval=0.3),
            )
            config.write_text(text)
            proc.signal(signal.SIGHUP)
            changed = await proc.wait_for("scrape.targets_changed")
            stopped_at = app.scrapes
            assert (changed["added"], changed["removed"], changed["restarted"]) == (
                ["node"],
                ["one"],
                [],
            )
            reloaded = await proc.wait_for("config.reloaded")
            assert "scrape" in reloaded["applied"]
            assert reloaded["restart_required"] == []
            db = db_path(tmp_path)
            await wait_stored(db, "node_load1", 3, job="node")
            # An in-flight request may have reached the app as the task was cancelled; no more.
            assert app.scrapes <= stopped_at + 1
            # A changed target restarts with its new settings; a new one starts beside it.
            config.write_text(
                config.read_text().replace("interval = 0.3", 'interval = 0.4\nlabels = { v = "2" }')
                + scrape_toml("one", f"{app.base}/metrics", interval=0.3)
            )
            proc.signal(signal.SIGHUP)
            changed = await proc.wait_for("scrape.targets_changed", count=2)
            assert (changed["added"], changed["removed"], changed["restarted"]) == (
                ["one"],
                [],
                ["node"],
            )
            await wait_stored(db, "node_load1", 2, job="node", v="2")
            await app.wait_scrapes(stopped_at + 3)
        finally:
            assert await proc.stop() == 0, proc.stderr
    _clean_exit(proc)
    assert not proc.named("producer.failed")


async def test_a_100000_series_target_is_capped_and_the_others_go_on(
    tmp_path: Path, app: MetricsApp
) -> None:
    many_series_body()  # built before the agent scrapes it
    async with RawServer(None) as hang:
        config = write_config(
            tmp_path,
            BASE
            + scrape_toml("good", f"{app.base}/metrics", interval=0.3)
            + scrape_toml(
                "many", f"{app.base}/many", interval=1, max_series=1000, max_body_bytes=16777216
            )
            + scrape_toml("hang", hang.url, interval=3, timeout=2)
            + scrape_toml("garbage", f"{app.base}/garbage", interval=0.3),
        )
        proc = await AgentProcess(config).start()
        try:
            # The schema exists from here on: the database is polled by another process.
            await proc.wait_for("agent.started")
            db = db_path(tmp_path)
            await wait_stored(db, "scrape.samples_scraped", 2, job="many")
            good_before = await series_samples(db, "up", job="good")
            capped = await proc.wait_for("scrape.series_capped")
            assert capped["target"] == "many"
            assert capped["dropped"] == MANY - 1000
            await proc.wait_for("scrape.failed", lambda e: e["target"] == "hang")
            await proc.wait_for("scrape.failed", lambda e: e["target"] == "garbage", count=2)
            # Good scrapes keep arriving while the others fail or are capped.
            await wait_stored(db, "up", good_before + 3, job="good")
            assert proc.proc is not None
            assert proc.proc.returncode is None
            rss = _rss_bytes(proc.proc.pid)
        finally:
            assert await proc.stop() == 0, proc.stderr
    _clean_exit(proc)
    assert await series_samples(db, "many_series", job="many") >= 2 * 1000
    series = await asyncio.to_thread(_series_count, db, "many_series")
    assert series == 1000  # the cap held in storage too
    up = await query_samples(db, "up", job="good")
    assert {r["value"] for r in up} == {1.0}
    # Bounded: a 3 MB body and its parse come and go; 100,000 series are never kept.
    assert rss < 400 * 1024 * 1024, rss
    assert len(proc.named("scrape.series_capped")) == 1


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _series_count(db: Path, match: str) -> int:
    conn = open_readonly(db)
    try:
        return len(list_series(conn, match=match))
    finally:
        conn.close()
