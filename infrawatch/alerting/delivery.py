"""Per-sink delivery workers: strictly in order, exponential backoff with jitter, give-up rules.

One request in flight per sink, oldest first: a dead receiver sees one attempt per backoff
step, not a storm, and a resolve never overtakes its firing message.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from collections.abc import Callable

from infrawatch.alerting.config import RetryConfig
from infrawatch.alerting.outbox import Outbox, OutboxItem
from infrawatch.alerting.sinks.base import DeliveryResult, Sink
from infrawatch.logging import get_logger
from infrawatch.stats import SinkStats

log = get_logger("infrawatch.alerting")

OUTBOX_ERROR_PAUSE = 1.0  # seconds a worker waits after failing to record an attempt


def backoff_delay(failures: int, cfg: RetryConfig, rng: random.Random) -> float:
    """Seconds before the next attempt after `failures` failed ones ("equal jitter").

    A uniform draw from [d/2, d] with d = initial × multiplier^(failures-1) capped at max_delay:
    never zero, and (while below the cap) never shorter than the previous step's upper half.
    """
    ceiling = min(cfg.max_delay, cfg.initial_delay * cfg.multiplier ** max(0, failures - 1))
    return rng.uniform(ceiling / 2, ceiling)


class SinkWorker:
    """Delivers one sink's outbox items in order until cancelled."""

    def __init__(
        self,
        sink: Sink,
        outbox: Outbox,
        retry: RetryConfig,
        stats: SinkStats,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.sink = sink
        self.outbox = outbox
        self.retry = retry
        self.stats = stats
        self.clock = clock
        self.rng = rng or random.Random()
        self.queue: deque[OutboxItem] = deque()
        self.delays: deque[float] = deque(maxlen=100)  # recent backoff delays (s), for tests
        self._wake = asyncio.Event()
        self._progress = asyncio.Condition()
        self._not_before = 0.0  # epoch s: rate-limit pause for the whole sink
        self._stopping = False

    def add(self, items: list[OutboxItem]) -> None:
        """Queue items already committed to the outbox."""
        self.queue.extend(items)
        self.stats.pending = len(self.queue)
        self._wake.set()

    def stop_soon(self) -> None:
        """Make `run` return after the attempt in flight (its outcome is still recorded)."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        """Deliver until `stop_soon`; waits are interruptible but never skip a backoff."""
        while not self._stopping:
            wait = self._wait_needed()
            if self._stopping:
                break
            if wait is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            if wait > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=wait)
                continue
            try:
                await self.attempt(self.queue[0])
            except Exception as exc:
                # The outbox row couldn't be updated (database locked, disk full): keep the
                # worker alive and pause; the item stays pending and is retried.
                log.error(
                    "sink.outbox_error", sink=self.sink.name, error=f"{type(exc).__name__}: {exc}"
                )
                self._not_before = self.clock() + OUTBOX_ERROR_PAUSE

    def _wait_needed(self) -> float | None:
        """None: nothing to do; else seconds until the head item may be tried."""
        if self._stopping:
            return 0.0
        if not self.queue or self.stats.gone:
            return None
        head = self.queue[0]
        return max(head.next_attempt_at, self._not_before) - self.clock()

    async def drain(self, budget: float) -> int:
        """Shutdown: one attempt per pending item, in order, ignoring backoff; stop at the first
        that does not go through or when `budget` (s) passes. Returns items still pending."""
        try:
            async with asyncio.timeout(budget):
                while self.queue and not self.stats.gone:
                    head = self.queue[0]
                    result = await self.attempt(head)
                    if result.outcome == "retry":
                        break
        except TimeoutError:
            pass
        return len(self.queue)

    async def wait_until(self, predicate: Callable[[SinkStats], bool]) -> None:
        """Wait until `predicate(stats)` holds; re-checked after every attempt (for tests)."""
        async with self._progress:
            await self._progress.wait_for(lambda: predicate(self.stats))

    async def attempt(self, item: OutboxItem) -> DeliveryResult:
        """Try `item` once and record the outcome (outbox row, counters, log)."""
        try:
            return await self._attempt(item)
        finally:
            async with self._progress:
                self._progress.notify_all()

    async def _attempt(self, item: OutboxItem) -> DeliveryResult:
        now = self.clock()
        if now - item.created_at > self.retry.max_age:
            await self._give_up(item, now, f"older than max_age {self.retry.max_age:g}s")
            return DeliveryResult("fail", detail="expired")
        item.attempts += 1
        self.stats.attempts += 1
        try:
            result = await self.sink.send(item.id, item.payload)
        except Exception as exc:  # a sink bug must not kill the worker: retry like a 5xx
            log.exception("sink.error", sink=self.sink.name, notification_id=item.id)
            result = DeliveryResult("retry", detail=f"{type(exc).__name__}")
        now = self.clock()
        if result.pause:
            self._not_before = now + result.pause
        if result.outcome == "ok":
            self.queue.popleft()
            self.stats.sent += 1
            self.stats.pending = len(self.queue)
            await self.outbox.mark_delivered(item, now)
            log.info(
                "sink.delivered",
                sink=self.sink.name,
                notification_id=item.id,
                status=result.status,
                attempts=item.attempts,
            )
        elif result.outcome == "retry":
            await self._schedule_retry(item, result, now)
        elif result.outcome == "gone":
            self.stats.gone = True
            log.critical(
                "sink.gone",
                sink=self.sink.name,
                status=result.status,
                detail=result.detail,
                pending=len(self.queue),
                hint="the receiver says this webhook no longer exists; fix its url and "
                "restart — undelivered notifications stay in the outbox",
            )
        else:
            await self._give_up(item, now, f"HTTP {result.status}: {result.detail}")
        return result

    async def _schedule_retry(self, item: OutboxItem, result: DeliveryResult, now: float) -> None:
        self.stats.retries += 1
        if result.status == 429:
            self.stats.rate_limited += 1
        if result.counts_as_failure:
            item.failures += 1
            if item.failures >= self.retry.max_attempts:
                await self._give_up(item, now, f"{item.failures} failed attempts: {result.detail}")
                return
        delay = backoff_delay(max(1, item.failures), self.retry, self.rng)
        if result.retry_after is not None:
            # The receiver said when: honour it (a shorter backoff would only be refused again).
            delay = max(result.retry_after, delay if result.counts_as_failure else 0.0)
        self.delays.append(delay)
        item.next_attempt_at = now + delay
        await self.outbox.mark_retry(item, result.detail)
        log.warning(
            "sink.retry",
            sink=self.sink.name,
            notification_id=item.id,
            status=result.status,
            detail=result.detail,
            attempts=item.attempts,
            retry_in=round(delay, 3),
        )

    async def _give_up(self, item: OutboxItem, now: float, reason: str) -> None:
        if self.queue and self.queue[0] is item:
            self.queue.popleft()
        self.stats.failed += 1
        self.stats.pending = len(self.queue)
        await self.outbox.mark_failed(item, now, reason)
        log.error(
            "sink.notification_failed",
            sink=self.sink.name,
            notification_id=item.id,
            attempts=item.attempts,
            reason=reason,
        )
