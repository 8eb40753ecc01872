"""The outbox's alert rows in a real SQLite file: which alerts a restart loads as still active."""

from __future__ import annotations

from pathlib import Path

from infrawatch.alerting.outbox import Outbox
from infrawatch.alerting.records import AlertRecord
from infrawatch.storage.store import Store


def record(fingerprint: str, notified: dict[str, str], state: str = "resolved") -> AlertRecord:
    return AlertRecord(
        fingerprint=fingerprint,
        labels={"alertname": fingerprint},
        annotations={},
        severity="critical",
        state=state,  # type: ignore[arg-type]
        starts_at=1.0,
        ends_at=2.0 if state == "resolved" else None,
        updated_at=2.0,
        notified=notified,
    )


async def test_route_named_like_a_state_does_not_make_a_resolved_alert_active(
    tmp_path: Path,
) -> None:
    async with Store(tmp_path / "a.db") as store:
        outbox = Outbox(store)
        await outbox.save(
            [
                # Routes named after states, each told the alert resolved: nothing is owed.
                record("told_resolved", {"firing": "resolved", "escalated": "resolved"}),
                record("route_flapping", {"flapping": "resolved"}),
                # Receivers still think these fire: a resolve is owed after a restart.
                record("owed_escalated", {"firing": "resolved", "r": "escalated"}),
                record("owed_flapping", {"r": "flapping"}),
                record("owed_firing", {"resolved": "firing"}),
                record("still_firing", {}, state="firing"),
                record("never_told", {"r": "resolved"}),
            ],
            [],
        )
        loaded = sorted(r.fingerprint for r in await outbox.load_alerts())
    assert loaded == ["owed_escalated", "owed_firing", "owed_flapping", "still_firing"]
