"""Helpers for the detector tests: build samples and run sequences through a detector."""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

from infrawatch.detect.base import Detector, SeriesState
from infrawatch.model import Anomaly, Labels, Sample, SeriesKey


class StatelessDetector:
    """The `Detector` methods of a test detector that reports no state: subclasses add
    `name` and `observe` (and whatever else they test)."""

    def states(self) -> dict[SeriesKey, SeriesState]:
        return {}

    def state_of(self, key: SeriesKey, rule: str) -> SeriesState | None:
        return None

    def forget(self, key: SeriesKey) -> None:
        return None

    def score(self, key: SeriesKey) -> float:
        return 0.0

    def history_seconds(self) -> float:
        return 0.0


def feed(
    detector: Detector,
    values: Iterable[float],
    *,
    name: str = "m",
    labels: Labels = (),
    start: float = 1_700_000_000.0,
    step: float = 300.0,
) -> list[tuple[int, Anomaly]]:
    """Feed values at a fixed interval; return (index, anomaly) for every change reported."""
    out = []
    for i, v in enumerate(values):
        for a in detector.observe(Sample(name, v, start + i * step, labels)):
            out.append((i, a))
    return out


def noisy(n: int, level: float = 10.0, sd: float = 1.0, seed: int = 1) -> list[float]:
    """n Gaussian values around `level`."""
    rng = random.Random(seed)
    return [rng.gauss(level, sd) for _ in range(n)]


def statuses(changes: Sequence[tuple[int, Anomaly]]) -> list[tuple[int, str, str]]:
    """(index, status, severity) of each change."""
    return [(i, a.status, a.severity) for i, a in changes]


def uniform(n: int, level: float = 10.0, half_width: float = 1.0, seed: int = 1) -> list[float]:
    """n values spread evenly within level ± half_width (bounded noise: no ever-new extremes)."""
    rng = random.Random(seed)
    return [level + rng.uniform(-half_width, half_width) for _ in range(n)]
