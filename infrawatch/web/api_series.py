"""/api/v1's series reads: the ranked series list with sparklines, and a chart's threshold
levels and expected-value bands.

`series_list` runs in a worker thread on a read-only connection; the rest read live state on
the event loop.
"""

from __future__ import annotations

import heapq
import math
import re
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from infrawatch.detect.base import Detector, SeriesState
from infrawatch.detect.config import ThresholdRule
from infrawatch.detect.match import matches
from infrawatch.model import Labels, SeriesKey
from infrawatch.runtime.latest import Latest
from infrawatch.storage import charts, read
from infrawatch.web.api_source import Banded

SPARK_STEP, SPARK_CELLS = 120, 30  # the series list's sparklines: the last hour in 2 min cells


@dataclass(frozen=True, slots=True)
class SeriesQuery:
    match: str  # the glob, for SQL
    pattern: re.Pattern[str]  # the same glob, for names in memory
    labels: dict[str, str]
    limit: int
    now: float  # epoch seconds: the sparklines end here


def series_list(
    conn: sqlite3.Connection,
    query: SeriesQuery,
    live: dict[SeriesKey, Latest],
    states: list[tuple[str, Mapping[SeriesKey, SeriesState]]],
) -> list[dict[str, Any]]:
    """Live series ranked anomalous first, then by score, then by name and labels; then, if
    there is room, stored series that no longer report, by name and labels. With last values
    and sparklines.

    Ranking runs over the live series in memory (no per-series SQL, no 10,000 rows to parse);
    the database gives the ids of the few series shown, their sparklines, and the series that
    are gone (detectors forget those, so they would rank last anyway).
    """
    maps = [by_key for _, by_key in states]
    wanted = tuple(query.labels.items())
    fullmatch = query.pattern.fullmatch

    def ranked() -> Iterator[tuple[bool, float, str, Labels]]:
        # Plain loops and tuples: this runs once per live series (10,000 and more).
        for key in live:
            name, pairs = key
            if fullmatch(name) is None or (wanted and not all(w in pairs for w in wanted)):
                continue
            calm = True
            top = -math.inf
            for by_key in maps:
                state = by_key.get(key)
                if state is not None:
                    if state.anomalous:
                        calm = False
                    if state.score > top:
                        top = state.score
            yield calm, -top, name, pairs

    keys: list[SeriesKey] = [(n, p) for _, _, n, p in heapq.nsmallest(query.limit, ranked())]
    ids = read.series_ids(conn, keys)
    if len(keys) < query.limit:
        for ref in read.iter_series(conn, match=query.match, labels=query.labels):
            key = (ref.name, tuple(ref.labels.items()))  # stored labels are sorted already
            if key not in live:
                keys.append(key)
                ids[key] = ref.id
                if len(keys) >= query.limit:
                    break
    shown = list(ids.values())
    sparks = charts.sparklines(conn, shown, until=query.now, step=SPARK_STEP, cells=SPARK_CELLS)
    stored = charts.last_stored(conn, [ids[k] for k in keys if k in ids and k not in live])
    out = []
    for key in keys:
        per = {}
        for name, by_key in states:
            state = by_key.get(key)
            if state is not None:
                per[name] = {"anomalous": state.anomalous, "score": state.score}
        entry = live.get(key)
        sid = ids.get(key)
        last = (entry.ts, entry.value) if entry is not None else stored.get(sid or -1)
        out.append(
            {
                "metric": key[0],
                "labels": dict(key[1]),
                "last": None if last is None else {"ts": last[0], "value": last[1]},
                "anomalous": any(s["anomalous"] for s in per.values()),
                "score": max((s["score"] for s in per.values()), default=None),
                "detectors": per,
                # A live series not stored yet (its first batch is on its way) has no history.
                "spark": sparks[sid] if sid is not None else [None] * SPARK_CELLS,
            }
        )
    return out


def thresholds(rules: Sequence[ThresholdRule], keys: Sequence[SeriesKey]) -> list[dict[str, Any]]:
    """The levels of every rule that applies to at least one of `keys`."""
    out = []
    for rule in rules:
        if not any(matches(key, rule.metric, rule.labels) for key in keys):
            continue
        for severity, level in (("warning", rule.warning), ("critical", rule.critical)):
            if level is not None:
                out.append({"rule": rule.name, "severity": severity, "level": level, "op": rule.op})
    return out


def bands(detectors: Sequence[Detector], keys: Sequence[SeriesKey]) -> list[dict[str, Any]]:
    """The expected range of each series per detector that has one now."""
    out = []
    for key in keys:
        for detector in detectors:
            if not isinstance(detector, Banded):
                continue
            band = detector.band(key)
            if band is not None:
                lower, upper, text = band
                out.append(
                    {
                        "labels": dict(key[1]),
                        "detector": detector.name,
                        "lower": lower,
                        "upper": upper,
                        "text": text,
                    }
                )
    return out
