"""SQLite storage (aiosqlite): schema and migrations, and the batched write path.

One `Store` owns one connection for the agent's lifetime. Every batch is written in one
transaction with `executemany`; a sample is keyed by (series, ts) and re-writing the same key
updates it in place, so re-reading a look-back window never stores duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiosqlite

from infrawatch import jsontext
from infrawatch.model import Anomaly, Labels, Sample, SeriesKey

# Each entry upgrades the schema from version i to i + 1; the database's `PRAGMA user_version`
# says how many have run. Append only: never edit a migration that has shipped.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE series (
        id     INTEGER PRIMARY KEY,
        name   TEXT NOT NULL,
        labels TEXT NOT NULL,              -- JSON object, keys sorted
        UNIQUE (name, labels)
    );
    CREATE TABLE samples (
        series_id INTEGER NOT NULL REFERENCES series(id),
        ts        REAL NOT NULL,           -- UTC epoch seconds
        value     REAL NOT NULL,
        PRIMARY KEY (series_id, ts)
    ) WITHOUT ROWID;
    CREATE INDEX samples_ts ON samples (ts);
    CREATE TABLE anomalies (
        id        INTEGER PRIMARY KEY,
        series_id INTEGER NOT NULL REFERENCES series(id),
        ts        REAL NOT NULL,
        detector  TEXT NOT NULL,
        rule      TEXT NOT NULL,
        severity  TEXT NOT NULL,
        status    TEXT NOT NULL,           -- firing | resolved
        value     REAL NOT NULL,
        score     REAL NOT NULL,
        evidence  TEXT NOT NULL,           -- JSON object
        summary   TEXT NOT NULL
    );
    CREATE INDEX anomalies_ts ON anomalies (ts);
    CREATE TABLE alerts (
        fingerprint      TEXT PRIMARY KEY,   -- stable hash of the sorted labels
        alertname        TEXT NOT NULL,
        state            TEXT NOT NULL,      -- firing | resolved
        severity         TEXT NOT NULL,
        labels           TEXT NOT NULL,      -- JSON object
        annotations      TEXT NOT NULL,      -- JSON object
        starts_at        REAL NOT NULL,      -- epoch seconds
        ends_at          REAL,               -- set when resolved
        last_notified_at REAL,
        updated_at       REAL NOT NULL
    );
    CREATE INDEX alerts_state ON alerts (state);
    """,
    # Alerting (issue 6): what each route was last told about an alert, flap history, and the
    # persistent outbox every notification goes through before any sink sees it.
    """
    ALTER TABLE alerts ADD COLUMN notified TEXT NOT NULL DEFAULT '{}';  -- {route: state told}
    ALTER TABLE alerts ADD COLUMN flips TEXT NOT NULL DEFAULT '[]';     -- recent flip times
    ALTER TABLE alerts ADD COLUMN flapping INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE outbox (
        id              TEXT PRIMARY KEY,    -- notification id, stable across retries/restarts
        sink            TEXT NOT NULL,
        group_key       TEXT NOT NULL,
        payload         TEXT NOT NULL,       -- JSON notification (versioned, no secrets)
        created_at      REAL NOT NULL,       -- epoch seconds
        state           TEXT NOT NULL,       -- pending | delivered | failed
        attempts        INTEGER NOT NULL DEFAULT 0,
        failures        INTEGER NOT NULL DEFAULT 0,  -- attempts that count toward giving up
        next_attempt_at REAL NOT NULL,
        last_error      TEXT,
        done_at         REAL
    );
    CREATE INDEX outbox_pending ON outbox (sink, state, created_at);
    """,
    # History (issue 3): 1-minute and 1-hour rollups (infrawatch/rollup.py). Per series and bucket
    # start (UTC epoch seconds, a multiple of 60 or 3600): count, sum, sum of squares, min, max and
    # the last value. `rollup_pending` holds the span of raw time not yet rolled up; the write path
    # widens it in the batch's own transaction, so a crash never loses it. Starting it at the
    # existing raw rows rolls up a database written before rollups existed.
    """
    CREATE TABLE rollup_1m (
        series_id INTEGER NOT NULL REFERENCES series(id),
        ts        REAL NOT NULL,
        count     INTEGER NOT NULL,
        sum       REAL NOT NULL,
        sumsq     REAL NOT NULL,
        min       REAL NOT NULL,
        max       REAL NOT NULL,
        last      REAL NOT NULL,
        PRIMARY KEY (series_id, ts)
    ) WITHOUT ROWID;
    CREATE INDEX rollup_1m_ts ON rollup_1m (ts);
    CREATE TABLE rollup_1h (
        series_id INTEGER NOT NULL REFERENCES series(id),
        ts        REAL NOT NULL,
        count     INTEGER NOT NULL,
        sum       REAL NOT NULL,
        sumsq     REAL NOT NULL,
        min       REAL NOT NULL,
        max       REAL NOT NULL,
        last      REAL NOT NULL,
        PRIMARY KEY (series_id, ts)
    ) WITHOUT ROWID;
    CREATE INDEX rollup_1h_ts ON rollup_1h (ts);
    CREATE TABLE rollup_pending (
        id              INTEGER PRIMARY KEY CHECK (id = 1),
        dirty_from      REAL,              -- earliest raw ts not yet in rollup_1m (NULL: none)
        dirty_until     REAL,              -- latest raw ts not yet in rollup_1m
        hour_dirty_from REAL               -- earliest rollup_1m ts not yet in rollup_1h
    );
    INSERT INTO rollup_pending (id, dirty_from, dirty_until, hour_dirty_from)
        SELECT 1, min(ts), max(ts), min(ts) FROM samples;
    """,
    # Retention of anomalies and of series no table refers to any more (retention.py): the
    # orphan check looks anomalies up by series.
    """
    CREATE INDEX anomalies_series ON anomalies (series_id);
    """,
    # Export (issue 14, infrawatch/export/cursor.py): an append-only log of every sample written
    # or changed, in commit order, read by each exporter behind its cursor and pruned once every
    # exporter has passed it. Triggers on samples fill it; they exist only while an exporter is
    # configured. No foreign key: retention must be able to delete a series the log still names.
    """
    CREATE TABLE export_log (
        seq       INTEGER PRIMARY KEY,     -- commit order (rowid: max + 1, never reused)
        series_id INTEGER NOT NULL,
        ts        REAL NOT NULL,           -- the sample's own time, UTC epoch seconds
        value     REAL NOT NULL
    );
    CREATE TABLE export_cursors (
        name       TEXT PRIMARY KEY,       -- the [[export]] entry's name
        seq        INTEGER NOT NULL,       -- last export_log.seq delivered, rejected or skipped
        updated_at REAL NOT NULL           -- epoch seconds
    );
    """,
    # Runtime silences (issue 16, infrawatch/alerting/silences.py): written by `infrawatch
    # silence add|expire` (the CLI writes only this table), read by the running agent when
    # `PRAGMA data_version` says another connection committed.
    """
    CREATE TABLE silences (
        id         TEXT PRIMARY KEY,       -- uuid4
        matchers   TEXT NOT NULL,          -- JSON array of Alertmanager matcher strings
        starts_at  REAL NOT NULL,          -- UTC epoch seconds
        ends_at    REAL NOT NULL,          -- set to the expiry time by `silence expire`
        created_by TEXT NOT NULL,
        comment    TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX silences_ends_at ON silences (ends_at);
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)

_UPSERT_SAMPLE = (
    "INSERT INTO samples (series_id, ts, value) VALUES (?, ?, ?) "
    "ON CONFLICT (series_id, ts) DO UPDATE SET value = excluded.value"
)
_INSERT_ANOMALY = (
    "INSERT INTO anomalies (series_id, ts, detector, rule, severity, status, value, score,"
    " evidence, summary) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# Widens the not-yet-rolled-up span to cover a batch (?1 = its earliest ts, ?2 = its latest).
_MARK_ROLLUP_PENDING = (
    "UPDATE rollup_pending SET dirty_from = min(coalesce(dirty_from, ?1), ?1),"
    " dirty_until = max(coalesce(dirty_until, ?2), ?2) WHERE id = 1"
)
_LOOKUP_SERIES = (
    "SELECT s.id, s.name, s.labels FROM json_each(?) AS j JOIN series AS s"
    " ON s.name = json_extract(j.value, '$[0]') AND s.labels = json_extract(j.value, '$[1]')"
)


class StoreError(Exception):
    """The database can't be used (missing, not SQLite, or written by a newer infrawatch)."""


