"""Z-score: steps and spikes fire, flat or quantised series do not, one excursion fires once."""

from __future__ import annotations

import pytest

from infrawatch.detect.config import AnalysisConfig, ZScoreConfig
from infrawatch.detect.zscore import ZScoreDetector, score_of
from tests.support_detect import feed, noisy, statuses

KEY = ("m", ())
# Confidence by history off: these tests are about a mature series' decisions (young series:
# tests/test_confidence.py).
OFF = {"confidence_samples": 0, "confidence": 0}


def mature(**settings: object) -> ZScoreConfig:
    """A Z-score config with confidence by history off."""
    return ZScoreConfig.model_validate({**OFF, **settings})


def firing(changes: list) -> list[int]:  # type: ignore[type-arg]
    """Indices of firing changes."""
    return [i for i, a in changes if a.status == "firing"]


def test_score_is_calibrated_at_the_threshold() -> None:
    assert score_of(5.0, 5.0) == 0.5
    assert score_of(0.0, 5.0) == 0.0
    assert 0.5 < score_of(6.0, 5.0) < score_of(1e9, 5.0) < 1.0
    assert score_of(1e9, 5.0) > score_of(1e8, 5.0)  # no saturation: huge still ranks above big


def test_step_change_fires_once_and_resolves_after_adapting() -> None:
    det = ZScoreDetector(mature())
    values = noisy(600) + noisy(600, level=20.0, seed=2)
    changes = feed(det, values)
    assert firing(changes) == [600]
    first = changes[0][1]
    assert first.detector == "zscore"
    z = first.evidence["z"]
    assert isinstance(z, float)
    assert z > 5
    assert first.score >= 0.5
    assert "σ above the 1d mean" in first.summary
    # A level step never repeats its detection while the baseline catches up.
    assert len(firing(changes)) == 1


def test_spike_up_and_down_are_detected_with_direction() -> None:
    values = noisy(500)
    values[400] = 30.0
    # Suppression is shared by both directions: the dip must beat the spike to count.
    values[450] = -25.0
    both = feed(ZScoreDetector(mature()), values)
    assert firing(both) == [400, 450]
    up = feed(ZScoreDetector(mature(direction="up")), values)
    assert firing(up) == [400]
    down = feed(ZScoreDetector(mature(direction="down")), values)
    assert firing(down) == [450]


def test_flat_series_with_tiny_noise_does_not_fire() -> None:
    det = ZScoreDetector(mature())
    assert feed(det, [v * 1e-9 + 5.0 for v in noisy(2000)]) == []


def test_quantised_series_stuck_at_zero_then_one_step_is_not_infinite() -> None:
    det = ZScoreDetector(mature())
    values = [0.0] * 300 + [0.01, 0.0, 0.0, 0.01] * 100
    values[150] = 0.01  # the quantisation step is learnt from an early blip
    assert feed(det, values) == []
    assert det.states()[KEY].value is not None


def test_same_excursion_is_not_reported_twice() -> None:
    det = ZScoreDetector(mature(resolve_ratio=1.0))
    values = noisy(500)
    # An excursion that wobbles around the firing point: it may resolve, but must not re-fire.
    for i, v in enumerate([18.0, 14.0, 19.0, 13.0, 18.5, 16.0]):
        values[400 + i] = v
    changes = feed(det, values)
    assert firing(changes) == [400]
    scores = []
    det2 = ZScoreDetector(mature(resolve_ratio=1.0))
    for i, v in enumerate(values):
        feed(det2, [v], start=1_700_000_000.0 + i * 300)
        scores.append(det2.score(KEY))
    assert [i for i, s in enumerate(scores) if s >= 0.5] == [400]  # only new maxima score
    assert max(scores[401:]) < 0.5


def test_no_firing_before_min_samples() -> None:
    det = ZScoreDetector(mature(min_samples=100))
    values = noisy(150)
    values[50] = 100.0
    values[120] = 100.0
    assert firing(feed(det, values)) == [120]


