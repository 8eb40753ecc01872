"""Silences: the runtime ones in the agent's database and the read-only ones from the config.

`infrawatch silence add|expire` write the `silences` table (and nothing else); the running
agent reloads it when `PRAGMA data_version` says another connection committed (the alert
service polls it about once a second), so no second process ever writes alert state. Matchers
use the Alertmanager syntax routes use (`infrawatch/alerting/matchers.py`).

This module is synchronous (stdlib sqlite3) for the CLI and the API's worker threads; the
agent reads through its own aiosqlite connection with the same SQL.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from infrawatch.alerting.config import AlertingConfig
from infrawatch.alerting.matchers import Matcher, matches_all, parse_matcher
from infrawatch.alerting.routing import Silence
from infrawatch.units import parse_duration

Origin = Literal["db", "config"]
State = Literal["active", "pending", "expired"]
RECENT = 86400.0  # seconds an expired silence stays in the API's list
ID_PREFIX_MIN = 8  # `silence expire` takes a unique id prefix of at least this many characters
# Label values a silence must match for every matcher to count as "matches every alert". A
# regex that matches all of these (`.*`, `.+|`, `(.*)`) matches anything an alert can carry.
# Labels every alert carries (never empty): `severity!~""` mutes them all.
_ALWAYS = frozenset({"alertname", "metric", "severity"})
_PROBES = ("", "x", "cpu_high", "web-1", "/var/lib", "a b=c", "0.5", "ÿ\u2603", "Z" * 64)

SELECT_SQL = (
    "SELECT id, matchers, starts_at, ends_at, created_by, comment, created_at, updated_at"
    " FROM silences"
)


class SilenceError(Exception):
    """Bad input or an unusable database: one line for the user (exit code 2)."""


@dataclass(frozen=True, slots=True)
class SilenceRecord:
    """One silence as people see it; times are UTC epoch seconds (None: unbounded)."""

    id: str
    matchers: tuple[str, ...]
    starts_at: float | None
    ends_at: float | None
    created_by: str
    comment: str
    created_at: float | None
    origin: Origin

    def parsed(self) -> tuple[Matcher, ...]:
        """The matchers, parsed (stored ones were checked when written)."""
        return tuple(parse_matcher(m) for m in self.matchers)

    def state(self, now: float) -> State:
        """`pending` before it starts, `expired` from its end on, else `active`."""
        if self.starts_at is not None and now < self.starts_at:
            return "pending"
        if self.ends_at is not None and now >= self.ends_at:
            return "expired"
        return "active"

    def to_silence(self) -> Silence:
        """The engine's form of this silence."""
        return Silence(self.parsed(), self.starts_at, self.ends_at, self.comment)

    def mutes(self, labels: Mapping[str, str], now: float) -> bool:
        """Whether this silence mutes an alert with `labels` at `now`."""
        return self.state(now) == "active" and matches_all(self.parsed(), labels)

    def as_row(self, now: float) -> dict[str, Any]:
        """A flat dict for `silence list` and the API (times stay epoch seconds)."""
        return {
            "id": self.id,
            "origin": self.origin,
            "state": self.state(now),
            "created_by": self.created_by,
            "comment": self.comment,
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "matchers": list(self.matchers),
        }


def from_row(row: Sequence[Any]) -> SilenceRecord:
    """A `silences` table row (in SELECT_SQL's column order) as a record."""
    return SilenceRecord(
        id=row[0],
        matchers=tuple(json.loads(row[1])),
        starts_at=float(row[2]),
        ends_at=float(row[3]),
        created_by=row[4],
        comment=row[5],
        created_at=float(row[6]),
        origin="db",
    )


def config_silences(cfg: AlertingConfig) -> list[SilenceRecord]:
    """`[[alerting.silences]]` as records, ids `config-1`, `config-2`, … (read-only)."""
    return [
        SilenceRecord(
            id=f"config-{i + 1}",
            matchers=tuple(s.matchers),
            starts_at=s.starts_at.timestamp() if s.starts_at else None,
            ends_at=s.ends_at.timestamp() if s.ends_at else None,
            created_by="config file",
            comment=s.comment,
            created_at=None,
            origin="config",
        )
        for i, s in enumerate(cfg.silences)
    ]


def silenced_by(
    silences: Iterable[SilenceRecord], labels: Mapping[str, str], now: float
) -> str | None:
    """The id of the first silence muting `labels` at `now`, or None."""
    for silence in silences:
        if silence.mutes(labels, now):
            return silence.id
    return None


# -- input -----------------------------------------------------------------------------------


