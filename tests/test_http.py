"""/metrics, /readyz and the server's answers to everything else, against an in-process agent."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from infrawatch.alerting.records import AlertRecord
from infrawatch.detect.base import SeriesState
from infrawatch.model import Sample, make_labels
from infrawatch.runtime.latest import LatestValues
from infrawatch.runtime.producer import Batch
from infrawatch.runtime.queue import BatchQueue
from infrawatch.runtime.stats import AgentStats, PeerStats, SinkStats
from infrawatch.runtime.status import StatusView
from infrawatch.web.exposition import AgentCollector, label_name, metric_name
from tests.support_alert_logs import captured_logs
from tests.support_http import ScriptedProducer, base_url, running_agent, settings, wait_until


def _parse(text: str) -> dict[str, list[Any]]:
    """{family name: [samples]} via prometheus-client's own parser (strict about the format)."""
    return {f.name: list(f.samples) for f in text_string_to_metric_families(text)}


def _value(families: dict[str, list[Any]], sample: str, **labels: str) -> float:
    for samples in families.values():
        for s in samples:
            if s.name == sample and s.labels == labels:
                return float(s.value)
    raise AssertionError(f"{sample}{labels} not exposed")


def test_names_are_converted_per_design() -> None:
    assert metric_name("system.cpu.utilization") == "system_cpu_utilization"
    assert metric_name("system.cpu.load_average.1m") == "system_cpu_load_average_1m"
    assert metric_name("aws.ec2.CPUUtilization.average") == "aws_ec2_cpuutilization_average"
    # Suffixes reserved for counters/histograms would fail promtool's lint on a gauge.
    assert metric_name("system.processes.count") == "system_processes_count_value"
    assert metric_name("aws.sqs.sent.sum") == "aws_sqs_sent_sum_value"
    assert metric_name("1st.metric-x") == "_1st_metric_x"
    assert label_name("InstanceId") == "instance_id"
    assert label_name("mount.point") == "mount_point"
    assert label_name("__name__") == "exported__name__"


async def test_metrics_exposes_series_self_metrics_and_process(tmp_path: Path) -> None:
    labels = make_labels({"cpu": "0", "mount.point": "/"})
    producer = ScriptedProducer(
        make=lambda n: [
            Sample("system.cpu.utilization", 0.25, time.time(), labels),
            Sample("system.cpu.utilization", 0.5, time.time()),
            Sample("system.processes.count", 42.0, time.time()),
        ]
    )
    async with (
        running_agent(settings(tmp_path), [producer]) as agent,
        aiohttp.ClientSession() as session,
    ):
        await producer.wait_ticks(2)
        await wait_until(lambda: agent.stats.first_batch_stored)
        async with session.get(f"{base_url(agent)}/metrics") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain")
            text = await resp.text()
    families = _parse(text)
    assert _value(families, "system_cpu_utilization", cpu="0", mount_point="/") == 0.25
    assert _value(families, "system_cpu_utilization") == 0.5
    assert _value(families, "system_processes_count_value") == 42.0
    assert _value(families, "infrawatch_samples_collected_total", producer="test") >= 6
    assert _value(families, "infrawatch_samples_stored_total", producer="test") >= 3
    assert (
        _value(families, "infrawatch_samples_dropped_total", producer="test", reason="queue_full")
        == 0
    )
    assert _value(families, "infrawatch_collector_errors_total", producer="test") == 0
    assert _value(families, "infrawatch_producer_interval_seconds", producer="test") == 0.05
    assert (
        _value(families, "infrawatch_producer_last_success_timestamp_seconds", producer="test")
        > 1e9
    )
    assert _value(families, "infrawatch_batch_duration_seconds_count") >= 1
    assert _value(families, "infrawatch_batch_duration_seconds_bucket", le="+Inf") >= 1
    assert _value(families, "infrawatch_process_resident_memory_bytes") > 1e6
    assert _value(families, "infrawatch_process_cpu_seconds_total") > 0
    assert _value(families, "infrawatch_ready") == 1


async def test_readyz_waits_for_the_first_stored_batch(tmp_path: Path) -> None:
    producer = ScriptedProducer()
    producer.hang = True
    async with (
        running_agent(settings(tmp_path), [producer]) as agent,
        aiohttp.ClientSession() as session,
    ):
        await producer.hanging.wait()
        async with session.get(f"{base_url(agent)}/readyz") as resp:
            assert resp.status == 503
            body = await resp.json()
        assert body == {"status": "not ready", "store_open": True, "first_batch_stored": False}
        producer.release.set()
        await wait_until(lambda: agent.stats.first_batch_stored)
        async with session.get(f"{base_url(agent)}/readyz") as resp:
            assert resp.status == 200
            assert (await resp.json())["status"] == "ready"


