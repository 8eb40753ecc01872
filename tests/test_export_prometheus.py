"""Remote-write to Debian's real Prometheus (--web.enable-remote-write-receiver): every stored
sample comes back from its HTTP API with the same timestamp and value, also across an outage
during which the agent restarts."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from infrawatch.export.config import ExportConfig
from infrawatch.export.service import ExportService
from infrawatch.model import Sample, make_labels
from infrawatch.names import metric_name
from infrawatch.runtime.stats import AgentStats, ExporterStats
from infrawatch.storage.store import Store, labels_from_json
from tests.agentproc import AgentProcess, write_config
from tests.support_export import Prometheus, prometheus_available


@pytest.fixture(autouse=True)
def _prometheus_installed() -> None:
    # The real receiver is the point of these tests: a missing binary fails them.
    if not prometheus_available():
        pytest.fail("Debian's prometheus package is missing: run `make test` (it installs it)")


EXTERNAL = {"host": "agent-7", "region": "eu"}


@pytest.fixture
async def prometheus(tmp_path: Path) -> AsyncIterator[Prometheus]:
    server = Prometheus(tmp_path)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@contextlib.asynccontextmanager
async def exporting(store: Store, url: str, **fields: object) -> AsyncIterator[ExportService]:
    cfg = ExportConfig.model_validate(
        {"name": "prom", "type": "remote_write", "url": url, **fields}
    )
    service = ExportService([cfg], store, AgentStats(), retention=86400.0, external_labels=EXTERNAL)
    async with service:
        yield service


def _stats(service: ExportService) -> ExporterStats:
    return service.exporters[0].stats


async def test_every_sample_is_queryable_with_its_timestamp_and_value(
    tmp_path: Path, prometheus: Prometheus
) -> None:
    now = time.time()
    cpu = ("system.cpu.utilization", make_labels({"cpu": "0"}))
    cloud = ("aws.ec2.CPUUtilization.average", make_labels({"InstanceId": "i-1", "region": "x"}))
    count = ("system.processes.count", make_labels({}))
    samples = [
        Sample(cpu[0], 0.1 * i + 0.123456789, now - 300 + i * 0.5, cpu[1]) for i in range(40)
    ]
    samples += [Sample(cloud[0], 40.0 + i, now - 600 + 60 * i, cloud[1]) for i in range(5)]
    samples += [Sample(count[0], 200.0 + i, now - 100 + i, count[1]) for i in range(3)]
    async with Store(tmp_path / "a.db") as store, exporting(store, prometheus.write_url) as svc:
        await store.write(samples[:20])
        await store.write(samples[20:])
        await svc.exporters[0].wait_until(lambda s: s.sent == len(samples))
        assert _stats(svc).rejected == 0

    cpu_back = await prometheus.samples("system_cpu_utilization")
    labels = (("__name__", "system_cpu_utilization"), ("cpu", "0"), *sorted(EXTERNAL.items()))
    assert list(cpu_back) == [tuple(sorted(labels))]
    assert cpu_back[tuple(sorted(labels))] == [(round(s.ts * 1000), s.value) for s in samples[:40]]
    # CloudWatch names and dimensions as /metrics shows them; series labels beat external ones.
    cloud_back = await prometheus.samples(metric_name(cloud[0]))
    (cloud_labels,) = cloud_back
    assert dict(cloud_labels) == {
        "__name__": "aws_ec2_cpuutilization_average",
        "instance_id": "i-1",
        "region": "x",
        "host": "agent-7",
    }
    assert [v for _, v in cloud_back[cloud_labels]] == [40.0, 41.0, 42.0, 43.0, 44.0]
    count_back = await prometheus.samples("system_processes_count_value")
    assert [v for _, v in next(iter(count_back.values()))] == [200.0, 201.0, 202.0]


async def test_late_point_is_rejected_alone_and_the_stream_goes_on(
    tmp_path: Path, prometheus: Prometheus
) -> None:
    now = time.time()
    a = ("test.a", make_labels({"k": "a"}))
    b = ("test.b", make_labels({"k": "b"}))
    async with Store(tmp_path / "a.db") as store:
        async with exporting(store, prometheus.write_url) as svc:
            await store.write(
                [Sample(a[0], 1.0, now - 10, a[1]), Sample(b[0], 1.0, now - 10, b[1])]
            )
            await svc.exporters[0].wait_until(lambda s: s.sent == 2)
            # Known to be late for its series: refused without a request.
            await store.write([Sample(b[0], 9.0, now - 20, b[1])])
            await svc.exporters[0].wait_until(lambda s: s.rejected == 1)
        # A new exporter (a restarted agent) no longer knows what Prometheus has: the late
        # point goes out with good ones, Prometheus refuses the whole request (400), and the
        # exporter splits it until only the late point is left out.
        async with exporting(store, prometheus.write_url) as svc:
            good = [Sample(a[0], float(i), now - 9 + i, a[1]) for i in range(5)]
            await store.write([*good, Sample(b[0], 7.0, now - 30, b[1])])
            await svc.exporters[0].wait_until(lambda s: s.sent + s.rejected == 6)
            assert (_stats(svc).sent, _stats(svc).rejected) == (5, 1)
            # The stream goes on after the refusal.
            await store.write([Sample(b[0], 3.0, now - 1, b[1])])
            await svc.exporters[0].wait_until(lambda s: s.sent == 6)
    back_a = next(iter((await prometheus.samples("test_a")).values()))
    assert [v for _, v in back_a] == [1.0, 0.0, 1.0, 2.0, 3.0, 4.0]
    back_b = next(iter((await prometheus.samples("test_b")).values()))
    assert [v for _, v in back_b] == [1.0, 3.0]


def _stored(db: Path, name: str) -> dict[tuple[tuple[str, str], ...], list[tuple[int, float]]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT series.labels, ts, value FROM samples JOIN series ON series.id = series_id"
            " WHERE series.name = ? ORDER BY ts",
            (name,),
        ).fetchall()
    finally:
        conn.close()
    out: dict[tuple[tuple[str, str], ...], list[tuple[int, float]]] = {}
    for labels, ts, value in rows:
        out.setdefault(labels_from_json(labels), []).append((round(ts * 1000), value))
    return out


AGENT_CONFIG = """
[host]
interval = 0.2
metrics = ["memory", "load"]

