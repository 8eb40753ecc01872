"""/api/v1's alert and silence lists: the database's rows merged with the engine's live records.

The engine's records are newer than the alerts table (it persists after each step), so a live
record replaces the stored row of the same fingerprint.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from infrawatch.alerting import silences as sil
from infrawatch.web.api_source import AlertEntry


def alert_list(
    stored: Sequence[dict[str, Any]],
    records: Iterable[AlertEntry],
    silences: Sequence[sil.SilenceRecord],
    silenced: Callable[[Mapping[str, str]], bool],
    *,
    state: str | None,
    since: float,
    now: float,
) -> list[dict[str, Any]]:
    """Alerts (only `state` if given; resolved ones that ended at or after `since`, epoch
    seconds): firing first, newest first within each."""
    by_fp = {row["fingerprint"]: row for row in stored}
    for rec in records:
        if rec.state == "resolved" and (rec.ends_at is None or rec.ends_at < since):
            continue
        by_fp[rec.fingerprint] = {
            "fingerprint": rec.fingerprint,
            "alertname": rec.labels.get("alertname", ""),
            "state": rec.state,
            "severity": rec.severity,
            "labels": dict(rec.labels),
            "annotations": dict(rec.annotations),
            "starts_at": rec.starts_at,
            "ends_at": rec.ends_at,
            "last_notified_at": rec.last_notified_at,
            "flapping": rec.flapping,
        }
    out = []
    for row in by_fp.values():
        if state is not None and row["state"] != state:
            continue
        labels = row["labels"]
        out.append(
            {
                "fingerprint": row["fingerprint"],
                "alertname": row["alertname"],
                "state": row["state"],
                "severity": row["severity"],
                "metric": labels.get("metric"),
                "labels": labels,
                "annotations": row["annotations"],
                "starts_at": row["starts_at"],
                "ends_at": row["ends_at"],
                "last_notified_at": row["last_notified_at"],
                "summary": row["annotations"].get("summary", ""),
                "silenced": silenced(labels),
                "silenced_by": sil.silenced_by(silences, labels, now),
                "flapping": row["flapping"],
            }
        )
    # Firing first; newest first within each (by start while firing, by end once resolved).
    out.sort(
        key=lambda a: (
            a["state"] != "firing",
            -(a["starts_at"] if a["state"] == "firing" else a["ends_at"] or a["starts_at"]),
        )
    )
    return out


def silence_list(
    silences: Sequence[sil.SilenceRecord],
    firing: Sequence[dict[str, Any]],
    records: Iterable[AlertEntry],
    *,
    now: float,
) -> list[dict[str, Any]]:
    """Silences in force or pending, and those ended in the last day, each with the firing
    alerts it mutes at `now` (epoch seconds); active first, then by end."""
    alerts = {row["fingerprint"]: row for row in firing}
    for rec in records:
        if rec.state == "firing":
            alerts[rec.fingerprint] = {
                "fingerprint": rec.fingerprint,
                "alertname": rec.labels.get("alertname", ""),
                "labels": dict(rec.labels),
            }
        else:
            alerts.pop(rec.fingerprint, None)  # resolved since it was stored
    out = []
    for record in silences:
        state = record.state(now)
        if state == "expired" and (record.ends_at or 0.0) < now - sil.RECENT:
            continue
        row = record.as_row(now)
        row["mutes"] = (
            [
                {
                    "fingerprint": a["fingerprint"],
                    "alertname": a["alertname"],
                    "labels": a["labels"],
                }
                for a in alerts.values()
                if record.mutes(a["labels"], now)
            ]
            if state == "active"
            else []
        )
        out.append(row)
    order = {"active": 0, "pending": 1, "expired": 2}
    out.sort(key=lambda r: (order[r["state"]], -(r["ends_at"] or math.inf), r["id"]))
    return out
