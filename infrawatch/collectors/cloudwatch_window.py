"""The aligned time window a CloudWatch cycle reads, and the memory that emits each
(series, timestamp) once although every cycle re-reads the look-back."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from infrawatch.model import SeriesKey


def window(now: float, period: int, lookback: float, delay: float) -> tuple[int, int]:
    """The aligned [start, end) epoch-second window of complete periods one cycle reads."""
    end = math.floor((now - delay) / period) * period
    start = end - math.ceil(lookback / period) * period
    return start, end


class EmittedTimestamps:
    """Per series, the timestamps inside the look-back window that were already emitted.

    A per-series "last emitted timestamp" would drop a late point whose period is older than one
    already emitted for the same series (an out-of-order or unevenly delayed publish); a set
    bounded by the window (lookback / period entries per series) keeps those and still emits
    each (series, timestamp) once.
    """

    def __init__(self) -> None:
        self._seen: dict[SeriesKey, set[float]] = {}

    def __len__(self) -> int:
        return sum(len(s) for s in self._seen.values())

    def check(self, key: SeriesKey, ts: float) -> str:
        """'new' (newest for the series), 'late' (new, but older than one emitted) or 'seen'."""
        seen = self._seen.get(key)
        if seen is None:
            return "new"
        if ts in seen:
            return "seen"
        return "late" if seen and ts < max(seen) else "new"

    def mark(self, key: SeriesKey, ts: float) -> None:
        """Remember that (key, ts) was emitted."""
        self._seen.setdefault(key, set()).add(ts)

    def seed(self, emitted: Mapping[SeriesKey, Iterable[float]]) -> None:
        """Remember timestamps (epoch seconds) emitted before, e.g. by the run before a restart."""
        for key, stamps in emitted.items():
            self._seen.setdefault(key, set()).update(float(t) for t in stamps)

    def prune(self, start: float, live: set[SeriesKey]) -> None:
        """Forget timestamps before `start` (never read again) and series no longer queried."""
        for key in list(self._seen):
            if key not in live:
                del self._seen[key]
                continue
            kept = {t for t in self._seen[key] if t >= start}
            if kept:
                self._seen[key] = kept
            else:
                del self._seen[key]