def parse_matchers(texts: Sequence[str]) -> tuple[Matcher, ...]:
    """Parse matcher strings; SilenceError names the bad one."""
    out = []
    for text in texts:
        # matchers.py takes an unquoted value as it is (`a=="x` gives `="x`); a stray quote in
        # a silence is a typo that would mute nothing.
        if text.count('"') - text.count('\\"') not in (0, 2):
            raise SilenceError(f"invalid matcher {text!r}: unbalanced quotes")
        try:
            out.append(parse_matcher(text))
        except ValueError as exc:
            raise SilenceError(str(exc)) from None
    return tuple(out)


def matches_everything(matchers: Sequence[Matcher]) -> bool:
    """Whether the matchers match every alert (none at all, or only catch-all regexes)."""
    return all(
        all(m.matches({m.name: probe}) for probe in _PROBES if probe or m.name not in _ALWAYS)
        for m in matchers
    )


def zone(name: str | None) -> ZoneInfo | None:
    """The IANA time zone `name` (None: none given); SilenceError if it does not exist."""
    if name is None:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise SilenceError(
            f"--tz: unknown time zone {name!r} (use an IANA name such as Europe/Berlin)"
        ) from None


def duration(text: str, option: str) -> float:
    """A positive duration in seconds ("2h", "90m", "1d12h")."""
    try:
        seconds = parse_duration(text)
    except ValueError:
        raise SilenceError(f"{option}: malformed duration {text!r}: use e.g. 30m, 2h, 1d") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise SilenceError(f"{option}: {text!r} must be longer than zero")
    return seconds


_RELATIVE = re.compile(r"^\s*(?:\+|in\s+)(.+)$")


def point_in_time(text: str, *, now: float, tz: ZoneInfo | None, option: str) -> float:
    """Epoch seconds from RFC 3339 (a time without offset is in `tz`, else UTC) or a
    duration from now (`2h`, `+2h`, `in 2h`)."""
    relative = _RELATIVE.match(text)
    if relative is None:
        try:
            return now + parse_duration(text)
        except ValueError:
            pass
    else:
        return now + duration(relative.group(1), option)
    try:
        when = datetime.fromisoformat(text.strip().upper())
    except ValueError:
        raise SilenceError(
            f"{option}: malformed time {text!r}: use RFC 3339 (2026-01-02T15:04:05Z) "
            "or a duration from now (2h)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=tz or UTC)
    return when.timestamp()


# -- the database (sync) ---------------------------------------------------------------------


def read_all(conn: sqlite3.Connection) -> list[SilenceRecord]:
    """Every stored silence, newest first; none when the schema has no silences table."""
    found = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'silences'"
    ).fetchone()
    if found is None:
        return []
    return [from_row(r) for r in conn.execute(SELECT_SQL + " ORDER BY created_at DESC, id")]


def insert(
    conn: sqlite3.Connection,
    matchers: Sequence[str],
    *,
    starts_at: float,
    ends_at: float,
    created_by: str,
    comment: str,
    now: float,
) -> str:
    """Store a new silence in one transaction; return its id."""
    silence_id = str(uuid.uuid4())
    with _immediate(conn):
        conn.execute(
            "INSERT INTO silences (id, matchers, starts_at, ends_at, created_by, comment,"
            " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (silence_id, json.dumps(list(matchers), ensure_ascii=False), starts_at, ends_at,
             created_by, comment, now, now),
        )  # fmt: skip
    return silence_id


def expire(conn: sqlite3.Connection, prefix: str, *, now: float) -> tuple[SilenceRecord, bool]:
    """End the silence whose id is (or starts with) `prefix` at `now`; return it and whether
    it was still in force (an expired one is left as it is)."""
    if prefix.startswith("config-"):
        raise SilenceError(f"{prefix}: silences from the config file are read-only; edit the file")
    with _immediate(conn):
        rows = conn.execute(
            SELECT_SQL + " WHERE id = ?1 OR (length(?1) >= ?2 AND substr(id, 1, length(?1)) = ?1)",
            (prefix, ID_PREFIX_MIN),
        ).fetchall()
        if not rows:
            raise SilenceError(f"no silence with id {prefix!r} (see `infrawatch silence list`)")
        if len(rows) > 1:
            raise SilenceError(f"{prefix!r} names {len(rows)} silences: give more of the id")
        record = from_row(rows[0])
        if record.state(now) == "expired":
            return record, False
        # A pending silence that is expired never starts: both ends move to now.
        conn.execute(
            "UPDATE silences SET starts_at = min(starts_at, ?1), ends_at = ?1, updated_at = ?1"
            " WHERE id = ?2",
            (now, record.id),
        )
    return record, True


class _immediate:
    """BEGIN IMMEDIATE … COMMIT (ROLLBACK on error) on an autocommit sqlite3 connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")
