"""Rebuild detector state at start-up by replaying stored samples, so a restart needs no warm-up.

Detectors are pure and deterministic, so feeding them the stored history in time order (and
discarding what they report, which was reported before the restart) leaves them in the state an
uninterrupted run would have. Reads raw samples for now; rollups can replace the far past later.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from infrawatch.detect.base import Detector
from infrawatch.logging import get_logger
from infrawatch.model import Labels, Sample
from infrawatch.store import Store, labels_from_json

log = get_logger("infrawatch.detect.restore")

FETCH_ROWS = 5000  # rows per fetch: few round trips to the sqlite thread, bounded memory

_SQL = (
    "SELECT series.id, series.name, series.labels, samples.ts, samples.value "
    "FROM samples JOIN series ON series.id = samples.series_id "
    "WHERE samples.ts >= ? AND samples.ts <= ? ORDER BY samples.ts, samples.series_id"
)


@dataclass(frozen=True, slots=True)
class RestoreResult:
    """What a restore replayed: samples, distinct series, and the seconds of history asked for."""

    samples: int
    series: int
    history_seconds: float


async def restore_detectors(
    store: Store,
    detectors: Sequence[Detector],
    *,
    now: float | None = None,
    max_history: float | None = None,
) -> RestoreResult:
    """Replay the stored samples the detectors need (at most `max_history` seconds) into them."""
    wanted = max((d.history_seconds() for d in detectors), default=0.0)
    if max_history is not None:
        wanted = min(wanted, max_history)
    if wanted <= 0:
        return RestoreResult(0, 0, 0.0)
    end = time.time() if now is None else now
    names: dict[int, tuple[str, Labels]] = {}
    count = 0
    async with store.db.execute(_SQL, (end - wanted, end)) as cur:
        while rows := list(await cur.fetchmany(FETCH_ROWS)):
            for series_id, name, labels_text, ts, value in rows:
                key = names.get(series_id)
                if key is None:
                    key = names[series_id] = (name, labels_from_json(labels_text))
                sample = Sample(key[0], float(value), float(ts), key[1])
                for detector in detectors:
                    detector.observe(sample)  # reported before the restart: discarded
            count += len(rows)
    log.info(
        "detect.restored",
        samples=count,
        series=len(names),
        history_seconds=wanted,
        detectors=[d.name for d in detectors],
    )
    return RestoreResult(count, len(names), wanted)
