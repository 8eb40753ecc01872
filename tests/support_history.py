"""A fixture database for the history tests, and brute-force aggregates to check answers against."""

from __future__ import annotations

import asyncio
import json
import math
import random
import sqlite3
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from infrawatch.config import StorageConfig
from infrawatch.model import Anomaly, Labels, Sample, SeriesKey, make_labels
from infrawatch.storage.retention import maintain
from infrawatch.storage.store import Store

# An hour boundary (2027-01-15T08:00:00Z): buckets of every width start on it.
NOW = 1_800_000_000.0
EVIL = "x' OR 1=1 --"

CPU = "system.cpu.utilization"
MEM = "system.memory.utilization"
ODD = "app.requests"


@dataclass
class Fixture:
    """The database and every raw point written to it, by series."""

    path: Path
    now: float
    points: dict[SeriesKey, list[tuple[float, float]]] = field(default_factory=dict)

    def values(self, key: SeriesKey, start: float, end: float) -> list[tuple[float, float]]:
        """Raw points of `key` with start <= ts < end, oldest first."""
        return sorted((t, v) for t, v in self.points[key] if start <= t < end)


def key(name: str, **labels: str) -> SeriesKey:
    """A series key from keyword labels."""
    return (name, make_labels(labels))


def _series_points(rng: random.Random, start: float, end: float, every: float) -> list[float]:
    out = []
    t = start
    while t < end:
        out.append(round(t + rng.uniform(0, every / 2), 3))  # jitter: not on bucket edges
        t += every
    return out


async def _build(path: Path, now: float) -> Fixture:
    rng = random.Random(20261126)
    fixture = Fixture(path, now)
    plan: list[tuple[SeriesKey, float, float, float]] = [
        # (series, first ts, end, interval seconds)
        (key(CPU, cpu="0", host="web-1"), now - 3 * 3600 - 1234, now, 10.0),
        (key(CPU, cpu="1", host="web-1"), now - 3 * 3600, now, 10.0),
        (key(MEM, host="web-1"), now - 26 * 3600, now, 60.0),
        (key(ODD, note=EVIL), now - 600, now, 30.0),
    ]
    samples: list[Sample] = []
    for series, start, end, every in plan:
        pts = [(t, round(rng.gauss(0.5, 0.2), 4)) for t in _series_points(rng, start, end, every)]
        fixture.points[series] = pts
        samples.extend(Sample(series[0], v, t, series[1]) for t, v in pts)
    # Written in time order in batches, like the agent, with the recent tail left un-rolled-up
    # so queries must merge rollups with raw rows.
    samples.sort(key=lambda s: s.ts)
    cut = now - 150.0
    older = [s for s in samples if s.ts < cut]
    recent = [s for s in samples if s.ts >= cut]
    async with Store(path) as store:
        for i in range(0, len(older), 700):
            await store.write(older[i : i + 700])
        await maintain(store, StorageConfig(path=path), now=now)
        await store.write(recent, _anomalies(now))
    _insert_alerts(path, now)
    return fixture


def _anomalies(now: float) -> list[Anomaly]:
    labels: Labels = make_labels({"cpu": "0", "host": "web-1"})
    return [
        Anomaly(CPU, labels, now - 100, 0.97, "threshold", "cpu_high", "warning", "firing",
                evidence={"threshold": 0.9}, summary="cpu 97% > 90%"),
        Anomaly(CPU, labels, now - 40, 0.42, "threshold", "cpu_high", "warning", "resolved",
                evidence={"threshold": 0.9}, summary="cpu back to 42%"),
    ]  # fmt: skip


def _insert_alerts(path: Path, now: float) -> None:
    rows = [
        ("fp-1", "cpu_high", "firing", "warning", {"alertname": "cpu_high", "host": "web-1"},
         {"summary": "cpu high"}, now - 300, None, now - 290, now - 10),
        ("fp-2", "disk_full", "resolved", "critical", {"alertname": "disk_full", "note": EVIL},
         {"summary": "disk full"}, now - 7200, now - 3600, now - 3600, now - 3600),
    ]  # fmt: skip
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "INSERT INTO alerts (fingerprint, alertname, state, severity, labels, annotations,"
            " starts_at, ends_at, last_notified_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(*r[:4], json.dumps(r[4]), json.dumps(r[5]), *r[6:]) for r in rows],
        )
    conn.close()


def build(path: Path, now: float = NOW) -> Fixture:
    """Create the fixture database at `path` (from sync code)."""
    return asyncio.run(_build(path, now))


def brute_force(
    points: Sequence[tuple[float, float]], step: float, agg: str
) -> list[tuple[float, float]]:
    """Aggregate raw points per step-aligned bucket the obvious way."""
    groups: dict[float, list[float]] = {}
    for ts, value in sorted(points):
        groups.setdefault(math.floor(ts / step) * step, []).append(value)
    out = []
    for ts, vals in sorted(groups.items()):
        if agg == "avg":
            out.append((ts, statistics.fmean(vals)))
        elif agg == "min":
            out.append((ts, min(vals)))
        elif agg == "max":
            out.append((ts, max(vals)))
        elif agg == "last":
            out.append((ts, vals[-1]))
        elif agg == "count":
            out.append((ts, float(len(vals))))
        elif agg == "p95":
            p95 = (
                vals[0]
                if len(vals) == 1
                else statistics.quantiles(vals, n=20, method="inclusive")[18]
            )
            out.append((ts, p95))
    return out
