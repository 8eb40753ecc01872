"""DetectorFeed: one series lookup per sample, the same verdicts as asking each detector."""

from __future__ import annotations

import math
from typing import Any

import pytest

from infrawatch.detect import build_detectors
from infrawatch.detect.base import UNTRACKED, Detector, Stepping, state_rows_of
from infrawatch.detect.config import AnalysisConfig
from infrawatch.detect.feed import DetectorFeed
from infrawatch.model import Anomaly, Sample, SeriesKey
from tests.support_detect import StatelessDetector

MEMORY = ("system.memory.utilization", (("host", "a"),))
LATENCY = ("app.latency", (("host", "a"), ("route", "/")))
STEP = 300.0  # 5-minute samples


def _samples() -> list[Sample]:
    """Two days of two series: memory crosses its shipped rule, latency spikes at the end."""
    out: list[Sample] = []
    for i in range(600):
        ts = 1_700_000_000.0 + STEP * i
        wave = math.sin(i / 12.0)
        memory = 0.97 if 500 <= i < 520 else 0.5 + 0.05 * wave
        latency = 40.0 if i == 590 else 1.0 + 0.2 * wave
        out.append(Sample(MEMORY[0], memory, ts, MEMORY[1]))
        out.append(Sample(LATENCY[0], latency, ts, LATENCY[1]))
    return out


def _raise(detector: Detector, sample: Sample, exc: Exception) -> None:
    raise exc


def test_the_feed_reports_what_each_detector_reports_alone() -> None:
    alone = build_detectors(AnalysisConfig())
    fed = build_detectors(AnalysisConfig())
    feed = DetectorFeed(fed)
    expected: list[Anomaly] = []
    got: list[Anomaly] = []
    for sample in _samples():
        for detector in alone:
            expected += detector.observe(sample)
        feed.observe(sample, got, _raise)
    fired = {(a.detector, a.name, a.status) for a in expected}
    # The data exercises the rule and a statistical detector, firing and resolving.
    assert ("threshold", MEMORY[0], "firing") in fired
    assert ("threshold", MEMORY[0], "resolved") in fired
    assert any(d != "threshold" and name == LATENCY[0] for d, name, _ in fired)
    assert got == expected
    for a, b in zip(alone, fed, strict=True):
        assert state_rows_of(a) == state_rows_of(b), a.name
    assert feed.series() == 2


class _Counting(StatelessDetector):
    """A Stepping detector that evaluates only series named "watched" and can be made to fail."""

    name = "counting"

    def __init__(self) -> None:
        self.series: dict[SeriesKey, list[float] | None] = {}
        self.failing = False

    def observe(self, sample: Sample) -> list[Anomaly]:
        state = self.series.setdefault(sample.key, [] if sample.name == "watched" else None)
        return [] if state is None else self.step(state, sample)

    def handle(self, key: SeriesKey) -> Any:
        return self.series.get(key, UNTRACKED)

    def step(self, handle: list[float], sample: Sample) -> list[Anomaly]:
        if self.failing:
            raise RuntimeError("detector bug")
        handle.append(sample.value)
        return []

    def forget(self, key: SeriesKey) -> None:
        self.series.pop(key, None)


class _Plain(StatelessDetector):
    """A detector with `observe` only (no handle/step): it is asked for every sample."""

    name = "plain"

    def __init__(self) -> None:
        self.seen: list[float] = []

    def observe(self, sample: Sample) -> list[Anomaly]:
        self.seen.append(sample.value)
        return []


def test_a_failing_detector_costs_only_its_own_verdict() -> None:
    counting, plain = _Counting(), _Plain()
    assert isinstance(counting, Stepping)
    assert not isinstance(plain, Stepping)
    feed = DetectorFeed([counting, plain])
    failures: list[tuple[str, float, str]] = []

    def on_error(detector: Detector, sample: Sample, exc: Exception) -> None:
        failures.append((detector.name, sample.value, str(exc)))

    out: list[Anomaly] = []
    feed.observe(Sample("watched", 1.0, 1.0), out, on_error)
    counting.failing = True
    feed.observe(Sample("watched", 2.0, 2.0), out, on_error)
    counting.failing = False
    feed.observe(Sample("watched", 3.0, 3.0), out, on_error)
    assert failures == [("counting", 2.0, "detector bug")]
    assert counting.series[("watched", ())] == [1.0, 3.0]
    assert plain.seen == [1.0, 2.0, 3.0]


def test_a_series_a_detector_does_not_evaluate_is_not_stepped() -> None:
    counting, plain = _Counting(), _Plain()
    counting.failing = True  # any step on "other" would raise
    feed = DetectorFeed([counting, plain])
    out: list[Anomaly] = []
    for i in range(3):
        feed.observe(Sample("other", float(i), float(i)), out, _raise)
    assert counting.series == {("other", ()): None}
    assert plain.seen == [0.0, 1.0, 2.0]


def test_forget_drops_the_series_here_and_in_every_detector() -> None:
    detectors = build_detectors(AnalysisConfig())
    zscore = next(d for d in detectors if d.name == "zscore")
    feed = DetectorFeed(detectors)
    out: list[Anomaly] = []
    for i in range(3):
        feed.observe(Sample(LATENCY[0], 1.0 + i, 60.0 * i, LATENCY[1]), out, _raise)
    assert zscore.state_of(LATENCY, "zscore") is not None
    feed.forget(LATENCY)
    assert feed.series() == 0
    assert zscore.state_of(LATENCY, "zscore") is None
    # Back again: a new series from its first sample, not the old state under a stale entry.
    feed.observe(Sample(LATENCY[0], 5.0, 600.0, LATENCY[1]), out, _raise)
    assert feed.series() == 1
    assert isinstance(zscore, Stepping)
    assert zscore.handle(LATENCY).n == 1


@pytest.mark.parametrize("first", [math.nan, math.inf])
def test_a_series_is_indexed_once_every_detector_holds_it(first: float) -> None:
    # Z-score keeps no state for a non-finite first value: the entry waits for a finite one.
    feed = DetectorFeed(build_detectors(AnalysisConfig()))
    out: list[Anomaly] = []
    feed.observe(Sample(LATENCY[0], first, 0.0, LATENCY[1]), out, _raise)
    assert feed.series() == 0
    feed.observe(Sample(LATENCY[0], 1.0, 60.0, LATENCY[1]), out, _raise)
    assert feed.series() == 1
