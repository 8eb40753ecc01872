"""Read-only queries over the agent's database: series, samples, anomalies, alerts.

The database is opened read-only (`file:…?mode=ro`), so a query never creates, migrates or
changes a file, and it works while the agent is writing (WAL readers don't block the writer).
Every value from the command line reaches SQL as a bound parameter. This module uses the stdlib
`sqlite3`: a command-line read has no event loop to keep free.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from infrawatch.storage.rollup import Bucket, Pending, bucket_row, by_step, ceil_to, floor_to, plan
from infrawatch.storage.store import SCHEMA_VERSION
from infrawatch.units import parse_duration

Agg = Literal["avg", "min", "max", "last", "count", "p95"]
AGGREGATIONS: tuple[Agg, ...] = ("avg", "min", "max", "last", "count", "p95")


class QueryError(Exception):
    """A bad argument or an unusable database: one line for the user (exit code 2)."""


@dataclass(frozen=True, slots=True)
class SeriesRef:
    """One stored series."""

    id: int
    name: str
    labels: dict[str, str]

    def display(self) -> str:
        """`name{k="v",…}` as Prometheus writes a series."""
        if not self.labels:
            return self.name
        inner = ",".join(f'{k}="{v}"' for k, v in sorted(self.labels.items()))
        return f"{self.name}{{{inner}}}"


@dataclass(frozen=True, slots=True)
class SeriesPoints:
    """Values of one series over time: (ts epoch seconds, value), oldest first."""

    series: SeriesRef
    points: list[tuple[float, float]]


# -- arguments ------------------------------------------------------------------------------


def parse_time(text: str, *, now: float, option: str) -> float:
    """Epoch seconds from a duration before `now` ("1h", "7d") or an RFC 3339 time."""
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        # RFC 3339 allows a lower-case "t" and "z"; fromisoformat only takes upper case.
        when = datetime.fromisoformat(text.strip().upper())
    except ValueError:
        raise QueryError(
            f"{option}: malformed time {text!r}: use a duration before now (30m, 7d) "
            "or an RFC 3339 time (2026-01-02T15:04:05Z)"
        ) from None
    if when.tzinfo is None:  # no offset given: UTC, like everything the agent stores
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def parse_labels(pairs: Sequence[str]) -> dict[str, str]:
    """`k=v` strings into a mapping; a malformed one is a QueryError."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise QueryError(f"--label: expected KEY=VALUE, got {pair!r}")
        out[key] = value
    return out


def parse_step(text: str) -> int:
    """A step in whole seconds ("5m", "1h", "30")."""
    try:
        seconds = float(text) if text.replace(".", "", 1).isdigit() else parse_duration(text)
    except ValueError:
        raise QueryError(f"--step: malformed duration {text!r}: use e.g. 30s, 5m, 1h") from None
    if seconds < 1 or seconds != int(seconds):
        raise QueryError(f"--step: {text!r} must be a whole number of seconds, at least 1")
    return int(seconds)


def time_range(since: str, until: str | None, *, now: float | None = None) -> tuple[float, float]:
    """[since, until) in epoch seconds from the command-line forms; until defaults to now."""
    now = time.time() if now is None else now
    start = parse_time(since, now=now, option="--since")
    end = now if until is None else parse_time(until, now=now, option="--until")
    if end <= start:
        raise QueryError(f"--until ({until or 'now'}) is not after --since ({since})")
    return start, end


# -- the database ---------------------------------------------------------------------------


def open_readonly(path: Path) -> sqlite3.Connection:
    """Open an infrawatch database read-only; a missing or foreign file is a QueryError."""
    if not path.exists():
        raise QueryError(f"{path}: no such database file")
    if not path.is_file():
        raise QueryError(f"{path}: not a regular file")
    uri = f"file:{urllib.parse.quote(str(path.resolve()))}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True)
    except sqlite3.Error as exc:
        raise QueryError(f"{path}: cannot open database: {exc}") from None
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise QueryError(f"{path}: not an SQLite database ({exc})") from None
    if not {"series", "samples"} <= tables:
        conn.close()
        raise QueryError(f"{path}: not an infrawatch database (no series/samples tables)")
    if version > SCHEMA_VERSION:
        conn.close()
        raise QueryError(
            f"{path}: database schema version {version} is newer than this infrawatch "
            f"supports ({SCHEMA_VERSION}); upgrade infrawatch"
        )
    return conn


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,))
    return row.fetchone() is not None


