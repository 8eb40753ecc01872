"""What /metrics shows: a prometheus-client Collector over the agent's live state.

Nothing here formats exposition text by hand: the collector yields metric families and
`prometheus_client.generate_latest` renders them. Series names are converted per DESIGN.md
(`system.cpu.utilization` → `system_cpu_utilization`), labels are kept (names sanitised).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from infrawatch import __version__
from infrawatch.detect.base import Detector, SeriesState
from infrawatch.logging import get_logger
from infrawatch.model import Labels, SeriesKey, utf8_text
from infrawatch.runtime.latest import Latest, LatestValues
from infrawatch.runtime.queue import BatchQueue
from infrawatch.runtime.stats import AgentStats

log = get_logger("infrawatch.web.exposition")

_INVALID_METRIC_CHARS = re.compile(r"[^a-zA-Z0-9_:]")
_INVALID_LABEL_CHARS = re.compile(r"[^a-zA-Z0-9_]")
_CAMEL_HUMP = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
# Suffixes Prometheus/OpenMetrics reserve for counters, histograms and summaries; a gauge that
# ends in one (`system.processes.count`, a CloudWatch `.sum` statistic) fails `promtool check
# metrics` and confuses PromQL, so it gets `_value` appended.
RESERVED_SUFFIXES = ("_count", "_sum", "_bucket", "_total", "_created")


def _snake(name: str) -> str:
    # CloudWatch-style CamelCase (InstanceId) becomes snake_case (instance_id), as promtool wants.
    return _CAMEL_HUMP.sub("_", name).lower() if any(c.isupper() for c in name) else name


@functools.lru_cache(maxsize=4096)
def metric_name(dotted: str) -> str:
    """A series name as a Prometheus name: `system.cpu.utilization` → `system_cpu_utilization`."""
    name = _snake(_INVALID_METRIC_CHARS.sub("_", dotted))
    if not name or name[0].isdigit():
        name = f"_{name}"
    return f"{name}_value" if name.endswith(RESERVED_SUFFIXES) else name


@functools.lru_cache(maxsize=4096)
def label_name(key: str) -> str:
    """A label key as a valid Prometheus label name (`__` prefixes are reserved, so renamed)."""
    name = _snake(_INVALID_LABEL_CHARS.sub("_", key))
    if not name or name[0].isdigit():
        name = f"_{name}"
    return f"exported{name}" if name.startswith("__") else name


def prom_labels(labels: Labels, reserved: Iterable[str] = ()) -> dict[str, str]:
    """Series labels as a Prometheus label dict; a key clashing with `reserved` gets `exported_`."""
    out: dict[str, str] = {}
    for key, value in labels:
        name = label_name(key)
        if name in reserved:
            name = f"exported_{name}"
        out[name] = utf8_text(value)
    return out


# -- the alerting hook -----------------------------------------------------------------------
# The alerter is built by another issue. It may offer either method below; each is read
# defensively (missing method → no metrics; attributes read with getattr), so /metrics works
# with whatever alerter is installed.


@dataclass(frozen=True, slots=True)
class SinkCounters:
    """Notification counts of one sink: sent and failed since start, pending in the outbox."""

    sink: str
    sent: int = 0
    failed: int = 0
    pending: int = 0


@dataclass(frozen=True, slots=True)
class AlertView:
    """One alert as /metrics shows it (like Prometheus' ALERTS): state is firing or pending."""

    alertname: str
    state: str
    labels: Labels = ()


class AlertingMetrics(Protocol):
    """What an alerter implements to appear in /metrics (both optional, duck-typed)."""

    def sink_counters(self) -> Iterable[SinkCounters]:
        """Per-sink notification counters."""
        ...

    def alert_views(self) -> Iterable[AlertView]:
        """Every active (firing or pending) alert."""
        ...


class AgentView(Protocol):
    """The parts of the agent the collector reads."""

    stats: AgentStats
    queue: BatchQueue
    latest: LatestValues

    @property
    def alerter(self) -> object:
        """The alerter (may implement AlertingMetrics)."""
        ...

    def detectors(self) -> Sequence[Detector]:
        """The detectors currently running."""
        ...

    def buffered_samples(self) -> int:
        """Samples waiting for a database write."""
        ...


def _counter(name: str, doc: str, labels: Sequence[str] = ()) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=list(labels))


