"""Storage benchmarks: ingest rate through Store.write vs bare sqlite3, query latency, DB size.

    .venv/bin/python bench/store.py [--batches 300]

Prints one line per number. Targets (issue 3): ingest >= 150,000 samples/s and >= 50 % of the
bare sqlite3 rate; `query samples` over 24 h of 1 s data <= 100 ms; over 30 days with
`--step 1h` <= 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from infrawatch.cli.query import run_command
from infrawatch.model import Sample
from infrawatch.storage.points import samples
from infrawatch.storage.read import open_readonly
from infrawatch.storage.rollup import catch_up
from infrawatch.storage.store import MIGRATIONS, Store

SERIES = 10_000
BATCH = 1_000
NOW = 1_800_000_000.0
DAY = 86400


def make_batches(n_batches: int) -> list[list[Sample]]:
    """Batches of 1,000 samples cycling over 10,000 distinct series, 1 s apart per round."""
    keys = [("bench.metric", (("host", f"h{i % 100}"), ("id", str(i)))) for i in range(SERIES)]
    out = []
    for b in range(n_batches):
        ts = NOW + (b * BATCH) // SERIES
        first = (b * BATCH) % SERIES
        out.append(
            [Sample(keys[first + j][0], float(j), ts, keys[first + j][1]) for j in range(BATCH)]
        )
    return out


async def ingest_store(path: Path, batches: list[list[Sample]]) -> float:
    warm = SERIES // BATCH  # the first round creates every series: not timed (a warm agent)
    async with Store(path) as store:
        for b in batches[:warm]:
            await store.write(b)
        started = time.perf_counter()
        for b in batches[warm:]:
            await store.write(b)
        return (len(batches) - warm) * BATCH / (time.perf_counter() - started)


def ingest_raw(path: Path, batches: list[list[Sample]]) -> float:
    """The same rows, same schema and pragmas, one transaction per batch, no asyncio."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    for i, sql in enumerate(MIGRATIONS):
        conn.executescript(f"BEGIN; {sql}; PRAGMA user_version = {i + 1}; COMMIT;")
    ids: dict[object, int] = {}
    rows = [[(ids.setdefault(s.key, len(ids) + 1), s.ts, s.value) for s in b] for b in batches]
    conn.executemany(
        "INSERT INTO series (id, name, labels) VALUES (?, ?, ?)",
        [(i, k[0], repr(k[1])) for k, i in ids.items()],  # type: ignore[index]
    )
    warm = SERIES // BATCH
    for r in rows[:warm]:  # the same first round as the Store run, also untimed
        conn.executemany("INSERT INTO samples (series_id, ts, value) VALUES (?, ?, ?)", r)
    started = time.perf_counter()
    for r in rows[warm:]:
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO samples (series_id, ts, value) VALUES (?, ?, ?)", r)
        conn.execute("COMMIT")
    rate = (len(rows) - warm) * BATCH / (time.perf_counter() - started)
    conn.close()
    return rate


def db_size(path: Path) -> int:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return path.stat().st_size


async def build_query_db(path: Path) -> None:
    """One series of 1 s data for 30 days (2.6 M rows) plus rollups, written in large batches."""
    async with Store(path) as store:
        await store.write([Sample("q.metric", 0.0, NOW - 30 * DAY, (("host", "a"),))])
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT OR REPLACE INTO samples VALUES (1, ?, ?)",
        ((NOW - 30 * DAY + i, float(i % 600)) for i in range(30 * DAY)),
    )
    conn.execute("UPDATE rollup_pending SET dirty_from = ?, dirty_until = ?", (NOW - 30 * DAY, NOW))
    conn.execute("COMMIT")
    conn.close()
    async with Store(path) as store:
        await catch_up(store, now=NOW, raw_retention=31 * DAY, rollup_1m_retention=31 * DAY,
                       span=6 * 3600)  # fmt: skip


def best_of(n: int, fn: object) -> float:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return min(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=300)
    args = parser.parse_args()
    print(
        f"python {sys.version.split()[0]}, sqlite {sqlite3.sqlite_version}, cpus {os.cpu_count()}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        batches = make_batches(args.batches)
        raw = ingest_raw(d / "raw.db", batches)
        rate = asyncio.run(ingest_store(d / "store.db", batches))
        print(f"ingest Store.write: {rate:,.0f} samples/s ({BATCH} per batch, {SERIES} series)")
        print(f"ingest bare sqlite3 executemany: {raw:,.0f} samples/s")
        print(f"ingest ratio: {rate / raw:.0%}")
        size = db_size(d / "store.db")
        n = args.batches * BATCH
        print(f"db size: {size / n * 1e6 / 2**20:.1f} MiB per million samples (raw only, {n:,})")

        qdb = d / "query.db"
        started = time.perf_counter()
        asyncio.run(build_query_db(qdb))
        print(
            f"query db: 30 d of 1 s data built and rolled up in"
            f" {time.perf_counter() - started:.1f} s"
        )
        size = db_size(qdb)
        print(
            f"db size: {size / (30 * DAY) * 1e6 / 2**20:.1f} MiB per million samples"
            " (one series, with rollups)"
        )
        conn = open_readonly(qdb)

        def day_raw() -> None:
            [s] = samples(conn, "q.metric", since=NOW - DAY, until=NOW)
            if len(s.points) != DAY:
                raise RuntimeError(f"24 h raw query returned {len(s.points)} points, not {DAY}")

        def month_hourly() -> None:
            [s] = samples(conn, "q.metric", since=NOW - 30 * DAY, until=NOW, step=3600, agg="avg")
            if len(s.points) != 720:
                raise RuntimeError(f"30 d hourly query returned {len(s.points)} buckets, not 720")

        print(f"query samples 24 h raw (86,400 rows): {best_of(5, day_raw):.1f} ms")
        print(f"query samples 30 d --step 1h (720 buckets): {best_of(5, month_hourly):.1f} ms")
        conn.close()

        def cli(fmt: str, step: str | None, since: float) -> None:
            ns = SimpleNamespace(
                what="samples", metric="q.metric", format=fmt, label=None, step=step, agg=None,
                since=_rfc(NOW - since), until=_rfc(NOW),
            )  # fmt: skip
            run_command(ns, qdb, io.StringIO())  # type: ignore[arg-type]

        for fmt in ("json", "csv", "table"):
            ms = best_of(3, lambda fmt=fmt: cli(fmt, None, DAY))
            print(f"`query samples` end to end, 24 h raw, --format {fmt}: {ms:.1f} ms")
        ms = best_of(5, lambda: cli("table", "1h", 30 * DAY))
        print(f"`query samples` end to end, 30 d --step 1h, --format table: {ms:.1f} ms")


def _rfc(ts: float) -> str:
    from infrawatch.cli.render import rfc3339

    return rfc3339(ts) or ""


if __name__ == "__main__":
    main()
