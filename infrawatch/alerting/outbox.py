"""The persistent outbox and alert state in SQLite (through the agent's Store).

A notification is committed here, one row per sink with a stable id, before any sink sees it;
sink workers mark rows delivered or failed. Alert state (including what each route was last
told) is written in the same transaction, so a restart neither repeats nor loses a message.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from infrawatch.alerting.fingerprint import series_of_alert
from infrawatch.alerting.records import TOLD_FIRING, AlertRecord
from infrawatch.detect.restore import FiringRule
from infrawatch.jsontext import dumps
from infrawatch.model import Severity
from infrawatch.storage.store import Store

_UPSERT_ALERT = """
INSERT INTO alerts (fingerprint, alertname, state, severity, labels, annotations, starts_at,
                    ends_at, last_notified_at, updated_at, notified, flips, flapping)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (fingerprint) DO UPDATE SET
    alertname = excluded.alertname, state = excluded.state, severity = excluded.severity,
    labels = excluded.labels, annotations = excluded.annotations,
    starts_at = excluded.starts_at, ends_at = excluded.ends_at,
    last_notified_at = excluded.last_notified_at, updated_at = excluded.updated_at,
    notified = excluded.notified, flips = excluded.flips, flapping = excluded.flapping
"""
# The stored text as the Severity type; a row with anything else was not written by us.
_SEVERITIES: dict[str, Severity] = {"info": "info", "warning": "warning", "critical": "critical"}
_INSERT_ITEM = """
INSERT INTO outbox (id, sink, group_key, payload, created_at, state, attempts, failures,
                    next_attempt_at)
