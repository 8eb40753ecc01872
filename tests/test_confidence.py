"""Confidence by history: young series' evidence is scaled and says so; restored history counts."""

from __future__ import annotations

from pathlib import Path

from infrawatch.detect.base import confidence
from infrawatch.detect.config import AnalysisConfig, NoveltyConfig, ZScoreConfig
from infrawatch.detect.novelty import NoveltyDetector
from infrawatch.detect.restore import restore_detectors
from infrawatch.detect.zscore import ZScoreDetector
from infrawatch.model import Sample
from infrawatch.storage import rollup
from infrawatch.storage.store import Store
from tests.support_detect import feed, noisy, uniform

START = 1_700_000_000.0
STEP = 300.0
OFF = {"confidence_samples": 0, "confidence": 0}


def novelty(**settings: object) -> NoveltyDetector:
    """A novelty detector on the value feature alone."""
    return NoveltyDetector(
        NoveltyConfig.model_validate({"seasonal": False, "median_weight": 0, **settings})
    )


def firing(changes: list) -> list[int]:  # type: ignore[type-arg]
    """Indices of firing changes."""
    return [i for i, a in changes if a.status == "firing"]


def test_confidence_needs_both_samples_and_time() -> None:
    # Like the detectors' windows: full confidence once there are N samples *and* T seconds.
    assert confidence(500, 10 * 86400, 2000, 7 * 86400) == 0.25
    assert confidence(5000, 3.5 * 86400, 2000, 7 * 86400) == 0.5
    assert confidence(5000, 8 * 86400, 2000, 7 * 86400) == 1.0
    assert confidence(10, 1.0, 0, 0.0) == 1.0  # both parts off


def test_a_young_series_novelty_evidence_is_scaled_and_says_so() -> None:
    values = uniform(400)  # 400 samples at 5 min: 20 % of 2000 samples, 19.8 % of 7 days
    values.append(11.2)  # 10 % of the [9, 11] range beyond it
    young = feed(novelty(), values)
    mature = feed(novelty(**OFF), values)
    assert firing(mature) == [400]
    # 0.1 × 0.198 = 0.0198: still above the threshold 0.015, but scaled, and the alert says so.
    assert firing(young) == [400]
    a = young[0][1]
    assert a.evidence["young"] == "young series: 20 % of its history"
    assert a.evidence["confidence"] == round((400 * STEP) / (7 * 86400), 4)
    assert "young series: 20 % of its history" in a.summary
    assert "young" not in mature[0][1].evidence
    # A smaller excursion (5 % of the range) fires on a mature series only.
    values[-1] = 11.1
    assert firing(feed(novelty(), values)) == []
    assert firing(feed(novelty(**OFF), values)) == [400]


def test_fast_sampling_is_young_by_time_not_by_sample_count() -> None:
    # 3000 samples at 10 s (8 h 20 m): past 2000 samples, but 5 % of 7 days.
    values = uniform(3000)
    values.append(11.2)
    config = NoveltyConfig(seasonal=False, median_weight=0)
    assert firing(feed(NoveltyDetector(config), values, step=10.0)) == []
    samples_only = NoveltyConfig(seasonal=False, median_weight=0, confidence=0, min_age=0)
    assert firing(feed(NoveltyDetector(samples_only), values, step=10.0)) == [3000]


def test_novelty_judges_nothing_before_one_season_of_history() -> None:
    # 3000 samples at 10 s (8 h 20 m): past min_history, but the range has not seen a whole day.
    values = uniform(3000)
    values.append(20.0)  # five widths beyond the [9, 11] range
    unscaled = novelty(**OFF)
    assert unscaled.config.min_age == 86400.0
    assert firing(feed(unscaled, values, step=10.0)) == []
    assert unscaled.band(("m", ())) is None
    assert firing(feed(novelty(**OFF, min_age=0), values, step=10.0)) == [3000]
    # Once the series is a day old (8640 samples at 10 s), the same excursion fires.
    values = uniform(8700)
    values.append(20.0)
    aged = novelty(**OFF)
    assert firing(feed(aged, values, step=10.0)) == [8700]


def test_a_young_series_z_is_scaled_and_says_so() -> None:
    values = noisy(300)
    values[250] = 18.0  # z ≈ 8: fires alone (z 5) on a mature series
    mature = feed(ZScoreDetector(ZScoreConfig.model_validate(OFF)), values)
    young = feed(ZScoreDetector(ZScoreConfig()), values)
    assert firing(mature) == [250]
    assert firing(young) == []  # 250 × 5 min of 3 days: z × 0.29 ≈ 2.3
    values[250] = 80.0  # z ≈ 70: fires even scaled
    changes = feed(ZScoreDetector(ZScoreConfig()), values)
    assert firing(changes) == [250]
    assert changes[0][1].evidence["young"] == "young series: 29 % of its history"
    assert "young series: 29 % of its history" in changes[0][1].summary


async def test_a_restored_series_is_not_young(tmp_path: Path) -> None:
    # 9 days of history in the store (2592 samples at 5 min): past 2000 samples and 7 days.
    history = uniform(2592, seed=2)
    data = [Sample("m", v, START + i * STEP) for i, v in enumerate(history)]
    now = data[-1].ts
    config = AnalysisConfig.model_validate({"threshold": [], "art": {"enabled": False}})
    async with Store(tmp_path / "a.db") as store:
        await store.write(data)
        await rollup.catch_up(store, now=now, raw_retention=1e9, rollup_1m_retention=1e9)
        for use_rollups in (True, False):
            detectors = [d for d in _build(config) if isinstance(d, NoveltyDetector)]
            await restore_detectors(store, detectors, now=now, use_rollups=use_rollups)
            spike = Sample("m", 11.1, now + STEP)  # 5 % beyond the range: fires only if mature
            changes = detectors[0].observe(spike)
            assert [a.status for a in changes] == ["firing"], use_rollups
            assert "young" not in changes[0].evidence
        zscore = [d for d in _build(config) if isinstance(d, ZScoreDetector)]
        await restore_detectors(store, zscore, now=now)
        assert zscore[0].observe(Sample("m", 10.0, now + STEP)) == []
        # Z replayed its confidence period (3 days + 1 h): a 9σ jump fires unscaled (z 15
        # beside novelty would not; alone the threshold is 5).
        alone = ZScoreDetector(ZScoreConfig())
        await restore_detectors(store, [alone], now=now)
        changes = alone.observe(Sample("m", 15.0, now + 2 * STEP))
        assert [a.status for a in changes] == ["firing"]
        assert "young" not in changes[0].evidence


def _build(config: AnalysisConfig) -> list[NoveltyDetector | ZScoreDetector]:
    """Fresh statistical detectors (Z beside novelty, as the agent builds them)."""
    return [ZScoreDetector(config.zscore, config.novelty), NoveltyDetector(config.novelty)]
