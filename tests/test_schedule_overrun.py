"""A producer tick that runs past its interval is said while it runs, and tick durations are on
/metrics: a cloud cycle stuck behind slow API calls was silent for minutes."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from infrawatch.model import Sample
from infrawatch.runtime.producer import BaseProducer
from infrawatch.runtime.queue import BatchQueue
from infrawatch.runtime.schedule import tick
from infrawatch.runtime.stats import AgentStats
from tests.support_alert_logs import captured_logs
from tests.support_http import ScriptedProducer, base_url, running_agent, settings

INTERVAL = 0.2  # seconds; a blocked tick outlasts it, a normal one takes microseconds


class Blocking(BaseProducer):
    """Its first collect blocks until `release` is set; later ones return at once."""

    name = "slowcloud"
    interval = INTERVAL

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.returned = asyncio.Event()

    async def collect(self) -> list[Sample]:
        """One reading, after `release` (the first time)."""
        await self.release.wait()
        self.returned.set()
        return [Sample("slow.value", 1.0, time.time())]


async def test_an_overrunning_tick_is_logged_once_while_it_still_runs() -> None:
    stats = AgentStats()
    queue = BatchQueue(100, "drop_oldest", stats)
    producer = Blocking()
    p = stats.producer(producer.name)
    with captured_logs() as logs:
        # The tick is held for three intervals: one overrun, said once.
        asyncio.get_running_loop().call_later(3 * INTERVAL, producer.release.set)
        task = asyncio.create_task(tick(producer, queue, p))
        await logs.wait_until(lambda e: bool(e.named("producer.tick_overrun")))
        # Said before the tick ended: nothing has returned yet.
        assert not producer.returned.is_set()
        assert p.ticks == 0
        assert await task
    [line] = logs.named("producer.tick_overrun")
    assert line["producer"] == "slowcloud"
    assert line["interval"] == INTERVAL
    assert line["level"] == "warning"
    assert line["elapsed"] > 0
    assert p.overruns == 1
    assert p.ticks == 1
    hist = p.tick_duration
    assert hist.count == 1
    # Held for three intervals (0.6 s): above the 0.5 s bucket.
    assert sum(c for b, c in zip(hist.buckets, hist.counts, strict=False) if b <= 0.5) == 0
    assert p.last_tick_seconds == hist.total


async def test_a_tick_within_its_interval_says_nothing() -> None:
    stats = AgentStats()
    producer = Blocking()
    producer.release.set()
    p = stats.producer(producer.name)
    with captured_logs() as logs:
        assert await tick(producer, BatchQueue(100, "drop_oldest", stats), p)
    assert logs.named("producer.tick_overrun") == []
    assert p.overruns == 0
    assert p.tick_duration.count == 1


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): float(s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_tick_durations_and_overruns_are_on_metrics(tmp_path: Path) -> None:
    producer = ScriptedProducer(interval=INTERVAL)
    producer.hang = True
    with captured_logs() as logs:
        async with (
            running_agent(settings(tmp_path), [producer]) as agent,
            aiohttp.ClientSession() as session,
        ):
            await producer.hanging.wait()
            await logs.wait_until(lambda e: bool(e.named("producer.tick_overrun")))
            producer.release.set()
            await producer.wait_ticks(2)
            async with session.get(f"{base_url(agent)}/metrics") as resp:
                values: dict[Any, float] = _samples(await resp.text())
    test = frozenset({("producer", "test")})
    count = values[("infrawatch_producer_tick_duration_seconds_count", test)]
    assert count >= 2
    assert values[("infrawatch_producer_tick_duration_seconds_sum", test)] > 0.1
    fast = values[("infrawatch_producer_tick_duration_seconds_bucket", test | {("le", "0.1")})]
    assert fast < count  # the blocked tick
    assert values[("infrawatch_producer_tick_overruns_total", test)] >= 1
    assert ("infrawatch_producer_last_tick_duration_seconds", test) in values
