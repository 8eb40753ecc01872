"""The real agent's /metrics passes `promtool check metrics` and is scraped by a real Prometheus."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.agentproc import AgentProcess, write_config
from tests.support_http import PrometheusServer
from tests.support_scrape import promtool_check

# A real promtool and Prometheus are the point of these tests: a missing binary fails them.
pytestmark = pytest.mark.usefixtures("_prometheus_installed")


@pytest.fixture
def _prometheus_installed() -> None:
    if shutil.which("promtool") is None or shutil.which("prometheus") is None:
        pytest.fail("Debian's prometheus package is missing: run `make test` (it installs it)")


READY_WITHIN = 20.0  # seconds; the first host tick is stored well within one second

CONFIG = """
[host]
interval = 1
process_interval = 1
top_processes = 3

[http]
listen = "127.0.0.1:0"
"""


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[tuple[AgentProcess, str]]:
    proc = await AgentProcess(write_config(tmp_path, CONFIG)).start()
    try:
        listening = await proc.wait_for("http.listening")
        yield proc, f"127.0.0.1:{listening['port']}"
    finally:
        assert await proc.stop() == 0, proc.stderr


async def _metrics_when_ready(session: aiohttp.ClientSession, target: str) -> str:
    # /readyz flips once the first batch is stored (another process: poll it, bounded), and a
    # scrape before that would check a /metrics without the series this test is about.
    deadline = time.monotonic() + READY_WITHIN
    while True:
        async with session.get(f"http://{target}/readyz") as resp:
            if resp.status == 200:
                break
            body = await resp.text()
        if time.monotonic() > deadline:
            raise AssertionError(f"/readyz not ready after {READY_WITHIN} s: {body}")
        await asyncio.sleep(0.05)
    async with session.get(f"http://{target}/metrics") as resp:
        assert resp.status == 200
        return await resp.text()


async def test_promtool_check_metrics_passes(agent: tuple[AgentProcess, str]) -> None:
    _, target = agent
    async with aiohttp.ClientSession() as session:
        text = await _metrics_when_ready(session, target)
    assert "system_cpu_utilization" in text
    assert await promtool_check(text) == ""


async def test_prometheus_scrapes_the_agent(
    agent: tuple[AgentProcess, str], tmp_path: Path
) -> None:
    _, target = agent
    with PrometheusServer(tmp_path, {"infrawatch": target}) as prom:
        async with aiohttp.ClientSession() as session:
            up = await prom.wait_for(
                session,
                'up{job="infrawatch"}',
                lambda r: bool(r) and r[0]["value"][1] == "1",
            )
            assert up[0]["metric"]["instance"] == target
            cpu = await prom.wait_for(
                session, 'system_cpu_utilization{job="infrawatch"}', lambda r: bool(r)
            )
            values = [float(r["value"][1]) for r in cpu]
            assert all(0.0 <= v <= 1.0 for v in values)
            # Self-metrics arrive too, with the producer label intact.
            stored = await prom.wait_for(
                session, 'infrawatch_samples_stored_total{producer="host"}', lambda r: bool(r)
            )
            assert float(stored[0]["value"][1]) > 0
