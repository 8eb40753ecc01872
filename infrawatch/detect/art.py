"""Adaptive-resonance detector: "the shape of the last few hours matches nothing learned".

Range novelty sees new extremes; this detector sees a new *shape* inside the old range (a change
of burstiness, a broken rhythm). It follows the principle of ARTime (the top published NAB
detector): a dual-vigilance fuzzy ART (complement-coded) over per-step feature vectors.

- Steps: a step summarises the longer of `step_samples` samples and `step` seconds (the hybrid
  windows of the other detectors) by its extreme — its max or its min, whichever lies farther
  from a moving average of step means — or its mean when the extreme is within 10 % of the mean.
- Scaling, causal: the first `learning_steps` steps are the learning period; their raw min/max,
  widened by `range_margin` of that range on each side, map values to [0, 1] (clipped), then
  quantised to 80 levels and snapped to the running median level when within 0.075 of it.
- Feature vector: the last 8 scaled step values, and their Haar transform (min-max normalised
  first), each rescaled to [0, 1]: 16 dimensions, complement-coded to 32.
- Match of a category w to input x: (|x ∧ w|₁ / |w|₁)³ · (energy match)², the energy match
  being the same ratio over the newest value and its complement. Best match ≥ the upper
  vigilance: the category learns (w ← x ∧ w); between the two vigilances: a new category of the
  same cluster; below the lower one: a new cluster, the only event that scores, by how far below
  vigilance the best match was. Vigilance adapts to the running match statistics, and events
  within 12 steps of the last one are masked unless clearly worse.
- Memory: at most `max_categories` categories (32 lanes packed in one int, ~100 bytes);
  past the cap, a new category replaces the least recently resonating one (eviction,
  O(categories) only when it happens).

After the learning period the learning steps are trained in order (after a throwaway pass that
sets the initial vigilance to the mean match of its second half). Cost: O(categories) per step,
O(1) per sample otherwise.
"""

from __future__ import annotations

import math
import struct
from array import array
from collections import deque
from dataclasses import dataclass

from infrawatch.detect.base import (
    BELOW_HALF,
    PerSeriesDetector,
    Refractory,
    counts,
    refractory_score,
)
from infrawatch.detect.config import ArtConfig
from infrawatch.detect.match import effective_settings
from infrawatch.model import Anomaly, AnomalyStatus, Sample, SeriesKey

WINDOW = 8  # steps per feature vector
DIM = 2 * WINDOW  # Haar coefficients + scaled values
LEVELS = 80  # quantisation levels of a scaled value
CHOMP = 0.075  # a value this close to the running median level is snapped to it
MASK_STEPS = 12  # repeats suppressed for this many steps after an event (1.5 windows)
SPIKE = 0.1  # a step's extreme counts only if it differs from the step mean by 10 %
INITIAL_RHO = 0.80
RHO_CAP = 0.97
SQRT_HALF = math.sqrt(0.5)
# Sign of the Haar detail coefficient: -1 = (later − earlier) / √2. Measured on NAB (35 files):
# ART alone 61.9 with -1, 56.6 with +1; the default set 69.0 against 68.6.
HAAR_SIGN = -1.0


@dataclass(frozen=True, slots=True)
class AParams:
    """Effective settings for one series."""

    threshold: float
    step_samples: int
    step_seconds: float
    learning_steps: int
    margin: float
    max_categories: int
    refractory_samples: int
    refractory_seconds: float


def art_params(config: ArtConfig, key: SeriesKey) -> AParams | None:
    """Effective settings for `key` (first matching override applied); None if disabled."""
    merged = effective_settings(config, key)
    if not merged["enabled"]:
        return None
    return AParams(
        threshold=float(merged["threshold"]),
        step_samples=int(merged["step_samples"]),
        step_seconds=float(merged["step"]),
        learning_steps=int(merged["learning_steps"]),
        margin=float(merged["range_margin"]),
        max_categories=int(merged["max_categories"]),
        refractory_samples=int(merged["refractory_samples"]),
        refractory_seconds=float(merged["refractory"]),
    )