def labels_json(labels: Labels) -> str:
    """The stored form of a label set: a compact JSON object with sorted keys."""
    return json.dumps(dict(labels), separators=(",", ":"), ensure_ascii=False)


def labels_from_json(text: str) -> Labels:
    """Inverse of `labels_json`."""
    return tuple(sorted(json.loads(text).items()))


def prepare_path(path: Path) -> None:
    """Create the database's directory (0700) and file (0600) so no other user can read them."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)


async def schema_version(db: aiosqlite.Connection, path: Path) -> int:
    """The database's schema version; StoreError if a newer infrawatch wrote it."""
    async with db.execute("PRAGMA user_version") as cur:
        row = await cur.fetchone()
    version = int(row[0]) if row else 0
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path}: database schema version {version} is newer than this infrawatch supports "
            f"({SCHEMA_VERSION}); upgrade infrawatch or point storage.path elsewhere"
        )
    return version


async def migrate(db: aiosqlite.Connection, path: Path) -> None:
    """Bring the schema up to SCHEMA_VERSION; refuse a database from a newer version."""
    version = await schema_version(db, path)
    for target in range(version, SCHEMA_VERSION):
        # executescript commits first; the version bump is in the same script, so a migration
        # either lands whole with its version or (on a crash) leaves the old version to redo it.
        await db.executescript(
            f"BEGIN; {MIGRATIONS[target]}; PRAGMA user_version = {target + 1}; COMMIT;"
        )


