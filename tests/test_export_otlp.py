"""OTLP/HTTP export against a receiver built on opentelemetry-proto: what is sent (names, units,
attributes, timestamps, resource, gzip, headers) and how every kind of answer is handled."""

from __future__ import annotations

import contextlib
import time
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from infrawatch import __version__
from infrawatch.export import exporter as exporter_module
from infrawatch.export.config import ExportConfig
from infrawatch.export.exporter import Exporter
from infrawatch.export.service import ExportService
from infrawatch.model import Sample, make_labels
from infrawatch.runtime.stats import AgentStats
from infrawatch.storage.store import Store
from tests.agentproc import AgentProcess, write_config
from tests.support_alert_logs import captured_logs
from tests.support_export import OtlpReceiver, junk_server, partial_success

TOKEN = "Bearer s3cr3t-t0ken"
EXTERNAL = {"host": "agent-7", "env": "test"}
CPU = ("system.cpu.utilization", make_labels({"cpu": "1"}))
MEM = ("system.memory.usage", make_labels({"state": "used"}))


@pytest.fixture(autouse=True)
def _quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Backoff steps of milliseconds: the tests check what is retried, not how long it waits."""
    monkeypatch.setattr(exporter_module, "INITIAL_DELAY", 0.01)
    monkeypatch.setattr(exporter_module, "MAX_DELAY", 0.05)


@pytest.fixture
async def receiver() -> AsyncIterator[OtlpReceiver]:
    server = OtlpReceiver(required_headers={"Authorization": TOKEN})
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@contextlib.asynccontextmanager
async def exporting(
    store: Store, receiver: OtlpReceiver, *, retention: float = 86400.0, **fields: object
) -> AsyncIterator[Exporter]:
    cfg = ExportConfig.model_validate(
        {
            "name": "otel",
            "type": "otlp",
            "url": receiver.url,
            "headers": {"Authorization": TOKEN},
            **fields,
        }
    )
    async with ExportService(
        [cfg], store, AgentStats(), retention=retention, external_labels=EXTERNAL
    ) as service:
        yield service.exporters[0]


def series(name: str, labels: tuple[tuple[str, str], ...], n: int, start: float) -> list[Sample]:
    return [Sample(name, i + 0.25, start + i * 0.001001, labels) for i in range(n)]


async def test_points_keep_names_units_attributes_and_their_own_time(
    tmp_path: Path, receiver: OtlpReceiver
) -> None:
    now = time.time()
    cpu = series(*CPU, 30, now - 60)
    mem = series(*MEM, 20, now - 30)
    cloud = [Sample("aws.ec2.cpuutilization.average", 12.5, now - 300, make_labels({"a": "b"}))]
    async with Store(tmp_path / "a.db") as store, exporting(store, receiver) as exporter:
        await store.write(cpu + mem + cloud)
        await exporter.wait_until(lambda s: s.sent == 51)
        assert (exporter.stats.failed, exporter.stats.rejected) == (0, 0)
    assert receiver.problems == []  # every metric a gauge, every body gzip'd protobuf
    assert receiver.points[(CPU[0], "1", CPU[1])] == [
        (round(s.ts * 1_000_000) * 1000, s.value) for s in cpu
    ]
    assert receiver.points[(MEM[0], "By", MEM[1])] == [
        (round(s.ts * 1_000_000) * 1000, s.value) for s in mem
    ]
    assert receiver.points[(cloud[0].name, "", (("a", "b"),))] == [
        (round(cloud[0].ts * 1_000_000) * 1000, 12.5)
    ]
    resource = receiver.resources[0]
    assert resource["service.name"] == "infrawatch"
    assert resource["service.version"] == __version__
    assert resource["host.name"]
    assert {k: resource[k] for k in EXTERNAL} == EXTERNAL
    request = receiver.requests[0]
    assert request.headers["Content-Encoding"] == "gzip"
    assert request.headers["User-Agent"] == f"infrawatch/{__version__}"


async def test_503_429_and_redirects_are_retried_and_retry_after_honoured(
    tmp_path: Path, receiver: OtlpReceiver
) -> None:
    receiver.then(
        (307, b"", {"Location": "http://127.0.0.1:1/elsewhere"}),  # not followed, not dropped
        (503, b"overloaded", {}),
        (429, b"slow down", {"Retry-After": "0.2"}),
    )
    samples = series(*CPU, 10, time.time() - 10)
    async with Store(tmp_path / "a.db") as store, exporting(store, receiver) as exporter:
        await store.write(samples)
        await exporter.wait_until(lambda s: s.sent == 10)
        assert exporter.stats.failed == 30  # three failed attempts of the 10
        assert exporter.delays[-1] == 0.2  # the receiver's Retry-After, not the backoff
    assert [r.status for r in receiver.requests] == [307, 503, 429, 200]
    assert len(receiver.points[(CPU[0], "1", CPU[1])]) == 10  # accepted once


async def test_one_bad_sample_is_rejected_alone_and_the_stream_goes_on(
    tmp_path: Path, receiver: OtlpReceiver
) -> None:
    receiver.poison = -1.0
    now = time.time()
    samples = series(*CPU, 300, now - 100)
    samples[137] = Sample(CPU[0], -1.0, samples[137].ts, CPU[1])
    with captured_logs("info") as logs:
        async with (
            Store(tmp_path / "a.db") as store,
            exporting(store, receiver, batch_samples=100) as exporter,
        ):
            await store.write(samples)
            await exporter.wait_until(lambda s: s.sent + s.rejected == 300)
            assert (exporter.stats.sent, exporter.stats.rejected) == (299, 1)
            await store.write([Sample(CPU[0], 5.0, now, CPU[1])])
            await exporter.wait_until(lambda s: s.sent == 300)
    points = receiver.points[(CPU[0], "1", CPU[1])]
    assert [v for _, v in points] == [s.value for s in samples if s.value != -1.0] + [5.0]
    (rejected,) = logs.named("export.rejected")
    assert rejected["status"] == 400
    assert rejected["reason"] == "bad sample: poison value"
    assert rejected["samples"] == 1
    assert TOKEN not in "".join(logs.raw)  # the header's secret is never logged


async def test_partial_success_is_counted_as_rejected(
    tmp_path: Path, receiver: OtlpReceiver
) -> None:
    receiver.then((200, partial_success(3, "3 points had no name"), {}))
    with captured_logs("info") as logs:
        async with Store(tmp_path / "a.db") as store, exporting(store, receiver) as exporter:
            await store.write(series(*CPU, 10, time.time() - 10))
            await exporter.wait_until(lambda s: s.sent + s.rejected == 10)
            assert (exporter.stats.sent, exporter.stats.rejected) == (7, 3)
    (event,) = logs.named("export.partial_success")
    assert event["message"] == "3 points had no name"


async def test_garbage_answers(tmp_path: Path, receiver: OtlpReceiver) -> None:
    async with Store(tmp_path / "a.db") as store, exporting(store, receiver) as exporter:
        # A 200 whose body is no ExportMetricsServiceResponse: taken as accepted, said once.
        receiver.then("garbage")
        await store.write(series(*CPU, 5, time.time() - 20))
        await exporter.wait_until(lambda s: s.sent == 5)
        # Bytes that are not HTTP at all: retried until a real receiver is back.
        await receiver.stop()
        async with junk_server(receiver.port):
            await store.write(series(*MEM, 5, time.time() - 10))
            await exporter.wait_until(lambda s: s.failed >= 10)
        await receiver.start()
        await exporter.wait_until(lambda s: s.sent == 10)
    assert len(receiver.points[(MEM[0], "By", MEM[1])]) == 5


async def test_receiver_that_never_answers(tmp_path: Path, receiver: OtlpReceiver) -> None:
    async with Store(tmp_path / "a.db") as store:
        async with exporting(store, receiver, timeout=0.2) as exporter:
            receiver.then("hang")
            await store.write(series(*CPU, 5, time.time() - 20))
            # The request times out and is retried; the next attempt is answered.
            await exporter.wait_until(lambda s: s.sent == 5)
            assert exporter.stats.failed == 5
            receiver.released.clear()
            receiver.then("hang", "hang", "hang")
            await store.write(series(*MEM, 5, time.time() - 10))
            await exporter.wait_until(lambda s: s.failed >= 10)
            # Shutdown with a receiver that never answers: the flush ends within its budget and
            # the samples stay behind the cursor for the next start.
            await exporter.flush(0.3)
            assert exporter.stats.backlog == 5
        receiver.released.set()
        receiver.script.clear()
        async with exporting(store, receiver) as exporter:
            await exporter.wait_until(lambda s: s.sent == 5)
    assert len(receiver.points[(MEM[0], "By", MEM[1])]) == 5


async def test_restart_resumes_at_the_cursor(tmp_path: Path, receiver: OtlpReceiver) -> None:
    now = time.time()
    async with Store(tmp_path / "a.db") as store:
        async with exporting(store, receiver) as exporter:
            await store.write(series(*CPU, 10, now - 50))
            await exporter.wait_until(lambda s: s.sent == 10)
        # Stored while no exporter runs (the agent is between start-ups).
        await store.write(series(*MEM, 7, now - 40))
        async with exporting(store, receiver) as exporter:
            assert exporter.stats.backlog == 7
            await exporter.wait_until(lambda s: s.sent == 7)
    assert len(receiver.points[(CPU[0], "1", CPU[1])]) == 10  # nothing sent twice
    assert len(receiver.points[(MEM[0], "By", MEM[1])]) == 7


async def test_match_globs_choose_the_metrics(tmp_path: Path, receiver: OtlpReceiver) -> None:
    async with (
        Store(tmp_path / "a.db") as store,
        exporting(store, receiver, match=["system.memory.*"]) as exporter,
    ):
        await store.write(series(*CPU, 10, time.time() - 50) + series(*MEM, 3, time.time()))
        await exporter.wait_until(lambda s: s.sent == 3 and s.backlog == 0)
    assert list(receiver.points) == [(MEM[0], "By", MEM[1])]


async def test_samples_past_retention_are_counted_and_logged_as_lost(
    tmp_path: Path, receiver: OtlpReceiver
) -> None:
    now = time.time()
    await receiver.stop()  # away for longer than the retention
    with captured_logs("info") as logs:
        async with (
            Store(tmp_path / "a.db") as store,
            exporting(store, receiver, retention=60.0) as exporter,
        ):
            await store.write(series(*CPU, 4, now - 120) + series(*MEM, 3, now - 1))
            # While the receiver is still down, what aged out is counted and leaves the log
            # (a second failed attempt of the 3 others means the first one's bookkeeping is done).
            await exporter.wait_until(lambda s: s.lost == 4 and s.failed >= 6)
            async with store.db.execute("SELECT count(*) FROM export_log") as cur:
                assert await cur.fetchone() == (4,)  # the 3 to send and the one the cursor is on
            await receiver.start()
            await exporter.wait_until(lambda s: s.sent == 3)
            assert exporter.stats.lost == 4
    (event,) = logs.named("export.samples_lost")
    assert (event["samples"], event["total_lost"]) == (4, 4)
    assert list(receiver.points) == [(MEM[0], "By", MEM[1])]


async def test_huge_backlog_drains_in_batches_with_bounded_memory(
    tmp_path: Path, receiver: OtlpReceiver
) -> None:
    total, batch = 20_000, 500
    receiver.keep_points = False  # its memory is not the exporter's
    now = time.time()
    labels = [make_labels({"cpu": str(i)}) for i in range(100)]
    async with Store(tmp_path / "a.db") as store:
        await receiver.stop()  # a long outage
        async with exporting(store, receiver, batch_samples=batch) as exporter:
            for start in range(0, total, 5000):
                await store.write(
                    [
                        Sample(CPU[0], float(i), now - 3000 + i * 0.05, labels[i % 100])
                        for i in range(start, start + 5000)
                    ]
                )
            await exporter.wait_until(lambda s: s.failed > 0)
            await receiver.start()
            tracemalloc.start()
            try:
                await exporter.wait_until(lambda s: s.sent == total)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
    assert max(r.points for r in receiver.requests) == batch
    # The backlog read at once would take about 4 MB as Python rows; one batch at a time is
    # small (the receiver runs in this process too, decoding one request at a time).
    assert peak < 2 * 1024 * 1024, peak


AGENT_CONFIG = """
[host]
interval = 0.2
metrics = ["memory"]

