"""The comparison baseline: a plain expanding-window Gaussian z-score (like NAB's windowedGaussian).

Running mean and variance of everything seen so far (Welford); score = 1 − 0.5^(|z| / 4), so a
value at the mean scores 0 and one far out scores → 1. No floors, no suppression, no seasonality.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from infrawatch.detect.base import SeriesState
from infrawatch.detect.zscore import score_of
from infrawatch.model import Anomaly, Sample, SeriesKey


class GaussianBaseline:
    """Expanding-window z-score; implements the Detector protocol for bench/nab.py."""

    name = "gaussian"

    def __init__(self) -> None:
        self._stats: dict[SeriesKey, list[float]] = {}  # [n, mean, m2, last score]

    def observe(self, sample: Sample) -> list[Anomaly]:
        """Score the sample against everything before it, then add it."""
        st = self._stats.setdefault(sample.key, [0.0, 0.0, 0.0, 0.0])
        n, mean, m2, _ = st
        x = sample.value
        score = 0.0
        if n >= 2:
            std = math.sqrt(m2 / (n - 1))
            if std > 0:
                score = score_of(abs(x - mean) / std, 4.0)
        n += 1
        delta = x - mean
        mean += delta / n
        m2 += delta * (x - mean)
        st[:] = [n, mean, m2, score]
        return []

    def score(self, key: SeriesKey) -> float:
        """Score of the latest sample."""
        st = self._stats.get(key)
        return st[3] if st else 0.0

    def states(self) -> Mapping[SeriesKey, SeriesState]:
        """Latest scores."""
        return {k: SeriesState(v[3], v[3] >= 0.5) for k, v in self._stats.items()}

    def state_of(self, key: SeriesKey, rule: str) -> SeriesState | None:
        """Latest state of a series (one rule per series: `rule` is ignored)."""
        return self.states().get(key)

    def forget(self, key: SeriesKey) -> None:
        """Drop a series."""
        self._stats.pop(key, None)

    def history_seconds(self) -> float:
        """Not restored (bench only)."""
        return 0.0
