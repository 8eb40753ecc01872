"""Streaming Z-score detector: O(1) per sample, bounded memory per series.

Two features per series, each compared with its own exponentially weighted (time-based) mean and
spread: the value itself, and (optionally) the day-over-day change, i.e. the value minus the value
in the same slot of a seasonal ring one season earlier. The larger |z| wins.

Protection against the known failure modes:
- the spread is floored by the series' quantisation step (smallest non-zero change seen) and an
  optional absolute floor, so flat or quantised series have no "infinite z" (a floor at half the
  long-run spread was measured too: it cost 4-9 NAB points, see docs/detection.md);
- updates are winsorised at WINSOR spreads, so an ongoing excursion can't drag the baseline along;
- a detection counts only if its score beats every score of the last `suppress` seconds (a
  two-block running maximum), so one excursion fires once.

Score = z / (z + threshold): 0 at z = 0, exactly 0.5 at the threshold, → 1 as z grows; unlike
1 − e^(−z) it does not round to 1.0 for large z, so huge excursions still rank above big ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from math import exp, sqrt

from infrawatch.detect.base import (
    BELOW_HALF,
    PerSeriesDetector,
    Refractory,
    calibrated,
    confidence,
    counts,
    young_text,
)
from infrawatch.detect.config import NoveltyConfig, ZScoreConfig
from infrawatch.detect.match import effective_settings
from infrawatch.detect.novelty import novelty_params
from infrawatch.detect.seasonal import SeasonalRing
from infrawatch.model import Anomaly, AnomalyStatus, Sample, SeriesKey
from infrawatch.units import format_duration

WINSOR = 8.0  # updates are clipped at WINSOR spreads from the mean
# The automatic z threshold (`threshold` unset). Alone, z 5 is the best measured firing point
# (NAB dev35: 41.6 at score 0.505). Beside range novelty, the set is scored by the highest score,
# and novelty already catches what z 5-15 catches, earlier and with fewer false positives: there
# the set's NAB score rises from 59.9 (z 5) to a plateau of 66.5-67.3 for z 13-30 at score 0.5,
# so Z only fires on extreme jumps (e.g. before novelty has its minimum history).
THRESHOLD_ALONE = 5.0
THRESHOLD_BESIDE_NOVELTY = 15.0
NAN = float("nan")


@dataclass(frozen=True, slots=True)
class ZParams:
    """Effective settings for one series (the base config with its override applied)."""

    threshold: float
    window: float
    min_samples: int
    direction: str
    min_std: float
    seasonal: bool
    slot_width: float
    slots: int
    suppress: float
    resolve_z: float
    confidence_samples: int = 0
    confidence_seconds: float = 0.0
    scaled: bool = False  # either part of the confidence by history is on


class _ZState:
    """Per-series state; __slots__ keeps it small (see bench/detect_throughput.py)."""

    __slots__ = (
        "a_exp",
        "anomalous",
        "block_end",
        "born",
        "dmean",
        "dn",
        "dvar",
        "floor",
        "interval",
        "last_ts",
        "last_x",
        "mean",
        "n",
        "p",
        "peak_cur",
        "peak_prev",
        "quant",
        "ring",
        "score",
        "var",
        "z",
    )

    @property
    def statistic(self) -> float:
        """The signed z of the latest sample (shown on /metrics)."""
        return self.z

    def __init__(self, p: ZParams, ts: float, x: float) -> None:
        self.p = p
        self.n = 1
        self.last_ts = ts
        self.born = ts  # restore replays raw samples, so a restored series is not young
        self.last_x = x
        self.interval = 0.0  # the last positive time step, seconds
        # 1 - e^(-interval/window): samples come at a steady rate, so the exponential is computed
        # once per change of interval, not per sample.
        self.a_exp = 0.0
        self.mean = x
        self.var = 0.0
        self.quant = math.inf
        # The spread's floor, max(quant, min_std), kept with `quant` (which rarely changes).
        self.floor = p.min_std if p.min_std > 0.0 else 0.0
        self.ring: SeasonalRing | None = None
        if p.seasonal:
            self.ring = SeasonalRing(p.slot_width, p.slots)
            self.ring.change(ts, x)
        self.dn = 0
        self.dmean = 0.0
        self.dvar = 0.0
        self.peak_prev = 0.0
        self.peak_cur = 0.0
        self.block_end = ts + p.suppress
        self.anomalous = False
        self.score = 0.0
        self.z = 0.0


def score_of(z: float, threshold: float) -> float:
    """Calibrated score in [0, 1): z / (z + threshold), 0.5 exactly at the threshold."""
    return calibrated(z, threshold)


def _params(
    config: ZScoreConfig, key: SeriesKey, novelty: NoveltyConfig | None = None
) -> ZParams | None:
    merged = effective_settings(config, key)
    if not merged["enabled"]:
        return None
    if merged["threshold"] is not None:
        threshold = float(merged["threshold"])
    elif novelty is not None and novelty_params(novelty, key) is not None:
        threshold = THRESHOLD_BESIDE_NOVELTY
    else:
        threshold = THRESHOLD_ALONE
    return ZParams(
        threshold=threshold,
        window=float(merged["window"]),
        min_samples=int(merged["min_samples"]),
        direction=str(merged["direction"]),
        min_std=float(merged["min_std"]),
        seasonal=bool(merged["seasonal"]),
        slot_width=float(merged["season"]) / int(merged["season_slots"]),
        slots=int(merged["season_slots"]),
        suppress=float(merged["suppress"]),
        resolve_z=threshold * float(merged["resolve_ratio"]),
        confidence_samples=int(merged["confidence_samples"]),
        confidence_seconds=float(merged["confidence"]),
        scaled=bool(int(merged["confidence_samples"]) or float(merged["confidence"])),
    )


class ZScoreDetector(PerSeriesDetector[_ZState]):
    """Streaming z-score of the level and of the seasonal change, per series."""

    name = "zscore"

    def __init__(
        self,
        config: ZScoreConfig,
        novelty: NoveltyConfig | None = None,
        shared: Refractory | None = None,
    ) -> None:
        """`novelty`: the config of the novelty detector running beside this one, if any (it
        decides the automatic threshold per series); `shared`: that detector, whose refractory
        period this one shares."""
        self.config = config
        self.novelty = novelty
        self.shared = shared
        self._shared: dict[ZParams, ZParams] = {}
        super().__init__()

    def history_seconds(self) -> float:
        """Replaying this much history rebuilds a baseline indistinguishable from a long run."""
        c = self.config
        need = 0.0
        for o in [None, *c.overrides]:
            window = o.window if o is not None and o.window else c.window
            seasonal = o.seasonal if o is not None and o.seasonal is not None else c.seasonal
            season = o.season if o is not None and o.season else c.season
            suppress = o.suppress if o is not None and o.suppress else c.suppress
            # Three time constants leave e^-3 ≈ 5 % of the weight to older samples; the seasonal
            # ring and the suppression blocks need one season and two blocks.
            need = max(need, 3.0 * window, (season if seasonal else 0.0) + 2.0 * suppress)
        confidence = max([c.confidence, *(o.confidence for o in c.overrides if o.confidence)])
        # Restored history counts as history: replay enough that the series is not young again.
        return max(need, confidence + 3600.0) if confidence > 0.0 else need

    def band(self, key: SeriesKey) -> tuple[float, float, str] | None:
        """(lower, upper, text): the values the level feature accepts now, mean ± threshold·σ
        with σ floored as `observe` floors it; None until `min_samples` (or if disabled)."""
        st = self._series.get(key)
        if st is None or st.n < st.p.min_samples:
            return None
        p = st.p
        spread = max(math.sqrt(st.var), st.quant if st.quant < math.inf else 0.0, p.min_std)
        half = p.threshold * spread
        text = f"{format_duration(p.window)} mean {st.mean:.4g} ± {p.threshold:g}σ (σ {spread:.3g})"
        return st.mean - half, st.mean + half, text

    def observe(self, sample: Sample) -> list[Anomaly]:
        """Score one sample, update the baseline, return a firing/resolved change if any."""
        x = sample.value
        if x - x != 0.0:  # NaN or ±inf: no z, and it must not seed or move the baseline
            return []
        ts = sample.ts
        key = (sample.name, sample.labels)
        try:
            st = self._series[key]
        except KeyError:
            params = _params(self.config, key, self.novelty)
            if params is not None:
                # One shared ZParams per distinct setting: the hot path reads them for every
                # sample, and one object for all series stays in the CPU cache.
                params = self._shared.setdefault(params, params)
            self._series[key] = _ZState(params, ts, x) if params is not None else None
            return []
        if st is None:  # disabled series
            return []
        return self.step(st, sample)

    def step(self, st: _ZState, sample: Sample) -> list[Anomaly]:
        """`observe` for a series already seen: `st` is its state (`handle`)."""
        # This runs for every sample of every series: fields are read once into locals, the
        # exponential and the spread floor are cached on the state, and the usual sample (no
        # change of interval or quantum, an old enough series) calls nothing but sqrt and the
        # seasonal ring. Every float operation is the one the straightforward form would do, in
        # the same order: scores are bit-identical (bench/nab.py, docs/benchmarks.md).
        x = sample.value
        if x - x != 0.0:  # NaN or ±inf
            return []
        ts = sample.ts
        p = st.p
        # A duplicate or out-of-order timestamp is weighed like a regular sample (the last
        # positive step): the step weight `a` always belongs to `interval`.
        dt = ts - st.last_ts
        if dt > 0.0:  # (exactly when ts > last_ts)
            st.last_ts = ts
            if dt != st.interval:
                st.interval = dt
                st.a_exp = 1.0 - exp(-dt / p.window)
        a = st.a_exp
        step = x - st.last_x
        if step < 0.0:
            step = -step
        if 0.0 < step < st.quant:
            st.quant = step
            st.floor = p.min_std if p.min_std > step else step
        st.last_x = x
        n = st.n = st.n + 1
        # Until the window holds ~n samples, weigh all samples equally (an expanding mean): a
        # fast-sampled series would otherwise start with a near-zero spread and fire at once.
        if a < 1.0 / n:
            a = 1.0 / n
        floor = st.floor
        var = st.var
        spread = sqrt(var)
        if spread < floor:
            spread = floor
        mean_before = st.mean
        dmean_before = 0.0  # (read below only if the change feature exists: else unused)
        dev = x - mean_before
        z = dev / spread if spread > 0.0 else 0.0
        direction = p.direction
        za = (z if z > 0 else -z) if direction == "both" else (z if direction == "up" else -z)
        zbest = za
        zsigned = z
        seasonal_d = NAN
        ring = st.ring
        if ring is not None:
            d = ring.change(ts, x)
            if d == d:
                seasonal_d = d
                dmean_before = st.dmean
                dvar = st.dvar
                dspread = sqrt(dvar)
                if dspread < floor:
                    dspread = floor
                ddev = d - dmean_before
                zs = ddev / dspread if dspread > 0.0 else 0.0
                dn = st.dn = st.dn + 1
                if dn >= p.min_samples:
                    zsa = (
                        (zs if zs > 0 else -zs)
                        if direction == "both"
                        else (zs if direction == "up" else -zs)
                    )
                    if zsa > zbest:
                        zbest = zsa
                        zsigned = zs
                # Winsorised update: an excursion moves the baseline by at most threshold·spread.
                lim = WINSOR * dspread
                if lim > 0.0:
                    if ddev > lim:
                        ddev = lim
                    elif ddev < -lim:
                        ddev = -lim
                # The change feature starts a season late: its own expanding start.
                ad = a if a > 1.0 / dn else 1.0 / dn
                st.dmean = dmean_before + ad * ddev
                st.dvar = (1.0 - ad) * (dvar + ad * ddev * ddev)
        lim = WINSOR * spread
        if lim > 0.0:
            if dev > lim:
                dev = lim
            elif dev < -lim:
                dev = -lim
        st.mean = mean_before + a * dev
        st.var = (1.0 - a) * (var + a * dev * dev)
        conf = 1.0
        if zbest > 0.0 and p.scaled:
            # A young baseline has not yet seen the series' ordinary swings: scale its z. Full
            # confidence needs both parts of the history, so an old series skips the call.
            age = ts - st.born
            if n < p.confidence_samples or age < p.confidence_seconds:
                conf = confidence(n, age, p.confidence_samples, p.confidence_seconds)
                zbest *= conf
        threshold = p.threshold
        raw = zbest / (zbest + threshold) if zbest > 0.0 and n >= p.min_samples else 0.0
        if raw >= 0.5 and zbest < threshold:  # rounding: below the threshold never fires
            raw = BELOW_HALF
        # Suppression: the running maximum over the last one to two `suppress` periods.
        if ts >= st.block_end:
            if ts >= st.block_end + p.suppress:
                st.peak_prev = 0.0
            else:
                st.peak_prev = st.peak_cur
            st.peak_cur = 0.0
            st.block_end = ts + p.suppress
        peak_cur = st.peak_cur
        score = raw if raw > peak_cur and raw > st.peak_prev else 0.0
        if raw > peak_cur:
            st.peak_cur = raw
        if score > 0.0 and self.shared is not None:
            # One episode, one alert: nothing counts once the shared period reached the firing
            # point, and what counts enters it (docs/detection.md § Range novelty).
            key = (sample.name, sample.labels)
            score = counts(score, self.shared.refractory_peak(key))
            if score > 0.0:
                self.shared.note_peak(key, score)
        st.score = score
        st.z = zsigned
        anomalous = st.anomalous
        if score >= 0.5 and not anomalous:
            st.anomalous = True
            status: AnomalyStatus = "firing"
        elif anomalous and zbest < p.resolve_z:
            st.anomalous = False
            status = "resolved"
        else:
            return []
        baseline = (mean_before, dmean_before, spread)
        return [self._anomaly(sample, st, score, zsigned, z, seasonal_d, baseline, conf, status)]

    def _anomaly(
        self,
        sample: Sample,
        st: _ZState,
        score: float,
        zbest: float,
        zlevel: float,
        seasonal_d: float,
        baseline: tuple[float, float, float],
        conf: float,
        status: AnomalyStatus,
    ) -> Anomaly:
        """The change with the baseline as it was before this sample: (mean, change mean, σ);
        `conf`: the confidence by history its z was scaled by."""
        p = st.p
        mean, dmean, spread = baseline
        window = format_duration(p.window)
        seasonal_wins = zbest != zlevel
        evidence: dict[str, float | str] = {
            "z": round(zbest, 3),
            "threshold": p.threshold,
            "mean": mean,
            "std": spread,
            "window_s": p.window,
            "feature": "seasonal_change" if seasonal_wins else "level",
        }
        if seasonal_d == seasonal_d:
            evidence["seasonal_change"] = seasonal_d
            evidence["seasonal_mean"] = dmean
        side = "above" if zbest > 0 else "below"
        if seasonal_wins:
            season = format_duration(p.slot_width * p.slots)
            what = (
                f"change vs {season} ago {seasonal_d:+.4g} is {abs(zbest):.1f}σ {side} its"
                f" {window} mean {dmean:+.4g}"
            )
        else:
            what = (
                f"value {sample.value:.4g} is {abs(zbest):.1f}σ {side} the {window} mean"
                f" {mean:.4g} (σ {spread:.3g})"
            )
        if status == "resolved":
            what = f"back to normal: {what} (resolves below {p.resolve_z:g}σ)"
        elif conf < 1.0:
            evidence["confidence"] = round(conf, 4)
            evidence["young"] = young_text(conf)
            what = f"{what}; {young_text(conf)}, z scaled by {conf:.2f}"
        return Anomaly.of(
            sample,
            detector=self.name,
            rule="zscore",
            severity="warning",
            status=status,
            score=score,
            evidence=evidence,
            summary=what,
            annotations=self.config.annotations,
        )
