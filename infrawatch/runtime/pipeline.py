"""The consumer: queue → detectors → store → alerter, one batch at a time."""

from __future__ import annotations

import asyncio
import math
import sqlite3
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass

from infrawatch.alerting import Alerter
from infrawatch.detect.base import Detector
from infrawatch.detect.feed import DetectorFeed
from infrawatch.logging import at_doubling, describe, get_logger
from infrawatch.model import Anomaly, Sample, SeriesKey
from infrawatch.runtime.latest import LatestValues
from infrawatch.runtime.producer import Batch
from infrawatch.runtime.queue import BatchQueue
from infrawatch.runtime.stats import AgentStats
from infrawatch.storage.store import Store, StoreError

log = get_logger("infrawatch.runtime.pipeline")

STORE_RETRY_MAX = 60.0  # seconds between write retries at most while the database is failing
DRAIN_RETRY_INTERVAL = 0.25  # seconds between write retries while draining at shutdown
# Once retries are STORE_RETRY_MAX apart, the failure is logged every this many retries (10 min).
STORE_LOG_EVERY_AT_MAX = 10


@dataclass(slots=True)
class _Pending:
    """A write that has not reached the database yet."""

    samples: list[Sample]
    anomalies: list[Anomaly]
    per_producer: Counter[str]


