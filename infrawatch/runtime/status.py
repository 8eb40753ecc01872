"""The running agent as the web package reads it: an `infrawatch.web.view.StatusSource`.

Built from the agent's parts, not the agent, so the server can read them and nothing else. One
object serves /metrics, the probes and /api/v1 (the page).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from infrawatch import __version__
from infrawatch.alerting.records import AlertRecord
from infrawatch.alerting.service import AlertService
from infrawatch.alerting.silences import SilenceRecord, config_silences
from infrawatch.detect.base import Detector
from infrawatch.detect.config import ThresholdRule
from infrawatch.model import SeriesKey
from infrawatch.runtime.latest import Latest, LatestValues
from infrawatch.runtime.pipeline import Pipeline
from infrawatch.runtime.producer import Producer
from infrawatch.runtime.queue import BatchQueue
from infrawatch.runtime.reload import Reloader
from infrawatch.runtime.stats import AgentStats
from infrawatch.web.server import health_report
from infrawatch.web.view import QueueDepth


class StatusView:
    """Read-only access to the agent's state for /metrics, the probes, the page and /api/v1.

    The keyword parts default to an agent that has none (tests build the view from a few).
    """

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
        database: Path = Path("infrawatch.db"),
        queue_capacity: int = 0,
        rules: Callable[[], Sequence[ThresholdRule]] = tuple,
        started: float | None = None,
        host: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stats = stats
        self._queue = queue
        self._latest = latest
        # Not copied: the agent adds and removes scrape producers in place (SIGHUP).
        self._producers = producers
        self._pipeline = pipeline
        self._alerts = alerts
        self._reloader = reloader
        self._database = database
        self._queue_capacity = queue_capacity
        self._rules = rules
        self._started = time.time() if started is None else started
        self._host = socket.gethostname() if host is None else host
        self._clock = clock
        self._started_mono = clock()  # what /healthz measures a producer without a tick from

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

    # -- what /api/v1 reads besides --------------------------------------------------------

    @property
    def host(self) -> str:
        """This machine's host name."""
        return self._host

    @property
    def version(self) -> str:
        """infrawatch's version."""
        return __version__

    @property
    def started(self) -> float:
        """When the agent started, epoch seconds."""
        return self._started

    @property
    def database(self) -> Path:
        """The database the agent writes (the API shows its file name only)."""
        return self._database

    def producer_health(self) -> Mapping[str, bool]:
        """Per producer, whether it finished a tick in time, as /healthz judges it."""
        _, body = health_report(
            self._stats, self.producer_intervals(), self._clock(), self._started_mono
        )
        return {name: bool(p["ok"]) for name, p in body["producers"].items()}

    def queue_capacity(self) -> int:
        """Batches the producer queue holds before it drops."""
        return self._queue_capacity

    def threshold_rules(self) -> Sequence[ThresholdRule]:
        """The threshold rules in force (a reload replaces them)."""
        return self._rules()

    def alert_records(self) -> Sequence[AlertRecord]:
        """Every alert the engine holds: firing, and resolved ones it still remembers."""
        if self._alerts is None:
            return ()
        return list(self._alerts.engine.alerts.values())

    def silenced(self, labels: Mapping[str, str]) -> bool:
        """Whether a silence (config file or `infrawatch silence`) mutes `labels` now."""
        if self._alerts is None:
            return False
        now = time.time()
        return any(s.active(labels, now) for s in self._alerts.engine.silences)

    def config_silences(self) -> Sequence[SilenceRecord]:
        """`[[alerting.silences]]` of the running alerter (`/api/v1/silences` lists them)."""
        return config_silences(self._alerts.cfg) if self._alerts is not None else ()
