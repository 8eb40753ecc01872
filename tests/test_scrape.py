"""[[scrape]] targets: configuration, real exporters (node_exporter, Prometheus' own /metrics),
an app with known values over OpenMetrics, text and gzip, secret headers, `check`, /metrics."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from infrawatch.collectors.scrape import USER_AGENT, ScrapeProducer
from infrawatch.collectors.scrape_config import ScrapeTarget
from infrawatch.config import ConfigError, Settings, load, masked_value
from infrawatch.detect.config import AnalysisConfig, default_threshold_rules
from infrawatch.detect.threshold import ThresholdDetector
from infrawatch.model import Sample, make_labels
from infrawatch.runtime.stats import ScrapeStats
from tests.agentproc import run_cli, write_config
from tests.support_http import PrometheusServer, base_url, running_agent, wait_until
from tests.support_scrape import (
    MetricsApp,
    NodeExporter,
    agent_settings,
    fetch_metrics,
    promtool_check,
    scrape_toml,
)

SECRET = "Bearer sekrit-token-4711"


def target(url: str, name: str = "app", **fields: Any) -> ScrapeTarget:
    """A target with a short interval (tests scrape by calling collect, not on a schedule)."""
    return ScrapeTarget.model_validate({"name": name, "url": url, "interval": 1.0, **fields})


def by_name(samples: Sequence[Sample], name: str) -> list[Sample]:
    """The samples called `name`."""
    return [s for s in samples if s.name == name]


def one(samples: Sequence[Sample], name: str, **labels: str) -> Sample:
    """The one sample `name` whose labels include `labels`."""
    found = [s for s in by_name(samples, name) if labels.items() <= dict(s.labels).items()]
    assert len(found) == 1, (name, labels, found)
    return found[0]


# -- configuration ------------------------------------------------------------------------------


def _problems(scrape: list[dict[str, Any]]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(None, {"scrape": scrape})
    return info.value.problems


def test_target_defaults_labels_and_timeout() -> None:
    t = target("http://127.0.0.1:8080/metrics", labels={"env": "prod"})
    assert t.target_labels == {"job": "app", "instance": "127.0.0.1:8080", "env": "prod"}
    assert t.timeout == pytest.approx(0.8)  # 10 s default, cut to 0.8 × a short interval
    assert ScrapeTarget(name="a", url="https://[::1]/m").instance == "[::1]:443"
    assert ScrapeTarget(name="a", url="http://a:1/m").timeout == 10.0
    renamed = target("http://127.0.0.1:8080/metrics", labels={"instance": "checkout-7"})
    assert renamed.target_labels["instance"] == "checkout-7"


def test_invalid_targets_are_config_errors_that_never_quote_header_values() -> None:
    url = "http://127.0.0.1:9/metrics"
    lines = _problems(
        [
            {"name": "a", "url": url, "interval": 5, "timeout": 5},
            {"name": "b", "url": "ftp://127.0.0.1/metrics"},
            {"name": "c", "url": "http://user:pw@127.0.0.1:9/metrics"},
            {"name": "d", "url": url, "labels": {"job": "x"}},
            {"name": "e", "url": url, "headers": {"Authorization": "Bearer x\r\nHost: evil"}},
            {"name": "f", "url": url, "headers": {"Accept-Encoding": "br"}},
        ]
    )
    text = "\n".join(lines)
    assert re.search(r"^scrape\[0\].*timeout must be shorter than interval", text, re.M)
    assert re.search(r"^scrape\[1\]\.url.*http:// or https://", text, re.M)
    assert re.search(r"^scrape\[2\]\.url.*must not carry credentials", text, re.M)
    assert re.search(r"^scrape\[3\]\.labels.*job label is the target's name", text, re.M)
    assert re.search(r"^scrape\[4\]\.headers.*line break", text, re.M)
    assert re.search(r"^scrape\[5\]\.headers.*set by the scraper", text, re.M)
    assert "evil" not in text
    assert "pw@" not in text
    dupes = _problems([{"name": "a", "url": url}, {"name": "a", "url": url}])
    assert any("duplicate scrape target names: a" in p for p in dupes)


def test_headers_are_masked_like_sink_urls() -> None:
    s = Settings.model_validate(
        {"scrape": [{"name": "a", "url": "http://127.0.0.1:9/m", "headers": {"X-Key": "k"}}]}
    )
    assert masked_value(s.scrape) == [
        {**masked_value(s.scrape[0]), "headers": {"X-Key": "**********"}}
    ]
    assert "k'" not in repr(s.scrape[0])


# -- real exporters -----------------------------------------------------------------------------


def _mem_total() -> float:
    """MemTotal from /proc/meminfo, in bytes (what node_exporter reports)."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return float(line.split()[1]) * 1024
    raise AssertionError("no MemTotal in /proc/meminfo")


