"""Alerting: anomalies in, notifications out."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Protocol, Self

from infrawatch.logging import get_logger
from infrawatch.model import Anomaly

log = get_logger("infrawatch.alerting")


class Alerter(Protocol):
    """Receives every anomaly state change the pipeline produces."""

    async def observe(self, anomalies: Sequence[Anomaly]) -> None:
        """Take a batch of anomaly state changes (must not block on delivery)."""
        ...


class LogAlerter:
    """The default alerter: every anomaly state change becomes a structured log event."""

    async def observe(self, anomalies: Sequence[Anomaly]) -> None:
        """Log each anomaly."""
        for a in anomalies:
            event = "alert.firing" if a.status == "firing" else "alert.resolved"
            log.warning(
                event,
                metric=a.name,
                labels=dict(a.labels),
                detector=a.detector,
                rule=a.rule,
                severity=a.severity,
                value=a.value,
                score=round(a.score, 4),
                summary=a.summary,
            )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None