VALUES (?, ?, ?, ?, ?, 'pending', 0, 0, ?)
"""


def new_notification_id() -> str:
    """A fresh Standard-Webhooks-style message id ("msg_" + 32 hex digits)."""
    return f"msg_{uuid.uuid4().hex}"


@dataclass(slots=True)
class OutboxItem:
    """One notification for one sink; `payload` is the versioned JSON document."""

    id: str
    sink: str
    group_key: str
    payload: dict[str, Any]
    created_at: float
    attempts: int = 0
    failures: int = 0  # counted toward max_attempts
    # Epoch s when the item's own retry step is due: a failure before it (a probe of a sink
    # already known to be down) does not count toward max_attempts. When the sink is tried is
    # the sink worker's business.
    next_attempt_at: float = 0.0


def _dumps(value: Any) -> str:
    return dumps(value, separators=(",", ":"), ensure_ascii=False)


def _alert_row(rec: AlertRecord) -> tuple[Any, ...]:
    return (
        rec.fingerprint,
        rec.labels.get("alertname", ""),
        rec.state,
        rec.severity,
        _dumps(dict(sorted(rec.labels.items()))),
        _dumps(rec.annotations),
        rec.starts_at,
        rec.ends_at,
        rec.last_notified_at,
        rec.updated_at,
        _dumps(rec.notified),
        _dumps(rec.flips),
        int(rec.flapping),
    )


class Outbox:
    """Outbox rows and alert rows, read and written through the Store's transactions."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def save(self, alerts: Sequence[AlertRecord], items: Sequence[OutboxItem]) -> None:
        """Persist changed alerts and new notifications in one transaction."""
        async with self.store.transaction() as db:
            if alerts:
                await db.executemany(_UPSERT_ALERT, [_alert_row(r) for r in alerts])
            if items:
                rows = [
                    (i.id, i.sink, i.group_key, _dumps(i.payload), i.created_at, i.next_attempt_at)
                    for i in items
                ]
                await db.executemany(_INSERT_ITEM, rows)

    async def load_alerts(self) -> list[AlertRecord]:
        """Alerts a previous run left firing, flapping or announced-but-not-resolved."""
        # `notified` maps route name → what that route was told; only the values count (a
        # route may well be named "firing").
        sql = (
            "SELECT fingerprint, labels, annotations, severity, state, starts_at, ends_at,"
            " updated_at, flips, flapping, notified, last_notified_at FROM alerts"
            " WHERE state = 'firing' OR flapping = 1 OR EXISTS (SELECT 1 FROM"
            " json_each(alerts.notified) WHERE value IN (SELECT value FROM json_each(?)))"
        )
        out = []
        async with self.store.db.execute(sql, (_dumps(TOLD_FIRING),)) as cur:
            async for row in cur:
                annotations = json.loads(row[2])
                out.append(
                    AlertRecord(
                        fingerprint=row[0],
                        labels=json.loads(row[1]),
                        annotations=annotations,
                        severity=row[3],
                        state=row[4],
                        starts_at=row[5],
                        ends_at=row[6],
                        updated_at=row[7],
                        detector=annotations.get("detector", ""),
                        flips=json.loads(row[8]),
                        flapping=bool(row[9]),
                        notified=json.loads(row[10]),
                        last_notified_at=row[11],
                    )
                )
        return out

    async def firing_rules(self) -> list[FiringRule]:
        """Every alert firing at the last shutdown as (detector, series, rule, severity), for
        the detectors' restore; alerts whose labels name no series are left out."""
        sql = "SELECT labels, severity, annotations FROM alerts WHERE state = 'firing'"
        out = []
        async with self.store.db.execute(sql) as cur:
            for labels_text, severity, annotations_text in await cur.fetchall():
                labels = json.loads(labels_text)
                key = series_of_alert(labels)
                if key is None or severity not in _SEVERITIES:
                    continue
                detector = json.loads(annotations_text).get("detector", "")
                rule = labels.get("alertname", "")
                out.append(FiringRule(detector, key, rule, _SEVERITIES[severity]))
        return out

    async def pending(self) -> list[OutboxItem]:
        """Every undelivered item, oldest first."""
        sql = (
            "SELECT id, sink, group_key, payload, created_at, attempts, failures,"
            " next_attempt_at FROM outbox WHERE state = 'pending' ORDER BY created_at, rowid"
        )
        async with self.store.db.execute(sql) as cur:
            return [
                OutboxItem(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5], r[6], r[7])
                for r in await cur.fetchall()
            ]

    async def mark_delivered(self, item: OutboxItem, now: float) -> None:
        """The sink accepted the item."""
        await self._finish(item, "delivered", now, None)

    async def mark_failed(self, item: OutboxItem, now: float, error: str) -> None:
        """The item will never be delivered (4xx, too old, too many attempts)."""
        await self._finish(item, "failed", now, error)

    async def mark_retry(self, item: OutboxItem, error: str) -> None:
        """Record a failed attempt and when the next one is due."""
        async with self.store.transaction() as db:
            await db.execute(
                "UPDATE outbox SET attempts = ?, failures = ?, next_attempt_at = ?,"
                " last_error = ? WHERE id = ?",
                (item.attempts, item.failures, item.next_attempt_at, error, item.id),
            )

    async def _finish(self, item: OutboxItem, state: str, now: float, error: str | None) -> None:
        async with self.store.transaction() as db:
            await db.execute(
                "UPDATE outbox SET state = ?, attempts = ?, failures = ?, done_at = ?,"
                " last_error = ? WHERE id = ?",
                (state, item.attempts, item.failures, now, error, item.id),
            )

    async def prune(self, before: float) -> None:
        """Delete delivered and failed rows finished before `before` (epoch seconds)."""
        async with self.store.transaction() as db:
            await db.execute(
                "DELETE FROM outbox WHERE state != 'pending' AND done_at < ?", (before,)
            )

    async def counts(self) -> dict[tuple[str, str], int]:
        """(sink, state) → rows, for tests and `check`."""
        async with self.store.db.execute(
            "SELECT sink, state, count(*) FROM outbox GROUP BY sink, state"
        ) as cur:
            return {(r[0], r[1]): int(r[2]) for r in await cur.fetchall()}
