"""Read-only queries over the agent's database: arguments, series, anomalies, alerts.

One read path for `infrawatch query` and the `/api/v1` JSON API (values over time are read by
`points.py`, a page's charts by `charts.py`, both through the series lookup here). The
database is opened read-only (`file:…?mode=ro`), so a query never creates, migrates or changes
a file, and it works while the agent is writing (WAL readers don't block the writer). Every
value from a command line or a URL reaches SQL as a bound parameter. This module uses the
stdlib `sqlite3` and is synchronous: the CLI has no event loop to keep free, and the API calls
it in a worker thread.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from infrawatch.model import SeriesKey
from infrawatch.storage.rollup import Pending
from infrawatch.storage.store import SCHEMA_VERSION, labels_json
from infrawatch.units import parse_duration

_EPOCH = re.compile(r"\d{1,12}(\.\d+)?")
MAX_EPOCH = 253_402_300_799.0  # 9999-12-31T23:59:59Z


class QueryError(Exception):
    """A bad argument or an unusable database: one line for the user (exit code 2)."""


class NotFound(QueryError):
    """An unknown metric, or no series of it with the given labels."""


class SeriesRef(NamedTuple):
    """One stored series (a tuple: the page's list makes one per series, 10,000 and more)."""

    id: int
    name: str
    labels: dict[str, str]

    def display(self) -> str:
        """`name{k="v",…}` as Prometheus writes a series."""
        if not self.labels:
            return self.name
        inner = ",".join(f'{k}="{v}"' for k, v in sorted(self.labels.items()))
        return f"{self.name}{{{inner}}}"


# -- arguments ------------------------------------------------------------------------------


def parse_time(text: str, *, now: float, option: str) -> float:
    """Epoch seconds from a duration before `now` ("1h", "7d"), RFC 3339, or epoch seconds."""
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    stripped = text.strip()
    if _EPOCH.fullmatch(stripped):
        # A bare number can't be a duration (those need a unit): Prometheus' epoch form.
        epoch = float(stripped)
        if epoch <= MAX_EPOCH:
            return epoch
    try:
        # RFC 3339 allows a lower-case "t" and "z"; fromisoformat only takes upper case.
        when = datetime.fromisoformat(stripped.upper())
    except ValueError:
        raise QueryError(
            f"{option}: malformed time {text!r}: use a duration before now (30m, 7d), "
            "an RFC 3339 time (2026-01-02T15:04:05Z) or epoch seconds"
        ) from None
    if when.tzinfo is None:  # no offset given: UTC, like everything the agent stores
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def parse_labels(pairs: Sequence[str], *, option: str = "--label") -> dict[str, str]:
    """`k=v` strings into a mapping; a malformed one is a QueryError naming `option`."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise QueryError(f"{option}: expected KEY=VALUE, got {pair!r}")
        out[key] = value
    return out


def parse_step(text: str, *, option: str = "--step") -> int:
    """A step in whole seconds ("5m", "1h", "30")."""
    try:
        seconds = float(text) if text.replace(".", "", 1).isdigit() else parse_duration(text)
    except ValueError:
        raise QueryError(f"{option}: malformed duration {text!r}: use e.g. 30s, 5m, 1h") from None
    if seconds < 1 or seconds != int(seconds):
        raise QueryError(f"{option}: {text!r} must be a whole number of seconds, at least 1")
    return int(seconds)


def time_range(
    since: str,
    until: str | None,
    *,
    now: float | None = None,
    options: tuple[str, str] = ("--since", "--until"),
) -> tuple[float, float]:
    """[since, until) in epoch seconds from the command-line forms; until defaults to now."""
    now = time.time() if now is None else now
    since_opt, until_opt = options
    start = parse_time(since, now=now, option=since_opt)
    end = now if until is None else parse_time(until, now=now, option=until_opt)
    if end <= start:
        raise QueryError(f"{until_opt} ({until or 'now'}) is not after {since_opt} ({since})")
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


def has_table(conn: sqlite3.Connection, name: str) -> bool:
    """Whether the database has table `name` (older schemas lack the rollup tables)."""
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,))
    return row.fetchone() is not None


def _has_column(conn: sqlite3.Connection, table: str, column: str) -> bool:
    return any(row[1] == column for row in conn.execute(f"PRAGMA table_info({table})"))


def _series_filter(
    match: str | None, labels: dict[str, str], table: str = "series"
) -> tuple[str, list[Any]]:
    """SQL conditions on `table` (the series table or its alias): name GLOB, exact labels."""
    sql = ""
    params: list[Any] = []
    for key, value in labels.items():
        sql += f" AND EXISTS (SELECT 1 FROM json_each({table}.labels) WHERE key = ? AND value = ?)"  # noqa: S608 - `table` is ours
        params += [key, value]
    if match is not None:
        sql += f" AND {table}.name GLOB ?"
        params.append(match)
    return sql, params


def _ref(row: Sequence[Any]) -> SeriesRef:
    return SeriesRef(int(row[0]), str(row[1]), dict(json.loads(row[2])))


def list_series(
    conn: sqlite3.Connection, *, match: str | None = None, labels: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Stored series (name GLOB `match`, with `labels`) with raw sample count and first/last ts."""
    where, params = _series_filter(match, labels or {})
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


def iter_series(
    conn: sqlite3.Connection, *, match: str | None = None, labels: dict[str, str] | None = None
) -> Iterator[SeriesRef]:
    """Stored series (name GLOB `match`, with `labels`) by name and labels; no sample reads.

    A generator: a caller that keeps a few of 10,000 series never holds them all at once.
    """
    where, params = _series_filter(match, labels or {})
    sql = f"SELECT id, name, labels FROM series WHERE 1 = 1{where} ORDER BY name, labels"  # noqa: S608 - only "?"
    for row in conn.execute(sql, params):
        yield _ref(row)


def compile_glob(pattern: str) -> re.Pattern[str]:
    """SQLite's GLOB (`name GLOB pattern`) as a regular expression, for names in memory.

    `*` any text, `?` one character, `[abc]`, `[a-z]`, `[^…]` (a leading `]` is a member; `-`
    makes a range only between two members), case-sensitive. An unclosed `[` never matches in
    SQLite; here it is a QueryError, so a typo is reported instead of matching nothing.
    """
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        i += 1
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c != "[":
            out.append(re.escape(c))
        else:
            start = i - 1
            invert = i < n and pattern[i] == "^"
            i += invert
            members: list[tuple[str, str]] = []
            if i < n and pattern[i] == "]":
                members.append(("]", "]"))
                i += 1
            prior: str | None = None  # as in SQLite, a leading "]" can't start a range
            while i < n and pattern[i] != "]":
                c2 = pattern[i]
                if c2 == "-" and prior is not None and i + 1 < n and pattern[i + 1] != "]":
                    members.append((prior, pattern[i + 1]))  # the prior stays a member
                    prior = None
                    i += 2
                else:
                    members.append((c2, c2))
                    prior = c2
                    i += 1
            if i >= n:
                raise QueryError(f"unclosed '[' at position {start} in glob {pattern!r}")
            i += 1
            spans = "".join(
                re.escape(lo) if lo == hi else f"{re.escape(lo)}-{re.escape(hi)}"
                for lo, hi in members
                if lo <= hi  # SQLite: an inverted range matches nothing
            )
            if spans:
                out.append(f"[{'^' if invert else ''}{spans}]")
            else:
                out.append("." if invert else "(?!)")
    return re.compile("".join(out), re.DOTALL)


def series_ids(conn: sqlite3.Connection, keys: Sequence[SeriesKey]) -> dict[SeriesKey, int]:
    """Ids of the stored series among `keys` (one query; the UNIQUE (name, labels) index)."""
    texts = {(name, labels_json(labels)): (name, labels) for name, labels in keys}
    sql = (
        "SELECT s.id, s.name, s.labels FROM json_each(?) AS j JOIN series AS s"
        " ON s.name = json_extract(j.value, '$[0]') AND s.labels = json_extract(j.value, '$[1]')"
    )
    rows = conn.execute(sql, (json.dumps(list(texts)),))
    return {texts[(name, labels)]: int(sid) for sid, name, labels in rows}


def find_series(conn: sqlite3.Connection, metric: str, labels: dict[str, str]) -> list[SeriesRef]:
    """The series of `metric` carrying `labels`; an unknown metric is a NotFound."""
    if conn.execute("SELECT 1 FROM series WHERE name = ? LIMIT 1", (metric,)).fetchone() is None:
        raise NotFound(f"unknown metric {metric!r} (see `infrawatch query series`)")
    where, params = _series_filter(None, labels)
    sql = f"SELECT id, name, labels FROM series WHERE name = ?{where} ORDER BY labels"  # noqa: S608 - only "?"
    refs = [_ref(row) for row in conn.execute(sql, [metric, *params])]
    if not refs:
        shown = ",".join(f"{k}={v}" for k, v in labels.items())
        raise NotFound(f"no series of {metric!r} has labels {shown}")
    return refs


def pending_span(conn: sqlite3.Connection) -> Pending | None:
    """What the rollups don't cover yet; None if the database has no rollups (older schema)."""
    if not has_table(conn, "rollup_pending"):
        return None
    row = conn.execute("SELECT dirty_from, hour_dirty_from FROM rollup_pending WHERE id = 1")
    found = row.fetchone()
    return Pending(None, None) if found is None else Pending(found[0], found[1])


# -- anomalies and alerts -------------------------------------------------------------------


def anomalies(
    conn: sqlite3.Connection,
    *,
    since: float,
    until: float,
    metric: str | None = None,
    labels: dict[str, str] | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Anomaly state changes in [since, until), oldest first (the newest `limit` if given)."""
    where, params = _series_filter(None, labels or {}, table="s")
    if metric is not None:
        where += " AND s.name = ?"
        params.append(metric)
    sql = (
        "SELECT a.ts, s.name, s.labels, a.detector, a.rule, a.severity, a.status, a.value,"  # noqa: S608 - only "?"
        " a.score, a.summary, a.evidence FROM anomalies AS a JOIN series AS s ON s.id = a.series_id"
        f" WHERE a.ts >= ? AND a.ts < ?{where} ORDER BY a.ts DESC, a.id DESC LIMIT ?"
    )
    keys = ("ts", "metric", "labels", "detector", "rule", "severity", "status", "value", "score")
    out = []
    rows = conn.execute(sql, (since, until, *params, -1 if limit is None else limit)).fetchall()
    for row in reversed(rows):
        item = dict(zip(keys, row[:9], strict=True))
        item["labels"] = json.loads(row[2])
        item["summary"] = row[9]
        item["evidence"] = json.loads(row[10])
        out.append(item)
    return out


def alerts(
    conn: sqlite3.Connection, *, state: str | None = None, resolved_since: float | None = None
) -> list[dict[str, Any]]:
    """Alerts (optionally only `state`, and resolved ones only if they ended at or after
    `resolved_since`), most recently updated first."""
    flapping = "flapping" if _has_column(conn, "alerts", "flapping") else "0"
    sql = (
        "SELECT fingerprint, alertname, state, severity, labels, annotations, starts_at, ends_at,"  # noqa: S608 - fixed names
        f" last_notified_at, updated_at, {flapping} FROM alerts WHERE (?1 IS NULL OR state = ?1)"
        " AND (?2 IS NULL OR state != 'resolved' OR ends_at >= ?2) ORDER BY updated_at DESC"
    )
    keys = ("fingerprint", "alertname", "state", "severity", "labels", "annotations",
            "starts_at", "ends_at", "last_notified_at", "updated_at", "flapping")  # fmt: skip
    out = []
    for row in conn.execute(sql, (state, resolved_since)):
        item = dict(zip(keys, row, strict=True))
        item["labels"] = json.loads(item["labels"])
        item["annotations"] = json.loads(item["annotations"])
        item["flapping"] = bool(item["flapping"])
        out.append(item)
    return out