def _label_filter(labels: dict[str, str]) -> tuple[str, list[Any]]:
    """SQL conditions on series.labels (a JSON object), all values bound."""
    sql = ""
    params: list[Any] = []
    for key, value in labels.items():
        sql += " AND EXISTS (SELECT 1 FROM json_each(series.labels) WHERE key = ? AND value = ?)"
        params += [key, value]
    return sql, params


def _ref(row: Sequence[Any]) -> SeriesRef:
    return SeriesRef(int(row[0]), str(row[1]), dict(json.loads(row[2])))


def list_series(
    conn: sqlite3.Connection, *, match: str | None = None, labels: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Stored series (name GLOB `match`, with `labels`) with raw sample count and first/last ts."""
    where, params = _label_filter(labels or {})
    if match is not None:
        where += " AND series.name GLOB ?"
        params.append(match)
    sql = (
        "SELECT id, name, labels,"  # noqa: S608 - only fixed conditions with "?" are added
        " (SELECT count(*) FROM samples WHERE series_id = series.id),"
        " (SELECT min(ts) FROM samples WHERE series_id = series.id),"
        " (SELECT max(ts) FROM samples WHERE series_id = series.id)"
        f" FROM series WHERE 1 = 1{where} ORDER BY name, labels"
    )
    out = []
    for row in conn.execute(sql, params):
        ref = _ref(row)
        out.append(
            {
                "metric": ref.name,
                "labels": ref.labels,
                "samples": int(row[3]),
                "first": row[4],
                "last": row[5],
            }
        )
    return out


def find_series(conn: sqlite3.Connection, metric: str, labels: dict[str, str]) -> list[SeriesRef]:
    """The series of `metric` carrying `labels`; an unknown metric is a QueryError."""
    if conn.execute("SELECT 1 FROM series WHERE name = ? LIMIT 1", (metric,)).fetchone() is None:
        raise QueryError(f"unknown metric {metric!r} (see `infrawatch query series`)")
    where, params = _label_filter(labels)
    sql = f"SELECT id, name, labels FROM series WHERE name = ?{where} ORDER BY labels"  # noqa: S608 - only "?"
    refs = [_ref(row) for row in conn.execute(sql, [metric, *params])]
    if not refs:
        shown = ",".join(f"{k}={v}" for k, v in labels.items())
        raise QueryError(f"no series of {metric!r} has labels {shown}")
    return refs


def _pending(conn: sqlite3.Connection) -> Pending | None:
    """What the rollups don't cover yet; None if the database has no rollups (older schema)."""
    if not _has_table(conn, "rollup_pending"):
        return None
    row = conn.execute("SELECT dirty_from, hour_dirty_from FROM rollup_pending WHERE id = 1")
    found = row.fetchone()
    return Pending(None, None) if found is None else Pending(found[0], found[1])


def _raw(conn: sqlite3.Connection, sid: int, start: float, end: float) -> list[tuple[float, float]]:
    sql = "SELECT ts, value FROM samples WHERE series_id = ? AND ts >= ? AND ts < ? ORDER BY ts"
    return conn.execute(sql, (sid, start, end)).fetchall()


def samples(
    conn: sqlite3.Connection,
    metric: str,
    *,
    labels: dict[str, str] | None = None,
    since: float,
    until: float,
    step: int | None = None,
    agg: Agg = "avg",
) -> list[SeriesPoints]:
    """Values of each matching series in [since, until): raw, or one per `step` by `agg`.

    With a step, the range is rounded out to whole steps (buckets start at multiples of the step)
    and complete rollups are read where the step allows; p95 always reads raw samples.
    """
    refs = find_series(conn, metric, labels or {})
    if step is None:
        return [SeriesPoints(ref, _raw(conn, ref.id, since, until)) for ref in refs]
    start, end = floor_to(since, step), ceil_to(until, step)
    pending = _pending(conn)
    out = []
    for ref in refs:
        if agg == "p95":
            points = _percentile_points(_raw(conn, ref.id, start, end), step, 0.95)
        else:
            buckets = _buckets(conn, ref.id, start, end, step, pending)
            points = [(b.ts, _pick(b, agg)) for b in by_step(buckets, step)]
        out.append(SeriesPoints(ref, points))
    return out


def _buckets(
    conn: sqlite3.Connection, sid: int, start: float, end: float, step: int, pending: Pending | None
) -> list[Bucket]:
    """Time-ordered parts of [start, end): complete rollup rows, then raw samples as buckets."""
    # A database from before rollups (no tables) is read raw; Pending(0, 0) makes plan() do so.
    tiers = plan(start, end, step, pending if pending is not None else Pending(0.0, 0.0))
    parts: list[Bucket] = []
    for tier in tiers:
        if tier.source == "samples":
            rows = _raw(conn, sid, tier.start, tier.end)
            parts.extend(Bucket(t, 1, v, v * v, v, v, v) for t, v in rows)
            continue
        sql = (
            "SELECT ts, count, sum, sumsq, min, max, last"  # noqa: S608 - table name from plan()
            f" FROM {tier.source} WHERE series_id = ? AND ts >= ? AND ts < ? ORDER BY ts"
        )
        parts.extend(bucket_row(r) for r in conn.execute(sql, (sid, tier.start, tier.end)))
    return parts


def _pick(bucket: Bucket, agg: Agg) -> float:
    if agg == "avg":
        return bucket.mean
    if agg == "count":
        return float(bucket.count)
    value: float = getattr(bucket, agg)
    return value


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) of `values` by linear interpolation between closest ranks."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _percentile_points(
    rows: Sequence[tuple[float, float]], step: int, q: float
) -> list[tuple[float, float]]:
    groups: dict[float, list[float]] = {}
    for ts, value in rows:
        groups.setdefault(floor_to(ts, step), []).append(value)
    return [(ts, percentile(vals, q)) for ts, vals in groups.items()]


