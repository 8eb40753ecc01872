"""Adaptive resonance: a new shape founds a new cluster and fires once; a learned one does not."""

from __future__ import annotations

import random
from pathlib import Path

from infrawatch.detect import build_detectors
from infrawatch.detect.art import ArtDetector, fuzzy_and, haar, lane_sum
from infrawatch.detect.config import AnalysisConfig, ArtConfig
from infrawatch.detect.novelty import NoveltyDetector
from infrawatch.detect.restore import restore_detectors
from infrawatch.model import Sample
from infrawatch.storage.store import Store
from tests.support_detect import feed

KEY = ("m", ())
START = 1_700_000_000.0
STEP = 300.0
# One sample per step and a short learning period keep the tests small; the shape logic is
# the same as with the default 7-sample steps.
FAST = {"step_samples": 1, "step": 0, "learning_steps": 64}


def firing(changes: list) -> list[int]:  # type: ignore[type-arg]
    """Indices of firing changes."""
    return [i for i, a in changes if a.status == "firing"]


def rhythm(n: int, seed: int = 1) -> list[float]:
    """A regular rhythm (a 4-step pulse every 8 steps) with a little noise."""
    rng = random.Random(seed)
    return [(10.0 if i % 8 < 4 else 2.0) + rng.uniform(-0.05, 0.05) for i in range(n)]


def test_packed_fuzzy_and_is_the_lane_wise_minimum() -> None:
    rng = random.Random(3)
    for _ in range(200):
        a = [rng.choice([0, 255, rng.randrange(256)]) for _ in range(32)]
        b = [rng.choice([0, 255, rng.randrange(256)]) for _ in range(32)]
        pa, pb = (int.from_bytes(bytes(x for v in vs for x in (v, 0)), "little") for vs in (a, b))
        both = fuzzy_and(pa, pb)
        assert [(both >> (16 * i)) & 0xFFFF for i in range(32)] == list(map(min, a, b))
        assert lane_sum(both) == sum(map(min, a, b))


def test_haar_of_a_step_has_one_coarse_detail() -> None:
    coeffs = haar([0.0, 0, 0, 0, 1, 1, 1, 1])
    assert coeffs[0] > 0  # the approximation
    assert coeffs[1] != 0  # the coarsest detail sees the step
    assert all(abs(c) < 1e-12 for c in coeffs[2:])


def test_a_repeated_shape_founds_nothing_and_a_new_shape_fires_once() -> None:
    det = ArtDetector(ArtConfig.model_validate(FAST))
    values = rhythm(400)
    assert firing(feed(det, values)) == []
    assert not det.learning(KEY)
    learned = det.categories(KEY)
    assert 0 < learned < 64
    # The same rhythm again: it resonates with what was learned, no new category.
    assert firing(feed(det, rhythm(200, seed=2), start=START + 400 * STEP)) == []
    assert det.categories(KEY) == learned
    # A new shape inside the old range: a burst of alternating values where pulses belong.
    burst = rhythm(200, seed=3)
    for i in range(100, 124):
        burst[i] = 10.0 if i % 2 else 2.0
    changes = feed(det, burst, start=START + 600 * STEP)
    fired = firing(changes)
    assert len(fired) == 1
    assert 100 <= fired[0] < 124
    assert det.categories(KEY) > learned
    a = changes[0][1]
    assert a.detector == "art"
    assert a.summary.startswith(
        f"the shape of the last 8 steps matches none of the {a.evidence['categories']} learned"
        " patterns: best match "
    )
    match, vigilance = a.evidence["match"], a.evidence["vigilance"]
    assert isinstance(match, float)
    assert isinstance(vigilance, float)
    assert match < vigilance


def test_nothing_fires_during_the_learning_period() -> None:
    det = ArtDetector(ArtConfig.model_validate(FAST))
    values = rhythm(60)
    values[30:40] = [10.0 if i % 2 else 2.0 for i in range(10)]
    assert firing(feed(det, values)) == []
    assert det.learning(KEY)


def test_the_category_cap_holds() -> None:
    det = ArtDetector(ArtConfig.model_validate({**FAST, "max_categories": 6}))
    rng = random.Random(5)
    values = [rng.uniform(0.0, 10.0) for _ in range(1500)]  # every shape new: many categories
    feed(det, values)
    assert det.categories(KEY) == 6
    uncapped = ArtDetector(ArtConfig.model_validate({**FAST, "max_categories": 10_000}))
    feed(uncapped, values)
    assert uncapped.categories(KEY) > 6


def test_steps_are_the_longer_of_samples_and_time() -> None:
    # At 10 s sampling a 30-minute step holds 181 samples, so learning (64 steps) takes 32 h.
    det = ArtDetector(ArtConfig.model_validate({"learning_steps": 64}))
    feed(det, rhythm(64 * 7 * 2), step=10.0)
    assert det.learning(KEY)
    det5 = ArtDetector(ArtConfig.model_validate({"learning_steps": 64}))
    feed(det5, rhythm(64 * 7 + 8 * 7), step=300.0)
    assert not det5.learning(KEY)


def test_art_shares_novelty_refractory_period() -> None:
    # Beside novelty, ART counts only if it beats novelty's peak of the period, and its own
    # events count in that peak.
    config = AnalysisConfig.model_validate({"threshold": [], "art": FAST})
    detectors = build_detectors(config)
    novelty = next(d for d in detectors if isinstance(d, NoveltyDetector))
    art = next(d for d in detectors if isinstance(d, ArtDetector))
    assert art.shared is novelty
    novelty.observe(Sample("m", 1.0, START))
    novelty.note_peak(KEY, 0.7)
    assert novelty.refractory_peak(KEY) == 0.7


async def test_art_state_survives_a_restart_through_restore(tmp_path: Path) -> None:
    config = AnalysisConfig.model_validate(
        {"threshold": [], "zscore": {"enabled": False}, "novelty": {"enabled": False}, "art": FAST}
    )
    values = rhythm(600)
    for i in range(330, 354):  # 30 steps after the restart: a fresh detector is still learning
        values[i] = 10.0 if i % 2 else 2.0
    data = [Sample("m", v, START + i * STEP) for i, v in enumerate(values)]
    split = 300  # inside the replay span (64 steps × 5 min + 1 day = 353 samples)
    uninterrupted = build_detectors(config)
    for s in data[:split]:
        for d in uninterrupted:
            d.observe(s)
    expected = [
        (i, a.status) for i, s in enumerate(data[split:]) for a in uninterrupted[0].observe(s)
    ]
    assert "firing" in {st for _, st in expected}
    async with Store(tmp_path / "a.db") as store:
        await store.write(data[:split])
    async with Store(tmp_path / "a.db") as store:
        restarted = build_detectors(config)
        result = await restore_detectors(store, restarted, now=data[split - 1].ts)
    assert result.samples == split
    art = restarted[0]
    assert isinstance(art, ArtDetector)
    assert not art.learning(KEY)
    got = [(i, a.status) for i, s in enumerate(data[split:]) for a in art.observe(s)]
    assert got == expected
    # Control: without the restore the detector is learning again and misses the new shape.
    fresh = build_detectors(config)[0]
    assert [(i, a.status) for i, s in enumerate(data[split:]) for a in fresh.observe(s)] == []
