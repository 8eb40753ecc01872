"""Range-novelty detector: "the first time this extreme in weeks".

For each sample three features are derived — the value, a short rolling median (a sustained shift
rather than a blip) and the seasonal change (value minus the value one season earlier, from a
time-slotted ring) — and each is compared with the range [min, max] it covered over a long
history, kept as per-block min/max (O(1) amortised per sample, bounded memory). The evidence is
the exceedance beyond that range as a fraction of its width, weighted per feature; a detection
counts only if it is the strongest of a refractory period, so one excursion fires once.

Windows are "the longer of N samples and T seconds": a block of history closes only when it
holds `history_samples / blocks` samples *and* spans `history / blocks` seconds. On fast sampling
(10 s) time dominates and the history covers weeks; on slow sampling (hourly) the sample count
dominates, so the range still rests on thousands of points (converting windows naively to time
cost 5-10 NAB points on hourly data: the range then held too few points to be trusted).

Score = e / (e + threshold) for the weighted exceedance e: 0.5 exactly at the threshold.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from infrawatch.detect.base import (
    BELOW_HALF,
    PerSeriesDetector,
    confidence,
    refractory_score,
    young_text,
)
from infrawatch.detect.config import NoveltyConfig
from infrawatch.detect.match import effective_settings
from infrawatch.detect.seasonal import SeasonalRing
from infrawatch.model import Anomaly, AnomalyStatus, Sample, SeriesKey
from infrawatch.storage.rollup import Bucket
from infrawatch.units import format_duration

NEG_INF = -math.inf
NEG_INF = -math.inf
FEATURES = ("value", "median", "seasonal_change")


@dataclass(frozen=True, slots=True)
class NParams:
    """Effective settings for one series."""

    threshold: float
    block_samples: int
    block_seconds: float
    blocks: int
    min_history: int
    min_age: float
    median: int
    weights: tuple[float, float, float]
    seasonal: bool
    slot_width: float
    slots: int
    refractory_samples: int
    refractory_seconds: float
    confidence_samples: int = 0
    confidence_seconds: float = 0.0


class _Range:
    """Min/max of one feature over the last `blocks` closed blocks plus the open one.

    `lo`/`hi` always cover everything retained (closed blocks and the open one), so scoring a
    value is two comparisons; the closed blocks' min/max is recomputed only when the oldest block
    drops out (once per block, O(blocks))."""

    __slots__ = (
        "block_samples",
        "block_seconds",
        "blocks",
        "closed_hi",
        "closed_lo",
        "cur_hi",
        "cur_lo",
        "cur_n",
        "cur_start",
        "hi",
        "his",
        "lo",
        "los",
        "min_history",
        "n",
        "starts",
        "was",
    )

    def __init__(self, p: NParams) -> None:
        self.block_samples = p.block_samples
        self.block_seconds = p.block_seconds
        self.blocks = p.blocks
        self.min_history = p.min_history
        self.los: deque[float] = deque()
        self.his: deque[float] = deque()
        self.starts: deque[float] = deque()
        self.closed_lo = math.inf
        self.closed_hi = -math.inf
        self.lo = math.inf  # over the closed blocks and the open one
        self.hi = -math.inf
        self.cur_lo = math.inf
        self.cur_hi = -math.inf
        self.cur_n = 0
        self.cur_start = 0.0
        self.n = 0
        self.was = (math.inf, -math.inf, 0.0)  # (lo, hi, since) before the last exceedance

    def push(self, x: float, ts: float) -> float:
        """Add a value seen at `ts` (epoch seconds); return how far it lay outside the range
        before, as a fraction of the range's width (0.0 inside, or before `min_history`)."""
        e = 0.0
        if self.cur_n == 0:
            self.cur_start = ts
            self.cur_lo = self.cur_hi = x
        elif x > self.cur_hi:
            self.cur_hi = x
        elif x < self.cur_lo:
            self.cur_lo = x
        if x > self.hi:
            if self.n >= self.min_history:
                e = exceedance(x, self.lo, self.hi)
                self.was = (self.lo, self.hi, self.since())
            self.hi = x
        if x < self.lo:
            if self.n >= self.min_history:
                e = exceedance(x, self.lo, self.hi)
                self.was = (self.lo, self.hi, self.since())
            self.lo = x
        self.cur_n += 1
        self.n += 1
        if self.cur_n >= self.block_samples and ts - self.cur_start >= self.block_seconds:
            self._close()
        return e

    def _close(self) -> None:
        """Close the open block and drop the oldest beyond `blocks`."""
        self.los.append(self.cur_lo)
        self.his.append(self.cur_hi)
        self.starts.append(self.cur_start)
        if len(self.los) > self.blocks:
            self.los.popleft()
            self.his.popleft()
            self.starts.popleft()
            self.closed_lo = min(self.los)
            self.closed_hi = max(self.his)
        else:
            self.closed_lo = min(self.closed_lo, self.cur_lo)
            self.closed_hi = max(self.closed_hi, self.cur_hi)
        self.lo = self.closed_lo
        self.hi = self.closed_hi
        self.cur_lo = math.inf
        self.cur_hi = -math.inf
        self.cur_n = 0

    def add_span(self, lo: float, hi: float, count: int, first: float, last: float) -> None:
        """Fold in `count` values within [lo, hi] seen over [first, last] (restore from rollups)."""
        if self.cur_n == 0:
            self.cur_start = first
        self.cur_lo = min(self.cur_lo, lo)
        self.cur_hi = max(self.cur_hi, hi)
        self.lo = min(self.lo, lo)
        self.hi = max(self.hi, hi)
        self.cur_n += count
        self.n += count
        if self.cur_n >= self.block_samples and last - self.cur_start >= self.block_seconds:
            self._close()

    def bounds(self) -> tuple[float, float]:
        """(min, max) over the whole retained history."""
        return self.lo, self.hi

    def since(self) -> float:
        """Start time of the oldest retained block."""
        return self.starts[0] if self.starts else self.cur_start


