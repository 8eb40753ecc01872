"""Retention deletes exactly what is older than the cut-off, in chunks, beside live writes."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from infrawatch.config import StorageConfig
from infrawatch.model import Anomaly, Sample
from infrawatch.storage.retention import Maintenance, delete_expired, maintain
from infrawatch.storage.store import Store
from tests.support_history import NOW

DAY = 86400.0


def timestamps(path: Path, table: str) -> list[float]:
    with sqlite3.connect(path) as conn:
        found = [r[0] for r in conn.execute(f"SELECT ts FROM {table} ORDER BY ts")]  # noqa: S608 - test table names
    conn.close()
    return found


async def test_delete_expired_is_exact_at_the_cutoff(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    cutoff = NOW - 100
    stamps = [cutoff - 50 + i * 0.5 for i in range(200)]  # includes cutoff itself
    async with Store(path) as store:
        await store.write([Sample("a", 1.0, t) for t in stamps])
        await store.write([Sample("b", 2.0, t, (("k", "v"),)) for t in stamps[::3]])
        deleted = await delete_expired(store, "samples", cutoff, chunk=7)
    kept = timestamps(path, "samples")
    assert deleted == sum(1 for t in stamps if t < cutoff) + sum(
        1 for t in stamps[::3] if t < cutoff
    )
    assert sorted(kept) == sorted(
        [t for t in stamps if t >= cutoff] + [t for t in stamps[::3] if t >= cutoff]
    )
    assert min(kept) == cutoff


async def test_delete_expired_refuses_unknown_tables(tmp_path: Path) -> None:
    async with Store(tmp_path / "r.db") as store:
        with pytest.raises(ValueError, match="not a retained table"):
            await delete_expired(store, "series; DROP TABLE samples", 0)


async def test_each_table_keeps_its_own_retention(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    config = StorageConfig.model_validate(
        {"path": path, "retention": "2d", "rollup_1m_retention": "5d", "rollup_1h_retention": "9d"}
    )
    async with Store(path) as store:
        # One sample every 6 hours for 12 days; each is rolled up while it is still raw.
        for i in range(48):
            ts = NOW - 12 * DAY + i * 6 * 3600 + 1
            await store.write([Sample("m", float(i), ts)])
            await maintain(store, config, now=ts + 3 * 3600)
        await maintain(store, config, now=NOW)
    assert min(timestamps(path, "samples")) >= NOW - 2 * DAY
    assert min(timestamps(path, "rollup_1m")) >= NOW - 5 * DAY
    assert min(timestamps(path, "rollup_1h")) >= NOW - 9 * DAY
    # Nothing newer than a table's cut-off went: one row per 6 h in each window.
    assert len(timestamps(path, "samples")) == 8
    assert len(timestamps(path, "rollup_1m")) == 20
    assert len(timestamps(path, "rollup_1h")) == 36


async def test_writes_go_on_while_retention_deletes(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    async with Store(path) as store:
        old = [Sample(f"m{i % 50}", 0.0, NOW - 30 * DAY + i) for i in range(20_000)]
        for i in range(0, len(old), 2000):
            await store.write(old[i : i + 2000])
        new = [[Sample("fresh", float(j), NOW + i * 10 + j) for j in range(10)] for i in range(20)]

        async def writer() -> None:
            for batch in new:
                await store.write(batch)
                await asyncio.sleep(0)

        deleted, _ = await asyncio.gather(
            delete_expired(store, "samples", NOW - DAY, chunk=500), writer()
        )
        assert deleted == 20_000
        assert await store.count_samples() == 200


async def test_maintenance_task_survives_a_locked_database(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    config = StorageConfig(path=path, maintenance_interval=3600)
    async with Store(path, busy_timeout_ms=50) as store:
        await store.write([Sample("m", 1.0, NOW - 30 * DAY)])
        task = Maintenance(store, config, clock=lambda: NOW)
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
            assert await task.run_once() is None
            assert task.failures == 1
            other.execute("COMMIT")
        finally:
            other.close()
        result = await task.run_once()
        assert result is not None
        assert result.deleted["samples"] == 1
        assert task.failures == 0
        # As a task: it runs at once, then sleeps until cancelled.
        task.ran.clear()
        running = asyncio.create_task(task.run())
        await task.ran.wait()
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        assert task.runs == 3


def _anomaly(name: str, ts: float) -> Anomaly:
    return Anomaly(name, (), ts, 1.0, "threshold", "r", "warning", "firing")


async def test_old_anomalies_and_orphan_series_go_and_writes_go_on(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    config = StorageConfig.model_validate(
        {"path": path, "retention": "1d", "rollup_1m_retention": "1d", "rollup_1h_retention": "2d"}
    )
    async with Store(path) as store:
        old = NOW - 10 * DAY
        # "gone": a series last seen long ago, with an old anomaly; "live": reporting now.
        await store.write([Sample("gone", 1.0, old)], [_anomaly("gone", old)])
        await store.write([Sample("live", 1.0, NOW)], [_anomaly("live", NOW - 3 * DAY)])
        result = await maintain(store, config, now=NOW)
        assert result.deleted["anomalies"] == 2  # both older than the 2-day cut-off
        assert result.deleted["series"] == 1  # "gone" has nothing left; "live" has samples
        with sqlite3.connect(path) as conn:
            names = [r[0] for r in conn.execute("SELECT name FROM series ORDER BY name")]
        conn.close()
        assert names == ["live"]
        # "gone" was in the write path's id cache; it comes back as a new row, not an error.
        await store.write([Sample("gone", 2.0, NOW)])
        assert await store.history(("gone", ()), since=0) == [(NOW, 2.0)]
