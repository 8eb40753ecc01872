"""The detector interface: pure objects fed one sample at a time, returning state changes."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Generic, Protocol, TypeAlias, TypeVar, runtime_checkable

from infrawatch.model import Anomaly, Sample, SeriesKey

# The largest float below 0.5: the score of a statistic within rounding of its threshold but below
# it (x / (x + t) rounds to exactly 0.5 for x one ulp below t, which would fire).
BELOW_HALF = math.nextafter(0.5, 0.0)


def calibrated(stat: float, threshold: float) -> float:
    """Score in [0, 1) of a non-negative statistic: stat / (stat + threshold), 0.5 exactly at the
    threshold, and >= 0.5 if and only if stat >= threshold."""
    if stat <= 0.0:
        return 0.0
    score = stat / (stat + threshold)
    return BELOW_HALF if score >= 0.5 and stat < threshold else score


def confidence(n: int, age: float, full_samples: int, full_seconds: float) -> float:
    """Confidence in [0, 1] of a series with `n` samples spanning `age` seconds: min(1,
    n / full_samples, age / full_seconds), a 0 setting disabling its part. Like the detectors'
    windows ("the longer of N samples and T seconds"), full confidence needs both."""
    c = 1.0
    if full_samples > 0 and n < full_samples:
        c = n / full_samples
    if full_seconds > 0.0 and age < full_seconds:
        t = age / full_seconds if age > 0.0 else 0.0
        if t < c:
            c = t
    return c


def young_text(conf: float) -> str:
    """The evidence's note that a score was reduced for a young series."""
    return f"young series: {100.0 * conf:.0f} % of its history"


@dataclass(frozen=True, slots=True)
class SeriesState:
    """A detector's current view of one series, for /metrics.

    `score` is calibrated to [0, 1] with 0.5 at the detector's firing point (threshold rules: 1.0
    while the condition holds, else 0.0); `value` is the detector's own statistic (z for
    Z-score, exceedance for novelty) or None.
    """

    score: float
    anomalous: bool
    value: float | None = None


# (score, anomalous, statistic) per series: SeriesState's fields without the objects. Tuples of
# floats, bools and None are untracked by the garbage collector once it has seen them, unlike
# SeriesState instances, so a copy of 10,000 of them is cheap to build and does not set off
# full collections (bench/api.py).
StateRow: TypeAlias = tuple[float, bool, float | None]
StateRows: TypeAlias = dict[SeriesKey, StateRow]


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

    def states(self) -> Mapping[SeriesKey, SeriesState]:
        """The latest state of every series this detector tracks."""
        ...

    def state_of(self, key: SeriesKey, rule: str) -> SeriesState | None:
        """The latest state of `rule` on `key`; None if this detector does not track that pair.

        An alert is about one series and one rule: asking `states()` would merge the rules."""
        ...

    def forget(self, key: SeriesKey) -> None:
        """Drop the state of a series that has gone away."""
        ...

    def score(self, key: SeriesKey) -> float:
        """The calibrated score in [0, 1] of the latest sample of `key` (0.0 if unknown).

        This is what the NAB benchmark records per row; the agent fires at score >= 0.5.
        """
        ...

    def history_seconds(self) -> float:
        """How much history (seconds) replaying at start-up needs to rebuild the state; 0 = none."""
        ...


class Untracked:
    """The type of UNTRACKED."""

    def __repr__(self) -> str:
        return "UNTRACKED"


# What `Stepping.handle` returns for a series the detector has not seen yet.
UNTRACKED: Final = Untracked()


@runtime_checkable
class Stepping(Protocol):
    """A detector whose `observe` is a series lookup followed by `step`.

    What lets a feed of several detectors look each series up once for all of them
    (`detect.feed.DetectorFeed`): at 10,000 series the lookups were ~9 % of the default set's
    time per sample (bench/detect_throughput.py)."""

    def handle(self, key: SeriesKey) -> Any:
        """The per-series state `step` takes; None if the series needs no evaluation (disabled,
        no rule matches it), UNTRACKED if the detector has not seen its first sample yet.

        A handle stays valid until `forget(key)`."""
        ...

    def step(self, handle: Any, sample: Sample) -> list[Anomaly]:
        """`observe(sample)` for a sample of the series `handle` belongs to (not its first)."""
        ...


@runtime_checkable
class HasStateRows(Protocol):
    """A detector that can copy its states as plain tuples."""

    def state_rows(self) -> StateRows:
        """A fresh dict of (score in [0, 1], anomalous, statistic or None) per tracked series."""
        ...


@dataclass(frozen=True, slots=True)
class Scores:
    """A detector's score in [0, 1] and anomalous flag per tracked series, as parallel lists.

    What ranking needs, copied on the event loop without hashing a key or allocating an
    object per series (floats and bools are shared); readers build their own lookups.
    """

    keys: list[SeriesKey]
    scores: list[float]
    anomalous: list[bool]


@runtime_checkable
class HasScores(Protocol):
    """A detector that can copy its scores without building SeriesStates."""

    def scores(self) -> Scores:
        """Fresh lists of the score in [0, 1] and anomalous flag of every tracked series."""
        ...


