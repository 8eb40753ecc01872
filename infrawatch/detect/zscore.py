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

from infrawatch.detect.base import (
    BELOW_HALF,
    PerSeriesDetector,
    calibrated,
    confidence,
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


class _ZState:
    """Per-series state; __slots__ keeps it small (see bench/detect_throughput.py)."""

    __slots__ = (
        "anomalous",
        "block_end",
        "born",
        "conf",
        "dmean",
        "dn",
        "dvar",
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
        self.conf = 1.0
        self.last_x = x
        self.interval = 0.0
        self.mean = x
        self.var = 0.0
        self.quant = math.inf
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
    )


class ZScoreDetector(PerSeriesDetector[_ZState]):
    """Streaming z-score of the level and of the seasonal change, per series."""

    name = "zscore"

    def __init__(self, config: ZScoreConfig, novelty: NoveltyConfig | None = None) -> None:
        """`novelty`: the config of the novelty detector running beside this one, if any (it
        decides the automatic threshold per series)."""
        self.config = config
        self.novelty = novelty
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
        key = (sample.name, sample.labels)
        x = sample.value
        ts = sample.ts
        if x - x != 0.0:  # NaN or ±inf: no z, and it must not seed or move the baseline
            return []
        try:
            st = self._series[key]
        except KeyError:
            params = _params(self.config, key, self.novelty)
            self._series[key] = _ZState(params, ts, x) if params is not None else None
            return []
        if st is None:  # disabled series
            return []
        p = st.p
        dt = ts - st.last_ts
        if dt > 0.0:
            st.interval = dt
        else:
            # Duplicate or out-of-order timestamp: weigh it like a regular sample.
            dt = st.interval
        st.last_ts = ts if ts > st.last_ts else st.last_ts
        step = x - st.last_x
        if step < 0.0:
            step = -step
        if 0.0 < step < st.quant:
            st.quant = step
        st.last_x = x
        n = st.n = st.n + 1
        a = 1.0 - math.exp(-dt / p.window) if dt > 0.0 else 0.0
        # Until the window holds ~n samples, weigh all samples equally (an expanding mean): a
        # fast-sampled series would otherwise start with a near-zero spread and fire at once.
        if a < 1.0 / n:
            a = 1.0 / n
        floor = st.quant if st.quant < math.inf else 0.0
        if p.min_std > floor:
            floor = p.min_std
        spread = math.sqrt(st.var)
        if spread < floor:
            spread = floor
        mean_before = st.mean
        dmean_before = st.dmean
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
                dspread = math.sqrt(st.dvar)
                if dspread < floor:
                    dspread = floor
                ddev = d - st.dmean
                zs = ddev / dspread if dspread > 0.0 else 0.0
                st.dn += 1
                if st.dn >= p.min_samples:
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
                ad = a if a > 1.0 / st.dn else 1.0 / st.dn
                st.dmean += ad * ddev
                st.dvar = (1.0 - ad) * (st.dvar + ad * ddev * ddev)
        lim = WINSOR * spread
        if lim > 0.0:
            if dev > lim:
                dev = lim
            elif dev < -lim:
                dev = -lim
        st.mean += a * dev
        st.var = (1.0 - a) * (st.var + a * dev * dev)
        if zbest > 0.0 and (p.confidence_samples or p.confidence_seconds):
            # A young baseline has not yet seen the series' ordinary swings: scale its z.
            conf = confidence(n, ts - st.born, p.confidence_samples, p.confidence_seconds)
            st.conf = conf
            zbest *= conf
        raw = zbest / (zbest + p.threshold) if zbest > 0.0 and n >= p.min_samples else 0.0
        if raw >= 0.5 and zbest < p.threshold:  # rounding: below the threshold never fires
            raw = BELOW_HALF
        # Suppression: the running maximum over the last one to two `suppress` periods.
        if ts >= st.block_end:
            if ts >= st.block_end + p.suppress:
                st.peak_prev = 0.0
            else:
                st.peak_prev = st.peak_cur
            st.peak_cur = 0.0
            st.block_end = ts + p.suppress
        peak = st.peak_prev if st.peak_prev > st.peak_cur else st.peak_cur
        score = raw if raw > peak else 0.0
        if raw > st.peak_cur:
            st.peak_cur = raw
        st.score = score
        st.z = zsigned
        if score >= 0.5 and not st.anomalous:
            st.anomalous = True
            status: AnomalyStatus = "firing"
        elif st.anomalous and zbest < p.resolve_z:
            st.anomalous = False
            status = "resolved"
        else:
            return []
        baseline = (mean_before, dmean_before, spread)
        return [self._anomaly(sample, st, score, zsigned, z, seasonal_d, baseline, status)]

    def _anomaly(
        self,
        sample: Sample,
        st: _ZState,
        score: float,
        zbest: float,
        zlevel: float,
        seasonal_d: float,
        baseline: tuple[float, float, float],
        status: AnomalyStatus,
    ) -> Anomaly:
        """The change with the baseline as it was before this sample: (mean, change mean, σ)."""
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
        elif st.conf < 1.0:
            evidence["confidence"] = round(st.conf, 4)
            evidence["young"] = young_text(st.conf)
            what = f"{what}; {young_text(st.conf)}, z scaled by {st.conf:.2f}"
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
