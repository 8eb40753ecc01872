"""/api/v1's series reads: the ranked series list with sparklines, and a chart's threshold
levels and expected-value bands.

`series_list` runs in a worker thread on a read-only connection; the rest read live state on
the event loop.
"""

from __future__ import annotations

import heapq
import math
import operator
import re
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import compress, repeat
from typing import Any

from infrawatch.detect.base import Detector, Scores
from infrawatch.detect.config import ThresholdRule
from infrawatch.detect.match import matches
from infrawatch.model import SeriesKey
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
    states: list[tuple[str, Scores]],
) -> list[dict[str, Any]]:
    """Live series ranked anomalous first, then by score, then by name and labels; then, if
    there is room, stored series that no longer report, by name and labels. With last values
    and sparklines.

    Ranking runs over the live series in memory (no per-series SQL, no 10,000 rows to parse);
    the database gives the ids of the few series shown, their sparklines, and the series that
    are gone (detectors forget those, so they would rank last anyway).
    """
    wanted = tuple(query.labels.items())
    fullmatch = query.pattern.fullmatch
    # Per series and detector, this runs 10,000 times and more: lookups go through map() and
    # compare in C, no Python-level loop per series but the filter and the heap.
    maps = [
        (name, dict(zip(s.keys, s.scores, strict=True)), set(compress(s.keys, s.anomalous)))
        for name, s in states
    ]
    if query.match == "*" and not wanted:
        shown_live = list(live)  # "*" compiles to ".*" with DOTALL: every name matches
    else:
        shown_live = [
            key
            for key in live
            if fullmatch(key[0]) is not None and all(map(key[1].__contains__, wanted))
        ]
    flagged = set().union(*(flags for _, _, flags in maps))
    calm = map(operator.not_, map(flagged.__contains__, shown_live))
    tops: list[Iterator[float]] = [
        map(by_key.get, shown_live, repeat(-math.inf)) for _, by_key, _ in maps
    ]
    if not tops:
        tops = [repeat(-math.inf, len(shown_live))]
    top = map(max, *tops) if len(tops) > 1 else tops[0]
    # Anomalous first, then by score, then by name and labels (keys are unique: no more ties).
    ranked = zip(calm, map(operator.neg, top), shown_live, strict=True)
    keys: list[SeriesKey] = [key for _, _, key in heapq.nsmallest(query.limit, ranked)]
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
        for name, by_key, flags in maps:
            score = by_key.get(key)
            if score is not None:
                per[name] = {"anomalous": key in flags, "score": score}
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