class Store:
    """The agent's database connection and its write path."""

    def __init__(self, path: Path, *, busy_timeout_ms: int = 5000) -> None:
        self.path = path
        self._busy_timeout_ms = busy_timeout_ms
        self._db: aiosqlite.Connection | None = None
        self._series_ids: dict[SeriesKey, int] = {}
        # Samples not stored because value or ts was NaN/±inf (SQLite stores NaN as NULL, and
        # +inf beside -inf makes a rollup's sum NaN); a self-metric can read it.
        self.non_finite_skipped = 0
        # Every explicit transaction on the shared connection holds this lock, so the pipeline's
        # batch writes and the alerter's outbox writes never interleave statements.
        self.lock = asyncio.Lock()
        # Set after every committed sample write: exporters wait on them for new rows.
        self.write_events: list[asyncio.Event] = []

    @property
    def db(self) -> aiosqlite.Connection:
        """The open connection (raises if the store is closed)."""
        if self._db is None:
            raise StoreError("store is not open")
        return self._db

    async def open(self) -> None:
        """Open (creating if needed), tune and migrate the database."""
        prepare_path(self.path)
        db = await aiosqlite.connect(self.path, isolation_level=None)
        try:
            await db.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
            # Refuse a newer database before anything (the WAL switch) changes its file header.
            await schema_version(db, self.path)
            async with db.execute("PRAGMA journal_mode = WAL") as cur:
                await cur.fetchone()
            # WAL + NORMAL: a crash of the process never corrupts or loses committed batches;
            # only a power loss can drop the last few, which the next sample replaces anyway.
            await db.execute("PRAGMA synchronous = NORMAL")
            await db.execute("PRAGMA foreign_keys = ON")
            await migrate(db, self.path)
        except sqlite3.DatabaseError as exc:
            await db.close()
            raise StoreError(f"{self.path}: cannot open database: {exc}") from None
        except BaseException:
            await db.close()
            raise
        self._db = db

    async def close(self) -> None:
        """Close the connection; safe to call twice."""
        if self._db is not None:
            db, self._db = self._db, None
            await db.close()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def series_ids(self, keys: Iterable[SeriesKey]) -> dict[SeriesKey, int]:
        """Ids for `keys`, inserting the series not seen before (call inside a transaction)."""
        missing = [k for k in dict.fromkeys(keys) if k not in self._series_ids]
        if missing:
            rows = [(name, labels_json(labels)) for name, labels in missing]
            await self.db.executemany(
                "INSERT INTO series (name, labels) VALUES (?, ?) ON CONFLICT DO NOTHING", rows
            )
            by_text = dict(zip(rows, missing, strict=True))
            # One lookup for all new keys; the JSON-array join lets SQLite use the
            # UNIQUE (name, labels) index, which a row-value IN (VALUES …) list does not.
            async with self.db.execute(_LOOKUP_SERIES, (json.dumps(rows),)) as cur:
                async for series_id, name, labels in cur:
                    self._series_ids[by_text[(name, labels)]] = series_id
        return self._series_ids

    def forget_series(self, key: SeriesKey) -> None:
        """Drop a series' cached id (it stopped reporting): the cache holds live series only."""
        self._series_ids.pop(key, None)

    def forget_all_series(self) -> None:
        """Drop every cached id (series rows were deleted; call inside that transaction)."""
        self._series_ids.clear()

    async def write(self, samples: Sequence[Sample], anomalies: Sequence[Anomaly] = ()) -> None:
        """Persist one batch of samples and anomalies in a single transaction.

        Samples whose value or ts is not finite are skipped and counted in `non_finite_skipped`:
        one bad reading must not cost the batch around it.
        """
        finite = [s for s in samples if math.isfinite(s.value) and math.isfinite(s.ts)]
        if len(finite) != len(samples):
            self.non_finite_skipped += len(samples) - len(finite)
            samples = finite
        try:
            async with self.transaction() as db:
                ids = await self.series_ids([s.key for s in samples] + [a.key for a in anomalies])
                await db.executemany(_UPSERT_SAMPLE, [(ids[s.key], s.ts, s.value) for s in samples])
                if samples:
                    times = [s.ts for s in samples]
                    await db.execute(_MARK_ROLLUP_PENDING, (min(times), max(times)))
                if anomalies:
                    await db.executemany(
                        _INSERT_ANOMALY, [_anomaly_row(ids[a.key], a) for a in anomalies]
                    )
        except BaseException:
            # A rolled-back insert may have cached ids of series rows that no longer exist.
            self._series_ids.clear()
            raise
        for event in self.write_events:
            event.set()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """BEGIN IMMEDIATE … COMMIT under `lock` (rolled back if the body raises)."""
        async with self.lock:
            db = self.db
            try:
                # BEGIN is inside the try: a task cancelled while BEGIN runs on aiosqlite's
                # thread must still roll back, or the next user of the connection finds a
                # transaction already open.
                await db.execute("BEGIN IMMEDIATE")
                yield db
                await db.execute("COMMIT")
            except BaseException:
                # Shielded so a second cancellation can't skip it; aiosqlite runs calls in
                # order, so the rollback lands before any later BEGIN on this connection.
                await asyncio.shield(_rollback(db))
                raise

    async def history(self, key: SeriesKey, since: float) -> list[tuple[float, float]]:
        """(ts, value) of one series from `since` (epoch seconds) on, oldest first."""
        name, labels = key
        sql = (
            "SELECT ts, value FROM samples JOIN series ON series.id = samples.series_id "
            "WHERE series.name = ? AND series.labels = ? AND ts >= ? ORDER BY ts"
        )
        async with self.db.execute(sql, (name, labels_json(labels), since)) as cur:
            return [(float(ts), float(v)) for ts, v in await cur.fetchall()]

    async def timestamps_since(self, prefix: str, since: float) -> dict[SeriesKey, list[float]]:
        """Stored sample timestamps (epoch seconds, ≥ `since`) of each series named `prefix…`."""
        if not prefix:
            raise ValueError("timestamps_since needs a non-empty name prefix")
        # A name range rather than LIKE (case-insensitive, no index): the UNIQUE (name, labels)
        # index finds the series, the samples primary key their timestamps from `since` on.
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        sql = (
            "SELECT series.name, series.labels, samples.ts FROM series "
            "JOIN samples ON samples.series_id = series.id "
            "WHERE series.name >= ? AND series.name < ? AND samples.ts >= ?"
        )
        by_text: dict[tuple[str, str], list[float]] = {}
        async with self.db.execute(sql, (prefix, upper, since)) as cur:
            async for name, labels, ts in cur:
                by_text.setdefault((name, labels), []).append(float(ts))
        return {(name, labels_from_json(labels)): ts for (name, labels), ts in by_text.items()}

    async def count_samples(self) -> int:
        """Rows in the samples table."""
        async with self.db.execute("SELECT count(*) FROM samples") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0


def _anomaly_row(series_id: int, a: Anomaly) -> tuple[Any, ...]:
    # NaN/Infinity (a z-score that overflowed) would be text no strict JSON reader accepts.
    evidence = jsontext.dumps(dict(a.evidence), separators=(",", ":"), default=str)
    return (
        series_id, a.ts, a.detector, a.rule, a.severity, a.status, a.value, a.score,
        evidence, a.summary,
    )  # fmt: skip


async def _rollback(db: aiosqlite.Connection) -> None:
    # No transaction open (BEGIN itself failed) means there is nothing to undo.
    with contextlib.suppress(sqlite3.Error):
        await db.execute("ROLLBACK")