def haar(x: list[float]) -> list[float]:
    """Full orthonormal Haar transform of 8 values: [approximation, coarse … fine details]."""
    a = x
    details: list[float] = []
    while len(a) > 1:
        nxt = []
        det = []
        for k in range(0, len(a), 2):
            nxt.append((a[k] + a[k + 1]) * SQRT_HALF)
            det.append(HAAR_SIGN * (a[k] - a[k + 1]) * SQRT_HALF)
        details = det + details
        a = nxt
    return a + details


def _unit(x: list[float]) -> list[float]:
    """x shifted and scaled to [0, 1] (all zeros if constant)."""
    lo = min(x)
    hi = max(x) - lo
    if hi == 0.0:
        return [v - lo for v in x]
    return [(v - lo) / hi for v in x]


LANES = 2 * DIM  # complement-coded dimensions
GUARD = sum(1 << (16 * i + 8) for i in range(LANES))  # bit 8 of every 16-bit lane
LANE_MAX = 0xFFFF  # a packed vector mod 2^16 - 1 is the sum of its lanes (each sum < 2^16 - 1)
E1 = 16 * (DIM - 1)  # shift of the newest scaled value's lane (the "energy" dimension)
E2 = 16 * (2 * DIM - 1)  # and of its complement


_PACK = struct.Struct(f"<{LANES}H")  # the lanes, little-endian: lane i at bits 16·i


def features(window: list[float]) -> int:
    """Complement-coded feature vector of the last 8 scaled step values, each quantised to 1/255
    and packed in a 16-bit lane of one int: the fuzzy AND of two vectors is then a few big-int
    operations (see `fuzzy_and`) rather than a Python loop, and a category costs ~100 bytes."""
    fw = _unit(haar(_unit(window)))
    q = [round(v * 255.0) for v in fw + window]
    return int.from_bytes(_PACK.pack(*q, *[255 - v for v in q]), "little")


def fuzzy_and(a: int, b: int) -> int:
    """Lane-wise minimum of two packed vectors (SWAR: a guard bit per lane shows a >= b)."""
    ge = (((a | GUARD) - b) & GUARD) >> 8  # 1 in the lanes where a >= b
    return a ^ ((a ^ b) & (ge * 0xFF))


def lane_sum(v: int) -> int:
    """Sum of the lanes of a packed vector (its L1 norm, in 1/255 units)."""
    return v % LANE_MAX


