"""Retry pacing shared by alert delivery and the exporters: equal-jitter backoff and the
receiver's `Retry-After`.

One owner, so a sink and an exporter talking to the same receiver back off alike.
"""

from __future__ import annotations

import math
import random
from email.utils import parsedate_to_datetime


def equal_jitter(
    failures: int, rng: random.Random, *, initial: float, multiplier: float, cap: float
) -> float:
    """Seconds before the next attempt after `failures` failed ones ("equal jitter").

    A uniform draw from [d/2, d] with d = initial × multiplier^(failures-1) seconds capped at
    `cap`: never zero, and (while below the cap) never shorter than the previous step's upper
    half.
    """
    # A failure streak has no bound (a day-long outage probed every 30 s): the power overflows
    # a float long after it passed the cap.
    try:
        grown = initial * float(multiplier) ** max(0, failures - 1)
    except OverflowError:
        grown = cap
    ceiling = min(cap, grown)
    return rng.uniform(ceiling / 2, ceiling)


def bounded_wait(seconds: float, cap: float) -> float | None:
    """`seconds` clamped to [0, cap]; None for NaN (a receiver's hint that says nothing)."""
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), cap)


def parse_retry_after(value: str | None, *, now: float, cap: float) -> float | None:
    """Seconds from a Retry-After header (delta-seconds, or an HTTP date against `now`, epoch
    seconds), clamped to [0, cap]; None if absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - now
        except (TypeError, ValueError):
            return None
    return bounded_wait(seconds, cap)
