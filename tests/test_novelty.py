"""Range novelty: new extremes fire once, old extremes and slow drifts don't, seasons break."""

from __future__ import annotations

import math
import tracemalloc

from infrawatch.detect.config import NoveltyConfig
from infrawatch.detect.novelty import NoveltyDetector, exceedance
from infrawatch.model import Sample
from tests.support_detect import feed, noisy, uniform

KEY = ("m", ())


def firing(changes: list) -> list[int]:  # type: ignore[type-arg]
    """Indices of firing changes."""
    return [i for i, a in changes if a.status == "firing"]


def test_exceedance_is_a_fraction_of_the_range() -> None:
    assert exceedance(5.0, 0.0, 10.0) == 0.0
    assert exceedance(11.0, 0.0, 10.0) == 0.1
    assert exceedance(-2.0, 0.0, 10.0) == 0.2


def test_new_maximum_fires_once_per_excursion_with_readable_evidence() -> None:
    values = uniform(1000)
    for i in range(800, 830):
        values[i] = 20.0 + 0.1 * (i - 800)  # a climbing excursion beyond anything seen
    # The value feature alone (the median's own range is exercised below).
    changes = feed(NoveltyDetector(NoveltyConfig(seasonal=False, median_weight=0)), values)
    assert firing(changes) == [800]
    a = changes[0][1]
    assert a.detector == "novelty"
    assert a.evidence["feature"] == "value"
    high = a.evidence["max"]
    assert isinstance(high, float)
    assert high < 20.0
    assert a.summary.startswith("value 20 above the 3-day maximum")
    assert "% of the range)" in a.summary


def test_a_series_that_fired_stays_quiet_for_a_refractory_period() -> None:
    # Fired, resolved, then a stronger excursion 20 samples later: the same flapping episode, not
    # a second alert. Past the period (72 samples and 6 h at 5-minute samples) a new one fires.
    values = uniform(1000)
    values[800] = 12.0
    values[820] = 14.0  # beats the first peak but falls inside its refractory period
    values[960] = 16.0  # two periods later
    settings = {"seasonal": False, "median_weight": 0, "confidence_samples": 0, "confidence": 0}
    changes = feed(NoveltyDetector(NoveltyConfig.model_validate(settings)), values)
    assert firing(changes) == [800, 960]
    assert [i for i, a in changes if a.status == "resolved"] == [801, 961]


def test_a_repeat_of_an_old_extreme_within_the_history_does_not_fire() -> None:
    values = uniform(1500, seed=4)
    values[500] = 25.0  # after min_history: fires
    values[1200] = 24.0  # inside the range that spike made
    config = NoveltyConfig(seasonal=False, median_weight=0)
    assert firing(feed(NoveltyDetector(config), values)) == [500]


def test_slow_drift_inside_the_range_does_not_fire() -> None:
    day = 288
    values = [50 + 30 * math.sin(2 * math.pi * i / day) + n for i, n in enumerate(uniform(3000, 0))]
    values = [v + 0.001 * i for i, v in enumerate(values)]  # +3 over 10 days, inside ±30
    assert firing(feed(NoveltyDetector(NoveltyConfig()), values)) == []


def test_seasonal_change_catches_a_broken_daily_pattern_inside_the_range() -> None:
    day = 288
    values = [
        50 + 30 * math.sin(2 * math.pi * i / day) + n for i, n in enumerate(uniform(day * 5, 0))
    ]
    start = day * 4 + 50
    for i in range(start, start + 30):
        values[i] = 50.0  # flat in the middle of the range where a peak belongs
    with_season = feed(NoveltyDetector(NoveltyConfig()), values)
    assert firing(with_season)
    assert start <= firing(with_season)[0] < start + 30
    assert with_season[0][1].evidence["feature"] == "seasonal_change"
    assert "change vs 1d ago" in with_season[0][1].summary
    assert firing(feed(NoveltyDetector(NoveltyConfig(seasonal=False)), values)) == []


def test_median_catches_a_sustained_shift_and_names_its_window() -> None:
    values = [10.0 + (1 if i % 2 else -1) * 5 + 0.01 * n for i, n in enumerate(uniform(1200, 0))]
    for i in range(1000, 1100):
        values[i] = 14.0 + 0.01 * i / 1000  # inside the value range, but a new median level
    changes = feed(NoveltyDetector(NoveltyConfig(seasonal=False)), values)
    assert firing(changes)
    assert changes[0][1].evidence["feature"] == "median"
    assert "2h median" in changes[0][1].summary


def test_memory_per_series_stays_bounded() -> None:
    det = NoveltyDetector(NoveltyConfig(history_samples=200, blocks=10, history=0))
    for i, v in enumerate(noisy(2000)):
        det.observe(Sample("m", v, 1e9 + 300.0 * i))
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i, v in enumerate(noisy(20000, seed=9)):
        det.observe(Sample("m", v, 1e9 + 300.0 * (i + 2000)))
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert grown < 10_000  # bytes, after 20,000 samples: nothing accumulates per sample


def test_a_flat_history_reads_as_flat_not_infinite() -> None:
    values = [5.0] * 400 + [6.0]
    changes = feed(NoveltyDetector(NoveltyConfig(seasonal=False, median_weight=0)), values)
    assert firing(changes) == [400]
    summary = changes[0][1].summary
    assert "inf" not in summary
    assert summary.startswith("value 6 above the 33-hour maximum 5 (")


def test_score_is_below_half_when_the_exceedance_is_below_the_threshold_by_one_ulp() -> None:
    # The calibration contract at the boundary: score >= 0.5 exactly when exceedance >= threshold.
    history = [0.0, 1.0] * 200
    for threshold, fires in [(0.5, True), (math.nextafter(0.5, math.inf), False)]:
        # The calibration itself: confidence by history off (this series is young).
        config = NoveltyConfig(
            seasonal=False, median_weight=0, threshold=threshold, confidence_samples=0, confidence=0
        )
        det = NoveltyDetector(config)
        changes = feed(det, [*history, 1.5])  # exceedance (1.5 - 1) / 1 = 0.5 exactly
        assert det.states()[KEY].value == 0.5
        assert (det.score(KEY) >= 0.5) is fires
        assert bool(firing(changes)) is fires
