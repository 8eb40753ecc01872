"""The latest value of every series, for /metrics; series that stop reporting expire.

A series is refreshed each time its producer reports it. One that is not refreshed within
`EXPIRY_FACTOR` of its usual cadence (plus one producer interval of slack) has gone away — a
process exited, an instance was terminated — and is dropped, so it disappears from /metrics too.
The cadence is learned per (producer, metric name), because some names (the top processes) are
reported less often than their producer ticks; until a name has been reported twice its cadence
is unknown and its series do not expire (a process that exits before the next scan is dropped
at the scan after it, once the cadence is known).

Expiry has one owner: `run`, a timer the agent starts. An update only records, and a read
(/metrics) only reads: expiring a series changes detector state, alert state and the store's
cache (`on_expire`), which neither a scrape nor the arrival of an unrelated batch should do,
and a timer expires series even when no batch arrives at all.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

from infrawatch.logging import at_doubling, describe, get_logger
from infrawatch.model import Sample, SeriesKey
from infrawatch.runtime.producer import Timing

log = get_logger("infrawatch.runtime.latest")

EXPIRY_FACTOR = 3.0  # missed refreshes before a series counts as gone
SWEEP_EVERY = 5.0  # seconds between expiry sweeps at most
MIN_SWEEP_EVERY = 0.05  # seconds between sweeps at least, however fast a producer ticks
DEFAULT_INTERVAL = 10.0  # seconds, for a producer without a known timing


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
    """Newest value per series, fed by the pipeline, read by the /metrics collector, expired
    by its own timer (`run`); `timings` maps each producer to its interval and series TTL."""

    def __init__(
        self,
        timings: Mapping[str, Timing] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_expire: Callable[[SeriesKey], None] | None = None,
    ) -> None:
        # Read at every sweep, not copied: the agent keeps it current when a reload changes an
        # interval.
        self._timings: Mapping[str, Timing] = timings if timings is not None else {}
        self._series: dict[SeriesKey, Latest] = {}
        self._cadence: dict[tuple[str, str], _Cadence] = {}
        self._clock = clock
        self.on_expire = on_expire
        self.expired = 0  # series dropped since start
        self._expire_failures = 0

    def __len__(self) -> int:
        return len(self._series)

    def _interval(self, producer: str) -> float:
        timing = self._timings.get(producer)
        return timing.interval if timing is not None and timing.interval > 0 else DEFAULT_INTERVAL

    def update(self, producer: str, samples: Iterable[Sample]) -> None:
        """Record the samples one producer reported (the newest timestamp wins per series).

        Only records: a batch of one series must not expire another (that is `run`'s job)."""
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

    def _deadline(self, key: SeriesKey, entry: Latest) -> float | None:
        timing = self._timings.get(entry.producer)
        ttl = timing.series_ttl if timing is not None else 0.0
        cadence = self._cadence.get((entry.producer, key[0]))
        if cadence is None or cadence.gap is None:
            return entry.seen + ttl if ttl > 0 else None
        interval = self._interval(entry.producer)
        learned = entry.seen + EXPIRY_FACTOR * max(cadence.gap, interval) + interval
        # The producer's floor keeps sparsely reported series (CloudWatch basic monitoring
        # beside detailed) from expiring, and losing their detector state, between reports.
        return max(learned, entry.seen + ttl)

    def sweep_every(self) -> float:
        """Seconds between sweeps: the fastest producer's interval, within the bounds."""
        fastest = min((t.interval for t in self._timings.values()), default=SWEEP_EVERY)
        return min(SWEEP_EVERY, max(MIN_SWEEP_EVERY, fastest))

    async def run(self) -> None:
        """Sweep on a timer until cancelled: the one place series expire."""
        while True:
            await asyncio.sleep(self.sweep_every())
            self.sweep()

    def sweep(self) -> int:
        """Drop every series not refreshed in time; return how many went away."""
        now = self._clock()
        gone = []
        for key, entry in self._series.items():
            deadline = self._deadline(key, entry)
            if deadline is not None and now > deadline:
                gone.append(key)
        for key in gone:
            del self._series[key]
            self.expired += 1
            if self.on_expire is not None:
                self._forget(key, self.on_expire)
        return len(gone)

    def _forget(self, key: SeriesKey, on_expire: Callable[[SeriesKey], None]) -> None:
        try:
            on_expire(key)
        except Exception as exc:
            # A bug in one consumer's clean-up must not stop the timer that expires the rest.
            self._expire_failures += 1
            if at_doubling(self._expire_failures):
                log.error(
                    "series.expire_failed",
                    metric=key[0],
                    error=describe(exc),
                    failures=self._expire_failures,
                )

    def items(self) -> Iterator[tuple[SeriesKey, Latest]]:
        """Every live series and its newest value (a read: nothing expires here)."""
        return iter(list(self._series.items()))

    def get(self, key: SeriesKey) -> Latest | None:
        """The newest value of `key`, if the series is live."""
        return self._series.get(key)
