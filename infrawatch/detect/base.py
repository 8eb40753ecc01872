"""The detector interface: pure objects fed one sample at a time, returning state changes."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from infrawatch.model import Anomaly, Sample


@runtime_checkable
class Detector(Protocol):
    """A detector keeps per-series state in memory and does no I/O.

    `observe` returns the state changes this sample causes: an Anomaly with status "firing" when
    a series/rule becomes anomalous, and one with status "resolved" when it returns to normal.
    """

    name: str

    def observe(self, sample: Sample) -> list[Anomaly]:
        """Feed one sample; return the state changes it causes (usually none)."""
        ...
