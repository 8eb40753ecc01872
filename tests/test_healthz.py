"""/healthz: 503 naming the producer that stalls, 200 again once it completes a tick."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp

from infrawatch.runtime.stats import AgentStats
from infrawatch.web.server import health_report
from tests.support_http import ScriptedProducer, base_url, running_agent, settings


async def test_hanging_producer_turns_healthz_503_and_back(tmp_path: Path) -> None:
    stalling = ScriptedProducer("stalling", interval=0.05)
    async with (
        running_agent(settings(tmp_path), [stalling]) as agent,
        aiohttp.ClientSession() as session,
    ):
        assert agent.http is not None
        url = f"{base_url(agent)}/healthz"
        await stalling.wait_ticks(1)
        async with session.get(url) as resp:
            assert resp.status == 200
            assert (await resp.json())["status"] == "ok"

        stalling.hang = True
        await stalling.hanging.wait()
        # Staleness is elapsed time: move the server's clock past 3 intervals, don't sleep.
        real = agent.http.clock
        agent.http.clock = lambda: real() + 1.0
        async with session.get(url) as resp:
            assert resp.status == 503
            body = await resp.json()
        assert body["status"] == "stale"
        assert body["stale"] == ["stalling"]
        assert body["producers"]["stalling"]["ok"] is False
        assert body["producers"]["stalling"]["seconds_since_tick"] > 3 * 0.05

        agent.http.clock = real
        stalling.release.set()
        # The hung tick returns, then a fresh one: the producer is back on its schedule.
        await stalling.wait_ticks(stalling.ticks + 2)
        async with session.get(url) as resp:
            assert resp.status == 200, await resp.text()
            body = await resp.json()
        assert body["status"] == "ok"
        assert "stale" not in body


def test_only_the_stale_producer_is_named() -> None:
    stats = AgentStats()
    now = time.monotonic()
    stats.producer("host").last_tick_done = now - 5.0
    stats.producer("cloud").last_tick_done = now - 181.0
    intervals = {"host": 10.0, "cloud": 60.0}
    healthy, body = health_report(stats, intervals, now, started=now - 1000.0)
    assert not healthy
    assert body["stale"] == ["cloud"]
    assert body["producers"]["host"]["ok"] is True
    assert body["producers"]["cloud"]["limit_seconds"] == 180.0


def test_backoff_after_failures_extends_the_allowance() -> None:
    stats = AgentStats()
    p = stats.producer("cloud")
    intervals = {"cloud": 10.0}
    now = time.monotonic()
    p.last_tick_done = now - 100.0
    healthy, body = health_report(stats, intervals, now, started=now - 500.0)
    assert not healthy
    assert body["stale"] == ["cloud"]
    # After 4 failures in a row the scheduler skips 7 ticks on purpose; that is not a stall.
    p.consecutive_failures = 4
    healthy, body = health_report(stats, intervals, now, started=now - 500.0)
    assert healthy, body
    assert body["producers"]["cloud"]["limit_seconds"] == 3 * 10.0 * 8


def test_a_producer_that_never_finished_a_tick_is_measured_from_start() -> None:
    # Not even its stats exist yet: the configured interval alone names it.
    stats = AgentStats()
    intervals = {"slow-start": 1.0}
    now = time.monotonic()
    assert health_report(stats, intervals, now, started=now - 1.0)[0]
    healthy, body = health_report(stats, intervals, now, started=now - 10.0)
    assert not healthy
    assert body["stale"] == ["slow-start"]
