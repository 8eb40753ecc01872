"""The export log and each exporter's cursor over it, in the store's own database.

Why a log: `samples` is keyed by (series, ts) WITHOUT ROWID and upserted, so it has no order of
arrival to resume from, and a late CloudWatch point lands among old keys. Two triggers on
`samples` append every inserted row, and every row whose value an upsert changed, to
`export_log` in the writer's own transaction: its rowid (`seq`) is the commit order, whatever the
sample's timestamp, so late points are exported too. Each exporter reads the rows after its
cursor in chunks of `batch_samples` (never the whole backlog) and moves the cursor past what the
receiver accepted or refused. Rows every cursor has passed are deleted, so the log is only the
backlog: a few rows while receivers keep up, at most `storage.retention` of samples while one is
down. Rows older than the retention are skipped and counted as lost, like the samples retention
deletes.

The triggers exist only while an exporter is configured (`sync_export_log` at start-up), so a
host-only agent's writes cost nothing extra. The log's rowids are max + 1: the row at the lowest
cursor is always kept, so a new row's seq is above every cursor even after a full prune.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import aiosqlite

from infrawatch.logging import get_logger
from infrawatch.model import Labels
from infrawatch.storage.store import Store, labels_from_json

log = get_logger("infrawatch.export")

# Rows deleted per transaction when pruning: a few milliseconds, so writes never wait long.
PRUNE_CHUNK = 10_000

_TRIGGERS = ("export_log_insert", "export_log_update")
_CREATE_TRIGGERS = (
    """
    CREATE TRIGGER IF NOT EXISTS export_log_insert AFTER INSERT ON samples
    BEGIN
        INSERT INTO export_log (series_id, ts, value) VALUES (NEW.series_id, NEW.ts, NEW.value);
    END
    """,
    # An upsert that rewrites the same value (a re-read window) is not a new sample to send.
    """
    CREATE TRIGGER IF NOT EXISTS export_log_update AFTER UPDATE OF value ON samples
    WHEN OLD.value IS NOT NEW.value
    BEGIN
        INSERT INTO export_log (series_id, ts, value) VALUES (NEW.series_id, NEW.ts, NEW.value);
    END
    """,
)
# ?1 = the most rows to delete. Keeps the row at the lowest cursor (see the module docstring).
_PRUNE = (
    "DELETE FROM export_log WHERE seq < min("
    "(SELECT min(seq) FROM export_cursors), (SELECT min(seq) FROM export_log) + ?1)"
)
_READ = "SELECT seq, series_id, ts, value FROM export_log WHERE seq > ? ORDER BY seq LIMIT ?"
_SERIES = "SELECT id, name, labels FROM series WHERE id IN (SELECT value FROM json_each(?))"

Row = tuple[int, int, float, float]  # seq, series_id, ts (epoch s), value


async def _tail(db: aiosqlite.Connection) -> int:
    async with db.execute("SELECT coalesce(max(seq), 0) FROM export_log") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def prune(store: Store, *, chunk: int = PRUNE_CHUNK) -> int:
    """Delete log rows every cursor has passed, `chunk` per transaction; count them."""
    total = 0
    while True:
        async with store.transaction() as db, db.execute(_PRUNE, (chunk,)) as cur:
            deleted = cur.rowcount
        total += deleted
        if deleted < chunk:
            return total
        await asyncio.sleep(0)


async def sync_export_log(store: Store, names: Sequence[str]) -> None:
    """Start-up: the log records writes iff exporters are configured; cursors of exporters no
    longer configured are dropped (their position is forgotten) and new ones start at the tail."""
    if not names:
        # The usual host-only start: nothing to undo means no write transaction at all.
        async with store.db.execute(
            "SELECT (SELECT count(*) FROM export_cursors) + (SELECT count(*) FROM sqlite_master"
            " WHERE type = 'trigger' AND name IN (?, ?))",
            _TRIGGERS,
        ) as cur:
            row = await cur.fetchone()
        if row is not None and row[0] == 0:
            return
    async with store.transaction() as db:
        async with db.execute("SELECT name, seq FROM export_cursors") as cur:
            known = {str(name): int(seq) for name, seq in await cur.fetchall()}
        tail = await _tail(db)
        for name, seq in known.items():
            if name not in names:
                await db.execute("DELETE FROM export_cursors WHERE name = ?", (name,))
                log.warning("export.cursor_dropped", exporter=name, unsent_samples=tail - seq)
        if names:
            for statement in _CREATE_TRIGGERS:
                await db.execute(statement)
            now = time.time()
            for name in names:
                if name not in known:
                    # A new exporter sends what is stored from now on, not the whole history
                    # (which a remote-write receiver would mostly refuse as too old).
                    await db.execute(
                        "INSERT INTO export_cursors (name, seq, updated_at) VALUES (?, ?, ?)",
                        (name, tail, now),
                    )
        else:
            for trigger in _TRIGGERS:
                await db.execute(f"DROP TRIGGER IF EXISTS {trigger}")
            await db.execute("DELETE FROM export_log")
    if names:
        await prune(store)


@dataclass(slots=True)
class Backlog:
    """Rows after a cursor: how many, and the time of the next one (None: caught up)."""

    samples: int
    next_ts: float | None


class ExportCursor:
    """One exporter's position in the export log.

    Reads go through its own read-only connection (WAL: they never wait for the agent's writes,
    and see only committed rows); the position is written through the store's connection.
    `position` moves in memory as batches are delivered and is persisted by `persist`: after a
    crash the rows since the last persist are sent again (at least once).
    """

    def __init__(self, store: Store, name: str) -> None:
        self.store = store
        self.name = name
        self.position = 0  # last seq delivered, rejected or skipped
        self.persisted = 0
        self._db: aiosqlite.Connection | None = None

    @property
    def db(self) -> aiosqlite.Connection:
        """The read-only connection (raises if the cursor is closed)."""
        if self._db is None:
            raise RuntimeError(f"export cursor {self.name} is not open")
        return self._db

    async def open(self) -> None:
        """Open the read connection and load the position (`sync_export_log` created it)."""
        uri = f"file:{urllib.parse.quote(str(self.store.path.resolve()))}?mode=ro"
        db = await aiosqlite.connect(uri, uri=True, isolation_level=None)
        try:
            await db.execute("PRAGMA busy_timeout = 5000")
            async with db.execute(
                "SELECT seq FROM export_cursors WHERE name = ?", (self.name,)
            ) as cur:
                row = await cur.fetchone()
            if row is None:
                raise RuntimeError(f"export cursor {self.name} does not exist (sync first)")
        except BaseException:
            await db.close()
            raise
        self._db = db
        self.position = self.persisted = int(row[0])

    async def close(self) -> None:
        """Close the read connection; safe to call twice."""
        if self._db is not None:
            db, self._db = self._db, None
            await db.close()

    async def read(self, limit: int) -> list[Row]:
        """Up to `limit` rows after the position, in commit order."""
        async with self.db.execute(_READ, (self.position, limit)) as cur:
            # The columns' declared types (INTEGER, REAL) are what SQLite returns.
            return cast(list[Row], await cur.fetchall())

    async def series(self, ids: Sequence[int]) -> dict[int, tuple[str, Labels]]:
        """Name and labels of each series id that still exists."""
        async with self.db.execute(_SERIES, (json.dumps(list(ids)),)) as cur:
            return {
                int(i): (str(name), labels_from_json(labels))
                for i, name, labels in await cur.fetchall()
            }

    async def backlog(self) -> Backlog:
        """Rows after the position (seqs are dense: max − position) and the next one's time."""
        tail = await _tail(self.db)
        if tail <= self.position:
            return Backlog(0, None)
        async with self.db.execute(
            "SELECT ts FROM export_log WHERE seq > ? ORDER BY seq LIMIT 1", (self.position,)
        ) as cur:
            row = await cur.fetchone()
        return Backlog(tail - self.position, float(row[0]) if row else None)

    async def persist(self) -> None:
        """Write the position and prune what every cursor has passed."""
        if self.position == self.persisted:
            return
        position = self.position
        async with self.store.transaction() as db:
            await db.execute(
                "UPDATE export_cursors SET seq = ?, updated_at = ? WHERE name = ?",
                (position, time.time(), self.name),
            )
        self.persisted = position
        await prune(self.store)