def _gauge(name: str, doc: str, labels: Sequence[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels))


@dataclass(slots=True)
class _Snapshot:
    """What one scrape renders, copied on the event loop so rendering can run in a thread."""

    series: list[tuple[SeriesKey, Latest]]
    detectors: list[tuple[str, list[tuple[SeriesKey, SeriesState]]]]
    fixed: list[Metric]  # alerting and self-metrics: few, built on the loop


_Converted = tuple[str, dict[str, str], tuple[str, tuple[tuple[str, str], ...]]]


class AgentCollector(Collector):
    """Yields the series, detector states, alert states and self-metrics at scrape time.

    `snapshot()` (on the event loop) copies the live state; `collect()` turns the copy into
    metric families and may run in a worker thread. Converted names and label sets are cached
    per series, so a scrape of an unchanged series set does no string work beyond formatting.
    """

    def __init__(self, agent: AgentView, detector_states: str = "all") -> None:
        self._agent = agent
        self.detector_states = detector_states
        self._warned: set[str] = set()
        self._snap: _Snapshot | None = None
        self._converted: dict[SeriesKey, _Converted] = {}
        self._detector_labels: dict[tuple[str, SeriesKey], dict[str, str]] = {}

    def snapshot(self) -> None:
        """Copy the agent's state for the next `collect` (call on the event loop)."""
        detectors = []
        for detector in self._agent.detectors() if self.detector_states != "off" else ():
            try:
                states = detector.states().items()
                if self.detector_states == "anomalous":
                    detectors.append((detector.name, [(k, v) for k, v in states if v.anomalous]))
                else:
                    detectors.append((detector.name, list(states)))
            except Exception as exc:
                self._warn_once(f"detector:{detector.name}", exc)
        self._snap = _Snapshot(
            series=list(self._agent.latest.items()),
            detectors=detectors,
            fixed=[*self._alerting(), *self._self_metrics()],
        )

    def collect(self) -> Iterable[Metric]:
        """Every metric family, from the last snapshot (taken now if there is none)."""
        if self._snap is None:
            self.snapshot()
        snap, self._snap = self._snap, None
        assert snap is not None
        yield from self._series(snap.series)
        yield from self._detector_states(snap.detectors)
        yield from snap.fixed

    def describe(self) -> Iterable[Metric]:
        """Nothing: the series set is dynamic, so the registry must not pre-check names."""
        return []

    # -- series --------------------------------------------------------------------------------

    def _convert(self, key: SeriesKey) -> _Converted:
        converted = self._converted.get(key)
        if converted is None:
            prom = metric_name(key[0])
            label_dict = prom_labels(key[1])
            converted = (prom, label_dict, (prom, tuple(label_dict.items())))
            self._converted[key] = converted
        return converted

    def _series(self, series: list[tuple[SeriesKey, Latest]]) -> Iterator[Metric]:
        if len(self._converted) > 2 * len(series) + 1000:
            # Series come and go (processes): keep the cache to the live set.
            self._converted = {k: self._converted[k] for k, _ in series if k in self._converted}
        families: dict[str, GaugeMetricFamily] = {}
        seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        for key, latest in series:
            prom, label_dict, ident = self._convert(key)
            if prom.startswith("infrawatch_"):
                continue  # reserved for the self-metrics; a clash would break the scrape
            if ident in seen:
                continue  # two dotted names sanitised to one series: keep the first
            seen.add(ident)
            family = families.get(prom)
            if family is None:
                help_text = f"infrawatch series {utf8_text(key[0])}"
                family = families[prom] = GaugeMetricFamily(prom, help_text)
            family.add_sample(prom, label_dict, latest.value)
        yield from families.values()

    def _detector_states(
        self, detectors: list[tuple[str, list[tuple[SeriesKey, SeriesState]]]]
    ) -> Iterator[Metric]:
        # Per series and detector: the decision, the calibrated score (0.5 = firing point, what
        # detectors combine by maximum) and the statistic behind it (z). Many-series agents can
        # keep scrapes small with http.detector_states = "anomalous".
        anomalous = _gauge(
            "infrawatch_detector_anomalous", "1 while the detector finds the series anomalous"
        )
        score = _gauge(
            "infrawatch_detector_score",
            "Calibrated anomaly score in [0, 1]; 0.5 is the detector's firing point",
        )
        statistic = _gauge(
            "infrawatch_detector_statistic",
            "The detector's own statistic per series (z for zscore, exceedance for novelty)",
        )
        total = sum(len(states) for _, states in detectors)
        if len(self._detector_labels) > 2 * total + 1000:
            self._detector_labels = {}
        cache = self._detector_labels
        for name, states in detectors:
            for key, state in states:
                label_dict = cache.get((name, key))
                if label_dict is None:
                    label_dict = cache[(name, key)] = {
                        "detector": name,
                        "metric": metric_name(key[0]),
                        **prom_labels(key[1], ("detector", "metric")),
                    }
                anomalous.add_sample(anomalous.name, label_dict, 1.0 if state.anomalous else 0.0)
                score.add_sample(score.name, label_dict, state.score)
                if state.value is not None:
                    statistic.add_sample(statistic.name, label_dict, state.value)
        yield from (anomalous, score, statistic)

    # -- alerting ------------------------------------------------------------------------------

    def _call(self, method: str) -> list[Any]:
        fn = getattr(self._agent.alerter, method, None)
        if not callable(fn):
            return []
        try:
            return list(fn())
        except Exception as exc:
            self._warn_once(f"alerter:{method}", exc)
            return []

    def _alerting(self) -> list[Metric]:
        sent = _counter(
            "infrawatch_alert_notifications_sent", "Notifications delivered per sink", ["sink"]
        )
        failed = _counter(
            "infrawatch_alert_notifications_failed",
            "Notifications given up on after retries per sink",
            ["sink"],
        )
        pending = _gauge(
            "infrawatch_alert_notifications_pending",
            "Notifications waiting in the outbox per sink",
            ["sink"],
        )
        for sink in self._call("sink_counters"):
            name = str(getattr(sink, "sink", "?"))
            sent.add_metric([name], float(getattr(sink, "sent", 0)))
            failed.add_metric([name], float(getattr(sink, "failed", 0)))
            pending.add_metric([name], float(getattr(sink, "pending", 0)))
        alerts = _gauge(
            "infrawatch_alerts",
            "Active alerts, like Prometheus' ALERTS: 1 per alert and state",
        )
        for alert in self._call("alert_views"):
            label_dict = {
                "alertname": str(getattr(alert, "alertname", "?")),
                "alertstate": str(getattr(alert, "state", "firing")),
                **prom_labels(getattr(alert, "labels", ()), ("alertname", "alertstate")),
            }
            alerts.add_sample(alerts.name, label_dict, 1.0)
        peer_up = _gauge(
            "infrawatch_alertmanager_peer_up",
            "1 while the Alertmanager HA peer accepts posts, 0 while it is down",
            ["sink", "peer"],
        )
        peer_failures = _counter(
            "infrawatch_alertmanager_peer_failures",
            "Posts an Alertmanager HA peer did not accept",
            ["sink", "peer"],
        )
        for sink_name, sink_stats in self._agent.stats.alert_sinks.items():
            for peer, peer_stats in sink_stats.peers.items():
                peer_up.add_metric([sink_name, peer], 0.0 if peer_stats.down else 1.0)
                peer_failures.add_metric([sink_name, peer], float(peer_stats.failures))
        return [sent, failed, pending, alerts, peer_up, peer_failures]

    # -- self-metrics --------------------------------------------------------------------------

    def _self_metrics(self) -> Iterator[Metric]:
        stats = self._agent.stats
        per = ["producer"]
        collected = _counter("infrawatch_samples_collected", "Samples produced per producer", per)
        stored = _counter("infrawatch_samples_stored", "Samples persisted per producer", per)
        dropped = _counter(
            "infrawatch_samples_dropped",
            "Samples dropped: full queue (per producer) or full storage buffer",
            ["producer", "reason"],
        )
        errors = _counter("infrawatch_collector_errors", "Failed collections per producer", per)
        ticks = _counter("infrawatch_producer_ticks", "Collections run per producer", per)
        missed = _counter(
            "infrawatch_producer_missed_ticks", "Ticks skipped because a collection overran", per
        )
        last_success = _gauge(
            "infrawatch_producer_last_success_timestamp_seconds",
            "When the producer last collected successfully (epoch seconds)",
            per,
        )
        interval = _gauge(
            "infrawatch_producer_interval_seconds", "Seconds between collections", per
        )
        failing = _gauge(
            "infrawatch_producer_consecutive_failures", "Failed collections in a row", per
        )
        for name, p in sorted(stats.producers.items()):
            collected.add_metric([name], p.collected)
            stored.add_metric([name], p.stored)
            dropped.add_metric([name, "queue_full"], p.dropped)
            errors.add_metric([name], p.errors)
            ticks.add_metric([name], p.ticks)
            missed.add_metric([name], p.missed_ticks)
            interval.add_metric([name], p.interval)
            failing.add_metric([name], p.consecutive_failures)
            if p.last_success is not None:
                last_success.add_metric([name], p.last_success)
        dropped.add_metric(["", "store_buffer"], stats.store_dropped)
        yield from (collected, stored, dropped, errors, ticks, missed, last_success, interval)
        yield failing

        queue = self._agent.queue
        yield GaugeMetricFamily(
            "infrawatch_queue_batches", "Batches waiting in the queue", queue.qsize()
        )
        yield GaugeMetricFamily(
            "infrawatch_queue_samples", "Samples waiting in the queue", queue.pending_samples()
        )
        yield GaugeMetricFamily(
            "infrawatch_store_buffered_samples",
            "Samples waiting for a database write after storage errors",
            self._agent.buffered_samples(),
        )
        yield CounterMetricFamily("infrawatch_batches", "Batches processed", stats.batches)
        yield CounterMetricFamily("infrawatch_anomalies", "Anomaly state changes", stats.anomalies)
        yield CounterMetricFamily(
            "infrawatch_store_errors", "Failed database writes", stats.store_errors
        )
        yield self._latency(stats)
        yield GaugeMetricFamily(
            "infrawatch_series", "Live series (shown above)", len(self._agent.latest)
        )
        yield CounterMetricFamily(
            "infrawatch_series_expired",
            "Series that stopped reporting and were dropped",
            self._agent.latest.expired,
        )
        ready = stats.store_open and stats.first_batch_stored
        yield GaugeMetricFamily(
            "infrawatch_ready", "1 once the store is open and a batch is stored", float(ready)
        )
        info = GaugeMetricFamily("infrawatch_build_info", "Agent version", labels=["version"])
        info.add_metric([__version__], 1.0)
        yield info

    @staticmethod
    def _latency(stats: AgentStats) -> HistogramMetricFamily:
        hist = stats.batch_latency
        buckets: list[tuple[str, float]] = []
        cumulative = 0
        for bound, count in zip(hist.buckets, hist.counts, strict=False):
            cumulative += count
            buckets.append((floatToGoString(bound), cumulative))  # type: ignore[no-untyped-call]
        buckets.append(("+Inf", hist.count))
        return HistogramMetricFamily(
            "infrawatch_batch_duration_seconds",
            "Seconds to detect, store and alert on one batch",
            buckets=buckets,
            sum_value=hist.total,
        )

    def _warn_once(self, what: str, exc: Exception) -> None:
        # A broken source must not break the scrape; say so once, not on every scrape.
        if what not in self._warned:
            self._warned.add(what)
            log.error("metrics.source_failed", source=what, error=f"{type(exc).__name__}: {exc}")
