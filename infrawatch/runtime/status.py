"""The running agent as the web package reads it: an `infrawatch.web.view.AgentView`.

Built from the agent's parts, not the agent, so the server can read them and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from infrawatch.alerting.engine import AlertRecord
from infrawatch.alerting.service import AlertService
from infrawatch.detect.base import Detector
from infrawatch.model import SeriesKey
from infrawatch.runtime.latest import Latest, LatestValues
from infrawatch.runtime.pipeline import Pipeline
from infrawatch.runtime.producer import Producer
from infrawatch.runtime.queue import BatchQueue
from infrawatch.runtime.reload import Reloader
from infrawatch.runtime.stats import AgentStats
from infrawatch.web.view import QueueDepth


class StatusView:
    """Read-only access to the agent's state for /metrics, the probes and the status page."""

    def __init__(
        self,
        stats: AgentStats,
        queue: BatchQueue,
        latest: LatestValues,
        producers: Sequence[Producer],
        *,
        pipeline: Pipeline | None = None,
        alerts: AlertService | None = None,
        reloader: Reloader | None = None,
    ) -> None:
        self._stats = stats
        self._queue = queue
        self._latest = latest
        self._producers = list(producers)
        self._pipeline = pipeline
        self._alerts = alerts
        self._reloader = reloader

    @property
    def stats(self) -> AgentStats:
        """The agent's counters."""
        return self._stats

    def producer_intervals(self) -> Mapping[str, float]:
        """Seconds between ticks per producer, read live (a reload changes them in place)."""
        return {p.name: p.interval for p in self._producers}

    def queue_depth(self) -> QueueDepth:
        """Batches and samples waiting for the pipeline."""
        return QueueDepth(self._queue.qsize(), self._queue.pending_samples())

    def latest_values(self) -> Iterator[tuple[SeriesKey, Latest]]:
        """Every live series and its newest value."""
        return self._latest.items()

    def series_expired(self) -> int:
        """Series dropped since start because they stopped reporting."""
        return self._latest.expired

    def detectors(self) -> Sequence[Detector]:
        """The pipeline's current detectors (a reload replaces them)."""
        return self._pipeline.detectors if self._pipeline is not None else ()

    def buffered_samples(self) -> int:
        """Samples waiting for a database write after storage errors."""
        return self._pipeline.pending_samples if self._pipeline is not None else 0

    def active_alerts(self) -> Sequence[AlertRecord]:
        """Alerts firing now (flapping ones included)."""
        return self._alerts.active_alerts() if self._alerts is not None else ()

    def reloads(self) -> int:
        """Configuration reloads attempted since start."""
        return self._reloader.reloads if self._reloader is not None else 0