[http]
listen = "127.0.0.1:0"

[[export]]
name = "otel"
type = "otlp"
url = "{url}"
headers = {{ Authorization = "{token}" }}
"""


async def test_agent_exports_and_shows_exporter_metrics(
    tmp_path: Path, receiver: OtlpReceiver
) -> None:
    config = write_config(tmp_path, AGENT_CONFIG.format(url=receiver.url, token=TOKEN))
    agent = await AgentProcess(config).start()
    try:
        listening = await agent.wait_for("http.listening")
        await receiver.wait_until(lambda r: r.total_points() >= 3)
        url = f"http://127.0.0.1:{listening['port']}/metrics"
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            text = await response.text()
        agent.signal()
        assert await agent.wait() == 0, agent.stderr
    finally:
        await agent.stop()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    labels = {"exporter": "otel", "type": "otlp"}
    sent = families["infrawatch_export_samples_sent"].samples
    assert any(s.labels == labels and s.value > 0 for s in sent)
    for name in ("failed", "rejected", "lost"):
        (value,) = families[f"infrawatch_export_samples_{name}"].samples[:1]
        assert value.labels == labels
    assert "infrawatch_export_backlog_samples" in families
    assert "infrawatch_export_lag_seconds" in families
    assert TOKEN not in "".join(agent.raw_lines) + agent.stderr
    assert "Unclosed" not in agent.stderr
    assert "was destroyed but it is pending" not in agent.stderr
    assert agent.named("export.flushed")[-1]["unsent"] == 0
    assert receiver.requests[0].headers["Authorization"] == TOKEN
