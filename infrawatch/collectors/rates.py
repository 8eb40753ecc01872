"""Counters to rates, in one place: no rate for a first sample or after a counter reset."""

from __future__ import annotations

from collections.abc import Hashable


class RateTracker:
    """Remembers the last (value, time) of each counter and turns the next reading into a rate."""

    def __init__(self) -> None:
        self._last: dict[Hashable, tuple[float, float]] = {}
        self._seen: set[Hashable] = set()

    def rate(self, key: Hashable, value: float, now: float) -> float | None:
        """Units per second since the previous reading of `key`, or None if there is no valid one.

        None on the first reading (no spike at start-up), when the counter went backwards (a
        reset or wrap: a rebooted NIC, a re-created device) and when no time has passed.
        """
        self._seen.add(key)
        previous = self._last.get(key)
        self._last[key] = (value, now)
        if previous is None:
            return None
        last_value, last_time = previous
        elapsed = now - last_time
        if value < last_value or elapsed <= 0:
            return None
        return (value - last_value) / elapsed

    def forget_unseen(self) -> None:
        """Drop counters not read since the last call (a device that went away)."""
        for key in self._last.keys() - self._seen:
            del self._last[key]
        self._seen.clear()
