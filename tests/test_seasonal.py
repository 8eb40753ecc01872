"""The seasonal reference at fast sampling: each sample is compared with the same time a season
ago, not with the sample just before it in its slot."""

from __future__ import annotations

import math

import pytest

from infrawatch.detect.seasonal import SeasonalRing

DAY = 86400.0
STEP = 10.0  # seconds between samples, as the host producer samples


def daily(ts: float) -> float:
    """A smooth daily pattern."""
    return 50.0 + 20.0 * math.sin(2 * math.pi * (ts % DAY) / DAY)


def test_no_reference_before_a_season_has_passed() -> None:
    ring = SeasonalRing(width=300.0, slots=288)
    assert math.isnan(ring.change(0.0, 1.0))
    assert math.isnan(ring.change(DAY - STEP, 1.0))


def test_a_repeated_day_changes_little_and_a_shift_is_held_for_the_whole_slot() -> None:
    ring = SeasonalRing(width=300.0, slots=288)
    ts = 0.0
    while ts < DAY:
        ring.change(ts, daily(ts))
        ts += STEP
    # Day 2, same pattern: the change is bounded by the pattern's movement within one slot.
    repeat = []
    while ts < DAY + 43200.0:
        repeat.append(ring.change(ts, daily(ts)))
        ts += STEP
    assert max(abs(c) for c in repeat) < 1.0
    # At noon of day 2 the level jumps by 10 and stays: every later sample sees about +10 against
    # yesterday, not just the first one (a sample-to-sample difference would be ~0 after it).
    shifted = []
    while ts < DAY + 43200.0 + 1800.0:
        shifted.append(ring.change(ts, daily(ts) + 10.0))
        ts += STEP
    assert all(c == pytest.approx(10.0, abs=1.0) for c in shifted)


def test_seeded_slot_means_are_the_reference() -> None:
    ring = SeasonalRing(width=300.0, slots=288)
    ring.seed(600.0, 42.0)
    assert ring.change(DAY + 650.0, 45.0) == pytest.approx(3.0)


def test_a_late_sample_of_a_closed_slot_leaves_the_ring_alone() -> None:
    # CloudWatch can deliver a point later than a newer one. Re-opening its slot would write
    # today's half-filled slot into the ring as "yesterday" and compare the rest of it with that.
    ring = SeasonalRing(width=300.0, slots=288)
    ts = 0.0
    while ts < DAY:
        ring.change(ts, 10.0)
        ts += STEP
    assert ring.change(DAY + 600.0, 30.0) == pytest.approx(20.0)
    assert math.isnan(ring.change(DAY + 290.0, 30.0))  # late: no trustworthy reference
    assert ring.change(DAY + 610.0, 30.0) == pytest.approx(20.0)  # still vs yesterday
    for t in range(0, 300, 10):
        ring.change(DAY + 900.0 + t, 30.0)  # close today's slot 2 and fill slot 3
    assert ring.change(2 * DAY + 600.0, 30.0) == pytest.approx(0.0)  # slot 2 = its full mean