def scores_of(detector: Detector) -> Scores:
    """Fresh lists of the score in [0, 1] and anomalous flag of every series `detector` tracks:
    the figures of `states()`, copied cheaply when the detector offers `scores()`."""
    if isinstance(detector, HasScores):
        return detector.scores()
    states = detector.states()
    values = list(states.values())
    return Scores(list(states), [st.score for st in values], [st.anomalous for st in values])


def state_rows_of(detector: Detector) -> StateRows:
    """A fresh dict of (score in [0, 1], anomalous, statistic or None) per series `detector`
    tracks: the figures of `states()`, copied without SeriesState objects when it can."""
    if isinstance(detector, HasStateRows):
        return detector.state_rows()
    return {k: (st.score, st.anomalous, st.value) for k, st in detector.states().items()}


class ScoredState(Protocol):
    """What a statistical detector's per-series state exposes."""

    score: float
    anomalous: bool

    @property
    def statistic(self) -> float:
        """The detector's own statistic (z, exceedance) behind the score."""
        ...


S = TypeVar("S", bound=ScoredState)


class PerSeriesDetector(Generic[S]):
    """Bookkeeping shared by detectors with one state object per series (None: disabled)."""

    def __init__(self) -> None:
        self._series: dict[SeriesKey, S | None] = {}

    def score(self, key: SeriesKey) -> float:
        """Score of the latest sample of `key` (0.0 if unknown or disabled)."""
        st = self._series.get(key)
        return st.score if st is not None else 0.0

    def states(self) -> Mapping[SeriesKey, SeriesState]:
        """Latest score, anomalous flag and statistic of every tracked series."""
        return {
            k: SeriesState(st.score, st.anomalous, st.statistic)
            for k, st in self._series.items()
            if st is not None
        }

    def state_rows(self) -> StateRows:
        """`states()` as (score, anomalous, statistic) tuples: far fewer GC-tracked objects."""
        return {
            k: (st.score, st.anomalous, st.statistic)
            for k, st in self._series.items()
            if st is not None
        }

    def scores(self) -> Scores:
        """`states()` as parallel lists: a few list passes, no per-series objects or hashing."""
        keys = [k for k, st in self._series.items() if st is not None]
        states = [st for st in self._series.values() if st is not None]
        return Scores(keys, [st.score for st in states], [st.anomalous for st in states])

    def state_of(self, key: SeriesKey, rule: str) -> SeriesState | None:
        """State of `key`; one rule per series here (the detector's own), so `rule` is ignored."""
        st = self._series.get(key)
        return None if st is None else SeriesState(st.score, st.anomalous, st.statistic)

    def forget(self, key: SeriesKey) -> None:
        """Drop a series' state (it has gone away)."""
        self._series.pop(key, None)

    def handle(self, key: SeriesKey) -> S | Untracked | None:
        """The state of `key` that `step` takes (None: disabled; UNTRACKED: not seen yet)."""
        return self._series.get(key, UNTRACKED)


class RefractoryState(Protocol):
    """The per-series fields a refractory period keeps (novelty, ART and Z share the rule)."""

    peak_prev: float
    peak_cur: float
    block_end_n: int
    block_end_ts: float


class Refractory(Protocol):
    """The detector whose refractory period others share (range novelty)."""

    def refractory_peak(self, key: SeriesKey) -> float:
        """Highest score in [0, 1] of the current refractory period for `key` (0.0 if none)."""
        ...

    def note_peak(self, key: SeriesKey, raw: float) -> None:
        """Count another detector's score in [0, 1] in `key`'s refractory period."""
        ...


def counts(raw: float, peak: float) -> float:
    """`raw` if it counts against the refractory period's `peak` (both scores in [0, 1]), else 0.

    A score counts only if it beats every score of the period, and nothing counts once the
    period has reached the firing point (0.5): one excursion fires once, and a series that has
    just fired does not fire again for a refractory period, however its excursion grows. Its
    alert is still open meanwhile; what is held back is a second alert for a flapping series."""
    return raw if raw > peak and peak < 0.5 else 0.0


def refractory_score(
    st: RefractoryState, raw: float, n: int, ts: float, samples: int, seconds: float
) -> float:
    """`raw` if it counts against the last refractory period (`counts`), else 0.0; records `raw`.

    The period is `samples` samples and `seconds` seconds (both must pass); `n` is the series'
    sample count and `ts` the sample's epoch seconds."""
    if raw == 0.0 and (n < st.block_end_n or ts < st.block_end_ts):
        return 0.0  # the usual case: nothing to record, and the period is still running
    if n >= st.block_end_n and ts >= st.block_end_ts:
        expired = n >= st.block_end_n + samples and ts >= st.block_end_ts + seconds
        st.peak_prev = 0.0 if expired else st.peak_cur
        st.peak_cur = 0.0
        st.block_end_n = n + samples
        st.block_end_ts = ts + seconds
    peak = st.peak_prev if st.peak_prev > st.peak_cur else st.peak_cur
    if raw > st.peak_cur:
        st.peak_cur = raw
    return counts(raw, peak)
