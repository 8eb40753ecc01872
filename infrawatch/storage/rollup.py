"""1-minute and 1-hour rollups: per series and bucket, count, sum, sum of squares, min, max, last.

Rollups are derived from the raw samples by a periodic job (`catch_up`), not on every write: the
write path only widens `rollup_pending` (the span of raw time not yet rolled up) in the batch's own
transaction, which keeps ingest cheap and makes rollups exact even when a sample is re-written in
place (CloudWatch look-back) or arrives late. Each bucket is recomputed from the rows below it, so
running the job twice, or after a crash half-way through, gives the same result.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from infrawatch.storage.store import Store

MINUTE = 60
HOUR = 3600
# (table, bucket width in seconds), finest first.
LEVELS: tuple[tuple[str, int], ...] = (("rollup_1m", MINUTE), ("rollup_1h", HOUR))
# Raw time rolled up per transaction: small enough that a pipeline write never waits long.
CATCH_UP_SPAN = 10 * MINUTE

# Bucket starts are floor(ts / width) * width; ts is positive, so CAST truncation is floor.
_ROLL_MINUTES = """
INSERT OR REPLACE INTO rollup_1m (series_id, ts, count, sum, sumsq, min, max, last)
SELECT series_id, CAST(ts / 60 AS INTEGER) * 60 AS bucket, count(*), sum(value),
       sum(value * value), min(value), max(value),
       (SELECT r.value FROM samples AS r
         WHERE r.series_id = samples.series_id AND r.ts < CAST(samples.ts / 60 AS INTEGER) * 60 + 60
         ORDER BY r.ts DESC LIMIT 1)
  FROM samples
 WHERE ts >= ? AND ts < ?
 GROUP BY series_id, bucket
"""
_ROLL_HOURS = """
INSERT OR REPLACE INTO rollup_1h (series_id, ts, count, sum, sumsq, min, max, last)
SELECT series_id, CAST(ts / 3600 AS INTEGER) * 3600 AS bucket, sum(count), sum(sum), sum(sumsq),
       min(min), max(max),
       (SELECT r.last FROM rollup_1m AS r
         WHERE r.series_id = rollup_1m.series_id
           AND r.ts < CAST(rollup_1m.ts / 3600 AS INTEGER) * 3600 + 3600
         ORDER BY r.ts DESC LIMIT 1)
  FROM rollup_1m
 WHERE ts >= ? AND ts < ?
 GROUP BY series_id, bucket