class _NState:
    __slots__ = (
        "anomalous",
        "block_end_n",
        "block_end_ts",
        "born",
        "conf",
        "evidence",
        "exceed",
        "interval",
        "last_ts",
        "oldest",
        "p",
        "peak_cur",
        "peak_prev",
        "ranges",
        "recent",
        "ring",
        "score",
        "sorted_recent",
    )

    @property
    def statistic(self) -> float:
        """The weighted exceedance of the latest sample (shown on /metrics)."""
        return self.exceed

    def __init__(self, p: NParams) -> None:
        self.p = p
        self.ranges = (_Range(p), _Range(p), _Range(p))
        # The median's window as a ring and a sorted copy, in flat arrays of doubles: with
        # thousands of series, boxed floats scattered over the heap cost a cache miss each.
        self.recent = array("d")
        self.sorted_recent = array("d")
        self.oldest = 0  # index in `recent` of the oldest value once the window is full
        self.ring = SeasonalRing(p.slot_width, p.slots) if p.seasonal else None
        self.peak_prev = 0.0
        self.peak_cur = 0.0
        self.block_end_n = 0
        self.block_end_ts = -math.inf
        self.anomalous = False
        self.score = 0.0
        self.exceed = 0.0
        self.interval = 0.0
        self.last_ts = -math.inf
        self.born = math.inf  # time of the oldest sample (seeded or seen): the series' age
        self.conf = 1.0  # the confidence applied to the latest sample's evidence
        self.evidence: tuple[int, float, float, float, float] | None = None