async def test_other_paths_and_methods_get_plain_errors(tmp_path: Path) -> None:
    async with (
        running_agent(settings(tmp_path), [ScriptedProducer()]) as agent,
        aiohttp.ClientSession() as session,
    ):
        url = base_url(agent)
        probe = "<script>alert(1)</script>"
        async with session.get(f"{url}/nothing-{probe}?q={probe}") as resp:
            assert resp.status == 404
            assert "script" not in await resp.text()
        # `/` is the status page; every other path not in the route table is a 404.
        for path in ("/metrics/", "/../../etc/passwd", "/static/x", "/healthz.json", "//"):
            async with session.get(url + path) as resp:
                assert resp.status == 404, path
                assert "root:" not in await resp.text()
        async with session.post(f"{url}/metrics", data=probe) as resp:
            assert resp.status == 405
            assert resp.headers["Allow"] == "GET,HEAD"
            assert "script" not in await resp.text()
        async with session.delete(f"{url}/healthz") as resp:
            assert resp.status == 405
        async with session.head(f"{url}/metrics") as resp:
            assert resp.status == 200
        # Compressed only when asked for; Prometheus asks.
        async with session.get(f"{url}/metrics", headers={"Accept-Encoding": "gzip"}) as resp:
            assert resp.headers.get("Content-Encoding") == "gzip"
            assert "infrawatch_build_info" in await resp.text()


async def test_firing_alerts_and_sink_counters_reach_metrics(tmp_path: Path) -> None:
    config = settings(
        tmp_path,
        analysis={
            "threshold": [
                {"name": "cpu_high", "metric": "system.cpu.utilization", "op": ">",
                 "critical": 0.9},
            ],
            "zscore": {"enabled": False},
            "novelty": {"enabled": False},
        },
        alerting={"group_wait": 0, "group_interval": 0.1},
    )  # fmt: skip
    cpu = make_labels({"cpu": "3"})
    producer = ScriptedProducer(
        make=lambda n: [Sample("system.cpu.utilization", 0.99, time.time(), cpu)]
    )
    async with (
        running_agent(config, [producer]) as agent,
        aiohttp.ClientSession() as session,
    ):
        # No sinks configured: the log sink delivers, through the real outbox and worker.
        await wait_until(lambda: "log" in agent.stats.alert_sinks)
        await wait_until(lambda: agent.stats.alert_sinks["log"].sent >= 1)
        async with session.get(f"{base_url(agent)}/metrics") as resp:
            families = _parse(await resp.text())
    alerts = [s for s in families["infrawatch_alerts"] if s.labels["alertname"] == "cpu_high"]
    assert len(alerts) == 1, families["infrawatch_alerts"]
    assert alerts[0].labels["alertstate"] == "firing"
    assert alerts[0].labels["cpu"] == "3"
    assert alerts[0].labels["severity"] == "critical"
    assert alerts[0].value == 1
    assert _value(families, "infrawatch_alert_notifications_sent_total", sink="log") >= 1
    assert _value(families, "infrawatch_alert_delivery_attempts_total", sink="log") >= 1
    assert _value(families, "infrawatch_alert_sink_gone", sink="log") == 0


def test_every_sink_counter_is_exposed() -> None:
    view = _View()
    view.stats.alert_sinks["discord"] = SinkStats(
        type="discord",
        sent=3,
        failed=1,
        pending=2,
        attempts=9,
        retries=5,
        rate_limited=4,
        gone=True,
        unrecorded=6,
    )
    families = _render(view)
    sink = {"sink": "discord"}
    assert _value(families, "infrawatch_alert_notifications_sent_total", **sink) == 3
    assert _value(families, "infrawatch_alert_notifications_failed_total", **sink) == 1
    assert _value(families, "infrawatch_alert_notifications_pending", **sink) == 2
    assert _value(families, "infrawatch_alert_notifications_unrecorded", **sink) == 6
    assert _value(families, "infrawatch_alert_delivery_attempts_total", **sink) == 9
    assert _value(families, "infrawatch_alert_delivery_retries_total", **sink) == 5
    assert _value(families, "infrawatch_alert_delivery_rate_limited_total", **sink) == 4
    assert _value(families, "infrawatch_alert_sink_gone", **sink) == 1


def test_alert_states_queue_depth_and_reloads_are_exposed() -> None:
    record = AlertRecord(
        fingerprint="f1",
        labels={"alertname": "HighCpu", "severity": "critical", "cpu": "0", "alertstate": "x"},
        annotations={},
        severity="critical",
        state="firing",
        starts_at=1.0,
        ends_at=None,
        updated_at=1.0,
    )
    view = _View(alerts=[record], reloads=3)
    view.queue.put(Batch("host", [Sample("a", 1.0, 1.0), Sample("b", 2.0, 1.0)]))
    view.queue.put(Batch("host", [Sample("c", 3.0, 1.0)]))
    families = _render(view)
    labels = {"alertname": "HighCpu", "alertstate": "firing", "severity": "critical", "cpu": "0"}
    # The alert's own `alertstate` label must not overwrite the state.
    assert _value(families, "infrawatch_alerts", **labels, exported_alertstate="x") == 1
    assert _value(families, "infrawatch_queue_batches") == 2
    assert _value(families, "infrawatch_queue_samples") == 3
    assert _value(families, "infrawatch_config_reloads_total") == 3