async def test_node_exporter_is_scraped() -> None:
    with NodeExporter("cpu", "meminfo", "loadavg") as node:
        stats = ScrapeStats()
        async with ScrapeProducer(target(node.url, name="node"), stats) as producer:
            first = await producer.collect()
            second = await producer.collect()
    instance = f"127.0.0.1:{node.port}"
    for samples in (first, second):
        up = one(samples, "up")
        assert dict(up.labels) == {"job": "node", "instance": instance}
        assert up.value == 1.0
        assert all(("job", "node") in s.labels for s in samples)
    assert one(second, "node_memory_MemTotal_bytes").value == _mem_total()
    # Counters are rates from the second scrape on: per CPU and mode, never negative.
    assert not by_name(first, "node_cpu_seconds_total.rate")
    rates = by_name(second, "node_cpu_seconds_total.rate")
    assert {dict(s.labels)["mode"] for s in rates} >= {"user", "system", "idle"}
    assert all(s.value >= 0 for s in rates)
    scraped = one(second, "scrape.samples_scraped").value
    assert scraped == stats.samples / 2 > 100
    assert stats.up is True
    assert not stats.failures


async def test_prometheus_servers_own_metrics_are_scraped(
    tmp_path: Path,
) -> None:
    with PrometheusServer(tmp_path, {}) as prom:
        t = target(f"{prom.url}/metrics", name="prometheus", interval=5)
        async with ScrapeProducer(t) as producer:
            # Prometheus takes a moment to listen: scrape until it answers (bounded).
            for _ in range(200):
                first = await producer.collect()
                if one(first, "up").value == 1.0:
                    break
                await asyncio.sleep(0.05)
            second = await producer.collect()
            assert producer.last is not None
            content_type = producer.last.content_type
    # Prometheus 2.42 answers our Accept with the text format (its client offers no OpenMetrics).
    assert content_type.startswith("text/plain")
    info = one(second, "prometheus_build_info")
    assert info.value == 1.0
    assert dict(info.labels)["version"].startswith("2.")
    # Our own scrapes are requests its /metrics handler counts: a rate above zero.
    assert one(second, "promhttp_metric_handler_requests_total.rate", code="200").value > 0
    # Its histograms and summaries come out under the documented names.
    assert one(second, "prometheus_tsdb_compaction_chunk_range_seconds.count.rate").value >= 0
    assert one(second, "go_gc_duration_seconds.q0.5").value >= 0


# -- a target whose values are known ------------------------------------------------------------


def _set_known_values(app: MetricsApp) -> None:
    def on_scrape(n: int) -> None:
        app.counter.inc(10)
        app.gauge.set(40 + n)
        # Per interval: 50 fast, 40 medium, 10 slow requests (buckets 0.1, 0.5, 1, +Inf).
        for value, times in ((0.05, 50), (0.3, 40), (0.7, 10)):
            for _ in range(times):
                app.histogram.observe(value)

    app.on_scrape = on_scrape


