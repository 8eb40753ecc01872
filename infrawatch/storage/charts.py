"""Reads for the status page: charts with min and max kept, and many series' sparklines at once.

Part of the one read path (`read.py`, `points.py`): the same series lookup, rollup planning and
bucket SQL as `infrawatch query`, plus what a page needs that a terminal doesn't — a resolution
chosen from the range, and batched reads for thousands of series (one query, not one per
series).
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from infrawatch.storage.points import raw_points, step_buckets
from infrawatch.storage.read import SeriesRef, find_series, has_table, pending_span
from infrawatch.storage.rollup import HOUR, MINUTE, Pending, ceil_to, floor_to, plan

Resolution = Literal["raw", "1m", "1h"]


@dataclass(frozen=True, slots=True)
class ChartSeries:
    """One series for a chart: bucket starts (or sample times) with mean, min and max."""

    series: SeriesRef
    ts: list[float]
    mean: list[float]
    min: list[float]
    max: list[float]


@dataclass(frozen=True, slots=True)
class Chart:
    """Every series of a metric over a range, at most `points` per series.

    `step` is the bucket width in seconds, or None when the raw samples fit as they are.
    """

    resolution: Resolution
    step: int | None
    series: list[ChartSeries]


_LEVELS: tuple[tuple[Resolution, str, int], ...] = (
    ("raw", "samples", 1),
    ("1m", "rollup_1m", MINUTE),
    ("1h", "rollup_1h", HOUR),
)


def _oldest(conn: sqlite3.Connection, table: str, ids: list[int]) -> float | None:
    """The oldest row of any of `ids` in `table` (one primary-key seek per series)."""
    if not has_table(conn, table):
        return None
    sql = (
        f"SELECT min((SELECT min(ts) FROM {table} WHERE series_id = j.value))"  # noqa: S608 - fixed names
        " FROM json_each(?) AS j"
    )
    row = conn.execute(sql, (json.dumps(ids),)).fetchone()
    return None if row is None or row[0] is None else float(row[0])


def chart_resolution(
    conn: sqlite3.Connection, ids: list[int], since: float, until: float, points: int
) -> tuple[Resolution, int]:
    """The coarsest level whose rows are no wider than the range / `points`, and a step.

    A level whose data don't reach back to `since` (raw retention is shorter than the rollups')
    gives way to a coarser one that reaches further back. The step is a multiple of the level's
    width with at most `points` step-aligned buckets over the range.
    """
    needed = (until - since) / points
    level = 0 if needed < MINUTE else 1 if needed < HOUR else 2
    while level < len(_LEVELS) - 1:
        here = _oldest(conn, _LEVELS[level][1], ids)
        if here is not None and here <= since:
            break
        coarser = _oldest(conn, _LEVELS[level + 1][1], ids)
        if coarser is None or (here is not None and coarser >= here):
            break
        level += 1
    name, _, width = _LEVELS[level]
    step = width * max(1, math.ceil(needed / width))
    while (ceil_to(until, step) - floor_to(since, step)) / step > points:
        step += width
    return name, step


def chart(
    conn: sqlite3.Connection,
    metric: str,
    *,
    labels: dict[str, str] | None = None,
    since: float,
    until: float,
    points: int,
    step: int | None = None,
) -> Chart:
    """Each series of `metric` over [since, until) with min and max kept per bucket.

    Without `step`, the resolution follows the range (`chart_resolution`); raw samples that fit
    in `points` come as they are. Buckets start at multiples of the step, so the first may start
    before `since`.
    """
    refs = find_series(conn, metric, labels or {})
    ids = [r.id for r in refs]
    resolution: Resolution
    if step is None:
        resolution, step = chart_resolution(conn, ids, since, until, points)
        if resolution == "raw" and _max_raw_count(conn, ids, since, until) <= points:
            out = []
            for ref in refs:
                rows = raw_points(conn, ref.id, since, until)
                values = [v for _, v in rows]
                out.append(ChartSeries(ref, [t for t, _ in rows], values, values, values))
            return Chart("raw", None, out)
    else:
        resolution = "1h" if step % HOUR == 0 else "1m" if step % MINUTE == 0 else "raw"
    start, end = floor_to(since, step), ceil_to(until, step)
    pending = pending_span(conn)
    out = []
    for ref in refs:
        found = step_buckets(conn, ref.id, start, end, step, pending, with_last=False)
        out.append(
            ChartSeries(
                ref,
                [b.ts for b in found],
                [b.mean for b in found],
                [b.min for b in found],
                [b.max for b in found],
            )
        )
    return Chart(resolution, step, out)


def _max_raw_count(conn: sqlite3.Connection, ids: list[int], since: float, until: float) -> int:
    sql = (
        "SELECT max((SELECT count(*) FROM samples WHERE series_id = j.value AND ts >= ?"
        " AND ts < ?)) FROM json_each(?) AS j"
    )
    row = conn.execute(sql, (since, until, json.dumps(ids))).fetchone()
    return int(row[0] or 0)


# -- the series list: sparklines and last values for many series at once -------------------


# Per source table, one row's count, sum, min and max (a raw sample is a bucket of one).
_ROW_PARTS = {
    "samples": ("1", "t.value", "t.value", "t.value"),
    "rollup_1m": ("t.count", "t.sum", "t.min", "t.max"),
    "rollup_1h": ("t.count", "t.sum", "t.min", "t.max"),
}
_LARGEST = "1.7976931348623157e308"  # non-finite values become null: JSON has no Inf


def _spark_sql(tables: Sequence[str]) -> str:
    """Per series, one JSON array of [bucket, value] pairs over the tiers' spans.

    Everything happens in SQLite (Python objects for the rows of thousands of series would cost
    most of the time): rows → buckets of :step seconds → the series' mean over all of them →
    per bucket the extreme farther from that mean.
    """
    parts = []
    for i, table in enumerate(tables):
        n, total, lo, hi = _ROW_PARTS[table]
        parts.append(
            f"SELECT t.series_id, CAST(t.ts / :step AS INTEGER) * :step, {n}, {total}, {lo}, {hi}"  # noqa: S608 - fixed names
            f" FROM json_each(:ids) AS j JOIN {table} AS t"
            f" ON t.series_id = j.value AND t.ts >= :start{i} AND t.ts < :end{i}"
        )
    return (
        f"WITH parts(series_id, b, n, s, lo, hi) AS ({' UNION ALL '.join(parts)}),"  # noqa: S608 - fixed names
        " cells AS (SELECT series_id, b, sum(n) AS n, sum(s) AS s, min(lo) AS lo, max(hi) AS hi"
        "   FROM parts GROUP BY series_id, b),"
        " scored AS (SELECT series_id, b, lo, hi, sum(s) OVER w / sum(n) OVER w AS mean"
        "   FROM cells WINDOW w AS (PARTITION BY series_id)),"
        " picked AS (SELECT series_id, b,"
        "   CASE WHEN abs(hi - mean) >= abs(mean - lo) THEN hi ELSE lo END AS v FROM scored)"
        " SELECT series_id, json_group_array(json_array(b,"
        f"   CASE WHEN abs(v) <= {_LARGEST} THEN v END)) FROM picked GROUP BY series_id"
    )


def sparklines(
    conn: sqlite3.Connection, ids: Sequence[int], *, until: float, step: int, cells: int
) -> dict[int, list[float | None]]:
    """`cells` values per series for the `cells` × `step` seconds up to `until` (None: no data).

    One query for all series. Each cell shows the bucket's extreme farther from the series'
    mean over the whole span (its max, or its min for a dip), so a one-sample spike shows where
    a mean would flatten it. Values keep 15 significant digits (plenty for a sparkline).
    """
    end = ceil_to(until, step)
    start = end - cells * step
    pending = pending_span(conn)
    tiers = plan(start, end, step, pending if pending is not None else Pending(0.0, 0.0))
    params: dict[str, Any] = {"step": step, "ids": json.dumps(list(ids))}
    for i, tier in enumerate(tiers):
        params[f"start{i}"], params[f"end{i}"] = tier.start, tier.end
    out: dict[int, list[float | None]] = {sid: [None] * cells for sid in ids}
    if not tiers or not ids:
        return out
    for sid, doc in conn.execute(_spark_sql([t.source for t in tiers]), params):
        row = out[sid]
        for b, value in json.loads(doc):
            row[int((b - start) // step)] = value
    return out


def last_stored(conn: sqlite3.Connection, ids: Sequence[int]) -> dict[int, tuple[float, float]]:
    """The newest stored sample (ts, value) of each of `ids` that has one (one query)."""
    sql = (
        "SELECT j.value, s.ts, s.value FROM json_each(?) AS j JOIN samples AS s"
        " ON s.series_id = j.value"
        " AND s.ts = (SELECT max(ts) FROM samples WHERE series_id = j.value)"
    )
    return {
        int(sid): (float(ts), float(v))
        for sid, ts, v in conn.execute(sql, (json.dumps(list(ids)),))
    }
