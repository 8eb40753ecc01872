"""Rebuild detector state at start-up from storage, so a restart needs no warm-up.

Each detector gets only the history it declares (`history_seconds()`, capped by the raw
retention). Detectors are pure and deterministic, so replaying the stored raw samples in time
order (and discarding what they report, which was reported before the restart) leaves them in the
state an uninterrupted run over the same span would have.

Replaying weeks of raw samples costs ~1-3 µs per sample per detector, so a detector that can
rebuild its far past from aggregates (range novelty: `seed_step`/`seed`) gets it from the
rollups (1-hour min/max for the ranges, one bucket per ring slot for the seasonal ring) and only
its `raw_seconds()` from raw samples; see `NoveltyDetector.seed` for what is exact and what is
conservative. The CPU work runs in a worker thread chunk by chunk, so the event loop stays
responsive; nothing else touches the detectors until they are handed to the pipeline.

What was firing at shutdown comes in as plain data (`FiringRule`, read from the alert store by
the caller): this package knows nothing of alerting, alerting knows detect's types.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from infrawatch.detect.base import Detector
from infrawatch.detect.novelty import NoveltyDetector
from infrawatch.detect.threshold import ThresholdDetector
from infrawatch.logging import get_logger
from infrawatch.model import Labels, Sample, SeriesKey, Severity
from infrawatch.storage import rollup
from infrawatch.storage.store import Store, labels_from_json

log = get_logger("infrawatch.detect.restore")

FETCH_ROWS = 20_000  # rows per fetch and per worker-thread chunk: bounded memory, short steps
SEED_WIDTH = rollup.HOUR  # the seeded ranges' granularity (blocks span many hours anyway)

_SQL = (
    "SELECT series.id, series.name, series.labels, samples.ts, samples.value "
    "FROM samples JOIN series ON series.id = samples.series_id "
    "WHERE samples.ts >= ? AND samples.ts <= ? ORDER BY samples.ts, samples.series_id"
)


@dataclass(frozen=True, slots=True)
class FiringRule:
    """A detector's rule that was firing on a series when the agent stopped (its alert's state)."""

    detector: str
    key: SeriesKey
    rule: str
    severity: Severity


@dataclass(frozen=True, slots=True)
class RestoreResult:
    """What a restore did: raw samples replayed, distinct series, the seconds of history asked
    for (the longest of the detectors'), and series seeded from rollups."""

    samples: int
    series: int
    history_seconds: float
    seeded: int = 0


async def restore_detectors(
    store: Store,
    detectors: Sequence[Detector],
    *,
    firing: Iterable[FiringRule] = (),
    now: float | None = None,
    max_history: float | None = None,
    use_rollups: bool = True,
) -> RestoreResult:
    """Rebuild each detector from the history it needs: raw samples of the last `max_history`
    seconds at most, plus (`use_rollups`) rollups for a seedable detector's far past; `firing`
    are the rules whose alerts were firing at shutdown (`Outbox.firing_rules`)."""
    end = time.time() if now is None else now
    cap = max_history if max_history is not None else float("inf")
    wanted = {id(d): max(0.0, d.history_seconds()) for d in detectors}
    raw_from = {id(d): end - min(wanted[id(d)], cap) for d in detectors if wanted[id(d)] > 0}
    seeded = 0
    _seed_threshold_firing(detectors, firing)
    for d in detectors:
        if use_rollups and isinstance(d, NoveltyDetector) and id(d) in raw_from:
            step = d.seed_step()
            raw = min(d.raw_seconds(), cap)
            # The raw replay starts on a whole hour, where the seeded hour buckets end.
            raw_start = rollup.floor_to(end - raw, SEED_WIDTH)
            if step is not None and raw_start > end - wanted[id(d)]:
                start = end - wanted[id(d)]
                seeded = await _seed(store, d, start=start, until=raw_start, step=step)
                raw_from[id(d)] = raw_start
    history = max(wanted.values(), default=0.0)
    if not raw_from:
        _finish(detectors)
        return RestoreResult(0, 0, 0.0, seeded)
    start = min(raw_from.values())
    names: dict[int, tuple[str, Labels]] = {}
    count = 0
    plan = [(raw_from[id(d)], d) for d in detectors if id(d) in raw_from]
    async with store.db.execute(_SQL, (start, end)) as cur:
        while rows := list(await cur.fetchmany(FETCH_ROWS)):
            # The replay is pure CPU: a worker thread keeps the event loop free meanwhile.
            await asyncio.to_thread(_replay, rows, names, plan)
            count += len(rows)
    _finish(detectors)
    log.info(
        "detect.restored",
        samples=count,
        series=len(names),
        seeded=seeded,
        history_seconds=min(history, cap) if not seeded else history,
        detectors=[d.name for d in detectors],
    )
    return RestoreResult(count, len(names), min(history, cap), seeded)


def _finish(detectors: Sequence[Detector]) -> None:
    """Threshold rules the replay left firing without a persisted alert fire again live."""
    for detector in detectors:
        if isinstance(detector, ThresholdDetector):
            detector.finish_restore()


def _replay(
    rows: Sequence[Any], names: dict[int, tuple[str, Labels]], plan: list[tuple[float, Detector]]
) -> None:
    """Feed rows (time order) to each detector whose own replay span has begun."""
    for series_id, name, labels_text, ts, value in rows:
        key = names.get(series_id)
        if key is None:
            key = names[series_id] = (name, labels_from_json(labels_text))
        sample = Sample(key[0], float(value), float(ts), key[1])
        for since, detector in plan:
            if sample.ts >= since:
                detector.observe(sample)  # reported before the restart: discarded


def _seed_threshold_firing(detectors: Sequence[Detector], firing: Iterable[FiringRule]) -> int:
    """Mark the threshold rules whose alerts were firing at shutdown as firing; return how many.

    Threshold state is not in the samples alone: a rule keeps firing while the value sits
    between `resolve` and the firing level, for longer than any replay window."""
    thresholds = [d for d in detectors if isinstance(d, ThresholdDetector)]
    seeded = 0
    for was in firing:
        for detector in thresholds:
            # The instance's name: compiled (mypyc) classes keep `name` per instance.
            if was.detector == detector.name:
                seeded += detector.seed_firing(was.key, was.rule, was.severity)
    return seeded


async def _seed(
    store: Store, detector: NoveltyDetector, *, start: float, until: float, step: int
) -> int:
    """Seed every stored series' far past [start, until) from rollups; return how many.

    `until` is a whole hour (and so a whole ring slot); the raw replay starts there."""
    async with store.db.execute("SELECT id, name, labels FROM series") as cur:
        series = [(int(i), (str(n), labels_from_json(t))) for i, n, t in await cur.fetchall()]
    season = detector.config.season
    since = rollup.ceil_to(start, SEED_WIDTH)  # whole hours only: never a partial bucket
    done = 0
    for series_id, key in series:
        history = await rollup.read_series(
            store, series_id, since=since, until=until, step=SEED_WIDTH
        )
        ring = await rollup.read_series(
            store, series_id, since=until - season, until=until, step=step
        )
        if history or ring:
            detector.seed(key, history, SEED_WIDTH, ring)
            done += 1
    return done
