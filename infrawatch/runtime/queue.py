"""The bounded queue between producers and the pipeline, with an explicit full-queue policy."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Literal

from infrawatch.logging import get_logger
from infrawatch.runtime.producer import Batch
from infrawatch.runtime.stats import AgentStats

log = get_logger("infrawatch.runtime.queue")

FullPolicy = Literal["drop_oldest", "drop_newest"]


class BatchQueue:
    """An asyncio.Queue of batches that never blocks a producer: when full it drops and counts."""

    def __init__(self, maxsize: int, policy: FullPolicy, stats: AgentStats) -> None:
        self._queue: asyncio.Queue[Batch] = asyncio.Queue(maxsize)
        self._policy = policy
        self._stats = stats

    def put(self, batch: Batch) -> None:
        """Enqueue `batch`; if the queue is full, drop per policy and count every lost sample."""
        if self._queue.full():
            victim = self._queue.get_nowait() if self._policy == "drop_oldest" else batch
            self._drop(victim)
            if victim is batch:
                return
        self._queue.put_nowait(batch)

    def _drop(self, batch: Batch) -> None:
        lost = len(batch.samples)
        producer = self._stats.producers.get(batch.producer)
        if producer is not None:
            producer.dropped += lost
        log.warning(
            "queue.full_dropped",
            producer=batch.producer,
            samples=lost,
            policy=self._policy,
            capacity=self._queue.maxsize,
        )

    async def get(self) -> Batch:
        """Wait for the next batch."""
        return await self._queue.get()

    def get_nowait(self) -> Batch | None:
        """The next batch if one is waiting, else None."""
        try:
            return self._queue.get_nowait()
        except asyncio.QueueEmpty:
            return None

    def qsize(self) -> int:
        """Batches waiting."""
        return self._queue.qsize()

    def pending_samples(self) -> int:
        """Samples waiting in queued batches."""
        # asyncio.Queue keeps its items in a deque; reading its length is safe on the loop thread.
        waiting: Iterable[Batch] = self._queue._queue  # type: ignore[attr-defined]
        return sum(len(b.samples) for b in waiting)