def anomalies(conn: sqlite3.Connection, *, since: float, until: float) -> list[dict[str, Any]]:
    """Anomaly state changes in [since, until), oldest first."""
    sql = (
        "SELECT a.ts, s.name, s.labels, a.detector, a.rule, a.severity, a.status, a.value,"
        " a.score, a.summary FROM anomalies AS a JOIN series AS s ON s.id = a.series_id"
        " WHERE a.ts >= ? AND a.ts < ? ORDER BY a.ts, a.id"
    )
    keys = ("ts", "metric", "labels", "detector", "rule", "severity", "status", "value", "score")
    out = []
    for row in conn.execute(sql, (since, until)):
        item = dict(zip(keys, row[:9], strict=True))
        item["labels"] = json.loads(row[2])
        item["summary"] = row[9]
        out.append(item)
    return out


def alerts(conn: sqlite3.Connection, *, state: str | None = None) -> list[dict[str, Any]]:
    """Alerts (optionally only `state`), most recently updated first."""
    sql = (
        "SELECT fingerprint, alertname, state, severity, labels, annotations, starts_at, ends_at,"
        " last_notified_at FROM alerts WHERE (? IS NULL OR state = ?) ORDER BY updated_at DESC"
    )
    keys = ("fingerprint", "alertname", "state", "severity", "labels", "annotations",
            "starts_at", "ends_at", "last_notified_at")  # fmt: skip
    out = []
    for row in conn.execute(sql, (state, state)):
        item = dict(zip(keys, row, strict=True))
        item["labels"] = json.loads(item["labels"])
        item["annotations"] = json.loads(item["annotations"])
        out.append(item)
    return out


# -- the command ----------------------------------------------------------------------------