class _Art:
    """The dual-vigilance fuzzy ART of one series: categories, vigilance, match statistics."""

    __slots__ = ("cats", "e1", "e2", "last_used", "norms", "rho_lb", "rho_ub", "step")

    def __init__(self, rho: float) -> None:
        self.cats: list[int] = []
        # Per category: its lane sum, and its two energy lanes (newest value and complement),
        # kept beside the packed vector so a match does not extract them again.
        self.norms: list[int] = []
        self.e1: list[int] = []
        self.e2: list[int] = []
        self.last_used: list[int] = []
        self.rho_lb = rho
        self.rho_ub = rho
        self.step = 0

    def train(self, x: int, cap: int) -> tuple[bool, float, float]:
        """Present x; return (new cluster?, best match, its energy match)."""
        self.step += 1
        best = 0.0
        best_e = 0.0
        ub = self.rho_ub
        resonant: list[tuple[int, int]] = []
        x1 = (x >> E1) & 0xFF
        x2 = (x >> E2) & 0xFF
        xg = x | GUARD
        norms = self.norms
        e1 = self.e1
        e2 = self.e2
        for j, w in enumerate(self.cats):
            w1 = e1[j]
            w2 = e2[j]
            we = w1 + w2
            es = ((x1 if x1 < w1 else w1) + (x2 if x2 < w2 else w2)) / we if we else 0.0
            # The match fs³·es² is at most es² (fs <= 1), in floats too (rounding is monotonic):
            # a category that can neither beat the best match nor resonate is skipped before
            # the big-int work, with the same outcome.
            ee = es * es
            if ee <= best and ee < ub:
                continue
            ge = ((xg - w) & GUARD) >> 8  # fuzzy_and(x, w), inlined
            em = x ^ ((x ^ w) & (ge * 0xFF))
            nw = norms[j]
            fs = (em % LANE_MAX) / nw if nw else 0.0
            m = fs * fs * fs * es * es
            if m > best:
                best = m
                best_e = es
            if m >= ub:
                resonant.append((j, em))
        if resonant:
            for j, em in resonant:  # fast learning: every resonating category shrinks onto x
                self._set(j, em)
            return False, best, best_e
        self._add(x, cap)
        return best < self.rho_lb, best, best_e

    def _set(self, j: int, w: int) -> None:
        """Category j becomes w (it resonated, or replaces an evicted one)."""
        self.cats[j] = w
        self.norms[j] = w % LANE_MAX
        self.e1[j] = (w >> E1) & 0xFF
        self.e2[j] = (w >> E2) & 0xFF
        self.last_used[j] = self.step

    def _add(self, x: int, cap: int) -> None:
        """Add a category; past the cap replace the least recently resonating one."""
        if len(self.cats) >= cap:
            self._set(min(range(len(self.cats)), key=self.last_used.__getitem__), x)
            return
        self.cats.append(x)
        self.norms.append(lane_sum(x))
        self.e1.append((x >> E1) & 0xFF)
        self.e2.append((x >> E2) & 0xFF)
        self.last_used.append(self.step)


class _AState:
    __slots__ = (
        "anomalous",
        "art",
        "best",
        "block_end_n",
        "block_end_ts",
        "ds_avg",
        "ds_n",
        "event_sim",
        "events",
        "events_sum",
        "fwin",
        "hi",
        "hist",
        "last_event",
        "learn",
        "lo",
        "mask_cat",
        "n",
        "no_new",
        "p",
        "peak_cur",
        "peak_prev",
        "raw_hi",
        "raw_lo",
        "rho_mean_n",
        "rho_mean_sum",
        "rho_update",
        "score",
        "sim_diff",
        "sims",
        "st_hi",
        "st_lo",
        "st_n",
        "st_start",
        "st_sum",
        "steps",
    )

    def __init__(self, p: AParams) -> None:
        self.p = p
        self.n = 0  # raw samples in closed steps
        self.steps = 0  # completed steps
        self.st_n = 0
        self.st_sum = 0.0
        self.st_lo = math.inf
        self.st_hi = -math.inf
        self.st_start = 0.0
        self.ds_avg = 0.0
        self.ds_n = 0
        self.raw_lo = math.inf
        self.raw_hi = -math.inf
        self.learn: list[float] | None = []  # step values of the learning period
        self.lo = 0.0
        self.hi = 1.0
        self.hist = array("l", [0] * (LEVELS + 1))
        self.fwin: deque[float] = deque(maxlen=WINDOW)
        self.art: _Art | None = None
        half = p.learning_steps // 2 + 1
        self.sims: deque[float] = deque([1.0] * half, maxlen=half)
        self.sim_diff: deque[float] = deque(
            [0.0] * (p.learning_steps + 1), maxlen=p.learning_steps + 1
        )
        self.rho_mean_sum = 0.0
        self.rho_mean_n = 0
        self.events_sum = 0.0  # sum and count of the events' matches (vigilance floor)
        self.events = 0
        self.event_sim = 0.0  # match of the latest event (its minimum over its mask period)
        self.last_event = -(10**9)
        self.rho_update = 0
        self.mask_cat = False
        self.no_new = 0
        self.best = 1.0
        self.score = 0.0
        self.anomalous = False
        self.peak_prev = 0.0
        self.peak_cur = 0.0
        self.block_end_n = 0
        self.block_end_ts = -math.inf

    @property
    def statistic(self) -> float:
        """The best match of the latest step (shown on /metrics)."""
        return self.best