[[export]]
name = "prom"
type = "remote_write"
url = "{url}"
timeout = 2
match = ["system.memory.*"]
"""


async def test_outage_with_agent_restart_loses_nothing(
    tmp_path: Path, prometheus: Prometheus
) -> None:
    config = write_config(tmp_path, AGENT_CONFIG.format(url=prometheus.write_url))
    db = tmp_path / "agent.db"
    agent = await AgentProcess(config).start()
    try:
        await agent.wait_for("export.started")
        # Prometheus goes away once the agent has sent something.
        for _ in range(300):  # bounded polling: Prometheus has no event to await
            if await prometheus.samples("system_memory_utilization"):
                break
            await asyncio.sleep(0.1)
        await prometheus.stop()
        await agent.wait_for("export.retrying")  # the agent stored more and could not send it
        agent.signal()
        assert await agent.wait() == 0, agent.stderr
        assert agent.named("export.flushed")[-1]["unsent"] > 0
        # The agent starts again while Prometheus is still down, stores more, then it returns.
        agent = await AgentProcess(config).start()
        await agent.wait_for("export.retrying")
        await prometheus.start()
        await agent.wait_for("export.recovered")
        agent.signal()
        assert await agent.wait() == 0, agent.stderr
        assert agent.named("export.flushed")[-1]["unsent"] == 0
    finally:
        await agent.stop()

    stored = await asyncio.to_thread(_stored, db, "system.memory.utilization")
    back = await prometheus.samples("system_memory_utilization")
    (labels,) = stored
    assert labels == ()
    (series,) = back.values()
    assert series == stored[()]  # every sample, same millisecond timestamp and value
    assert len(series) > 3
    # The glob kept other metrics out.
    assert not await prometheus.samples('{__name__=~"system_cpu.*"}')
