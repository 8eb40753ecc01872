"""What /api/v1 reads of the running agent: read-only Protocols the runtime implements."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from infrawatch.alerting import silences as sil
from infrawatch.detect.base import Detector
from infrawatch.detect.config import ThresholdRule
from infrawatch.model import SeriesKey
from infrawatch.runtime.latest import Latest
from infrawatch.runtime.stats import AgentStats


class QueueDepthView(Protocol):
    """Batches waiting in the producer → pipeline queue."""

    @property
    def batches(self) -> int:
        """Batches waiting."""
        ...


class ActiveAlert(Protocol):
    """One alert the alerting engine holds, as /metrics reads it (`AlertRecord` has these)."""

    @property
    def fingerprint(self) -> str:
        """Stable hash of the alert's labels."""
        ...

    @property
    def labels(self) -> Mapping[str, str]:
        """`alertname`, `metric`, `severity` and the series' labels."""
        ...

    @property
    def severity(self) -> str:
        """`warning` or `critical`."""
        ...

    @property
    def state(self) -> str:
        """`firing` or `resolved`."""
        ...

    @property
    def starts_at(self) -> float:
        """Epoch seconds it started firing."""
        ...


class AlertEntry(ActiveAlert, Protocol):
    """The same alert as /api/v1 reads it: also its evidence, its end and its notifications."""

    @property
    def annotations(self) -> Mapping[str, str]:
        """`summary` (the evidence in words), value, detector, score, `evidence_*`."""
        ...

    @property
    def ends_at(self) -> float | None:
        """Epoch seconds it resolved (None while firing)."""
        ...

    @property
    def last_notified_at(self) -> float | None:
        """Epoch seconds of the last notification about it."""
        ...

    @property
    def flapping(self) -> bool:
        """Whether flap damping holds its state changes back."""
        ...


@runtime_checkable
class Banded(Protocol):
    """A detector that can say which values it currently expects (zscore, novelty)."""

    def band(self, key: SeriesKey) -> tuple[float, float, str] | None:
        """(lower, upper, text) of the expected values of `key`, or None if it has none yet."""
        ...


class ApiSource(Protocol):
    """What /api/v1 reads of the running agent; every member only reads."""

    @property
    def host(self) -> str:
        """The host name shown in the page's header."""
        ...

    @property
    def version(self) -> str:
        """infrawatch's version."""
        ...

    @property
    def started(self) -> float:
        """When the agent started, epoch seconds."""
        ...

    @property
    def database(self) -> Path:
        """The SQLite database the agent writes (only its file name is ever shown)."""
        ...

    @property
    def stats(self) -> AgentStats:
        """The agent's counters: producers, storage, alert sinks."""
        ...

    def producer_intervals(self) -> Mapping[str, float]:
        """Seconds between ticks per producer, as running now."""
        ...

    def producer_health(self) -> Mapping[str, bool]:
        """Per producer, whether it finished a tick in time (what /healthz reports)."""
        ...

    def queue_depth(self) -> QueueDepthView:
        """What waits for the pipeline."""
        ...

    def queue_capacity(self) -> int:
        """Batches the queue holds before it drops."""
        ...

    def latest_values(self) -> Iterable[tuple[SeriesKey, Latest]]:
        """Every live series and its newest value."""
        ...

    def detectors(self) -> Sequence[Detector]:
        """The detectors running now."""
        ...

    def threshold_rules(self) -> Sequence[ThresholdRule]:
        """The threshold rules in force now."""
        ...

    def alert_records(self) -> Iterable[AlertEntry]:
        """Every alert the engine holds: firing, and resolved ones it still remembers."""
        ...

    def silenced(self, labels: Mapping[str, str]) -> bool:
        """Whether an active silence matches an alert with `labels`."""
        ...


@runtime_checkable
class SilenceSource(Protocol):
    """A source that knows the config file's silences (the database's are read from it)."""

    def config_silences(self) -> Sequence[sil.SilenceRecord]:
        """`[[alerting.silences]]` in force now, ids `config-N`."""
        ...