class Pipeline:
    """Takes batches off the queue and runs them through detection, storage and alerting.

    Storage failures never stop detection or alerting: unwritten batches wait in a bounded
    in-memory buffer (oldest dropped and counted when full) and are retried with backoff.
    """

    def __init__(
        self,
        queue: BatchQueue,
        store: Store,
        detectors: Sequence[Detector],
        alerter: Alerter,
        stats: AgentStats,
        *,
        max_batch_samples: int = 10_000,
        buffer_max_samples: int = 200_000,
        latest: LatestValues | None = None,
    ) -> None:
        self._queue = queue
        self._latest = latest
        self._store = store
        self._feed = DetectorFeed(detectors)
        self._alerter = alerter
        self._stats = stats
        self._max_batch_samples = max_batch_samples
        self._buffer_max_samples = buffer_max_samples
        self._non_finite = 0  # samples dropped for a NaN/inf value or time since start
        self._pending: deque[_Pending] = deque()
        self._pending_samples = 0
        self._inflight: asyncio.Task[None] | None = None
        self._store_failures = 0
        self._retry_at = 0.0
        self._detector_errors: Counter[str] = Counter()

    @property
    def pending_samples(self) -> int:
        """Samples accepted but not yet persisted (buffered after storage errors)."""
        return self._pending_samples

    @property
    def detectors(self) -> Sequence[Detector]:
        """The detectors running now (read by /metrics and the alerter's restart probe)."""
        return self._feed.detectors

    def set_detectors(self, detectors: Sequence[Detector]) -> None:
        """Replace the detector set (config reload); takes effect with the next batch."""
        self._feed = DetectorFeed(detectors)

    def forget(self, key: SeriesKey) -> None:
        """Drop a series that stopped reporting from every detector."""
        self._feed.forget(key)

    async def run(self) -> None:
        """Process batches until cancelled; a batch being processed is finished, not abandoned."""
        while True:
            first = await self._next_batch()
            work = self._flush_pending() if first is None else self.process(self._take(first))
            self._inflight = asyncio.create_task(work)
            try:
                # Shielded: cancelling the loop (shutdown) must not cut a batch in half.
                await asyncio.shield(self._inflight)
            except asyncio.CancelledError:
                raise
            except Exception:
                # A bug in one batch must not end the only consumer (the queue would then
                # fill and drop everything until restart): log it loudly and go on.
                log.exception("pipeline.batch_failed")
            self._inflight = None
            # On 3.11, asyncio.wait_for returns a result that arrived together with a cancel
            # and swallows the cancel; honour it here or shutdown waits for us forever.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise asyncio.CancelledError

    async def _next_batch(self) -> Batch | None:
        """The next batch; None when buffered writes are due for a retry before one arrives."""
        if not self._pending:
            return await self._queue.get()
        # Retry on time even if producers have gone quiet, not only when the next batch comes.
        delay = max(0.0, self._retry_at - time.monotonic())
        try:
            return await asyncio.wait_for(self._queue.get(), timeout=delay)
        except TimeoutError:
            return None

    async def drain(self) -> None:
        """Finish the batch in flight, then everything queued, then retry buffered writes."""
        if self._inflight is not None:
            await self._inflight
            self._inflight = None
        while (batch := self._queue.get_nowait()) is not None:
            await self.process(self._take(batch))
        # Keep retrying buffered writes (a lock held elsewhere may be released any moment); the
        # agent bounds this with its shutdown deadline and then counts the rest as dropped.
        while self._pending:
            self._retry_at = 0.0
            await self._flush_pending()
            if self._pending:
                await asyncio.sleep(DRAIN_RETRY_INTERVAL)

    def abandon(self) -> int:
        """Count everything not persisted as dropped (shutdown deadline passed); return how many."""
        lost = self._pending_samples
        self._stats.store_dropped += lost
        self._pending.clear()
        self._pending_samples = 0
        while (batch := self._queue.get_nowait()) is not None:
            lost += len(batch.samples)
            producer = self._stats.producers.get(batch.producer)
            if producer is not None:
                producer.dropped += len(batch.samples)
        return lost

    def _take(self, first: Batch) -> list[Batch]:
        """`first` plus whatever else is queued, up to max_batch_samples, as one write."""
        batches = [first]
        size = len(first.samples)
        while size < self._max_batch_samples:
            more = self._queue.get_nowait()
            if more is None:
                break
            batches.append(more)
            size += len(more.samples)
        return batches

    async def process(self, batches: list[Batch]) -> None:
        """Detect, persist and alert on `batches` (one transaction)."""
        started = time.perf_counter()
        samples: list[Sample] = []
        per_producer: Counter[str] = Counter()
        for batch in batches:
            kept = self._finite(batch)
            samples.extend(kept)
            per_producer[batch.producer] += len(kept)
            if self._latest is not None:
                self._latest.update(batch.producer, kept)
        anomalies: list[Anomaly] = []
        feed, failed = self._feed, self._detector_failed
        for sample in samples:
            # A detector bug costs that detector's verdict, never the sample.
            feed.observe(sample, anomalies, failed)
        self._buffer(_Pending(samples, anomalies, per_producer))
        await self._flush_pending()
        if anomalies:
            self._stats.anomalies += len(anomalies)
            try:
                await self._alerter.observe(anomalies)
            except Exception:
                # The samples and anomalies are stored; the pipeline must keep consuming.
                log.exception("pipeline.alerter_failed", anomalies=len(anomalies))
        self._stats.batches += 1
        elapsed = time.perf_counter() - started
        self._stats.batch_latency.observe(elapsed)
        log.debug(
            "pipeline.batch_done",
            samples=len(samples),
            anomalies=len(anomalies),
            producers=sorted(per_producer),
            buffered=self._pending_samples,
            seconds=round(elapsed, 6),
        )

    def _finite(self, batch: Batch) -> list[Sample]:
        """The batch's samples with a finite value and time; the rest are dropped and counted.

        NaN or ±inf means "no reading" (a counter that could not be read, a CloudWatch gap): it
        would mislead every detector, and SQLite can't aggregate it.
        """
        kept = [s for s in batch.samples if math.isfinite(s.value) and math.isfinite(s.ts)]
        lost = len(batch.samples) - len(kept)
        if lost:
            self._stats.producer(batch.producer).dropped += lost
            self._non_finite += lost
            if at_doubling(self._non_finite):
                log.warning(
                    "pipeline.non_finite_dropped",
                    producer=batch.producer,
                    samples=lost,
                    total=self._non_finite,
                )
        return kept

    def _detector_failed(self, detector: Detector, sample: Sample, exc: Exception) -> None:
        name = detector.name
        count = self._detector_errors[name] = self._detector_errors[name] + 1
        if at_doubling(count):  # a broken detector can't flood the log
            log.error(
                "detect.failed",
                detector=name,
                metric=sample.name,
                error=describe(exc),
                failures=count,
            )

    def _buffer(self, pending: _Pending) -> None:
        self._pending.append(pending)
        self._pending_samples += len(pending.samples)
        while self._pending_samples > self._buffer_max_samples and len(self._pending) > 1:
            oldest = self._pending.popleft()
            self._pending_samples -= len(oldest.samples)
            self._stats.store_dropped += len(oldest.samples)
            log.error(
                "store.buffer_full_dropped",
                samples=len(oldest.samples),
                buffer_max_samples=self._buffer_max_samples,
            )

    async def _flush_pending(self) -> None:
        if time.monotonic() < self._retry_at:
            return
        while self._pending:
            head = self._pending[0]
            try:
                await self._store.write(head.samples, head.anomalies)
            except sqlite3.OperationalError as exc:
                # Locked, busy, disk full, read-only, I/O error: may pass, so keep and retry.
                self._on_store_error(exc)
                return
            except StoreError as exc:  # the store is closed or unusable for now
                self._on_store_error(exc)
                return
            except Exception as exc:
                # Constraint violation, bad value: this batch can never be written, and retrying
                # it would block every batch behind it. Drop it, count it, go on.
                self._drop_unwritable(head, exc)
                continue
            self._pending.popleft()
            self._pending_samples -= len(head.samples)
            for producer, count in head.per_producer.items():
                self._stats.producer(producer).stored += count
            self._stats.first_batch_stored = True
            if self._store_failures:
                log.info("store.recovered", after_failures=self._store_failures)
                self._store_failures = 0

    def _drop_unwritable(self, head: _Pending, exc: Exception) -> None:
        self._pending.popleft()
        self._pending_samples -= len(head.samples)
        self._stats.store_errors += 1
        self._stats.store_dropped += len(head.samples)
        log.error(
            "store.batch_unwritable",
            error=describe(exc),
            dropped_samples=len(head.samples),
            dropped_anomalies=len(head.anomalies),
        )

    def _on_store_error(self, exc: Exception) -> None:
        self._stats.store_errors += 1
        self._store_failures += 1
        # The exponent is capped: 2 ** n as a float overflows after ~1000 failures (a day locked).
        delay = min(STORE_RETRY_MAX, 0.5 * 2 ** min(self._store_failures - 1, 16))
        self._retry_at = time.monotonic() + delay
        # Logged once per backoff doubling (streak length a power of two), then every
        # STORE_LOG_EVERY_AT_MAX retries once the backoff is at its maximum.
        failures = self._store_failures
        at_max = delay >= STORE_RETRY_MAX and failures % STORE_LOG_EVERY_AT_MAX == 0
        if at_doubling(failures) or at_max:
            log.error(
                "store.write_failed",
                error=describe(exc),
                consecutive_failures=self._store_failures,
                retry_in=delay,
                buffered_samples=self._pending_samples,
            )
