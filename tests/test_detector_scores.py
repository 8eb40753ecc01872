"""The cheap state copies (`scores_of`, `state_rows_of`) carry exactly what `states()` does."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from infrawatch.detect.art import ArtDetector
from infrawatch.detect.base import Detector, SeriesState, scores_of, state_rows_of
from infrawatch.detect.config import ArtConfig, NoveltyConfig, ThresholdRule, ZScoreConfig
from infrawatch.detect.novelty import NoveltyDetector
from infrawatch.detect.threshold import ThresholdDetector
from infrawatch.detect.zscore import ZScoreDetector
from infrawatch.model import Anomaly, Sample, SeriesKey
from tests.support_detect import feed, noisy


def _detectors() -> list[Detector]:
    rule = ThresholdRule.model_validate({"name": "high", "metric": "m", "warning": 50.0})
    return [
        ThresholdDetector([rule]),
        ZScoreDetector(ZScoreConfig()),
        NoveltyDetector(NoveltyConfig()),
        ArtDetector(ArtConfig()),
    ]


class _StatesOnly:
    """A detector without the fast copies: the helpers fall back to `states()`."""

    def __init__(self, inner: Detector) -> None:
        self.name = inner.name
        self._inner = inner

    def observe(self, sample: Sample) -> list[Anomaly]:
        return self._inner.observe(sample)

    def states(self) -> Mapping[SeriesKey, SeriesState]:
        return self._inner.states()

    def state_of(self, key: SeriesKey, rule: str) -> SeriesState | None:
        return self._inner.state_of(key, rule)

    def forget(self, key: SeriesKey) -> None:
        self._inner.forget(key)

    def score(self, key: SeriesKey) -> float:
        return self._inner.score(key)

    def history_seconds(self) -> float:
        return self._inner.history_seconds()


@pytest.mark.parametrize("wrap", [False, True], ids=["own", "fallback"])
@pytest.mark.parametrize("index", range(4), ids=["threshold", "zscore", "novelty", "art"])
def test_copies_match_states(index: int, wrap: bool) -> None:
    inner = _detectors()[index]
    detector: Detector = _StatesOnly(inner) if wrap else inner
    for i in range(6):
        values = noisy(400, level=10.0 + i, seed=i)
        if i % 2:
            values[-3:] = [90.0, 95.0, 99.0]  # the last samples out of line: some series fire
        feed(detector, values, labels=(("id", str(i)),))
    states = detector.states()
    assert states, "the detector tracks the series"

    rows = state_rows_of(detector)
    assert rows == {k: (s.score, s.anomalous, s.value) for k, s in states.items()}

    scores = scores_of(detector)
    assert len(scores.keys) == len(scores.scores) == len(scores.anomalous) == len(states)
    pairs = dict(zip(scores.keys, zip(scores.scores, scores.anomalous, strict=True), strict=True))
    assert pairs == {k: (s.score, s.anomalous) for k, s in states.items()}
