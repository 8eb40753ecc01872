"""Alerts and notifications as data: one alert's record and what each route was told, a
notification to a route's sinks, and their Alertmanager webhook (v4) shapes.

The engine (engine.py) owns their state changes; the outbox stores them; the sinks send them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from infrawatch.alerting.fingerprint import alert_labels
from infrawatch.alerting.links import alert_chart_url
from infrawatch.annotations import render as render_annotation
from infrawatch.model import Anomaly

Shown = Literal["firing", "flapping", "resolved"]
ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's "no end time"
# What a route may have been told that means "receivers think it fires" (a resolve is owed).
# "escalated": told it fired, but not yet about its higher severity.
TOLD_FIRING = ("firing", "flapping", "escalated")


def rfc3339(ts: float) -> str:
    """Epoch seconds as RFC 3339 UTC with milliseconds."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(slots=True)
class AlertRecord:
    """One alert (identified by fingerprint) and what each route was last told about it."""

    fingerprint: str
    labels: dict[str, str]
    annotations: dict[str, str]
    severity: str
    state: Literal["firing", "resolved"]
    starts_at: float
    ends_at: float | None
    updated_at: float
    detector: str = ""
    flips: list[float] = field(default_factory=list)
    flapping: bool = False
    notified: dict[str, str] = field(default_factory=dict)
    last_notified_at: float | None = None
    restored: bool = False  # loaded at start-up, not yet confirmed by a detector

    @property
    def shown(self) -> Shown:
        """The state notifications show: flapping hides the individual flips."""
        return "flapping" if self.flapping else self.state

    def as_payload(
        self,
        external_labels: dict[str, str] | None = None,
        *,
        external_url: str | None = None,
        now: float | None = None,
    ) -> dict[str, Any]:
        """The alert in Alertmanager webhook (v4) shape, plus `flapping`; `external_labels`
        are added where the alert has no label of that name. With `external_url`,
        `generatorURL` links to the series' chart around the alert as of `now` (epoch s, the
        notification time; default: the alert's last change), as Prometheus links its graph."""
        status = "resolved" if self.shown == "resolved" else "firing"
        ends = self.ends_at if status == "resolved" and self.ends_at else None
        link = alert_chart_url(
            external_url,
            self.labels,
            self.starts_at,
            ends,
            self.updated_at if now is None else now,
        )
        return {
            "status": status,
            "labels": {**(external_labels or {}), **self.labels},
            "annotations": dict(self.annotations),
            "startsAt": rfc3339(self.starts_at),
            "endsAt": rfc3339(ends) if ends is not None else ZERO_TIME,
            "fingerprint": self.fingerprint,
            "generatorURL": link,
            "flapping": self.flapping,
        }


@dataclass(frozen=True, slots=True)
class Notification:
    """One message to every sink of a route (the outbox stores one copy per sink)."""

    route: str
    sinks: tuple[str, ...]
    group_key: str
    group_labels: dict[str, str]
    status: Literal["firing", "resolved"]
    alerts: list[dict[str, Any]]
    truncated: int
    created_at: float
    external_url: str | None = None

    def payload(self, notification_id: str, receiver: str) -> dict[str, Any]:
        """The versioned JSON document stored in the outbox and sent to webhooks."""
        common_labels = _common([a["labels"] for a in self.alerts])
        common_annotations = _common([a["annotations"] for a in self.alerts])
        return {
            "version": "4",
            "id": notification_id,
            "groupKey": self.group_key,
            "truncatedAlerts": self.truncated,
            "status": self.status,
            "receiver": receiver,
            "groupLabels": self.group_labels,
            "commonLabels": common_labels,
            "commonAnnotations": common_annotations,
            "externalURL": self.external_url or "",
            "alerts": self.alerts,
            "createdAt": rfc3339(self.created_at),
        }


def _common(dicts: Sequence[dict[str, str]]) -> dict[str, str]:
    if not dicts:
        return {}
    first = dicts[0]
    return {k: v for k, v in first.items() if all(d.get(k) == v for d in dicts[1:])}


def annotations_for(anomaly: Anomaly) -> dict[str, str]:
    """What the alert says about itself: summary, value, detector, score and evidence."""
    out = {
        "summary": anomaly.summary or f"{anomaly.name} is anomalous ({anomaly.rule})",
        "value": f"{anomaly.value:g}",
        "detector": anomaly.detector,
        "score": f"{anomaly.score:.3f}",
    }
    for key, value in anomaly.evidence.items():
        out[f"evidence_{key}"] = f"{value:g}" if isinstance(value, float) else str(value)
    # The rule's own templates (summary, description, runbook_url, …) win over the defaults;
    # one that renders empty (e.g. only a missing label) is left out (the default stays).
    labels = alert_labels(anomaly)
    for key, template in anomaly.annotations.items():
        text = render_annotation(
            template,
            value=anomaly.value,
            metric=anomaly.name,
            labels=labels,
            evidence=anomaly.evidence,
            summary=anomaly.summary,
            severity=anomaly.severity,
            rule=anomaly.rule,
            detector=anomaly.detector,
            score=anomaly.score,
        ).strip()
        if text:
            out[key] = text
    return out