@pytest.mark.parametrize("gzip_body", [False, True], ids=["plain", "gzip"])
async def test_known_values_over_openmetrics(gzip_body: bool) -> None:
    async with MetricsApp(gzip_body=gzip_body) as app:
        _set_known_values(app)
        t = target(
            f"{app.base}/metrics",
            headers={"Authorization": SECRET},
            scrape_protocols=["OpenMetricsText1.0.0", "PrometheusText0.0.4"],
        )
        async with ScrapeProducer(t) as producer:
            first = await producer.collect()
            second = await producer.collect()
            assert producer.last is not None
            assert producer.last.content_type.startswith("application/openmetrics-text")
    request = app.requests[-1]
    assert request["Accept"] == (
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.9,*/*;q=0.1"
    )
    assert request["Accept-Encoding"] == "gzip"
    assert request["User-Agent"] == USER_AGENT == "infrawatch/0.1.0"
    assert request["Authorization"] == SECRET
    assert one(first, "app_queue_depth").value == 41.0
    assert one(second, "app_queue_depth").value == 42.0
    elapsed = one(second, "up").ts - one(first, "up").ts
    assert one(second, "app_requests_total.rate").value == pytest.approx(10 / elapsed)
    assert one(second, "app_latency_seconds.count.rate").value == pytest.approx(100 / elapsed)
    assert one(second, "app_latency_seconds.p50").value == pytest.approx(0.1)
    assert one(second, "app_latency_seconds.p90").value == pytest.approx(0.5)
    assert one(second, "app_latency_seconds.p99").value == pytest.approx(0.95)


async def test_the_text_format_is_asked_for_by_default() -> None:
    # prometheus-client answers OpenMetrics whenever Accept offers it; by default we don't.
    async with MetricsApp() as app:
        _set_known_values(app)
        async with ScrapeProducer(target(f"{app.base}/metrics")) as producer:
            samples = await producer.collect()
            assert producer.last is not None
            assert producer.last.content_type.startswith("text/plain")
    assert app.requests[-1]["Accept"] == "text/plain;version=0.0.4,*/*;q=0.1"
    assert one(samples, "app_queue_depth").value == 41.0


async def test_a_text_format_target_gives_the_same_names() -> None:
    async with MetricsApp() as app:
        _set_known_values(app)
        app.on_scrape = None
        app.counter.inc(3)
        async with ScrapeProducer(target(f"{app.base}/text")) as producer:
            first = await producer.collect()
            app.counter.inc(3)
            second = await producer.collect()
            assert producer.last is not None
            assert producer.last.content_type.startswith("text/plain")
    assert one(first, "up").value == 1.0
    elapsed = one(second, "up").ts - one(first, "up").ts
    assert one(second, "app_requests_total.rate").value == pytest.approx(3 / elapsed)


async def test_configured_headers_stay_with_the_configured_origin() -> None:
    async with MetricsApp() as app:
        for path, kept in (("/same-origin", True), ("/other-origin", False)):
            app.requests.clear()
            t = target(f"{app.base}{path}", headers={"Authorization": SECRET})
            async with ScrapeProducer(t) as producer:
                samples = await producer.collect()
            assert one(samples, "up").value == 1.0, producer.last
            redirect, final = app.requests
            assert redirect["Authorization"] == SECRET
            assert ("Authorization" in final) is kept
            assert final["Host"].startswith("127.0.0.1" if kept else "localhost")


# -- the default rule ---------------------------------------------------------------------------


def test_default_rule_fires_when_up_is_zero_for_a_minute() -> None:
    rule = next(r for r in default_threshold_rules() if r.name == "target_down")
    assert (rule.metric, rule.op, rule.critical, rule.for_) == ("up", "<", 1.0, 60.0)
    detector = ThresholdDetector(AnalysisConfig().threshold)
    labels = make_labels({"job": "app", "instance": "127.0.0.1:8080"})
    changes = []
    for ts in range(0, 75, 15):  # 0 … 60: a minute of failed scrapes
        changes += detector.observe(Sample("up", 0.0, float(ts), labels))
    assert [(c.rule, c.severity, c.status, c.ts) for c in changes] == [
        ("target_down", "critical", "firing", 60.0)
    ]
    resolved = detector.observe(Sample("up", 1.0, 75.0, labels))
    assert [(c.rule, c.status) for c in resolved] == [("target_down", "resolved")]
    # Overridable like the other defaults: writing rules replaces the whole list.
    custom = Settings.model_validate(
        {"analysis": {"threshold": [{"name": "x", "metric": "up", "op": "<", "critical": 1}]}}
    )
    assert [r.name for r in custom.analysis.threshold] == ["x"]


# -- check --------------------------------------------------------------------------------------


async def test_check_lists_targets_and_scrape_tries_each_once(tmp_path: Path) -> None:
    async with MetricsApp() as app:
        config = write_config(
            tmp_path,
            scrape_toml(
                "good", f"{app.base}/metrics", headers={"Authorization": SECRET}, keep=["app_*"]
            )
            + scrape_toml("refused", "http://127.0.0.1:1/metrics"),
        )
        code, out, err = await run_cli("check", "--config", str(config))
        assert code == 0, err
        assert app.scrapes == 0  # plain `check` does not scrape
        assert re.search(
            rf"^  good: {re.escape(app.base)}/metrics every 15s, timeout 10s; "
            rf'instance="127\.0\.0\.1:{app.port}" job="good";.*headers Authorization '
            r"\(values masked\)$",
            out,
            re.M,
        ), out
        assert "  names: gauge/untyped foo → foo; counter foo_total → foo_total.rate" in out
        assert "  values: gauges as exposed; counters as per-second rates between scrapes" in out

        code, out, err = await run_cli("check", "--config", str(config), "--scrape")
        assert code == 1, out + err  # one target failed
        assert app.scrapes == 1
        assert app.requests[0]["Authorization"] == SECRET
        good = re.search(
            r"^  scrape good: ok in [\d.]+s: (\d+) samples \(text format\), (.*)$", out, re.M
        )
        assert good, out
        assert good.group(2) == (
            "6 series, 0 over max_series, 0 filtered by keep/drop; stored now: app_queue_depth"
            " (rates and quantiles start with the second scrape)"
        )
        assert re.search(r"^  scrape refused: FAILED \(connection\): .*127\.0\.0\.1:1", out, re.M)
    assert SECRET not in out + err
    assert "sekrit" not in out + err


# -- /metrics -----------------------------------------------------------------------------------


async def test_metrics_page_keeps_scraped_names_apart_from_the_agents_own(
    tmp_path: Path,
) -> None:
    async with MetricsApp() as app:
        settings = agent_settings(
            tmp_path, [{"name": "own", "url": f"{app.base}/own-names", "interval": 0.2}]
        )
        async with running_agent(settings, []) as agent:
            stats = agent.stats.scrape("own")
            await wait_until(lambda: stats.scrapes >= 3 and agent.stats.stored > 0)
            key = (
                "infrawatch_series",
                make_labels({"job": "own", "instance": f"127.0.0.1:{app.port}"}),
            )
            await wait_until(lambda: agent.latest.get(key) is not None)
            text = await fetch_metrics(f"{base_url(agent)}/metrics")
    instance = f'instance="127.0.0.1:{app.port}"'
    assert re.search(rf'^exported_infrawatch_series\{{{instance},job="own"\}} 7\.0$', text, re.M)
    assert re.search(r"^infrawatch_series \d+\.0$", text, re.M)  # the agent's own, intact
    assert re.search(rf'^up\{{{instance},job="own"\}} 1\.0$', text, re.M)
    assert re.search(rf'^process_cpu_seconds_total_rate\{{{instance},job="own"\}} ', text, re.M)
    assert re.search(r"^infrawatch_process_cpu_seconds_total ", text, re.M)
    assert re.search(r'^infrawatch_scrape_samples_total\{target="own"\} [1-9]', text, re.M)
    assert await promtool_check(text) == ""


async def test_a_failing_target_is_counted_by_reason_on_metrics(tmp_path: Path) -> None:
    settings = agent_settings(
        tmp_path, [{"name": "gone", "url": "http://127.0.0.1:1/metrics", "interval": 0.2}]
    )
    async with running_agent(settings, []) as agent:
        stats = agent.stats.scrape("gone")
        await wait_until(lambda: stats.failures.get("connection", 0) >= 2)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base_url(agent)}/metrics") as resp:
                text = await resp.text()
            async with session.get(f"{base_url(agent)}/healthz") as resp:
                health = resp.status
    assert re.search(
        r'^infrawatch_scrape_failures_total\{reason="connection",target="gone"\} [2-9]', text, re.M
    )
    assert re.search(r'^up\{instance="127\.0\.0\.1:1",job="gone"\} 0\.0$', text, re.M)
    # A dead target is the target's problem, not the agent's: liveness stays healthy.
    assert health == 200
