"""Per-sink delivery workers: strictly in order, exponential backoff with jitter, give-up rules.

One request in flight per sink, oldest first: a dead receiver sees one attempt per backoff
step, not a storm, and a resolve never overtakes its firing message.

Recording an outcome in the outbox can fail (database locked, disk full) after the receiver
already answered. Such outcomes are kept in memory and written when the database accepts
writes again; the item is never sent twice in one run, and delivery of later items goes on
(an alert about a full disk must still get out).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from infrawatch.alerting.config import RetryConfig
from infrawatch.alerting.outbox import Outbox, OutboxItem
from infrawatch.alerting.sinks.base import DeliveryResult, Sink
from infrawatch.logging import get_logger
from infrawatch.runtime.stats import SinkStats

log = get_logger("infrawatch.alerting")

OUTBOX_ERROR_PAUSE = 1.0  # seconds between attempts to write outcomes the outbox refused


@dataclass(frozen=True, slots=True)
class _Outcome:
    """A final outcome the receiver gave but the outbox has not recorded yet."""

    item: OutboxItem
    state: Literal["delivered", "failed"]
    at: float  # epoch s
    error: str | None


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
        self._unrecorded: deque[_Outcome] = deque()  # oldest first
        self._record_at = 0.0  # epoch s: next try to write `_unrecorded`

    @property
    def unrecorded(self) -> list[str]:
        """Ids whose final outcome is known but not yet written to the outbox."""
        return [o.item.id for o in self._unrecorded]

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
            if self._unrecorded and self.clock() >= self._record_at:
                await self._record_pending()
            head_wait = self._head_wait()
            if head_wait is not None and head_wait <= 0:
                try:
                    await self.attempt(self.queue[0])
                except Exception as exc:
                    # Outcomes are recorded without raising, so this is a bug (in a sink's
                    # result, the clock, …): keep the worker alive rather than end it silently.
                    log.exception(
                        "sink.worker_error",
                        sink=self.sink.name,
                        error=f"{type(exc).__name__}: {exc}",
                    )
                    self._not_before = self.clock() + OUTBOX_ERROR_PAUSE
                continue
            waits = [w for w in (head_wait, self._record_wait()) if w is not None]
            self._wake.clear()
            if not waits:
                await self._wake.wait()
            elif min(waits) > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=min(waits))

    def _head_wait(self) -> float | None:
        """None: no item to try; else seconds until the head item may be tried."""
        if not self.queue or self.stats.gone or self._stopping:
            return None
        head = self.queue[0]
        return max(head.next_attempt_at, self._not_before) - self.clock()

    def _record_wait(self) -> float | None:
        """None: nothing unrecorded; else seconds until the next try to record it."""
        return self._record_at - self.clock() if self._unrecorded else None

    async def drain(self, budget: float) -> int:
        """Shutdown: one attempt per pending item, in order, ignoring backoff; stop at the first
        that does not go through or when `budget` (s) passes. Returns items still pending."""
        try:
            async with asyncio.timeout(budget):
                await self._record_pending()
                while self.queue and not self.stats.gone:
                    head = self.queue[0]
                    result = await self.attempt(head)
                    if result.outcome == "retry":
                        break
                await self._record_pending()
        except TimeoutError:
            pass
        except Exception as exc:  # a bug must not skip the other sinks' drain
            log.exception("sink.worker_error", sink=self.sink.name, error=type(exc).__name__)
        if self._unrecorded:
            log.warning(
                "sink.outcomes_unrecorded",
                sink=self.sink.name,
                notification_ids=self.unrecorded,
                hint="the outbox could not be updated: these are sent again (same id) at the "
                "next start, and receivers that dedupe by id drop the repeat",
            )
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
            await self._record(_Outcome(item, "delivered", now, None))
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
        # A 429 without a hint does not count as a failure but must still back off (else a
        # proxy's bare 429 is asked again every initial_delay until max_age): step by attempts.
        steps = item.failures if result.counts_as_failure else item.attempts
        delay = backoff_delay(max(1, steps), self.retry, self.rng)
        if result.retry_after is not None:
            # The receiver said when: honour it (a shorter backoff would only be refused again).
            delay = max(result.retry_after, delay if result.counts_as_failure else 0.0)
        self.delays.append(delay)
        item.next_attempt_at = now + delay
        try:
            await self.outbox.mark_retry(item, result.detail)
        except Exception as exc:
            # Only bookkeeping is lost: the schedule lives on in memory, and the next outcome
            # written for this item carries its attempt counts.
            log.error(
                "sink.outbox_error",
                sink=self.sink.name,
                notification_id=item.id,
                error=f"{type(exc).__name__}: {exc}",
            )
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
        await self._record(_Outcome(item, "failed", now, reason))
        log.error(
            "sink.notification_failed",
            sink=self.sink.name,
            notification_id=item.id,
            attempts=item.attempts,
            reason=reason,
        )

    async def _write(self, outcome: _Outcome) -> None:
        if outcome.state == "delivered":
            await self.outbox.mark_delivered(outcome.item, outcome.at)
        else:
            await self.outbox.mark_failed(outcome.item, outcome.at, outcome.error or "")

    async def _record(self, outcome: _Outcome) -> None:
        """Write a final outcome; if the outbox refuses, keep it to write later (never raises)."""
        if not self._unrecorded:
            try:
                await self._write(outcome)
                return
            except Exception as exc:
                log.error(
                    "sink.outbox_error",
                    sink=self.sink.name,
                    notification_id=outcome.item.id,
                    state=outcome.state,
                    error=f"{type(exc).__name__}: {exc}",
                    hint="kept in memory and written when the database accepts writes again",
                )
                self._record_at = self.clock() + OUTBOX_ERROR_PAUSE
        # Behind earlier unwritten outcomes: written in order by `_record_pending`.
        self._unrecorded.append(outcome)
        self.stats.unrecorded = len(self._unrecorded)

    async def _record_pending(self) -> None:
        """Try to write the outcomes the outbox refused earlier, oldest first (never raises)."""
        written = 0
        try:
            while self._unrecorded:
                await self._write(self._unrecorded[0])
                self._unrecorded.popleft()
                written += 1
        except Exception as exc:
            self._record_at = self.clock() + OUTBOX_ERROR_PAUSE
            log.debug("sink.outbox_still_failing", sink=self.sink.name, error=type(exc).__name__)
        finally:
            self.stats.unrecorded = len(self._unrecorded)
            if written:
                log.info("sink.outcomes_recorded", sink=self.sink.name, count=written)
                async with self._progress:
                    self._progress.notify_all()
