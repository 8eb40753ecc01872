"""Values of stored series over time: raw samples, or one bucket per step from rollups and raw.

Part of the one read path (`read.py` finds the series; `charts.py` shapes buckets for the page):
`infrawatch query samples` reads here. The bucket SQL merges complete rollups with the raw
samples the rollups don't cover yet, so a step's answer is the same whichever tier it came from.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from infrawatch.storage.read import SeriesRef, find_series, pending_span
from infrawatch.storage.rollup import Bucket, Pending, ceil_to, combine, floor_to, plan

Agg = Literal["avg", "min", "max", "last", "count", "p95"]
AGGREGATIONS: tuple[Agg, ...] = ("avg", "min", "max", "last", "count", "p95")


@dataclass(frozen=True, slots=True)
class SeriesPoints:
    """Values of one series over time: (ts epoch seconds, value), oldest first."""

    series: SeriesRef
    points: list[tuple[float, float]]


def raw_points(
    conn: sqlite3.Connection, sid: int, start: float, end: float
) -> list[tuple[float, float]]:
    """(ts, value) of series `sid` with start <= ts < end (epoch seconds), oldest first."""
    sql = "SELECT ts, value FROM samples WHERE series_id = ? AND ts >= ? AND ts < ? ORDER BY ts"
    return conn.execute(sql, (sid, start, end)).fetchall()


def samples(
    conn: sqlite3.Connection,
    metric: str,
    *,
    labels: dict[str, str] | None = None,
    since: float,
    until: float,
    step: int | None = None,
    agg: Agg = "avg",
) -> list[SeriesPoints]:
    """Values of each matching series in [since, until): raw, or one per `step` by `agg`.

    With a step, the range is rounded out to whole steps (buckets start at multiples of the step)
    and complete rollups are read where the step allows; p95 always reads raw samples.
    """
    refs = find_series(conn, metric, labels or {})
    if step is None:
        return [SeriesPoints(ref, raw_points(conn, ref.id, since, until)) for ref in refs]
    start, end = floor_to(since, step), ceil_to(until, step)
    pending = pending_span(conn)
    out = []
    for ref in refs:
        if agg == "p95":
            points = _percentile_points(raw_points(conn, ref.id, start, end), step, 0.95)
        else:
            found = step_buckets(conn, ref.id, start, end, step, pending)
            points = [(b.ts, _pick(b, agg)) for b in found]
        out.append(SeriesPoints(ref, points))
    return out


# Per source table: count, sum, sum of squares, min, max and the newest value, as aggregates
# over its rows (raw samples are buckets of one).
AGGREGATES = {
    "samples": (
        "count(*)",
        "sum(value)",
        "sum(value * value)",
        "min(value)",
        "max(value)",
        "value",
    ),
    "rollup_1m": ("sum(count)", "sum(sum)", "sum(sumsq)", "min(min)", "max(max)", "last"),
    "rollup_1h": ("sum(count)", "sum(sum)", "sum(sumsq)", "min(min)", "max(max)", "last"),
}


def _bucket_sql(table: str, with_last: bool) -> str:
    """Rows of series ?2 in [?3, ?4) of `table` merged per bucket of ?1 seconds, oldest first.

    SQLite aggregates (a day of 1 s samples is 86,400 rows; Python objects per row would cost
    ten times more); `last` is the newest row of the bucket within [?3, ?4), or NULL without
    `with_last` (one index lookup per bucket saved).
    """
    count, total, sumsq, lo, hi, last = AGGREGATES[table]
    bucket = "CAST(t.ts / ?1 AS INTEGER) * ?1"  # floor: ts is positive
    newest = (
        f"(SELECT r.{last} FROM {table} AS r WHERE r.series_id = ?2"  # noqa: S608 - fixed names
        f" AND r.ts >= max(?3, {bucket}) AND r.ts < min(?4, {bucket} + ?1)"
        " ORDER BY r.ts DESC LIMIT 1)"
        if with_last
        else "NULL"
    )
    return (
        f"SELECT {bucket} AS b, {count}, {total}, {sumsq}, {lo}, {hi}, {newest}"  # noqa: S608 - fixed names
        f" FROM {table} AS t WHERE t.series_id = ?2 AND t.ts >= ?3 AND t.ts < ?4"
        " GROUP BY b ORDER BY b"
    )


def step_buckets(
    conn: sqlite3.Connection,
    sid: int,
    start: float,
    end: float,
    step: int,
    pending: Pending | None,
    *,
    with_last: bool = True,
) -> list[Bucket]:
    """One bucket per `step` over [start, end) (multiples of step): complete rollups, then raw.

    Without `with_last`, each bucket's `last` is NaN (charts don't show it).
    """
    # A database from before rollups (no tables) is read raw; Pending(0, 0) makes plan() do so.
    tiers = plan(start, end, step, pending if pending is not None else Pending(0.0, 0.0))
    out: list[Bucket] = []
    for tier in tiers:
        sql = _bucket_sql(tier.source, with_last)
        rows = conn.execute(sql, (step, sid, tier.start, tier.end))
        part = [
            Bucket(float(ts), int(n), _num(s), _num(sq), _num(lo), _num(hi), _num(last))
            for ts, n, s, sq, lo, hi, last in rows
        ]
        # Tiers don't overlap, so only a bucket split at a tier boundary (the rollups end
        # mid-step) comes back in two parts.
        if out and part and out[-1].ts == part[0].ts:
            out[-1] = combine(out[-1:] + part[:1])
            part = part[1:]
        out.extend(part)
    return out


def _num(value: float | None) -> float:
    # SQLite has no NaN: a sum of +inf and -inf (rows written around the store) comes back NULL.
    return math.nan if value is None else float(value)


def _pick(bucket: Bucket, agg: Agg) -> float:
    if agg == "avg":
        return bucket.mean
    if agg == "count":
        return float(bucket.count)
    value: float = getattr(bucket, agg)
    return value


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) of `values` by linear interpolation between closest ranks."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _percentile_points(
    rows: Sequence[tuple[float, float]], step: int, q: float
) -> list[tuple[float, float]]:
    groups: dict[float, list[float]] = {}
    for ts, value in rows:
        groups.setdefault(floor_to(ts, step), []).append(value)
    return [(ts, percentile(vals, q)) for ts, vals in groups.items()]
