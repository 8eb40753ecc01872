"""The store survives bad days: locked, full or read-only databases, bad batches, and kill -9."""

from __future__ import annotations

import asyncio
import math
import random
import signal
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import infrawatch.runtime.pipeline as pipeline_mod
from infrawatch.alerting import LogAlerter
from infrawatch.model import Sample
from infrawatch.runtime.pipeline import Pipeline
from infrawatch.runtime.producer import Batch
from infrawatch.runtime.queue import BatchQueue
from infrawatch.runtime.stats import AgentStats
from infrawatch.storage.store import Store
from tests.agentproc import AgentProcess, write_config


class Recorder:
    """Stands in for the pipeline's structlog logger: keeps (level, event, fields)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Any:
        def record(event: str, **fields: Any) -> None:
            self.events.append((level, event, fields))

        return record

    def named(self, event: str) -> list[dict[str, Any]]:
        return [fields for _, name, fields in self.events if name == event]


class SignallingStore(Store):
    """A real Store that also sets an event after every successful write."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.written = asyncio.Event()
        self.failed = asyncio.Event()

    async def write(self, samples: Any, anomalies: Any = ()) -> None:
        try:
            await super().write(samples, anomalies)
        except Exception:
            self.failed.set()
            raise
        self.written.set()


@pytest.fixture
def log(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder()
    monkeypatch.setattr(pipeline_mod, "log", recorder)
    return recorder


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SignallingStore]:
    # A short busy timeout: a locked database fails a write in 50 ms instead of 5 s.
    async with SignallingStore(tmp_path / "agent.db", busy_timeout_ms=50) as s:
        yield s


def make_pipeline(store: Store, stats: AgentStats, buffer_max: int = 100_000) -> Pipeline:
    queue = BatchQueue(1000, "drop_oldest", stats)
    return Pipeline(queue, store, [], LogAlerter(), stats, buffer_max_samples=buffer_max)


def batch(i: int, n: int = 50) -> Batch:
    return Batch("host", [Sample(f"m{j % 7}", float(i), 1000.0 + i * n + j) for j in range(n)])


def stored_values(path: Path) -> list[float]:
    with sqlite3.connect(path) as conn:
        found = [r[0] for r in conn.execute("SELECT value FROM samples ORDER BY ts")]
    conn.close()
    return found


async def test_locked_database_loses_nothing_accepted(
    store: SignallingStore, log: Recorder
) -> None:
    stats = AgentStats()
    pipeline = make_pipeline(store, stats)
    locker = sqlite3.connect(store.path, isolation_level=None)
    try:
        locker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        for i in range(40):  # the write burst
            await pipeline.process([batch(i)])
        assert pipeline.pending_samples == 40 * 50
        assert stats.store_errors >= 1
        assert stored_values(store.path) == []
    finally:
        locker.execute("COMMIT")
        locker.close()
    await pipeline.drain()
    assert pipeline.pending_samples == 0
    assert stats.store_dropped == 0
    values = stored_values(store.path)
    assert len(values) == 40 * 50
    assert values == sorted(values)  # written in the order accepted
    assert stats.stored == 40 * 50
    # One error line per backoff doubling, not one per batch; then one recovery line.
    failed = log.named("store.write_failed")
    assert [f["consecutive_failures"] for f in failed] == [
        n for n in (1, 2, 4, 8, 16, 32) if n <= stats.store_errors
    ]
    assert "database is locked" in failed[0]["error"]
    assert len(log.named("store.recovered")) == 1


