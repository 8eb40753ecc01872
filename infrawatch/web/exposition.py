"""What /metrics shows: a prometheus-client Collector over the agent's live state.

Nothing here formats exposition text by hand: the collector yields metric families and
`prometheus_client.generate_latest` renders them. Series names and label keys become
Prometheus names through `infrawatch.names` (the mapping remote-write shares); labels are kept.
The collector reads the agent only through an `AgentView`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from infrawatch import __version__
from infrawatch.detect.base import StateRow, state_rows_of
from infrawatch.logging import describe as describe_error
from infrawatch.logging import get_logger
from infrawatch.model import SeriesKey, make_labels, utf8_text

# Re-exported: the mapping moved to infrawatch.names, shared with remote-write.
from infrawatch.names import label_name as label_name
from infrawatch.names import metric_name as metric_name
from infrawatch.names import prom_labels
from infrawatch.runtime.latest import Latest
from infrawatch.runtime.stats import AgentStats, Histogram
from infrawatch.web.api_source import ActiveAlert
from infrawatch.web.view import AgentView

log = get_logger("infrawatch.web.exposition")


def _counter(name: str, doc: str, labels: Sequence[str] = ()) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=list(labels))


def _gauge(name: str, doc: str, labels: Sequence[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels))


@dataclass(slots=True)
class _Snapshot:
    """What one scrape renders, copied on the event loop so rendering can run in a thread."""

    series: list[tuple[SeriesKey, Latest]]
    detectors: list[tuple[str, list[tuple[SeriesKey, StateRow]]]]
    fixed: list[Metric]  # alerting and self-metrics: few, built on the loop


_Converted = tuple[str, dict[str, str], tuple[str, tuple[tuple[str, str], ...]]]


class AgentCollector(Collector):
    """Yields the series, detector states, alert states and self-metrics at scrape time.

    `snapshot()` (on the event loop) copies the live state; `collect()` turns the copy into
    metric families and may run in a worker thread. Converted names and label sets are cached
    per series, so a scrape of an unchanged series set does no string work beyond formatting.
    """

    def __init__(self, view: AgentView, detector_states: str = "all") -> None:
        self._view = view
        self.detector_states = detector_states
        self._warned: set[str] = set()
        self._snap: _Snapshot | None = None
        self._converted: dict[SeriesKey, _Converted] = {}
        self._detector_labels: dict[tuple[str, SeriesKey], dict[str, str]] = {}

    def snapshot(self) -> None:
        """Copy the agent's state for the next `collect` (call on the event loop)."""
        self._snap = self._copy()

    def _copy(self) -> _Snapshot:
        detectors = []
        for detector in self._view.detectors() if self.detector_states != "off" else ():
            try:
                # Tuples, not SeriesState objects: fewer allocations, no full GC collections.
                states = state_rows_of(detector).items()
                if self.detector_states == "anomalous":
                    detectors.append((detector.name, [(k, v) for k, v in states if v[1]]))
                else:
                    detectors.append((detector.name, list(states)))
            except Exception as exc:
                self._warn_once(f"detector:{detector.name}", exc)
        series = list(self._view.latest_values())
        return _Snapshot(
            series=series,
            detectors=detectors,
            fixed=[*self._alerting(), *self._self_metrics(len(series))],
        )

    def collect(self) -> Iterable[Metric]:
        """Every metric family, from the last snapshot (taken now if there is none)."""
        snap = self._snap if self._snap is not None else self._copy()
        self._snap = None
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
            if prom.startswith("infrawatch_"):
                # The self-metrics' namespace (a scraped agent's own series): renamed, as
                # Prometheus renames a clashing label, so both are shown and neither breaks.
                prom = f"exported_{prom}"
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
        self, detectors: list[tuple[str, list[tuple[SeriesKey, StateRow]]]]
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
            for key, (state_score, state_anomalous, state_value) in states:
                label_dict = cache.get((name, key))
                if label_dict is None:
                    label_dict = cache[(name, key)] = {
                        "detector": name,
                        "metric": metric_name(key[0]),
                        **prom_labels(key[1], ("detector", "metric")),
                    }
                anomalous.add_sample(anomalous.name, label_dict, 1.0 if state_anomalous else 0.0)
                score.add_sample(score.name, label_dict, state_score)
                if state_value is not None:
                    statistic.add_sample(statistic.name, label_dict, state_value)
        yield from (anomalous, score, statistic)

    # -- alerting ------------------------------------------------------------------------------

    def _alerting(self) -> list[Metric]:
        per = ["sink"]
        sent = _counter("infrawatch_alert_notifications_sent", "Notifications delivered", per)
        failed = _counter(
            "infrawatch_alert_notifications_failed",
            "Notifications given up on (4xx answer, too many attempts, too old)",
            per,
        )
        pending = _gauge(
            "infrawatch_alert_notifications_pending", "Notifications waiting in the outbox", per
        )
        unrecorded = _gauge(
            "infrawatch_alert_notifications_unrecorded",
            "Notifications delivered or given up on whose outbox row is not yet updated",
            per,
        )
        attempts = _counter(
            "infrawatch_alert_delivery_attempts", "Delivery attempts, retries included", per
        )
        retries = _counter("infrawatch_alert_delivery_retries", "Delivery attempts retried", per)
        rate_limited = _counter(
            "infrawatch_alert_delivery_rate_limited", "Deliveries answered 429 (rate limited)", per
        )
        gone = _gauge(
            "infrawatch_alert_sink_gone",
            "1 once the receiver said the webhook no longer exists (delivery stopped)",
            per,
        )
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
        peer_outages = _counter(
            "infrawatch_alertmanager_peer_outages",
            "Times an Alertmanager HA peer went from up to down",
            ["sink", "peer"],
        )
        for name, sink in sorted(self._view.stats.alert_sinks.items()):
            sent.add_metric([name], sink.sent)
            failed.add_metric([name], sink.failed)
            pending.add_metric([name], sink.pending)
            unrecorded.add_metric([name], sink.unrecorded)
            attempts.add_metric([name], sink.attempts)
            retries.add_metric([name], sink.retries)
            rate_limited.add_metric([name], sink.rate_limited)
            gone.add_metric([name], float(sink.gone))
            for peer, peer_stats in sorted(sink.peers.items()):
                peer_up.add_metric([name, peer], 0.0 if peer_stats.down else 1.0)
                peer_failures.add_metric([name, peer], peer_stats.failures)
                peer_outages.add_metric([name, peer], peer_stats.outages)
        return [
            *(sent, failed, pending, unrecorded, attempts, retries, rate_limited, gone),
            *(peer_up, peer_failures, peer_outages),
            self._alerts(self._view.active_alerts()),
        ]

    @staticmethod
    def _alerts(active: Iterable[ActiveAlert]) -> Metric:
        alerts = _gauge(
            "infrawatch_alerts", "Active alerts, like Prometheus' ALERTS: 1 per alert and state"
        )
        for alert in active:
            labels = alert.labels
            own = make_labels({k: v for k, v in labels.items() if k != "alertname"})
            label_dict = {
                "alertname": utf8_text(labels.get("alertname", "")),
                "alertstate": alert.state,
                **prom_labels(own, ("alertname", "alertstate")),
            }
            alerts.add_sample(alerts.name, label_dict, 1.0)
        return alerts

    # -- self-metrics --------------------------------------------------------------------------

    def _self_metrics(self, series: int) -> Iterator[Metric]:
        view = self._view
        stats = view.stats
        yield from self._producer_metrics(stats, view.producer_intervals())
        yield from self._export_metrics(stats)
        yield from self._scrape_metrics(stats)
        depth = view.queue_depth()
        yield GaugeMetricFamily(
            "infrawatch_queue_batches", "Batches waiting in the queue", depth.batches
        )
        yield GaugeMetricFamily(
            "infrawatch_queue_samples", "Samples waiting in the queue", depth.samples
        )
        yield GaugeMetricFamily(
            "infrawatch_store_buffered_samples",
            "Samples waiting for a database write after storage errors",
            view.buffered_samples(),
        )
        yield CounterMetricFamily("infrawatch_batches", "Batches processed", stats.batches)
        yield CounterMetricFamily("infrawatch_anomalies", "Anomaly state changes", stats.anomalies)
        yield CounterMetricFamily(
            "infrawatch_store_errors", "Failed database writes", stats.store_errors
        )
        yield _histogram(
            "infrawatch_batch_duration_seconds",
            "Seconds to detect, store and alert on one batch",
            {(): stats.batch_latency},
        )
        yield GaugeMetricFamily("infrawatch_series", "Live series (shown above)", series)
        yield CounterMetricFamily(
            "infrawatch_series_expired",
            "Series that stopped reporting and were dropped",
            view.series_expired(),
        )
        yield CounterMetricFamily(
            "infrawatch_config_reloads",
            "Configuration reloads attempted (SIGHUP), valid or not",
            view.reloads(),
        )
        ready = stats.store_open and stats.first_batch_stored
        yield GaugeMetricFamily(
            "infrawatch_ready", "1 once the store is open and a batch is stored", float(ready)
        )
        info = GaugeMetricFamily("infrawatch_build_info", "Agent version", labels=["version"])
        info.add_metric([__version__], 1.0)
        yield info

    @staticmethod
    def _export_metrics(stats: AgentStats) -> Iterator[Metric]:
        # Per [[export]] entry, in samples (export/exporter.py says what each count means).
        per = ["exporter", "type"]
        counters = {
            "sent": _counter(
                "infrawatch_export_samples_sent", "Samples the receiver accepted", per
            ),
            "failed": _counter(
                "infrawatch_export_samples_failed",
                "Samples in attempts that failed and are retried (5xx, 429, timeouts, connection)",
                per,
            ),
            "rejected": _counter(
                "infrawatch_export_samples_rejected",
                "Samples the receiver refused (4xx, partial success, out of order): skipped",
                per,
            ),
            "lost": _counter(
                "infrawatch_export_samples_lost",
                "Samples that aged out of storage.retention before they could be sent",
                per,
            ),
            "requests": _counter(
                "infrawatch_export_requests", "Export requests sent, retries included", per
            ),
        }
        backlog = _gauge("infrawatch_export_backlog_samples", "Samples stored, not yet sent", per)
        lag = _gauge(
            "infrawatch_export_lag_seconds",
            "Age of the next sample to send (0 when caught up)",
            per,
        )
        for name, exporter in sorted(stats.exporters.items()):
            values = [name, exporter.type]
            for attr, family in counters.items():
                family.add_metric(values, getattr(exporter, attr))
            backlog.add_metric(values, exporter.backlog)
            lag.add_metric(values, exporter.lag_seconds)
        yield from (*counters.values(), backlog, lag)

    @staticmethod
    def _producer_metrics(stats: AgentStats, intervals: Mapping[str, float]) -> Iterator[Metric]:
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
        overruns = _counter(
            "infrawatch_producer_tick_overruns",
            "Collections still running when their interval had passed",
            per,
        )
        last_duration = _gauge(
            "infrawatch_producer_last_tick_duration_seconds",
            "How long the producer's last finished collection took",
            per,
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
        durations: dict[tuple[str, ...], Histogram] = {}
        for name, p in sorted(stats.producers.items()):
            collected.add_metric([name], p.collected)
            stored.add_metric([name], p.stored)
            dropped.add_metric([name, "queue_full"], p.dropped)
            errors.add_metric([name], p.errors)
            ticks.add_metric([name], p.ticks)
            missed.add_metric([name], p.missed_ticks)
            overruns.add_metric([name], p.overruns)
            failing.add_metric([name], p.consecutive_failures)
            if p.last_success is not None:
                last_success.add_metric([name], p.last_success)
            if p.last_tick_seconds is not None:
                last_duration.add_metric([name], p.last_tick_seconds)
            durations[(name,)] = p.tick_duration
        for name, seconds in sorted(intervals.items()):
            interval.add_metric([name], seconds)
        dropped.add_metric(["", "store_buffer"], stats.store_dropped)
        yield from (collected, stored, dropped, errors, ticks, missed, overruns, last_duration)
        yield from (last_success, interval, failing)
        yield _histogram(
            "infrawatch_producer_tick_duration_seconds",
            "Seconds one collection took, per producer",
            durations,
            per,
        )

    @staticmethod
    def _scrape_metrics(stats: AgentStats) -> Iterator[Metric]:
        # Per [[scrape]] target (by name); `up` itself is a series above, with job/instance.
        per = ["target"]
        samples = _counter(
            "infrawatch_scrape_samples",
            "Samples in the target's responses, before keep/drop and the series cap",
            per,
        )
        failures = _counter(
            "infrawatch_scrape_failures",
            "Failed scrapes per target and reason",
            ["target", "reason"],
        )
        dropped = _counter(
            "infrawatch_scrape_series_dropped",
            "Series beyond the target's max_series, dropped (summed over scrapes)",
            per,
        )
        series = _gauge(
            "infrawatch_scrape_series",
            "Series in the target's last good scrape, before the cap",
            per,
        )
        for name, target in sorted(stats.scrapes.items()):
            samples.add_metric([name], target.samples)
            dropped.add_metric([name], target.series_dropped)
            series.add_metric([name], target.series)
            for reason, count in sorted(target.failures.items()):
                failures.add_metric([name, reason], count)
        yield from (samples, failures, dropped, series)

    def _warn_once(self, what: str, exc: Exception) -> None:
        # A broken source must not break the scrape; say so once, not on every scrape.
        if what not in self._warned:
            self._warned.add(what)
            log.error("metrics.source_failed", source=what, error=describe_error(exc))


def _histogram(
    name: str,
    doc: str,
    histograms: Mapping[tuple[str, ...], Histogram],
    labels: Sequence[str] = (),
) -> HistogramMetricFamily:
    # The stats keep per-bucket counts; the exposition wants them cumulative.
    family = HistogramMetricFamily(name, doc, labels=list(labels))
    for label_values, hist in histograms.items():
        buckets: list[tuple[str, float]] = []
        cumulative = 0
        for bound, count in zip(hist.buckets, hist.counts, strict=False):
            cumulative += count
            buckets.append((floatToGoString(bound), cumulative))  # type: ignore[no-untyped-call]
        buckets.append(("+Inf", hist.count))
        family.add_metric(list(label_values), buckets, hist.total)
    return family
