"""What the web package may read of the running agent: a narrow, read-only view.

`HttpServer` and the /metrics collector are given an `AgentView`, never the agent itself, so
they can read its state but not change it, and `web/` never imports `runtime/agent.py` (the
agent builds the server; a server that reached back into the agent made an import cycle). The
runtime implements the view (`runtime/status.py`); tests can build one from plain parts.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import NamedTuple, Protocol

from infrawatch.detect.base import Detector
from infrawatch.model import SeriesKey
from infrawatch.runtime.latest import Latest
from infrawatch.runtime.stats import AgentStats
from infrawatch.web.api_source import ActiveAlert, ApiSource


class QueueDepth(NamedTuple):
    """What waits in the producer → pipeline queue right now."""

    batches: int
    samples: int


class AgentView(Protocol):
    """Everything /metrics, /healthz and /readyz read.

    Each member only reads: nothing reached through the view is meant to be changed.
    """

    @property
    def stats(self) -> AgentStats:
        """The agent's counters: producers, pipeline, storage, alert sinks, readiness."""
        ...

    def producer_intervals(self) -> Mapping[str, float]:
        """Seconds between ticks per producer, as running now (a reload can change them)."""
        ...

    def queue_depth(self) -> QueueDepth:
        """Batches and samples waiting for the pipeline."""
        ...

    def latest_values(self) -> Iterator[tuple[SeriesKey, Latest]]:
        """Every live series and its newest value."""
        ...

    def series_expired(self) -> int:
        """Series dropped since start because they stopped reporting."""
        ...

    def detectors(self) -> Sequence[Detector]:
        """The detectors running now (none before start-up)."""
        ...

    def buffered_samples(self) -> int:
        """Samples accepted but waiting for a database write (after storage errors)."""
        ...

    def active_alerts(self) -> Sequence[ActiveAlert]:
        """Alerts firing now."""
        ...

    def reloads(self) -> int:
        """Configuration reloads attempted since start (SIGHUP), valid or not."""
        ...


class StatusSource(AgentView, ApiSource, Protocol):
    """What the HTTP server reads: the probes' and /metrics' view and the /api/v1 source."""

    def latest_values(self) -> Iterator[tuple[SeriesKey, Latest]]:
        """Every live series and its newest value."""
        ...