async def test_running_pipeline_retries_on_its_own(store: SignallingStore, log: Recorder) -> None:
    """Buffered writes are retried on a timer, even when no new batch arrives."""
    stats = AgentStats()
    pipeline = make_pipeline(store, stats)
    locker = sqlite3.connect(store.path, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    task = asyncio.create_task(pipeline.run())
    try:
        pipeline._queue.put(batch(0))
        await asyncio.wait_for(store.failed.wait(), timeout=10)  # the first attempt: locked
        store.written.clear()
        locker.execute("COMMIT")
        await asyncio.wait_for(store.written.wait(), timeout=10)
    finally:
        locker.close()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert stored_values(store.path) == [0.0] * 50
    assert pipeline.pending_samples == 0


async def test_disk_full_buffers_drops_oldest_and_recovers(
    store: SignallingStore, log: Recorder
) -> None:
    stats = AgentStats()
    pipeline = make_pipeline(store, stats, buffer_max=500)
    await pipeline.process([batch(0)])
    async with store.db.execute("PRAGMA page_count") as cur:
        row = await cur.fetchone()
    assert row is not None
    # The database may not grow: every new page is "database or disk is full".
    await store.db.execute(f"PRAGMA max_page_count = {row[0]}")
    for i in range(1, 31):
        await pipeline.process([batch(i, n=100)])
    assert "database or disk is full" in log.named("store.write_failed")[0]["error"]
    assert pipeline.pending_samples == 500
    assert log.named("store.buffer_full_dropped")
    stored_before = len(stored_values(store.path))
    assert stats.stored == stored_before
    await store.db.execute("PRAGMA max_page_count = 1073741823")
    await pipeline.drain()
    values = stored_values(store.path)
    # What fitted before the disk filled, then the newest 500 from the buffer; the rest (the
    # oldest of the buffered) were dropped and counted.
    assert values[-500:] == [float(i) for i in range(26, 31) for _ in range(100)]
    assert values[:stored_before] == sorted(values[:stored_before])
    assert len(values) == stored_before + 500 == stats.stored
    assert stats.store_dropped == 50 + 30 * 100 - stats.stored


async def test_read_only_database_recovers(store: SignallingStore, log: Recorder) -> None:
    stats = AgentStats()
    pipeline = make_pipeline(store, stats)
    await store.db.execute("PRAGMA query_only = ON")  # as if the file had become read-only
    await pipeline.process([batch(0)])
    assert "readonly" in log.named("store.write_failed")[0]["error"]
    await store.db.execute("PRAGMA query_only = OFF")
    await pipeline.drain()
    assert stored_values(store.path) == [0.0] * 50


async def test_unwritable_batch_is_dropped_not_retried_forever(
    store: SignallingStore, log: Recorder
) -> None:
    stats = AgentStats()
    pipeline = make_pipeline(store, stats)
    # A label that is not valid UTF-8 (built by hand, past make_labels) can never be stored.
    poison = Batch("host", [Sample("m", 1.0, 1.0, (("name", "y\udcffz"),))])
    await pipeline.process([poison])
    await pipeline.process([batch(1)])
    assert stored_values(store.path) == [1.0] * 50
    assert stats.store_dropped == 1
    assert log.named("store.batch_unwritable")[0]["dropped_samples"] == 1


async def test_non_finite_value_costs_only_itself(store: SignallingStore, log: Recorder) -> None:
    """A NaN or ±inf reading is dropped and counted; the rest of its batch is stored."""
    stats = AgentStats()
    pipeline = make_pipeline(store, stats)
    bad = [Sample("m", math.nan, 1.0), Sample("m", math.inf, 2.0), Sample("m", -math.inf, 3.0)]
    await pipeline.process([Batch("host", [*bad, *batch(1).samples])])
    assert stored_values(store.path) == [1.0] * 50
    assert stats.producers["host"].dropped == 3  # the pipeline drops them before detection
    assert stats.store_dropped == 0
    assert log.named("store.batch_unwritable") == []
    # The store is the second line of defence for direct callers.
    await store.write([Sample("m", math.nan, 9.0)])
    assert store.non_finite_skipped == 1


def test_backoff_never_overflows() -> None:
    """After a day of failures the delay stays at its maximum (2.0 ** 1100 would overflow)."""
    stats = AgentStats()
    p = Pipeline(BatchQueue(1, "drop_oldest", stats), None, [], LogAlerter(), stats)  # type: ignore[arg-type]
    p._store_failures = 1100
    p._on_store_error(sqlite3.OperationalError("database is locked"))
    assert p._retry_at > 0


# -- kill -9 ---------------------------------------------------------------------------------

KILL_CONFIG = """
[host]
interval = 0.2
process_interval = 0.2
"""
KILLS = 10
# Two agents, each on its own database, take the kills side by side: agent start-up (imports)
# dominates the run time, and the machine has two cores.
CHAINS = 2
# Fixed so a failure can be replayed; the moments still vary with scheduling, the choices don't.
KILL_SEED = 20270115


def check_database(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        duplicates = conn.execute(
            "SELECT series_id, ts FROM samples GROUP BY series_id, ts HAVING count(*) > 1"
        ).fetchall()
        assert duplicates == []
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        return int(conn.execute("SELECT count(*) FROM samples").fetchone()[0])
    finally:
        conn.close()


async def kill_chain(directory: Path, kills: int, seed: int) -> None:
    """Start and SIGKILL an agent `kills` times on one database, then start it once more and
    stop it cleanly; the database is checked after every kill."""
    rng = random.Random(seed)
    directory.mkdir()  # noqa: ASYNC240 - once, before any agent runs
    config = write_config(directory, KILL_CONFIG)
    # Maintenance every 0.1 s with a 2 s raw retention: kills also land in rollups and deletes.
    overrides = ["--set", "storage.maintenance_interval=0.1", "--set", "storage.retention='2s'"]
    db = directory / "agent.db"
    seen_rows = 0
    for _ in range(kills):
        agent = await AgentProcess(config, "--log-level", "debug", *overrides).start()
        try:
            await agent.wait_for("pipeline.batch_done", count=rng.randint(1, 4))
            await asyncio.sleep(rng.uniform(0, 0.2))  # a random moment, not a synchronisation
            agent.signal(signal.SIGKILL)
            assert await agent.wait() == -signal.SIGKILL
        finally:
            await agent.stop()
        seen_rows = max(seen_rows, check_database(db))
    assert seen_rows > 0
    # The next start continues and shuts down cleanly.
    agent = await AgentProcess(config, "--log-level", "debug", *overrides).start()
    try:
        await agent.wait_for("pipeline.batch_done", count=2)
        agent.signal(signal.SIGTERM)
        assert await agent.wait() == 0
    finally:
        await agent.stop()
    check_database(db)


async def test_sigkill_at_random_moments_never_corrupts(tmp_path: Path) -> None:
    seeds = [KILL_SEED + n for n in range(CHAINS)]
    print(f"kill moments drawn with random.Random(seed) for seeds {seeds}")  # shown on failure
    async with asyncio.TaskGroup() as chains:
        for n, seed in enumerate(seeds):
            chains.create_task(kill_chain(tmp_path / f"chain{n}", KILLS // CHAINS, seed))