def test_seasonal_change_catches_a_broken_daily_pattern() -> None:
    import math

    day = 288
    values = [
        10 + 5 * math.sin(2 * math.pi * i / day) + 0.1 * n
        for i, n in enumerate(noisy(day * 4, 0, 1))
    ]
    # Day 4: the pattern is flipped during two hours, staying inside the usual range.
    for i in range(day * 3 + 60, day * 3 + 84):
        values[i] = 10 - 5 * math.sin(2 * math.pi * i / day)
    with_season = feed(ZScoreDetector(mature()), values)
    assert firing(with_season)
    assert firing(with_season)[0] >= day * 3 + 60
    assert with_season[0][1].evidence["feature"] == "seasonal_change"
    assert "change vs 1d ago" in with_season[0][1].summary
    without = feed(ZScoreDetector(mature(seasonal=False)), values)
    assert firing(without) == []


def test_overrides_by_glob_change_or_disable_series() -> None:
    config = AnalysisConfig.model_validate(
        {
            "zscore": {
                **OFF,
                "overrides": [
                    {"metric": "quiet.*", "enabled": False},
                    {"metric": "loud", "threshold": 50},
                ],
            }
        }
    ).zscore
    values = noisy(400)
    values[300] = 30.0
    assert firing(feed(ZScoreDetector(config), values, name="m")) == [300]
    assert feed(ZScoreDetector(config), values, name="quiet.x") == []
    assert feed(ZScoreDetector(config), values, name="loud") == []


@pytest.mark.parametrize("gap", [0.0, -300.0])
def test_duplicate_or_out_of_order_timestamps_are_harmless(gap: float) -> None:
    det = ZScoreDetector(mature())
    changes = feed(det, noisy(300))
    assert changes == []
    from infrawatch.model import Sample

    assert det.observe(Sample("m", 10.0, 1_700_000_000.0 + 299 * 300 + gap)) == []
    assert statuses(feed(det, [40.0], start=1_700_000_000.0 + 300 * 300)) == [
        (0, "firing", "warning")
    ]


def test_automatic_threshold_is_higher_beside_novelty() -> None:
    # A z of about 8: fires when Z runs alone (z 5), not beside novelty (z 15), unless set.
    values = noisy(600)
    values[500] = 18.0
    analysis = AnalysisConfig.model_validate({"zscore": OFF})
    alone = feed(ZScoreDetector(analysis.zscore), values)
    beside = feed(ZScoreDetector(analysis.zscore, analysis.novelty), values)
    assert firing(alone) == [500]
    assert firing(beside) == []
    assert alone[0][1].evidence["threshold"] == 5.0
    explicit = mature(threshold=5.0)
    assert firing(feed(ZScoreDetector(explicit, analysis.novelty), values)) == [500]
    # A metric novelty is disabled for keeps the stand-alone threshold.
    off = AnalysisConfig.model_validate(
        {"zscore": OFF, "novelty": {"overrides": [{"metric": "m", "enabled": False}]}}
    )
    assert firing(feed(ZScoreDetector(off.zscore, off.novelty), values)) == [500]


def test_a_nan_first_sample_does_not_poison_the_series() -> None:
    det = ZScoreDetector(mature())
    values = [float("nan"), *noisy(300)]
    values[250] = 30.0
    assert firing(feed(det, values)) == [250]


def test_restore_history_covers_the_longest_override() -> None:
    config = AnalysisConfig.model_validate(
        {"zscore": {"overrides": [{"metric": "slow.*", "suppress": "7d", "season": "7d"}]}}
    )
    # The overridden series needs a season and two suppression blocks of history to restore.
    assert ZScoreDetector(config.zscore).history_seconds() >= 7 * 86400 + 2 * 7 * 86400


def test_score_is_below_half_one_ulp_below_the_threshold() -> None:
    import math

    for threshold in (5.0, 15.0, 14.082551609558761, 43.350785289687174):
        assert score_of(threshold, threshold) == 0.5
        assert score_of(math.nextafter(threshold, 0.0), threshold) < 0.5
        assert score_of(math.nextafter(threshold, math.inf), threshold) >= 0.5
