"""Storage maintenance: bring the rollups up to date, then delete expired rows in small chunks.

One background task, started by the agent and cancelled at shutdown. Every chunk is its own short
transaction on the store's connection, so a pipeline write waits at most one chunk behind it.
A failing run (database locked by another process, disk full) is logged and retried next period;
it never stops the agent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from infrawatch.config import StorageConfig
from infrawatch.logging import get_logger
from infrawatch.storage.rollup import catch_up
from infrawatch.storage.store import Store

log = get_logger("infrawatch.storage.retention")

# Rows deleted per transaction: a few milliseconds of work, so writes never wait long.
CHUNK_ROWS = 2000
# Tables with a (series_id, ts) primary key and an index on ts, and the config field that says
# how long each keeps its rows.
RETAINED_TABLES: tuple[tuple[str, str], ...] = (
    ("samples", "retention"),
    ("rollup_1m", "rollup_1m_retention"),
    ("rollup_1h", "rollup_1h_retention"),
)


async def _delete_in_chunks(
    store: Store, sql: str, params: tuple[float, ...], chunk: int, *, drops_series: bool = False
) -> int:
    """Run a `DELETE … LIMIT ?` (chunk appended to `params`) one transaction at a time until a
    chunk comes back short; return the rows deleted. Between chunks the pipeline can write."""
    total = 0
    while True:
        async with store.transaction() as db:
            async with db.execute(sql, (*params, chunk)) as cur:
                deleted = cur.rowcount
            if deleted and drops_series:
                # In the same transaction: no write can use a deleted id from the cache.
                store.forget_all_series()
        total += deleted
        if deleted < chunk:
            return total
        await asyncio.sleep(0)


async def delete_expired(
    store: Store, table: str, cutoff: float, *, chunk: int = CHUNK_ROWS
) -> int:
    """Delete rows of `table` with ts < `cutoff` (epoch s), `chunk` per transaction; count them."""
    if table not in {t for t, _ in RETAINED_TABLES}:
        raise ValueError(f"not a retained table: {table}")
    sql = (
        f"DELETE FROM {table} WHERE (series_id, ts) IN"  # noqa: S608 - table from a fixed list
        f" (SELECT series_id, ts FROM {table} WHERE ts < ? ORDER BY ts LIMIT ?)"
    )
    return await _delete_in_chunks(store, sql, (cutoff,), chunk)


_DELETE_ANOMALIES = (
    "DELETE FROM anomalies WHERE id IN (SELECT id FROM anomalies WHERE ts < ? ORDER BY ts LIMIT ?)"
)
# Series no row refers to any more (gone longer than every retention): a pid-labelled process
# series would otherwise stay in the table for good.
_DELETE_ORPHAN_SERIES = """
DELETE FROM series WHERE id IN (
    SELECT s.id FROM series AS s
    WHERE NOT EXISTS (SELECT 1 FROM samples WHERE series_id = s.id)
      AND NOT EXISTS (SELECT 1 FROM rollup_1m WHERE series_id = s.id)
      AND NOT EXISTS (SELECT 1 FROM rollup_1h WHERE series_id = s.id)
      AND NOT EXISTS (SELECT 1 FROM anomalies WHERE series_id = s.id)
    LIMIT ?
)
"""


async def delete_expired_anomalies(store: Store, cutoff: float, *, chunk: int = CHUNK_ROWS) -> int:
    """Delete anomalies recorded before `cutoff` (epoch s), `chunk` per transaction."""
    return await _delete_in_chunks(store, _DELETE_ANOMALIES, (cutoff,), chunk)


async def delete_orphan_series(store: Store, *, chunk: int = CHUNK_ROWS) -> int:
    """Delete series rows nothing refers to, `chunk` per transaction; count them."""
    return await _delete_in_chunks(store, _DELETE_ORPHAN_SERIES, (), chunk, drops_series=True)


@dataclass(slots=True)
class MaintenanceResult:
    """What one maintenance run did."""

    rollup_chunks: int = 0
    deleted: dict[str, int] = field(default_factory=dict)


async def maintain(store: Store, config: StorageConfig, *, now: float) -> MaintenanceResult:
    """One run: roll up what is pending, then apply each table's retention as of `now`."""
    result = MaintenanceResult()
    # Rollups first, so raw rows are rolled up before they can expire.
    result.rollup_chunks = await catch_up(
        store,
        now=now,
        raw_retention=config.retention,
        rollup_1m_retention=config.rollup_1m_retention,
    )
    for table, setting in RETAINED_TABLES:
        keep: float = getattr(config, setting)
        result.deleted[table] = await delete_expired(store, table, now - keep)
    # Anomalies are kept as long as the longest history, the hourly rollups.
    result.deleted["anomalies"] = await delete_expired_anomalies(
        store, now - config.rollup_1h_retention
    )
    result.deleted["series"] = await delete_orphan_series(store)
    return result


class Maintenance:
    """The periodic maintenance task (run it with `run`, stop it by cancelling)."""

    def __init__(
        self,
        store: Store,
        config: StorageConfig,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._config = config
        self._clock = clock
        self.runs = 0
        self.failures = 0
        self.ran = asyncio.Event()  # set after every run, successful or not (tests await it)

    async def run(self) -> None:
        """Run maintenance every `maintenance_interval` seconds until cancelled."""
        while True:
            await self.run_once()
            await asyncio.sleep(self._config.maintenance_interval)

    async def run_once(self) -> MaintenanceResult | None:
        """One maintenance run; errors are logged (once per failure streak) and swallowed."""
        started = time.perf_counter()
        try:
            result = await maintain(self._store, self._config, now=self._clock())
        except Exception as exc:
            self.failures += 1
            # Logged on the first failure of a streak and every 10th after, not every period.
            if self.failures % 10 == 1:
                log.error(
                    "store.maintenance_failed",
                    error=f"{type(exc).__name__}: {exc}",
                    consecutive_failures=self.failures,
                )
            return None
        finally:
            self.runs += 1
            self.ran.set()
        if self.failures:
            log.info("store.maintenance_recovered", after_failures=self.failures)
            self.failures = 0
        deleted = {table: n for table, n in result.deleted.items() if n}
        if deleted or result.rollup_chunks:
            log.info(
                "store.maintenance_done",
                rollup_chunks=result.rollup_chunks,
                deleted=deleted,
                seconds=round(time.perf_counter() - started, 6),
            )
        return result
