"""The seasonal reference both statistical detectors use: a slot's value one season ago."""

from __future__ import annotations

import math
from array import array

NAN = math.nan


class SeasonalRing:
    """Per time slot (e.g. 288 five-minute slots of a day), the mean of that slot one season ago.

    A slot's mean is written into the ring only when the slot is over, so while a slot is being
    filled the ring still holds the previous season's value for it. That makes the change
    feature "now minus the same time yesterday" at any sampling rate: with 10 s samples and
    5-minute slots, every sample of a slot is compared with yesterday's slot, not with the sample
    10 s before it. With one sample per slot (NAB's 5-minute data) it is simply the value one
    season earlier.
    """

    __slots__ = ("current", "current_f", "n", "ref", "ring", "slots", "total", "width")

    def __init__(self, width: float, slots: int) -> None:
        self.width = width
        self.slots = slots
        self.ring = array("f", [NAN]) * slots
        self.current = -1  # absolute slot number (ts // width) being filled
        # The hot path (another sample of the open slot) compares the float `ts // width` with
        # `current_f` and answers from `ref`, the open slot's entry one season ago (it cannot
        # change while the slot is open): no int(), modulo or array read per sample.
        self.current_f = -1.0
        self.ref = NAN  # ring[current % slots], as a float
        self.total = 0.0
        self.n = 0

    def change(self, ts: float, x: float) -> float:
        """`x` minus its slot's mean one season before `ts` (NaN until a season has passed, and
        for a late sample older than the slot being filled)."""
        if ts // self.width == self.current_f:
            self.total += x
            self.n += 1
            return x - self.ref
        slot = int(ts // self.width)
        if slot < self.current:
            # A late sample of a closed slot: its ring entry may already hold this season's
            # mean, and re-opening it would close today's slot half-filled. Skip it.
            return NAN
        if slot != self.current:
            if self.n:
                self.ring[self.current % self.slots] = self.total / self.n
            self.current = slot
            self.current_f = float(slot)
            self.ref = self.ring[slot % self.slots]
            self.total = 0.0
            self.n = 0
        self.total += x
        self.n += 1
        return x - self.ref

    def seed(self, ts: float, mean: float) -> None:
        """Set the slot of `ts` to `mean` (start-up restore from rollups)."""
        i = int(ts // self.width) % self.slots
        self.ring[i] = mean
        if i == self.current % self.slots:
            self.ref = self.ring[i]  # read back: the ring holds float32
