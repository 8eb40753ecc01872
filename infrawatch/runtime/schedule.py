"""Drift-free producer schedules with backoff after repeated failures."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time

from infrawatch.logging import at_doubling, describe, get_logger
from infrawatch.runtime.producer import Batch, Producer
from infrawatch.runtime.queue import BatchQueue
from infrawatch.runtime.stats import ProducerStats

log = get_logger("infrawatch.runtime.schedule")

MAX_BACKOFF = 300.0  # seconds; a broken producer is still retried every five minutes at least


def backoff_ticks(consecutive_failures: int, interval: float) -> int:
    """How many ticks to skip after `consecutive_failures` failures in a row (0 = none)."""
    if consecutive_failures <= 1:
        return 0
    # Double the wait per failure; cap it so even a slow producer retries within MAX_BACKOFF.
    cap = max(0, math.floor(MAX_BACKOFF / interval) - 1)
    skip: int = 2 ** (consecutive_failures - 1) - 1
    return min(skip, cap)


def _overrun(name: str, interval: float, started: float, stats: ProducerStats) -> None:
    # Said while the tick is still running: a cycle stuck behind slow calls (a cloud API
    # timing out and retrying) is otherwise silent until it ends, which can take minutes.
    stats.overruns += 1
    elapsed = time.monotonic() - started
    log.warning(
        "producer.tick_overrun", producer=name, interval=interval, elapsed=round(elapsed, 3)
    )


async def tick(producer: Producer, queue: BatchQueue, stats: ProducerStats) -> bool:
    """Run one collection and enqueue its samples; return False if it failed.

    A collection still running when `producer.interval` seconds have passed is logged once
    (`producer.tick_overrun`) at that moment; every tick's duration is recorded in `stats`.
    """
    started = time.monotonic()
    interval = producer.interval
    overrun = (
        asyncio.get_running_loop().call_later(
            interval, _overrun, producer.name, interval, started, stats
        )
        if 0 < interval < math.inf
        else None
    )
    try:
        samples = await producer.collect()
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        stats.errors += 1
        stats.consecutive_failures += 1
        # One line per failure streak length doubling keeps a dead source from flooding the log.
        if at_doubling(stats.consecutive_failures):
            log.error(
                "producer.failed",
                producer=producer.name,
                error=describe(exc),
                consecutive_failures=stats.consecutive_failures,
            )
        return False
    finally:
        if overrun is not None:
            overrun.cancel()
        stats.last_tick_done = done = time.monotonic()
        stats.last_tick_seconds = done - started
        stats.tick_duration.observe(done - started)
        stats.ticks += 1
    if stats.consecutive_failures:
        log.info("producer.recovered", producer=producer.name, after=stats.consecutive_failures)
    stats.consecutive_failures = 0
    if stats.last_success is None:
        # One line when a producer first delivers: proof of life before the first quiet hour.
        log.info("producer.first_collection", producer=producer.name, samples=len(samples))
    stats.last_success = time.time()
    stats.collected += len(samples)
    if samples:
        queue.put(Batch(producer.name, samples))
    return True


async def run_producer(
    producer: Producer,
    queue: BatchQueue,
    stats: ProducerStats,
    *,
    once: bool = False,
    wake: asyncio.Event | None = None,
) -> None:
    """Call `producer` every `interval` seconds on a fixed grid until cancelled.

    Ticks are anchored to the start time, so a slow tick delays only itself: the next one starts
    on the grid, and ticks that a slow collection overran are skipped and counted, not queued up.
    `producer.interval` is re-read after every tick; setting `wake` (a config reload changed the
    interval) ends the current wait at once, so the new interval applies without a restart.
    """
    loop = asyncio.get_running_loop()
    interval = producer.interval
    start = loop.time()
    n = 0
    while True:
        tick_started = loop.time()
        await tick(producer, queue, stats)
        if once:
            return
        n += 1 + backoff_ticks(stats.consecutive_failures, interval)
        if producer.interval != interval:
            # The interval was changed (SIGHUP reload): a new grid, anchored at this tick.
            interval = producer.interval
            start, n = tick_started, 1 + backoff_ticks(stats.consecutive_failures, interval)
        now = loop.time()
        due = start + n * interval
        if due < now:
            behind = math.ceil((now - due) / interval)
            stats.missed_ticks += behind
            n += behind
            due = start + n * interval
        if wake is None:
            await asyncio.sleep(due - now)
            continue
        # Woken early only to pick up a new interval (tick now, then the new grid).
        while producer.interval == interval and (left := due - loop.time()) > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), left)
            wake.clear()
