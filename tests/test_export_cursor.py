"""The export log and cursors in the store's database (export/cursor.py)."""

from __future__ import annotations

from pathlib import Path

from infrawatch.export.cursor import ExportCursor, sync_export_log
from infrawatch.model import Sample, make_labels
from infrawatch.storage.store import Store
from tests.support_alert_logs import captured_logs

LABELS = make_labels({"cpu": "0"})


def sample(value: float, ts: float) -> Sample:
    return Sample("system.cpu.utilization", value, ts, LABELS)


async def log_rows(store: Store) -> list[tuple[int, float, float]]:
    async with store.db.execute("SELECT seq, ts, value FROM export_log ORDER BY seq") as cur:
        return [(int(s), float(t), float(v)) for s, t, v in await cur.fetchall()]


async def cursors(store: Store) -> dict[str, int]:
    async with store.db.execute("SELECT name, seq FROM export_cursors") as cur:
        return {str(n): int(s) for n, s in await cur.fetchall()}


async def test_without_exporters_writes_are_not_logged(tmp_path: Path) -> None:
    async with Store(tmp_path / "a.db") as store:
        await sync_export_log(store, [])
        await store.write([sample(1.0, 100.0)])
        assert await log_rows(store) == []
        async with store.db.execute("SELECT count(*) FROM sqlite_master WHERE type='trigger'") as c:
            assert await c.fetchone() == (0,)


async def test_log_holds_new_and_changed_samples_in_commit_order(tmp_path: Path) -> None:
    async with Store(tmp_path / "a.db") as store:
        await store.write([sample(1.0, 100.0)])  # before any exporter: not exported
        await sync_export_log(store, ["a"])
        assert await cursors(store) == {"a": 0}  # starts at the tail
        await store.write([sample(2.0, 200.0), sample(3.0, 300.0)])
        await store.write([sample(2.0, 200.0)])  # a re-read window rewriting the same value
        await store.write([sample(9.0, 50.0)])  # a late point with an old timestamp
        await store.write([sample(2.5, 200.0)])  # a value that changed
        assert [(t, v) for _, t, v in await log_rows(store)] == [
            (200.0, 2.0),
            (300.0, 3.0),
            (50.0, 9.0),
            (200.0, 2.5),
        ]


async def test_cursor_reads_in_chunks_persists_and_prunes(tmp_path: Path) -> None:
    async with Store(tmp_path / "a.db") as store:
        await sync_export_log(store, ["a", "b"])
        await store.write([sample(float(i), 1000.0 + i) for i in range(10)])
        cursor = ExportCursor(store, "a")
        await cursor.open()
        try:
            rows = await cursor.read(4)
            assert [r[3] for r in rows] == [0.0, 1.0, 2.0, 3.0]
            cursor.position = rows[-1][0]
            assert (await cursor.backlog()).samples == 6
            await cursor.persist()
        finally:
            await cursor.close()
        # "b" has not moved: nothing is pruned yet.
        assert len(await log_rows(store)) == 10
        await sync_export_log(store, ["a"])  # "b" removed from the configuration
        assert await cursors(store) == {"a": rows[-1][0]}
        # Rows "a" passed are gone, except the one it stands on (seqs never restart below it).
        assert [v for _, _, v in await log_rows(store)] == [3.0, 4, 5, 6, 7, 8, 9]


async def test_removed_exporter_is_logged_and_log_cleared_without_exporters(
    tmp_path: Path,
) -> None:
    async with Store(tmp_path / "a.db") as store:
        await sync_export_log(store, ["a"])
        await store.write([sample(float(i), 1000.0 + i) for i in range(3)])
        with captured_logs("info") as logs:
            await sync_export_log(store, [])
        (event,) = logs.named("export.cursor_dropped")
        assert (event["exporter"], event["unsent_samples"]) == ("a", 3)
        assert await log_rows(store) == []
        assert await cursors(store) == {}
        # Added again later, it starts from what is stored from then on.
        await sync_export_log(store, ["a"])
        await store.write([sample(7.0, 2000.0)])
        cursor = ExportCursor(store, "a")
        await cursor.open()
        try:
            assert [r[3] for r in await cursor.read(10)] == [7.0]
        finally:
            await cursor.close()