class ArtDetector(PerSeriesDetector[_AState]):
    """Scores steps whose shape resonates with none of the patterns learned for the series."""

    name = "art"

    def __init__(self, config: ArtConfig, shared: Refractory | None = None) -> None:
        """`shared`: the detector whose refractory period this one shares (range novelty)."""
        self.config = config
        self.shared = shared
        self._shared_params: dict[AParams, AParams] = {}
        super().__init__()

    def history_seconds(self) -> float:
        """The learning period (at 5-minute sampling or faster) plus a day, seconds: a restart
        replays past the learning period, so a restored series is not learning again."""
        c = self.config
        longest = 0.0
        for o in [None, *c.overrides]:
            steps = o.learning_steps if o is not None and o.learning_steps else c.learning_steps
            step = o.step if o is not None and o.step is not None else c.step
            samples = o.step_samples if o is not None and o.step_samples else c.step_samples
            longest = max(longest, steps * max(step, samples * 300.0))
        return longest + 86400.0

    def categories(self, key: SeriesKey) -> int:
        """Number of categories learned for `key` (0 while learning or unknown)."""
        st = self._series.get(key)
        return len(st.art.cats) if st is not None and st.art is not None else 0

    def learning(self, key: SeriesKey) -> bool:
        """Whether `key` is still in its learning period (True if unknown)."""
        st = self._series.get(key)
        return st is None or st.art is None

    def observe(self, sample: Sample) -> list[Anomaly]:
        """Add one sample to its step; at a step's end, present the shape to the ART."""
        key = (sample.name, sample.labels)
        try:
            st = self._series[key]
        except KeyError:
            params = art_params(self.config, key)
            if params is not None:
                # One shared AParams per distinct setting: read for every sample, it stays in
                # the CPU cache.
                params = self._shared_params.setdefault(params, params)
            st = self._series[key] = _AState(params) if params is not None else None
        if st is None:  # disabled
            return []
        return self.step(st, sample)

    def step(self, st: _AState, sample: Sample) -> list[Anomaly]:
        """`observe` for a series already seen: `st` is its state (`handle`)."""
        x = sample.value
        if x - x != 0.0:
            return []
        ts = sample.ts
        # Most samples (180 of 181 at 10 s) only join the open step: this path is kept to a few
        # field updates. The sample count `n` and the learning period's raw range are brought
        # up to date when the step closes (`_step`), from the step's own count, min and max.
        n = st.st_n + 1
        st.st_n = n
        st.st_sum += x
        if n == 1:
            st.st_start = ts
            st.st_lo = x
            st.st_hi = x
        elif x < st.st_lo:
            st.st_lo = x
        elif x > st.st_hi:  # (lo <= hi: x cannot be beyond both)
            st.st_hi = x
        p = st.p
        if n < p.step_samples or ts - st.st_start < p.step_seconds:
            # Mid-step: nothing to score, and the match, which decides resolving, only changes
            # at a step's end.
            st.score = 0.0
            return []
        return self._decide(sample, st, self._step(st))

    def _step(self, st: _AState) -> float:
        """Close the step; return the ART score of the step (0 unless a new cluster)."""
        p = st.p
        mean = st.st_sum / st.st_n
        hi = st.st_hi
        lo = st.st_lo
        st.n += st.st_n
        if st.learn is not None:  # every sample of the learning period is in one of its steps
            if lo < st.raw_lo:
                st.raw_lo = lo
            if hi > st.raw_hi:
                st.raw_hi = hi
        st.st_n = 0
        st.st_sum = 0.0
        st.st_lo = math.inf
        st.st_hi = -math.inf
        st.ds_avg = mean if st.ds_n == 0 else (st.ds_avg + mean) / 2.0
        st.ds_n += 1
        ds = lo if abs(hi - st.ds_avg) < abs(lo - st.ds_avg) else hi
        if abs(ds - mean) < SPIKE * abs(mean):
            ds = mean
        st.steps += 1
        if st.learn is not None:
            st.learn.append(ds)
            if len(st.learn) >= p.learning_steps:
                self._learn(st)
            return 0.0
        return self._present(st, self._scaled(st, ds), scoring=True)

    def _scaled(self, st: _AState, ds: float) -> float:
        """Causal scaling to [0, 1], quantised, snapped to the running median level."""
        width = st.hi - st.lo
        v = (ds - st.lo) / width if width > 0.0 else 0.5
        v = 0.0 if v < 0.0 else 1.0 if v > 1.0 else v
        level = round(v * LEVELS)
        hist = st.hist
        hist[level] += 1
        half = (sum(hist) + 1) // 2
        acc = 0
        med = 0
        for i, c in enumerate(hist):
            acc += c
            if acc >= half:
                med = i
                break
        v = level / LEVELS
        m = med / LEVELS
        return m if abs(v - m) < CHOMP else v

    def _learn(self, st: _AState) -> None:
        """End of learning: fix the scale, set the initial vigilance, train the learning steps."""
        p = st.p
        span = st.raw_hi - st.raw_lo
        st.lo = st.raw_lo - p.margin * span
        st.hi = st.raw_hi + p.margin * span
        learn = st.learn or []
        st.learn = None
        scaled = [self._scaled(st, ds) for ds in learn]
        vectors = []
        window: deque[float] = deque(maxlen=WINDOW)
        for v in scaled:
            window.append(v)
            if len(window) == WINDOW:
                vectors.append(features(list(window)))
        probe = _Art(INITIAL_RHO)
        matches_ = [probe.train(f, p.max_categories)[1] for f in vectors]
        tail = matches_[len(matches_) // 2 :]
        rho = sum(tail) / len(tail) if tail else INITIAL_RHO
        st.art = _Art(rho)
        st.fwin = window
        for f in vectors:
            self._train(st, f, scoring=False)

    def _present(self, st: _AState, v: float, *, scoring: bool) -> float:
        st.fwin.append(v)
        if len(st.fwin) < WINDOW:
            return 0.0
        return self._train(st, features(list(st.fwin)), scoring=scoring)

    def _train(self, st: _AState, f: int, *, scoring: bool) -> float:
        """One ART step with ARTime's masking and vigilance adaptation; the event's score."""
        art = st.art
        if art is None:
            return 0.0
        p = st.p
        i = art.step + 1
        trend = p.learning_steps
        since = i - st.last_event
        update_after_event = since == MASK_STEPS
        update_for_trend = i - st.rho_update >= trend // 2
        mask_after_event = since <= MASK_STEPS
        if scoring and st.mask_cat and st.no_new >= MASK_STEPS:
            st.mask_cat = False
        new, best, best_e = art.train(f, p.max_categories)
        st.best = best
        st.no_new = 0 if new else st.no_new + 1
        st.rho_mean_sum += best
        st.rho_mean_n += 1
        st.sims.append(best)
        st.sim_diff.append(art.rho_ub - best)
        if since < MASK_STEPS and st.events and best < st.event_sim:
            st.events_sum += best - st.event_sim  # the event's match: its mask period's minimum
            st.event_sim = best
        masking = st.mask_cat or mask_after_event
        below_last = best < st.event_sim * (0.90 if mask_after_event else 0.70)
        score = 0.0
        if scoring and new and (not masking or below_last):
            score = _event_score(best, best_e, art.rho_lb, art.rho_ub)
            st.events_sum += best
            st.events += 1
            st.event_sim = best
            st.last_event = i
        st.mask_cat = new or st.mask_cat
        if scoring and (update_after_event or update_for_trend):
            self._adapt(st, art, i)
        return score

    def _adapt(self, st: _AState, art: _Art, i: int) -> None:
        """Move the vigilances with the running match statistics (ARTime's rule)."""
        ub = min(RHO_CAP, st.rho_mean_sum / st.rho_mean_n)
        lb = art.rho_lb
        low = min(st.sims)
        if lb <= low:
            lb += (low - lb) * 0.19
        else:
            decr = 0.0
            if i > 2 * st.p.learning_steps:
                below = [min(0.37, d) for d in st.sim_diff if d > 0.05]
                if below:
                    decr = sum(below) / len(below)
            lb -= max(0.01, decr) / 2.0
            if st.events:
                lb = max(st.events_sum / st.events, lb)
        art.rho_lb = min(ub, lb)
        art.rho_ub = ub
        st.rho_update = i
        st.mask_cat = True

    def _decide(self, sample: Sample, st: _AState, raw_art: float) -> list[Anomaly]:
        """Calibrate, apply the (shared) refractory period, report firing/resolved."""
        p = st.p
        raw = art_score(raw_art, p.threshold)
        if self.shared is not None:
            key = (sample.name, sample.labels)
            peak = self.shared.refractory_peak(key)
            score = counts(raw, peak)
            if raw > 0.0:
                self.shared.note_peak(key, raw)
        else:
            score = refractory_score(
                st, raw, st.n, sample.ts, p.refractory_samples, p.refractory_seconds
            )
        st.score = score
        if score >= 0.5 and not st.anomalous:
            st.anomalous = True
            return [self._anomaly(sample, st, score, raw_art, "firing")]
        if st.anomalous and st.art is not None and st.best >= st.art.rho_lb:
            st.anomalous = False
            return [self._anomaly(sample, st, 0.0, raw_art, "resolved")]
        return []

    def _anomaly(
        self, sample: Sample, st: _AState, score: float, strength: float, status: AnomalyStatus
    ) -> Anomaly:
        art = st.art
        cats = len(art.cats) if art is not None else 0
        lb = art.rho_lb if art is not None else 0.0
        evidence: dict[str, float | str] = {
            "match": round(st.best, 4),
            "vigilance": round(lb, 4),
            "categories": cats,
            "strength": round(strength, 4),
            "threshold": st.p.threshold,
        }
        if status == "firing":
            summary = (
                f"the shape of the last {WINDOW} steps matches none of the {cats} learned"
                f" patterns: best match {st.best:.2f} under vigilance {lb:.2f}"
            )
        else:
            summary = f"{sample.name} back to a learned shape (match {st.best:.2f})"
        return Anomaly.of(
            sample,
            detector=self.name,
            rule="art",
            severity="warning",
            status=status,
            score=score,
            evidence=evidence,
            summary=summary,
            annotations=self.config.annotations,
        )


def art_score(strength: float, threshold: float) -> float:
    """Calibrated score of an event strength: s / (s + threshold), 0.5 exactly at the threshold
    (a linear map from 0.5 at the threshold to 1 at full strength was measured: 68.7 / 69.1 on
    NAB for thresholds 0.85 / 0.9, against 68.9 / 69.0, no better)."""
    if strength <= 0.0:
        return 0.0
    raw = strength / (strength + threshold)
    return BELOW_HALF if raw >= 0.5 and strength < threshold else raw


def _event_score(sim: float, energy: float, lb: float, ub: float) -> float:
    """ARTime's event strength: how far below each vigilance the match is, plus energy."""
    s = min(0.999, sim)
    up = ((1.0 - s) - (1.0 - ub)) / (1.0 - s)
    low = ((1.0 - s) - (1.0 - lb)) / (1.0 - s)
    v = up * 0.35 + low * 0.65 + (1.0 - energy) * 1.5
    return 1.0 if v > 1.0 else max(0.0, v)
