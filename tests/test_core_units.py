"""Small pieces of the core: rates, the full-queue policy, schedules, the store's write path."""

from __future__ import annotations

import asyncio
import math
import os
import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from infrawatch.alerting import LogAlerter
from infrawatch.collectors.rates import RateTracker
from infrawatch.collectors.worker import DaemonWorker
from infrawatch.model import Anomaly, Sample, make_labels
from infrawatch.runtime.pipeline import Pipeline
from infrawatch.runtime.producer import BaseProducer, Batch
from infrawatch.runtime.queue import BatchQueue
from infrawatch.runtime.schedule import backoff_ticks, run_producer
from infrawatch.runtime.stats import AgentStats
from infrawatch.storage.store import SCHEMA_VERSION, Store, StoreError
from tests.support_detect import StatelessDetector


def test_rate_first_reading_and_reset_give_none() -> None:
    rates = RateTracker()
    assert rates.rate("eth0", 1000, now=10.0) is None
    assert rates.rate("eth0", 1500, now=12.0) == 250.0
    assert rates.rate("eth0", 100, now=13.0) is None  # counter reset: no negative spike
    assert rates.rate("eth0", 400, now=14.0) == 300.0
    assert rates.rate("eth0", 400, now=14.0) is None  # no time passed


def test_rate_forgets_devices_that_went_away() -> None:
    rates = RateTracker()
    rates.rate("a", 1, 1.0)
    rates.forget_unseen()
    rates.forget_unseen()  # "a" unseen since the previous call
    assert rates.rate("a", 5, 2.0) is None


def _batch(producer: str, n: int) -> Batch:
    return Batch(producer, [Sample("m", float(i), float(i)) for i in range(n)])


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
async def test_full_queue_drops_and_counts(policy: str) -> None:
    stats = AgentStats()
    p = stats.producer("p")
    queue = BatchQueue(2, policy, stats)  # type: ignore[arg-type]
    first, second, third = _batch("p", 1), _batch("p", 2), _batch("p", 3)
    for b in (first, second, third):
        queue.put(b)
    kept = [queue.get_nowait(), queue.get_nowait()]
    assert queue.get_nowait() is None
    if policy == "drop_oldest":
        assert kept == [second, third]
        assert p.dropped == 1
    else:
        assert kept == [first, second]
        assert p.dropped == 3


def test_backoff_grows_and_is_capped() -> None:
    assert [backoff_ticks(n, 1.0) for n in range(1, 6)] == [0, 1, 3, 7, 15]
    assert backoff_ticks(30, 1.0) == 299  # at most MAX_BACKOFF seconds between attempts
    assert backoff_ticks(30, 600.0) == 0  # a long interval is backoff enough


class Counting(BaseProducer):
    def __init__(self, name: str, target: int) -> None:
        self.name = name
        self.interval = 0.01
        self.calls = 0
        self.target = target
        self.reached = asyncio.Event()

    async def collect(self) -> list[Sample]:
        self.calls += 1
        if self.calls >= self.target:
            self.reached.set()
        return [Sample("ok", 1.0, float(self.calls))]


class Failing(BaseProducer):
    name = "broken"
    interval = 0.01

    async def collect(self) -> list[Sample]:
        raise RuntimeError("sensor on fire")


async def test_failing_producer_does_not_stop_another() -> None:
    stats = AgentStats()
    queue = BatchQueue(1000, "drop_oldest", stats)
    good, bad = Counting("good", target=20), Failing()
    tasks = [
        asyncio.create_task(run_producer(p, queue, stats.producer(p.name))) for p in (good, bad)
    ]
    await good.reached.wait()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert stats.producers["good"].collected >= 20
    assert stats.producers["good"].errors == 0
    assert stats.producers["broken"].errors >= 1
    assert stats.producers["broken"].collected == 0
    assert queue.pending_samples() == stats.producers["good"].collected


async def test_store_creates_private_files_and_upserts(tmp_path: Path) -> None:
    path = tmp_path / "state" / "db.sqlite"
    async with Store(path) as store:
        labels = make_labels({"b": 2, "a": "x' OR 1=1 --"})
        await store.write([Sample("m", 1.0, 100.0, labels), Sample("m", 2.0, 101.0, labels)])
        await store.write([Sample("m", 5.0, 100.0, labels)])  # same (series, ts): updated
        assert await store.history(("m", labels), since=0) == [(100.0, 5.0), (101.0, 2.0)]
        assert await store.count_samples() == 2
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_store_refuses_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    before = path.read_bytes()
    with pytest.raises(StoreError, match="newer than this infrawatch supports"):
        async with Store(path):
            pass
    assert path.read_bytes() == before  # not even switched to WAL


