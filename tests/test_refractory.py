"""One episode, one alert: the statistical detectors share range novelty's refractory period."""

from __future__ import annotations

from infrawatch.detect import build_detectors
from infrawatch.detect.config import AnalysisConfig, ZScoreConfig
from infrawatch.detect.zscore import ZScoreDetector
from infrawatch.model import Sample

START = 1_700_000_000.0
STEP = 300.0


def firings(detectors: list, values: list[float]) -> list[tuple[int, str]]:  # type: ignore[type-arg]
    """(index, detector) of every firing change, feeding all detectors each sample in order."""
    out = []
    for i, v in enumerate(values):
        sample = Sample("m", v, START + i * STEP, ())
        for d in detectors:
            out += [(i, a.detector) for a in d.observe(sample) if a.status == "firing"]
    return out


def quiet(n: int) -> list[float]:
    """A 7-sample pattern around 10: every feature's range is seen within the first hours."""
    return [10.0 + (i % 7) / 7.0 for i in range(n)]


def episode() -> list[float]:
    """Two days of quiet, a new maximum, then a far larger spike 10 samples later."""
    values = quiet(700)
    values[600] = max(values[:600]) + 1.0  # range novelty: the first time this high
    values[610] = 200.0  # z in the hundreds: Z-score alone fires on it
    return values


def test_z_score_stays_quiet_within_the_period_novelty_opened() -> None:
    config = AnalysisConfig.model_validate({"threshold": [], "art": {"enabled": False}})
    assert firings(build_detectors(config), episode()) == [(600, "novelty")]


def test_z_score_alone_fires_on_the_same_spike() -> None:
    alone = ZScoreDetector(ZScoreConfig())
    assert (610, "zscore") in firings([alone], episode())


def test_after_the_period_the_next_episode_fires_again() -> None:
    values = episode() + quiet(190)  # ends before the first spike's day-over-day echo (898)
    values[880] = 300.0  # 270 samples (22.5 h) after the first episode: a new one
    config = AnalysisConfig.model_validate({"threshold": [], "art": {"enabled": False}})
    fired = firings(build_detectors(config), values)
    assert fired[0] == (600, "novelty")
    assert [i for i, _ in fired[1:]] == [880]
