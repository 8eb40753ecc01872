"""Fixtures for the HTTP server tests: in-process agents, test producers, Prometheus."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp

from infrawatch.config import HttpConfig, Settings
from infrawatch.model import Sample, make_labels
from infrawatch.runtime.agent import Agent
from infrawatch.runtime.latest import LatestValues
from infrawatch.runtime.producer import BaseProducer, Producer
from infrawatch.runtime.queue import BatchQueue
from infrawatch.runtime.stats import AgentStats
from infrawatch.runtime.status import StatusView
from infrawatch.web.connection import HttpLimits
from infrawatch.web.server import HttpServer
from tests.support_receivers import free_port


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM a helper process (a receiver, an exporter), then SIGKILL it after `timeout` s."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def settings(tmp_path: Path, **sections: Any) -> Settings:
    """Settings for an in-process agent: HTTP on a free loopback port, database in tmp_path."""
    data: dict[str, Any] = {
        "storage": {"path": str(tmp_path / "agent.db")},
        "http": {"listen": "127.0.0.1:0"},
        "host": {"enabled": False},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    return Settings(**data)


class ScriptedProducer(BaseProducer):
    """Returns `make(tick)` each tick; can be told to hang until released."""

    def __init__(
        self,
        name: str = "test",
        interval: float = 0.05,
        make: Callable[[int], list[Sample]] | None = None,
    ) -> None:
        self.name = name
        self.interval = interval
        self.ticks = 0
        self._make = make or (lambda n: [Sample("test.value", float(n), time.time())])
        self.hang = False
        self.hanging = asyncio.Event()  # set while a collect is blocked
        self.release = asyncio.Event()
        self.collected = asyncio.Condition()

    async def collect(self) -> list[Sample]:
        """One tick; blocks while `hang` is true until `release` is set."""
        if self.hang:
            self.hanging.set()
            await self.release.wait()
            self.hanging.clear()
            self.hang = False
        self.ticks += 1
        async with self.collected:
            self.collected.notify_all()
        return self._make(self.ticks)

    async def wait_ticks(self, count: int) -> None:
        """Wait until `count` collections have returned in total."""
        async with self.collected:
            await self.collected.wait_for(lambda: self.ticks >= count)


def series_samples(n: int, *, names: int = 10) -> Callable[[int], list[Sample]]:
    """A sample factory: `n` series over `names` dotted names, with labels."""

    def make(tick: int) -> list[Sample]:
        now = time.time()
        return [
            Sample(
                f"bench.metric{i % names}.utilization",
                (i + tick) % 100 / 100,
                now,
                make_labels({"instance": f"i-{i:06d}", "region": "eu-west-1"}),
            )
            for i in range(n)
        ]

    return make


@contextlib.asynccontextmanager
async def running_agent(config: Settings, producers: Sequence[Producer]) -> AsyncIterator[Agent]:
    """An Agent started in-process (no signal handlers), stopped and drained on exit."""
    agent = Agent(config, producers=producers)
    async with AsyncExitStack() as stack:
        await agent.startup(stack)
        loop_task = asyncio.create_task(agent.main_loop())
        try:
            yield agent
        finally:
            agent.request_stop()  # what a SIGTERM does, without touching process signals
            await loop_task
            await agent.shutdown()


@contextlib.asynccontextmanager
async def http_server(limits: HttpLimits | None = None) -> AsyncIterator[HttpServer]:
    """The HTTP server alone on a free loopback port, over the runtime's view of idle parts."""
    stats = AgentStats()
    view = StatusView(stats, BatchQueue(10, "drop_oldest", stats), LatestValues(), [])
    async with HttpServer(view, HttpConfig(listen="127.0.0.1:0"), limits=limits) as server:
        yield server


def base_url(agent: Agent) -> str:
    """http://127.0.0.1:PORT of an in-process agent's server."""
    assert agent.http is not None
    assert agent.http.port is not None
    return f"http://127.0.0.1:{agent.http.port}"


async def wait_until(predicate: Callable[[], bool], limit: float = 10.0) -> None:
    """Yield to the loop until `predicate()` holds (state set by the agent's own tasks)."""
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


class PrometheusServer:
    """Debian's /usr/bin/prometheus on loopback, scraping `targets` every second."""

    def __init__(self, tmp_path: Path, targets: dict[str, str]) -> None:
        self.port = free_port()
        self.dir = tmp_path / "prometheus"
        self.dir.mkdir()
        jobs = "".join(
            f"  - job_name: {job}\n    static_configs:\n      - targets: ['{target}']\n"
            for job, target in targets.items()
        )
        self.config = self.dir / "prometheus.yml"
        self.config.write_text(
            f"global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\nscrape_configs:\n{jobs}"
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> PrometheusServer:
        self.proc = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={self.config}",
                f"--storage.tsdb.path={self.dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        stop_process(self.proc)
        if self.proc.stderr is not None:
            self.proc.stderr.close()

    async def query(self, session: aiohttp.ClientSession, promql: str) -> list[dict[str, Any]]:
        """Instant query results ([] while Prometheus is still starting)."""
        try:
            async with session.get(f"{self.url}/api/v1/query", params={"query": promql}) as resp:
                if resp.status != 200:
                    return []
                body = await resp.json()
        except aiohttp.ClientConnectionError:
            return []
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    async def wait_for(
        self,
        session: aiohttp.ClientSession,
        promql: str,
        accept: Callable[[list[dict[str, Any]]], bool],
        limit: float = 30.0,
    ) -> list[dict[str, Any]]:
        """Poll the query API (an external process) until `accept(result)`; bounded."""
        deadline = time.monotonic() + limit
        while True:
            result = await self.query(session, promql)
            if accept(result):
                return result
            assert self.proc is not None
            assert self.proc.poll() is None, "prometheus exited"
            if time.monotonic() > deadline:
                raise AssertionError(f"{promql}: last result {result!r}")
            await asyncio.sleep(0.2)