def novelty_params(config: NoveltyConfig, key: SeriesKey) -> NParams | None:
    """Effective settings for `key` (its first matching override applied); None if disabled."""
    merged = effective_settings(config, key)
    if not merged["enabled"]:
        return None
    blocks = int(merged["blocks"])
    return NParams(
        threshold=float(merged["threshold"]),
        block_samples=max(1, int(merged["history_samples"]) // blocks),
        block_seconds=float(merged["history"]) / blocks,
        blocks=blocks,
        min_history=int(merged["min_history"]),
        min_age=float(merged["min_age"]),
        median=int(merged["median_samples"]),
        weights=(1.0, float(merged["median_weight"]), float(merged["seasonal_weight"])),
        seasonal=bool(merged["seasonal"]) and float(merged["seasonal_weight"]) > 0,
        slot_width=float(merged["season"]) / int(merged["season_slots"]),
        slots=int(merged["season_slots"]),
        refractory_samples=int(merged["refractory_samples"]),
        refractory_seconds=float(merged["refractory"]),
        confidence_samples=int(merged["confidence_samples"]),
        confidence_seconds=float(merged["confidence"]),
    )


def exceedance(x: float, lo: float, hi: float) -> float:
    """How far x lies outside [lo, hi], as a fraction of the width (0 inside)."""
    if lo <= x <= hi:
        return 0.0
    width = hi - lo
    # A flat history has no width: measure against the value's own scale instead.
    floor = 1e-9 * max(abs(lo), abs(hi), 1.0)
    if width < floor:
        width = floor
    return (x - hi) / width if x > hi else (lo - x) / width


class NoveltyDetector(PerSeriesDetector[_NState]):
    """Scores how far a series goes beyond the range its features covered over a long history."""

    name = "novelty"

    def __init__(self, config: NoveltyConfig) -> None:
        self.config = config
        super().__init__()

    def history_seconds(self) -> float:
        """The configured history in time (at fast sampling; the sample floor may extend it)."""
        c = self.config
        return max([c.history, *(o.history for o in c.overrides if o.history)]) + c.season

    def raw_seconds(self) -> float:
        """Raw history a restore must replay once `seed` has rebuilt the older part: two
        refractory periods (the suppression state), which also cover the rolling median."""
        c = self.config
        longest = max([c.refractory, *(o.refractory for o in c.overrides if o.refractory)])
        return 2.0 * longest

    def seed_step(self) -> int | None:
        """Seconds per ring slot, if rollups can seed the seasonal ring (else None: no seeding)."""
        c = self.config
        width = c.season / c.season_slots
        if c.overrides or width % 60 or c.season % 3600:
            return None
        return int(width)

    def seed(
        self, key: SeriesKey, history: Sequence[Bucket], width: float, ring: Sequence[Bucket]
    ) -> None:
        """Rebuild the far past of `key` from aggregates, before the raw replay of the rest.

        `history`: buckets `width` seconds wide (oldest first); `ring`: the last season before
        the raw replay, one bucket per ring slot. The value ranges are exact (min/max of the
        values); the median's are the values' min/max and the seasonal change's are bounded by
        the bucket's and the season-ago bucket's min/max, both of which contain every true value:
        a seeded range is never narrower than the replayed one, so seeding never adds a detection
        that the raw history would not have made by range alone.
        """
        st = self._series.get(key)
        if st is None:
            params = novelty_params(self.config, key)
            if params is None:
                self._series[key] = None
                return
            st = self._series[key] = _NState(params)
        p = st.p
        season = p.slot_width * p.slots
        by_ts = {b.ts: b for b in history}
        seen_lo, seen_hi = math.inf, -math.inf
        value, median, change = st.ranges
        # Restored history counts as history (not young again). The oldest sample lies somewhere
        # in the first bucket: its end is a lower bound on the age, so seeding never makes a
        # series more confident (and its scores higher) than a replay would.
        if history and history[0].ts + width < st.born:
            st.born = history[0].ts + width
        for b in history:
            end = b.ts + width
            value.add_span(b.min, b.max, b.count, b.ts, end)
            median.add_span(b.min, b.max, b.count, b.ts, end)
            if p.seasonal:
                # A change is a value minus an earlier one of its slot: today's or a season ago.
                ago = by_ts.get(b.ts - season)
                ago_lo, ago_hi = (ago.min, ago.max) if ago is not None else (seen_lo, seen_hi)
                lo = b.min - max(b.max, ago_hi)
                hi = b.max - min(b.min, ago_lo)
                change.add_span(lo, hi, b.count, b.ts, end)
            seen_lo = min(seen_lo, b.min)
            seen_hi = max(seen_hi, b.max)
        if st.ring is not None:
            for b in ring:
                # The ring holds each slot's mean one season ago.
                st.ring.seed(b.ts, b.mean)

    def refractory_peak(self, key: SeriesKey) -> float:
        """Highest raw score of `key`'s current refractory period (0.0 if untracked)."""
        st = self._series.get(key)
        if st is None:
            return 0.0
        return st.peak_prev if st.peak_prev > st.peak_cur else st.peak_cur

    def note_peak(self, key: SeriesKey, raw: float) -> None:
        """Count another detector's raw score in `key`'s refractory period (a shared period)."""
        st = self._series.get(key)
        if st is not None and raw > st.peak_cur:
            st.peak_cur = raw

    def bounds(self, key: SeriesKey) -> list[tuple[float, float]]:
        """(min, max) of each feature's history for `key` (value, median, seasonal change)."""
        st = self._series.get(key)
        return [r.bounds() for r in st.ranges] if st is not None else []

    def band(self, key: SeriesKey) -> tuple[float, float, str] | None:
        """(lower, upper, text): the range of values the series covered over its history, which
        a value must leave to score; None until `min_history` samples and `min_age` seconds (or if
        disabled)."""
        st = self._series.get(key)
        if st is None or st.ranges[0].n < st.p.min_history or st.last_ts - st.born < st.p.min_age:
            return None
        lo, hi = st.ranges[0].bounds()
        span = _span(st.last_ts - st.ranges[0].since())
        return lo, hi, f"{span} range {lo:.4g} to {hi:.4g}"

    def observe(self, sample: Sample) -> list[Anomaly]:
        """Score one sample against the history, then add it; return firing/resolved changes."""
        key = (sample.name, sample.labels)
        try:
            st = self._series[key]
        except KeyError:
            params = novelty_params(self.config, key)
            st = self._series[key] = _NState(params) if params is not None else None
        if st is None:  # disabled
            return []
        return self.step(st, sample)

    def step(self, st: _NState, sample: Sample) -> list[Anomaly]:
        """`observe` for a series already seen: `st` is its state (`handle`)."""
        x = sample.value
        if x - x != 0.0:  # NaN/±inf would poison the ranges
            return []
        ts = sample.ts
        p = st.p
        last = st.last_ts
        if ts > last:
            if last > NEG_INF:
                st.interval = ts - last
            st.last_ts = ts
        if ts < st.born:
            st.born = ts
        # Features: the value, the rolling median, the seasonal change (the value's weight is 1).
        ranges = st.ranges
        best = ranges[0].push(x, ts)
        best_f = 0 if best > 0.0 else -1
        best_v = x
        recent = st.recent
        srt = st.sorted_recent
        if len(recent) < p.median:
            recent.append(x)
        else:
            i = st.oldest
            del srt[bisect_left(srt, recent[i])]
            recent[i] = x
            st.oldest = i + 1 if i + 1 < p.median else 0
        insort(srt, x)
        if len(srt) == p.median:
            med = srt[p.median // 2]
            e = ranges[1].push(med, ts) * p.weights[1]
            if e > best:
                best, best_f, best_v = e, 1, med
        ring = st.ring
        if ring is not None:
            change = ring.change(ts, x)
            if change == change:  # NaN until a season has passed
                e = ranges[2].push(change, ts) * p.weights[2]
                if e > best:
                    best, best_f, best_v = e, 2, change
        if best_f >= 0:
            lo, hi, since = ranges[best_f].was
            st.evidence = (best_f, best_v, lo, hi, since)
        if best > 0.0 and ts - st.born < p.min_age:
            best = 0.0  # too young to judge: the range has not yet covered one season
            best_f = -1
        if best > 0.0 and (p.confidence_samples or p.confidence_seconds):
            # A young series has not yet seen its own ordinary range: scale its evidence.
            conf = confidence(ranges[0].n, ts - st.born, p.confidence_samples, p.confidence_seconds)
            st.conf = conf
            best *= conf
        raw = best / (best + p.threshold) if best > 0.0 else 0.0
        if raw >= 0.5 and best < p.threshold:  # rounding: below the threshold never fires
            raw = BELOW_HALF
        # Refractory: a detection counts only if it beats every score of the last period.
        n = ranges[0].n
        score = refractory_score(st, raw, n, ts, p.refractory_samples, p.refractory_seconds)
        st.score = score
        st.exceed = best
        if score >= 0.5 and not st.anomalous and best_f >= 0:
            st.anomalous = True
            return [self._anomaly(sample, st, score, best, "firing")]
        if st.anomalous and best == 0.0:
            st.anomalous = False
            return [self._anomaly(sample, st, 0.0, best, "resolved")]
        return []

    def _anomaly(
        self, sample: Sample, st: _NState, score: float, exceed: float, status: AnomalyStatus
    ) -> Anomaly:
        p = st.p
        evidence: dict[str, float | str] = {"exceedance": exceed, "threshold": p.threshold}
        summary = f"{sample.name} back inside its usual range"
        young = status == "firing" and st.conf < 1.0
        if young:
            evidence["confidence"] = round(st.conf, 4)
            evidence["young"] = young_text(st.conf)
        if st.evidence is not None:
            f, v, lo, hi, since = st.evidence
            span = _span(sample.ts - since)
            width = hi - lo
            beyond = (v - hi) if v > hi else (lo - v)
            # A flat history has no width to measure against: say so rather than "inf %".
            by = f"by {100.0 * beyond / width:.1f} % of the range" if width > 0 else "flat till now"
            evidence.update(
                feature=FEATURES[f], feature_value=v, min=lo, max=hi, history_s=sample.ts - since
            )
            side, bound = (
                ("above", f"maximum {hi:.4g}") if v > hi else ("below", f"minimum {lo:.4g}")
            )
            if f == 0:
                what = f"value {v:.4g}"
            elif f == 1:
                window = format_duration(p.median * st.interval) if st.interval else ""
                what = f"{window or str(p.median) + '-sample'} median {v:.4g}"
            else:
                what = f"change vs {format_duration(p.slot_width * p.slots)} ago {v:+.4g}"
            if status == "firing":
                summary = f"{what} {side} the {span} {bound} ({by})"
                if young:
                    summary += f"; {young_text(st.conf)}, evidence scaled by {st.conf:.2f}"
        return Anomaly.of(
            sample,
            detector=self.name,
            rule="novelty",
            severity="warning",
            status=status,
            score=score,
            evidence=evidence,
            summary=summary,
            annotations=self.config.annotations,
        )


def _span(seconds: float) -> str:
    """A history length in words: whole days past two days, else whole hours."""
    if seconds >= 2 * 86400:
        return f"{round(seconds / 86400)}-day"
    return f"{max(1, round(seconds / 3600))}-hour"