class _FakeDetector:
    name = "zscore"

    def states(self) -> dict[Any, SeriesState]:
        return {
            ("system.cpu.utilization", make_labels({"cpu": "0"})): SeriesState(0.9, True, 7.5),
            ("system.cpu.utilization", make_labels({"cpu": "1"})): SeriesState(0.1, False, 0.4),
        }


class _View(StatusView):
    """The runtime's view over real parts; the detectors and alerts are the test's."""

    def __init__(self, alerts: Sequence[AlertRecord] = (), reloads: int = 0) -> None:
        stats = AgentStats()
        self.queue = BatchQueue(10, "drop_oldest", stats)
        self.latest = LatestValues()
        super().__init__(stats, self.queue, self.latest, [])
        self._alerts_shown = list(alerts)
        self._reload_count = reloads

    def detectors(self) -> Sequence[Any]:
        return [_FakeDetector()]

    def active_alerts(self) -> Sequence[AlertRecord]:
        return self._alerts_shown

    def reloads(self) -> int:
        return self._reload_count


def _render(view: _View, detector_states: str = "off") -> dict[str, list[Any]]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AgentCollector(view, detector_states))
    return _parse(generate_latest(registry).decode())


def test_detector_states_all_anomalous_or_off() -> None:
    def render(mode: str) -> dict[str, list[Any]]:
        return _render(_View(), mode)

    every = render("all")
    cpu0 = {"detector": "zscore", "metric": "system_cpu_utilization", "cpu": "0"}
    cpu1 = {**cpu0, "cpu": "1"}
    assert _value(every, "infrawatch_detector_anomalous", **cpu0) == 1
    assert _value(every, "infrawatch_detector_anomalous", **cpu1) == 0
    assert _value(every, "infrawatch_detector_statistic", **cpu0) == 7.5
    assert _value(every, "infrawatch_detector_score", **cpu0) == 0.9
    assert _value(every, "infrawatch_detector_score", **cpu1) == 0.1
    only = render("anomalous")
    assert _value(only, "infrawatch_detector_statistic", **cpu0) == 7.5
    assert len(only["infrawatch_detector_anomalous"]) == 1
    assert render("off")["infrawatch_detector_anomalous"] == []


def test_alertmanager_peer_health_is_exposed() -> None:
    view = _View()
    sink = view.stats.alert_sinks["am"] = SinkStats(type="alertmanager")
    sink.peers["http://127.0.0.1:9093"] = PeerStats()
    sink.peers["http://127.0.0.1:9094"] = PeerStats(failures=7, outages=1, down=True)
    families = _render(view)
    up = "infrawatch_alertmanager_peer_up"
    failures = "infrawatch_alertmanager_peer_failures_total"
    outages = "infrawatch_alertmanager_peer_outages_total"
    assert _value(families, up, sink="am", peer="http://127.0.0.1:9093") == 1
    assert _value(families, up, sink="am", peer="http://127.0.0.1:9094") == 0
    assert _value(families, failures, sink="am", peer="http://127.0.0.1:9094") == 7
    assert _value(families, outages, sink="am", peer="http://127.0.0.1:9094") == 1


def test_odd_label_values_are_escaped_and_never_break_the_scrape() -> None:
    view = _View()
    view.stats.producer("host")
    # psutil decodes a non-UTF-8 process name with surrogateescape (any local user can start
    # one); quotes, backslashes and newlines must be escaped, not break the format.
    odd = {"name": "y\udcffz", "quote": 'a"b\\c\nd', "unicode": "é✓"}
    view.latest.update("host", [Sample("process.cpu.utilization", 0.5, 1.0, make_labels(odd))])
    families = _render(view)
    value = _value(
        families, "process_cpu_utilization", name="y\ufffdz", quote='a"b\\c\nd', unicode="é✓"
    )
    assert value == 0.5


async def _raw_request(port: int, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        return await reader.read()  # the server closes the connection after an error
    finally:
        writer.close()
        await writer.wait_closed()


async def test_malformed_requests_get_400_without_echo(tmp_path: Path) -> None:
    probe = b"<script>alert(1)</script>"
    requests = [
        probe + b" /metrics HTTP/1.1\r\nHost: x\r\n\r\n",  # not a method
        b"GET /" + b"a" * 9000 + probe + b" HTTP/1.1\r\nHost: x\r\n\r\n",  # path too long
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nBad " + probe + b": 1\r\n\r\n",  # bad header
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1" + probe + b"\r\n\r\n",
        b"GET /\x00" + probe + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    ]
    with captured_logs() as logs:
        async with running_agent(settings(tmp_path), [ScriptedProducer()]) as agent:
            assert agent.http is not None
            assert agent.http.port is not None
            for raw in requests:
                answer = await _raw_request(agent.http.port, raw)
                head, _, body = answer.partition(b"\r\n\r\n")
                assert b" 400 " in head.split(b"\r\n")[0], answer
                assert b"script" not in answer, answer
                assert b"aaaa" not in answer, answer
                assert body == b"400: Bad Request", body
    # The log gets one line per doubling, no tracebacks and none of the request's bytes.
    malformed = logs.named("http.malformed_request")
    assert [e["total"] for e in malformed] == [1, 2, 4]
    assert not [line for line in logs.raw if "<script>" in line or "Traceback" in line]
