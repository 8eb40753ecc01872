"""Rollups equal aggregates computed from the raw rows, however the rows arrived."""

from __future__ import annotations

import math
import random
import sqlite3
from pathlib import Path

import pytest

from infrawatch.model import Sample
from infrawatch.storage.rollup import (
    HOUR,
    MINUTE,
    Bucket,
    bucket_of,
    catch_up,
    combine,
    floor_to,
    read_series,
)
from infrawatch.storage.store import MIGRATIONS, SCHEMA_VERSION, Store, StoreError
from tests.support_history import NOW

WEEK = 7 * 86400.0
MONTH = 30 * 86400.0


def rows(path: Path, table: str) -> dict[tuple[int, float], Bucket]:
    with sqlite3.connect(path) as conn:
        found = conn.execute(
            f"SELECT series_id, ts, count, sum, sumsq, min, max, last FROM {table}"  # noqa: S608 - test table names
        ).fetchall()
    conn.close()
    return {(r[0], r[1]): Bucket(r[1], *r[2:]) for r in found}


def expected(
    path: Path, width: float, *, before: float = float("inf")
) -> dict[tuple[int, float], Bucket]:
    """Brute force from the raw rows: every bucket of `width` starting before `before`."""
    with sqlite3.connect(path) as conn:
        raw = conn.execute("SELECT series_id, ts, value FROM samples ORDER BY series_id, ts")
        groups: dict[tuple[int, float], list[float]] = {}
        for sid, ts, value in raw:
            groups.setdefault((sid, floor_to(ts, width)), []).append(value)
    conn.close()
    return {k: bucket_of(k[1], v) for k, v in groups.items() if k[1] + width <= before}


def assert_same(
    got: dict[tuple[int, float], Bucket], want: dict[tuple[int, float], Bucket]
) -> None:
    assert want, "no buckets expected: the comparison would be vacuous"
    assert got.keys() == want.keys()
    for k, b in want.items():
        g = got[k]
        assert (g.count, g.min, g.max, g.last) == (b.count, b.min, b.max, b.last), k
        assert g.sum == pytest.approx(b.sum, rel=1e-12, abs=1e-12)
        assert g.sumsq == pytest.approx(b.sumsq, rel=1e-12, abs=1e-12)