"""


def floor_to(ts: float, width: float) -> float:
    """`ts` rounded down to a multiple of `width` (seconds)."""
    return math.floor(ts / width) * width


def ceil_to(ts: float, width: float) -> float:
    """`ts` rounded up to a multiple of `width` (seconds)."""
    return math.ceil(ts / width) * width


@dataclass(frozen=True, slots=True)
class Bucket:
    """The aggregate of one series over [ts, ts + width): what a rollup row holds."""

    ts: float
    count: int
    sum: float
    sumsq: float
    min: float
    max: float
    last: float

    @property
    def mean(self) -> float:
        """Arithmetic mean of the values."""
        return self.sum / self.count

    @property
    def std(self) -> float:
        """Population standard deviation of the values (0 for a single value)."""
        mean = self.mean
        var = self.sumsq / self.count - mean * mean  # `**` raises OverflowError past 1e154
        return math.sqrt(max(var, 0.0))  # rounding can make a tiny variance negative


def bucket_of(ts: float, values: Sequence[float]) -> Bucket:
    """The aggregate of `values` (in time order, at least one) as a bucket starting at `ts`."""
    return Bucket(
        ts=ts,
        count=len(values),
        sum=_total(values),
        sumsq=_total([v * v for v in values]),
        min=min(values),
        max=max(values),
        last=values[-1],
    )


def combine(items: Sequence[Bucket], ts: float | None = None) -> Bucket:
    """Merge buckets (time order, at least one) into one starting at `ts` (default: the first's)."""
    return Bucket(
        ts=items[0].ts if ts is None else ts,
        count=sum(b.count for b in items),
        sum=_total([b.sum for b in items]),
        sumsq=_total([b.sumsq for b in items]),
        min=min(b.min for b in items),
        max=max(b.max for b in items),
        last=items[-1].last,
    )


def _total(values: Sequence[float]) -> float:
    """An exact sum (fsum); when fsum can't (±inf together, overflow), the float sum: nan/inf."""
    try:
        return math.fsum(values)
    except (ValueError, OverflowError):
        return sum(values, 0.0)


@dataclass(frozen=True, slots=True)
class Pending:
    """What the rollups don't cover yet (`rollup_pending`); None means nothing pending."""

    dirty_from: float | None  # earliest raw ts not yet in rollup_1m
    hour_dirty_from: float | None  # earliest rollup_1m ts not yet in rollup_1h

    @property
    def minutes_valid_until(self) -> float:
        """rollup_1m buckets starting before this are complete (epoch seconds)."""
        return math.inf if self.dirty_from is None else floor_to(self.dirty_from, MINUTE)

    @property
    def hours_valid_until(self) -> float:
        """rollup_1h buckets starting before this are complete (epoch seconds)."""
        marks = [t for t in (self.dirty_from, self.hour_dirty_from) if t is not None]
        return floor_to(min(marks), HOUR) if marks else math.inf


@dataclass(frozen=True, slots=True)
class Tier:
    """Read [start, end) from `source` ("rollup_1h", "rollup_1m" or "samples")."""

    source: str
    width: int  # seconds per row: 3600, 60, or 0 for raw samples
    start: float
    end: float


def plan(since: float, until: float, step: float, pending: Pending) -> list[Tier]:
    """Where to read [since, until) (aligned to `step`) from: the coarsest complete rollup first.

    A level is used only if its width divides `step`, so its buckets nest in the step's; what the
    rollups don't cover yet comes from the raw samples. The tiers don't overlap.
    """
    tiers: list[Tier] = []
    pos = since
    for table, width, valid_until in (
        ("rollup_1h", HOUR, pending.hours_valid_until),
        ("rollup_1m", MINUTE, pending.minutes_valid_until),
    ):
        if step % width:
            continue
        end = min(until, valid_until)
        if end > pos:
            tiers.append(Tier(table, width, pos, end))
            pos = end
    if pos < until:
        tiers.append(Tier("samples", 0, pos, until))
    return tiers


def by_step(buckets: Iterable[Bucket], step: float) -> list[Bucket]:
    """Merge time-ordered buckets (or single samples) into buckets `step` seconds wide."""
    out: list[Bucket] = []
    group: list[Bucket] = []
    group_ts = math.nan
    for b in buckets:
        ts = floor_to(b.ts, step)
        if ts != group_ts and group:
            out.append(combine(group, group_ts))
            group = []
        group_ts = ts
        group.append(b)
    if group:
        out.append(combine(group, group_ts))
    return out


async def read_pending(store: Store) -> Pending:
    """The current `rollup_pending` row."""
    async with store.db.execute(
        "SELECT dirty_from, hour_dirty_from FROM rollup_pending WHERE id = 1"
    ) as cur:
        row = await cur.fetchone()
    if row is None:
        return Pending(None, None)
    return Pending(row[0], row[1])


async def read_series(
    store: Store, series_id: int, *, since: float, until: float, step: int
) -> list[Bucket]:
    """Aggregates of one series per `step` seconds over [since, until), from rollups where complete.

    `since` and `until` are rounded out to the step. This is what baselines should read.
    """
    start, end = floor_to(since, step), ceil_to(until, step)
    parts: list[Bucket] = []
    for tier in plan(start, end, step, await read_pending(store)):
        if tier.source == "samples":
            async with store.db.execute(
                "SELECT ts, value FROM samples WHERE series_id = ? AND ts >= ? AND ts < ?"
                " ORDER BY ts",
                (series_id, tier.start, tier.end),
            ) as cur:
                rows = await cur.fetchall()
            parts.extend(Bucket(ts, 1, v, v * v, v, v, v) for ts, v in rows)
        else:
            parts.extend(
                await read_buckets(store, series_id, width=tier.width, since=tier.start,
                                   until=tier.end)
            )  # fmt: skip
    return by_step(parts, step)


async def catch_up(
    store: Store,
    *,
    now: float,
    raw_retention: float,
    rollup_1m_retention: float,
    span: float = CATCH_UP_SPAN,
) -> int:
    """Roll up everything pending, in small transactions; return how many ran.

    Minutes first (`span` seconds of raw time per transaction), then each hour that has ended
    (one per transaction); the hour still running is read from rollup_1m by queries.
    """
    raw_floor = ceil_to(now - raw_retention, MINUTE)
    chunks = 0
    while await _roll_minutes(store, raw_floor=raw_floor, span=span):
        chunks += 1
        await asyncio.sleep(0)  # let a pipeline write in between chunks
    minute_floor = ceil_to(now - rollup_1m_retention, HOUR)
    while await _roll_hour(store, minute_floor=minute_floor, open_hour=floor_to(now, HOUR)):
        chunks += 1
        await asyncio.sleep(0)
    return chunks


async def _roll_minutes(store: Store, *, raw_floor: float, span: float) -> bool:
    """Roll up the oldest `span` of pending raw time; False when nothing was pending."""
    async with store.transaction() as db:
        async with db.execute(
            "SELECT dirty_from, dirty_until FROM rollup_pending WHERE id = 1"
        ) as cur:
            row = await cur.fetchone()
        if row is None or row[0] is None:
            return False
        dirty_from, dirty_until = float(row[0]), float(row[1])
        # Raw rows before raw_floor may already be deleted by retention: a bucket recomputed
        # from what is left would be wrong, so those keep what they were last rolled up as.
        start = max(floor_to(dirty_from, MINUTE), raw_floor)
        # Jump over time without samples (a gap, a stray far-future timestamp): the walk costs
        # one chunk per stretch of data, not one per `span` of empty time. Skipped minutes
        # never had rows (raw rows are only deleted below raw_floor), so no rollup goes stale.
        async with db.execute(
            "SELECT min(ts) FROM samples WHERE ts >= ? AND ts <= ?", (start, dirty_until)
        ) as cur:
            first = await cur.fetchone()
        if first is None or first[0] is None:
            start = dirty_until + MINUTE  # nothing left to roll up: clear the mark below
        else:
            start = max(start, floor_to(float(first[0]), MINUTE))
        end = start + ceil_to(span, MINUTE)
        if start <= dirty_until:
            await db.execute(_ROLL_MINUTES, (start, end))
            await db.execute(
                "UPDATE rollup_pending SET hour_dirty_from = min(coalesce(hour_dirty_from, ?1), ?1)"
                " WHERE id = 1",
                (start,),
            )
        # Writes between transactions only widen the span (min/max): resuming at `end` is safe.
        if end > dirty_until:
            await db.execute(
                "UPDATE rollup_pending SET dirty_from = NULL, dirty_until = NULL WHERE id = 1"
            )
        else:
            await db.execute("UPDATE rollup_pending SET dirty_from = ? WHERE id = 1", (end,))
    return True


async def _roll_hour(store: Store, *, minute_floor: float, open_hour: float) -> bool:
    """Re-roll the oldest pending hour that has ended; False when there is none."""
    async with store.transaction() as db:
        async with db.execute(
            "SELECT dirty_from, hour_dirty_from FROM rollup_pending WHERE id = 1"
        ) as cur:
            row = await cur.fetchone()
        if row is None or row[1] is None:
            return False
        limit = open_hour if row[0] is None else min(open_hour, floor_to(row[0], MINUTE))
        hour = max(floor_to(float(row[1]), HOUR), minute_floor)
        # Skip empty hours at once (a long gap, or a database rolled up for the first time).
        async with db.execute(
            "SELECT min(ts) FROM rollup_1m WHERE ts >= ? AND ts < ?", (hour, limit)
        ) as cur:
            first = await cur.fetchone()
        if first is None or first[0] is None:
            if floor_to(limit, HOUR) > float(row[1]):
                await db.execute(
                    "UPDATE rollup_pending SET hour_dirty_from = ? WHERE id = 1",
                    (floor_to(limit, HOUR),),
                )
            return False
        hour = floor_to(float(first[0]), HOUR)
        if hour + HOUR > limit:
            return False
        await db.execute(_ROLL_HOURS, (hour, hour + HOUR))
        await db.execute(
            "UPDATE rollup_pending SET hour_dirty_from = ? WHERE id = 1", (hour + HOUR,)
        )
    return True


async def read_buckets(
    store: Store, series_id: int, *, width: int, since: float, until: float
) -> list[Bucket]:
    """Rollup rows of one series with start in [since, until), oldest first (width 60 or 3600)."""
    table = {MINUTE: "rollup_1m", HOUR: "rollup_1h"}[width]
    sql = (
        "SELECT ts, count, sum, sumsq, min, max, last"  # noqa: S608 - table name from a fixed map
        f" FROM {table} WHERE series_id = ? AND ts >= ? AND ts < ? ORDER BY ts"
    )
    async with store.db.execute(sql, (series_id, since, until)) as cur:
        rows = await cur.fetchall()
    return [bucket_row(r) for r in rows]


def bucket_row(row: Sequence[Any]) -> Bucket:
    """A Bucket from a (ts, count, sum, sumsq, min, max, last) row."""
    ts, count, total, sumsq, lo, hi, last = row
    return Bucket(
        float(ts), int(count), float(total), float(sumsq), float(lo), float(hi), float(last)
    )
