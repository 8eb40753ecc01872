"""The log sink: every alert of a notification becomes one structured log event."""

from __future__ import annotations

from typing import Any

from infrawatch.alerting.sinks.base import DeliveryResult
from infrawatch.logging import get_logger

log = get_logger("infrawatch.alerting")


class LogSink:
    """Writes `alert.firing` / `alert.resolved` / `alert.flapping_notice` events; never fails."""

    type = "log"

    def __init__(self, name: str = "log") -> None:
        self.name = name

    async def send(self, item_id: str, payload: dict[str, Any]) -> DeliveryResult:
        """Log each alert of the notification."""
        for alert in payload.get("alerts", []):
            if alert.get("flapping"):
                event = "alert.flapping_notice"
            else:
                event = "alert.resolved" if alert.get("status") == "resolved" else "alert.firing"
            # The chart link only when alerting.external_url makes one: no empty field.
            link = {"chart_url": alert["generatorURL"]} if alert.get("generatorURL") else {}
            log.warning(
                event,
                notification_id=item_id,
                sink=self.name,
                fingerprint=alert.get("fingerprint"),
                labels=alert.get("labels"),
                annotations=alert.get("annotations"),
                starts_at=alert.get("startsAt"),
                ends_at=alert.get("endsAt"),
                **link,
            )
        return DeliveryResult("ok")

    def describe(self) -> str:
        """Where the events go."""
        return "structured log events on stdout"