async def test_store_rejects_a_file_that_is_not_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="cannot open database"):
        async with Store(path):
            pass
    assert path.read_bytes() == b"this is not a database" * 100


class _BrokenDetector(StatelessDetector):
    """A detector with a bug: raises on one metric (a NaN it didn't expect, say)."""

    name = "broken"

    def observe(self, sample: Sample) -> list[Anomaly]:
        if sample.name == "bad":
            raise ZeroDivisionError("float division by zero")
        return []


async def test_a_raising_detector_does_not_lose_samples(tmp_path: Path) -> None:
    stats = AgentStats()
    queue = BatchQueue(10, "drop_oldest", stats)
    async with Store(tmp_path / "db.sqlite") as store:
        pipeline = Pipeline(queue, store, [_BrokenDetector()], LogAlerter(), stats)
        stats.producer("p")
        await pipeline.process([Batch("p", [Sample("bad", 1.0, 1.0), Sample("good", 2.0, 1.0)])])
        await pipeline.process([Batch("p", [Sample("bad", 3.0, 2.0)])])
        assert stats.producers["p"].stored == 3
        assert await store.count_samples() == 3


async def test_pipeline_stops_when_cancelled_as_a_queued_batch_arrives(tmp_path: Path) -> None:
    # While writes are failing the pipeline waits with a timeout (asyncio.wait_for); on 3.11 a
    # cancel that lands just as a batch arrives is swallowed there. Shutdown must not hang.
    stats = AgentStats()
    queue = BatchQueue(10, "drop_oldest", stats)
    path = tmp_path / "db.sqlite"
    async with Store(path, busy_timeout_ms=0) as store:
        pipeline = Pipeline(queue, store, [], LogAlerter(), stats)
        stats.producer("p")
        locker = sqlite3.connect(path, isolation_level=None)
        try:
            locker.execute("BEGIN EXCLUSIVE")
            await pipeline.process([_batch("p", 2)])
            assert pipeline.pending_samples == 2  # buffered: the next wait has a timeout
            task = asyncio.create_task(pipeline.run())
            # Two loop turns get the pipeline into wait_for(queue.get()); a third for margin.
            for _ in range(3):
                await asyncio.sleep(0)
            queue.put(_batch("p", 1))
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=5)
            assert done, "the pipeline ignored its cancellation"
        finally:
            locker.close()
        await pipeline.drain()
        assert stats.producers["p"].stored == 3


class _Recording:
    name = "recording"

    def __init__(self) -> None:
        self.seen: list[float] = []

    def observe(self, sample: Sample) -> list[Anomaly]:
        self.seen.append(sample.value)
        return []


async def test_coalesced_batches_of_one_producer_all_count_as_stored(tmp_path: Path) -> None:
    stats = AgentStats()
    queue = BatchQueue(10, "drop_oldest", stats)
    async with Store(tmp_path / "db.sqlite") as store:
        pipeline = Pipeline(queue, store, [], LogAlerter(), stats)
        stats.producer("p")
        first = Batch("p", [Sample("m", 1.0, 1.0), Sample("m", 2.0, 2.0)])
        second = Batch("p", [Sample("m", 3.0, 3.0)])
        await pipeline.process([first, second])  # one write, as `_take` coalesces them
        assert stats.producers["p"].stored == 3
        assert await store.count_samples() == 3


async def test_non_finite_samples_are_dropped_before_detection_and_counted(
    tmp_path: Path,
) -> None:
    stats = AgentStats()
    queue = BatchQueue(10, "drop_oldest", stats)
    detector = _Recording()
    async with Store(tmp_path / "db.sqlite") as store:
        pipeline = Pipeline(queue, store, [detector], LogAlerter(), stats)  # type: ignore[list-item]
        stats.producer("p")
        values = [1.0, math.nan, math.inf, 2.0, -math.inf]
        batch = Batch("p", [Sample("m", v, float(i)) for i, v in enumerate(values)])
        await pipeline.process([batch])
        assert detector.seen == [1.0, 2.0]
        p = stats.producers["p"]
        assert (p.stored, p.dropped) == (2, 3)
        assert await store.count_samples() == 2


async def test_daemon_worker_returns_raises_and_survives_cancellation() -> None:
    worker = DaemonWorker("test-worker")
    try:
        assert await worker.run(lambda: 6 * 7) == 42
        with pytest.raises(ZeroDivisionError):
            await worker.run(lambda: 1 // 0)
        release = threading.Event()
        stuck = asyncio.create_task(worker.run(release.wait))
        await asyncio.sleep(0)  # the job is queued; cancel the waiter while it blocks
        stuck.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stuck
        release.set()
        assert await worker.run(lambda: "next job still runs") == "next job still runs"
    finally:
        worker.close()