def random_samples(seed: int, n_series: int, hours: float) -> list[Sample]:
    rng = random.Random(seed)
    out = []
    for s in range(n_series):
        t = NOW - hours * 3600 + rng.uniform(0, 30)
        while t < NOW:
            out.append(Sample("m", rng.uniform(-100, 100), round(t, 3), (("s", str(s)),)))
            t += rng.choice([0.5, 1, 7, 10, 61, 200])
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_rollups_equal_brute_force(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "r.db"
    samples = random_samples(seed, 4, 5.5)
    random.Random(seed).shuffle(samples)  # any arrival order
    async with Store(path) as store:
        for i in range(0, len(samples), 300):
            await store.write(samples[i : i + 300])
        # A small span forces many transactions: resuming between them must not lose anything.
        chunks = await catch_up(
            store, now=NOW, raw_retention=WEEK, rollup_1m_retention=MONTH, span=7 * MINUTE
        )
        assert chunks > 10
    assert_same(rows(path, "rollup_1m"), expected(path, MINUTE))
    # Only hours that have ended are rolled up; the running one is read from rollup_1m.
    assert_same(rows(path, "rollup_1h"), expected(path, HOUR, before=floor_to(NOW, HOUR)))


async def test_rewritten_and_late_samples_are_rolled_up_again(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    labels = (("host", "a"),)
    async with Store(path) as store:
        await store.write([Sample("m", float(i), NOW - 7200 + i * 10, labels) for i in range(700)])
        await catch_up(store, now=NOW, raw_retention=WEEK, rollup_1m_retention=MONTH)
        # CloudWatch look-back rewrites a point in place; a late point lands in an old hour.
        await store.write([Sample("m", 1000.0, NOW - 7200 + 50, labels)])
        await store.write([Sample("m", -5.0, NOW - 7200 + 3.5, labels)])
        await catch_up(store, now=NOW, raw_retention=WEEK, rollup_1m_retention=MONTH)
        assert await store.count_samples() == 701
    assert_same(rows(path, "rollup_1m"), expected(path, MINUTE))
    assert_same(rows(path, "rollup_1h"), expected(path, HOUR, before=floor_to(NOW, HOUR)))
    assert rows(path, "rollup_1h")[(1, NOW - 7200)].max == 1000.0


async def test_read_series_merges_rollups_and_pending_raw(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    samples = random_samples(7, 1, 3)
    async with Store(path) as store:
        await store.write([s for s in samples if s.ts < NOW - 1000])
        await catch_up(store, now=NOW - 900, raw_retention=WEEK, rollup_1m_retention=MONTH)
        await store.write([s for s in samples if s.ts >= NOW - 1000])  # not rolled up yet
        got = await read_series(store, 1, since=NOW - 3 * 3600, until=NOW, step=3600)
    want = expected(path, HOUR)
    assert [(b.ts, b.count, b.min, b.max, b.last) for b in got] == [
        (b.ts, b.count, b.min, b.max, b.last) for _, b in sorted(want.items())
    ]
    assert [b.mean for b in got] == pytest.approx([b.mean for _, b in sorted(want.items())])
    assert got[0].std > 0


def _rollup_migration() -> int:
    return next(i for i, sql in enumerate(MIGRATIONS) if "CREATE TABLE rollup_1m" in sql)


async def test_older_database_is_upgraded_and_rolled_up(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    version = _rollup_migration()
    with sqlite3.connect(path) as conn:
        for i, sql in enumerate(MIGRATIONS[:version]):
            conn.executescript(f"{sql}; PRAGMA user_version = {i + 1};")
        conn.execute("INSERT INTO series (id, name, labels) VALUES (1, 'm', '{}')")
        conn.executemany(
            "INSERT INTO samples VALUES (1, ?, ?)", [(NOW - 3600 + i, i) for i in range(120)]
        )
    conn.close()
    async with Store(path) as store:
        async with store.db.execute("PRAGMA user_version") as cur:
            assert (await cur.fetchone()) == (SCHEMA_VERSION,)
        await catch_up(store, now=NOW, raw_retention=WEEK, rollup_1m_retention=MONTH)
        await store.write([Sample("m", 1.0, NOW + 1)])  # the old series id is reused
    assert_same(rows(path, "rollup_1m"), {k: v for k, v in expected(path, MINUTE).items()
                                          if k[1] < NOW})  # fmt: skip
    assert rows(path, "rollup_1h")[(1, NOW - 3600)].count == 120


async def test_newer_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1} is newer"):
        async with Store(path):
            pass
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION + 1,)
        assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone() == (0,)
    conn.close()


async def test_non_finite_samples_are_skipped_not_poisoning_the_batch(tmp_path: Path) -> None:
    """NaN can't be stored and ±inf in one minute makes a NaN sum: skip those values alone."""
    path = tmp_path / "r.db"
    good = [Sample("m", float(i), NOW - 600 + i) for i in range(10)]
    bad = [
        Sample("m", math.inf, NOW - 580.5),
        Sample("m", -math.inf, NOW - 580.25),
        Sample("m", math.nan, NOW - 580.75),
        Sample("m", 1.0, math.inf),  # a timestamp no bucket can hold
    ]
    async with Store(path) as store:
        await store.write(good + bad)
        assert await store.count_samples() == len(good)
        assert store.non_finite_skipped == len(bad)
        await catch_up(store, now=NOW, raw_retention=WEEK, rollup_1m_retention=MONTH)
    assert_same(rows(path, "rollup_1m"), expected(path, MINUTE))


async def test_far_future_sample_does_not_stall_catch_up(tmp_path: Path) -> None:
    """A timestamp in milliseconds (or a skewed clock) must not make catch-up walk empty time."""
    path = tmp_path / "r.db"
    async with Store(path) as store:
        await store.write([Sample("m", 1.0, NOW - 30), Sample("m", 2.0, NOW + 90 * 86400)])
        chunks = await catch_up(store, now=NOW, raw_retention=WEEK, rollup_1m_retention=MONTH)
    # One chunk per stretch that holds samples (plus the hour before NOW), not one per 10 min.
    assert chunks <= 4
    assert_same(rows(path, "rollup_1m"), expected(path, MINUTE))


def test_bucket_arithmetic_never_raises_on_huge_or_infinite_values() -> None:
    """fsum raises on +inf beside -inf and on overflow, `**` on overflow: a query must not."""
    assert math.isnan(bucket_of(0.0, [1e200, 1e200]).std)  # sum of squares overflows to inf
    merged = combine([bucket_of(0.0, [math.inf]), bucket_of(60.0, [-math.inf])])
    assert math.isnan(merged.mean)
    assert combine([bucket_of(0.0, [1e308]), bucket_of(60.0, [1e308])]).sum == math.inf
