"""Counters to rates, in one place: no rate for a first sample; a reset is skipped or, as
Prometheus' `rate()` treats it, counted from zero."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Literal

# "skip": a decrease gives no rate (host counters: a wrap or re-created device says nothing
# about the interval). "from_zero": a decrease is a restart of the counter, so the increase
# over the interval is the new value itself (Prometheus' rate()); never negative either way.
ResetPolicy = Literal["skip", "from_zero"]


class RateTracker:
    """Remembers the last (value, time) of each counter and turns the next reading into a rate."""

    def __init__(self, resets: ResetPolicy = "skip") -> None:
        self._from_zero = resets == "from_zero"
        self._last: dict[Hashable, tuple[float, float]] = {}
        self._last_vectors: dict[Hashable, tuple[tuple[float, ...], float]] = {}
        self._seen: set[Hashable] = set()

    def __len__(self) -> int:
        """How many counters (scalar or vector) the tracker holds state for."""
        return len(self._last) + len(self._last_vectors)

    def rate(self, key: Hashable, value: float, now: float) -> float | None:
        """Units per second since the previous reading of `key`, or None if there is no valid one.

        None on the first reading (no spike at start-up) and when no time has passed. A counter
        that went backwards (a reset or wrap: a rebooted NIC, a restarted process) gives None
        under the "skip" policy and `value / elapsed` (clamped at 0) under "from_zero".
        """
        self._seen.add(key)
        previous = self._last.get(key)
        self._last[key] = (value, now)
        if previous is None:
            return None
        last_value, last_time = previous
        elapsed = now - last_time
        if elapsed <= 0:
            return None
        if value < last_value:
            return max(value, 0.0) / elapsed if self._from_zero else None
        return (value - last_value) / elapsed

    def increases(
        self, key: Hashable, values: Sequence[float], now: float
    ) -> tuple[list[float], float] | None:
        """The increase of each counter of a group (a histogram's buckets) since the previous
        reading of `key`, and the seconds it spans; None when `rate` would give None.

        A decrease in any element is a reset of the whole group (a restarted process resets
        every bucket): under "from_zero" the increases are then the new values themselves. A
        group whose length changed is a new group (no increase).
        """
        self._seen.add(key)
        current = tuple(values)
        previous = self._last_vectors.get(key)
        self._last_vectors[key] = (current, now)
        if previous is None:
            return None
        last_values, last_time = previous
        elapsed = now - last_time
        if elapsed <= 0 or len(last_values) != len(current):
            return None
        if any(v < last for v, last in zip(current, last_values, strict=True)):
            if not self._from_zero:
                return None
            return [max(v, 0.0) for v in current], elapsed
        return [v - last for v, last in zip(current, last_values, strict=True)], elapsed

    def forget_unseen(self) -> None:
        """Drop counters not read since the last call (a device that went away)."""
        for key in self._last.keys() - self._seen:
            del self._last[key]
        for key in self._last_vectors.keys() - self._seen:
            del self._last_vectors[key]
        self._seen.clear()

    def forget(self) -> None:
        """Drop every counter's state (the source is gone for good)."""
        self._last.clear()
        self._last_vectors.clear()
        self._seen.clear()
