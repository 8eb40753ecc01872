"""The latest value of every series, for /metrics; series that stop reporting expire.

A series is refreshed each time its producer reports it. One that is not refreshed within
`EXPIRY_FACTOR` of its usual cadence (plus one producer interval of slack) has gone away — a
process exited, an instance was terminated — and is dropped, so it disappears from /metrics too.
The cadence is learned per (producer, metric name), because some names (the top processes) are
reported less often than their producer ticks; until a name has been reported twice its cadence
is unknown and its series do not expire (a process that exits before the next scan is dropped
at the scan after it, once the cadence is known).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from infrawatch.model import Sample, SeriesKey
from infrawatch.runtime.stats import AgentStats

EXPIRY_FACTOR = 3.0  # missed refreshes before a series counts as gone
SWEEP_EVERY = 5.0  # seconds between expiry sweeps driven by updates (scrapes also sweep)
DEFAULT_INTERVAL = 10.0  # seconds, for a producer the stats don't know yet


@dataclass(slots=True)
class Latest:
    """One series' newest value: `ts` is the sample's epoch time, `seen` monotonic seconds."""

    value: float
    ts: float
    producer: str
    seen: float


@dataclass(slots=True)
class _Cadence:
    last: float  # monotonic seconds of the last batch carrying the name
    gap: float | None = None  # seconds between the last two such batches (None: seen once)


class LatestValues:
    """Newest value per series, fed by the pipeline, read by the /metrics collector."""

    def __init__(
        self,
        stats: AgentStats,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_expire: Callable[[SeriesKey], None] | None = None,
    ) -> None:
        self._stats = stats
        self._series: dict[SeriesKey, Latest] = {}
        self._cadence: dict[tuple[str, str], _Cadence] = {}
        self._clock = clock
        self._next_sweep = 0.0
        self.on_expire = on_expire
        self.expired = 0  # series dropped since start

    def __len__(self) -> int:
        return len(self._series)

    def _interval(self, producer: str) -> float:
        stats = self._stats.producers.get(producer)
        return stats.interval if stats is not None and stats.interval > 0 else DEFAULT_INTERVAL

    def update(self, producer: str, samples: Iterable[Sample]) -> None:
        """Record the samples one producer reported (the newest timestamp wins per series)."""
        now = self._clock()
        series = self._series
        names: set[str] = set()
        for sample in samples:
            key = sample.key
            names.add(sample.name)
            old = series.get(key)
            if old is None:
                series[key] = Latest(sample.value, sample.ts, producer, now)
            elif sample.ts >= old.ts:
                old.value, old.ts, old.producer, old.seen = sample.value, sample.ts, producer, now
        for name in names:
            cadence = self._cadence.get((producer, name))
            if cadence is None:
                self._cadence[(producer, name)] = _Cadence(now)
            elif now > cadence.last:
                cadence.gap, cadence.last = now - cadence.last, now
        if now >= self._next_sweep:
            self.sweep()

    def _deadline(self, key: SeriesKey, entry: Latest) -> float | None:
        stats = self._stats.producers.get(entry.producer)
        ttl = stats.series_ttl if stats is not None else 0.0
        cadence = self._cadence.get((entry.producer, key[0]))
        if cadence is None or cadence.gap is None:
            return entry.seen + ttl if ttl > 0 else None
        interval = self._interval(entry.producer)
        learned = entry.seen + EXPIRY_FACTOR * max(cadence.gap, interval) + interval
        # The producer's floor keeps sparsely reported series (CloudWatch basic monitoring
        # beside detailed) from expiring, and losing their detector state, between reports.
        return max(learned, entry.seen + ttl)

    def sweep(self) -> int:
        """Drop every series not refreshed in time; return how many went away."""
        now = self._clock()
        self._next_sweep = now + SWEEP_EVERY
        gone = []
        for key, entry in self._series.items():
            deadline = self._deadline(key, entry)
            if deadline is not None and now > deadline:
                gone.append(key)
        for key in gone:
            del self._series[key]
            if self.on_expire is not None:
                self.on_expire(key)
        self.expired += len(gone)
        return len(gone)

    def items(self) -> Iterator[tuple[SeriesKey, Latest]]:
        """Every live series and its newest value (after dropping the expired ones)."""
        self.sweep()
        return iter(list(self._series.items()))

    def get(self, key: SeriesKey) -> Latest | None:
        """The newest value of `key`, if the series is live."""
        return self._series.get(key)
