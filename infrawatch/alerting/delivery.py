"""Per-sink delivery workers: strictly in order, paced by the sink's health, give-up rules.

One request in flight per sink, oldest first: a resolve never overtakes its firing message.
While a receiver fails, the sink is *probed* with its oldest notification on a backoff capped
at `PROBE_MAX_DELAY` (a dead receiver sees one request per step, not a storm); the first answer
makes the sink healthy and the rest of the queue goes out at once, in order. How long one
notification keeps being tried is its own business (`max_attempts`, `max_age`); it no longer
decides when the sink is tried, so notifications never wait behind one old item's long timer.

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
from infrawatch.logging import at_doubling, describe, get_logger
from infrawatch.retry import equal_jitter
from infrawatch.runtime.stats import SinkStats

log = get_logger("infrawatch.alerting")

OUTBOX_ERROR_PAUSE = 1.0  # seconds between attempts to write outcomes the outbox refused
# Seconds: the longest wait between two probes of a failing sink (max_delay if lower). With
# jitter a receiver that comes back is noticed within this, whatever the outage's length.
PROBE_MAX_DELAY = 30.0


@dataclass(frozen=True, slots=True)
class _Outcome:
    """A final outcome the receiver gave but the outbox has not recorded yet."""

    item: OutboxItem
    state: Literal["delivered", "failed"]
    at: float  # epoch s
    error: str | None


def backoff_delay(
    failures: int, cfg: RetryConfig, rng: random.Random, cap: float | None = None
) -> float:
    """Seconds before the next attempt after `failures` failed ones ("equal jitter").

    A uniform draw from [d/2, d] with d = initial × multiplier^(failures-1) capped at `cap`
    seconds (default max_delay): never zero, and (while below the cap) never shorter than the
    previous step's upper half.
    """
    cap = cfg.max_delay if cap is None else cap
    return equal_jitter(
        failures, rng, initial=cfg.initial_delay, multiplier=cfg.multiplier, cap=cap
    )


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
        self.delays: deque[float] = deque(maxlen=100)  # recent waits after a failure (s), for tests
        self._wake = asyncio.Event()
        self._progress = asyncio.Condition()
        self._probe_cap = min(retry.max_delay, PROBE_MAX_DELAY)
        # The sink's health: consecutive attempts the receiver did not accept (0: healthy),
        # and when it may be tried next. One old item's own backoff never enters into it.
        self._failures = 0
        self._probe_at = 0.0  # epoch s
        self._down_since: float | None = None  # epoch s of the first failure of this outage
        self._last_attempt_at = 0.0  # epoch s
        # Epoch s: a pause the receiver asked for (429 retry_after / Retry-After, an empty
        # rate-limit bucket); nothing, not even a new notification, sends before it.
        self._not_before = 0.0
        self._stopping = False
        self._unrecorded: deque[_Outcome] = deque()  # oldest first
        self._record_at = 0.0  # epoch s: next try to write `_unrecorded`

    @property
    def unrecorded(self) -> list[str]:
        """Ids whose final outcome is known but not yet written to the outbox."""
        return [o.item.id for o in self._unrecorded]

    def add(self, items: list[OutboxItem]) -> None:
        """Queue items already committed to the outbox; while the receiver is down, probe it
        now (Alertmanager tries every new notification at once; in order, the oldest goes)."""
        self.queue.extend(items)
        self.stats.pending = len(self.queue)
        if items and self._down_since is not None:
            # At most one early probe per initial_delay however fast notifications arrive; a
            # pause the receiver asked for (`_not_before`) still holds.
            early = max(self.clock(), self._last_attempt_at + self.retry.initial_delay)
            self._probe_at = min(self._probe_at, early)
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
                    log.exception("sink.worker_error", sink=self.sink.name, error=describe(exc))
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
        """None: no item to try; else seconds until the sink may be tried."""
        if not self.queue or self.stats.gone or self._stopping:
            return None
        return max(self._probe_at, self._not_before) - self.clock()

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
        self._last_attempt_at = now
        try:
            result = await self.sink.send(item.id, item.payload)
        except Exception as exc:  # a sink bug must not kill the worker: retry like a 5xx
            log.exception("sink.error", sink=self.sink.name, notification_id=item.id)
            # The type only: a sink's exception text may quote its URL, which holds the token.
            result = DeliveryResult("retry", detail=type(exc).__name__)
        now = self.clock()
        if result.pause:
            self._not_before = now + result.pause
        if result.outcome in ("ok", "fail"):
            self._answered(now)  # a 4xx is an answer too: the receiver is up
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

    def _answered(self, now: float) -> None:
        """The receiver answered: the sink is healthy, the queue goes out without waiting."""
        if self._down_since is not None:
            log.info(
                "sink.recovered",
                sink=self.sink.name,
                down_for=round(now - self._down_since, 3),
                failed_attempts=self._failures,
                backlog=len(self.queue),
            )
        self._failures = 0
        self._probe_at = 0.0
        self._down_since = None

    async def _schedule_retry(self, item: OutboxItem, result: DeliveryResult, now: float) -> None:
        # The sink's schedule: consecutive failures of whatever item was at the head. A 429
        # without a hint steps it too (else a proxy's bare 429 is asked again every
        # initial_delay until max_age).
        self._failures += 1
        if result.status == 429:
            self.stats.rate_limited += 1
        elif self._down_since is None:
            self._down_since = now
        probe = backoff_delay(self._failures, self.retry, self.rng, cap=self._probe_cap)
        asked = 0.0
        if result.retry_after is not None:
            # The receiver said when: honour it (a shorter wait would only be refused again),
            # and after a 429 that alone is the pacing.
            asked = result.retry_after
            self._not_before = max(self._not_before, now + asked)
            probe = probe if result.counts_as_failure else 0.0
        self._probe_at = now + probe
        delay = max(probe, asked, self._not_before - now)
        if result.counts_as_failure and now >= item.next_attempt_at:
            # The item's own step is due: this failure counts toward max_attempts. Probes of
            # a failing sink in between don't, so a long outage uses up a notification's
            # attempts no faster than its own backoff (initial_delay … max_delay) allows.
            item.failures += 1
            if item.failures >= self.retry.max_attempts:
                await self._give_up(item, now, f"{item.failures} failed attempts: {result.detail}")
                return
            item.next_attempt_at = now + backoff_delay(item.failures, self.retry, self.rng)
        self.stats.retries += 1
        self.delays.append(delay)
        try:
            await self.outbox.mark_retry(item, result.detail)
        except Exception as exc:
            # Only bookkeeping is lost: the schedule lives on in memory, and the next outcome
            # written for this item carries its attempt counts.
            log.error(
                "sink.outbox_error",
                sink=self.sink.name,
                notification_id=item.id,
                error=describe(exc),
            )
        if at_doubling(self._failures):
            # One line per doubling of the failure streak: a receiver down for an hour (some
            # 120 probes) logs 7 lines, and `sink.recovered` sums the outage up.
            log.warning(
                "sink.retry",
                sink=self.sink.name,
                notification_id=item.id,
                status=result.status,
                detail=result.detail,
                attempts=item.attempts,
                consecutive_failures=self._failures,
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
                    error=describe(exc),
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
