"""The alert engine: anomalies in, deduplicated and grouped notifications out.

Pure and synchronous: every call takes `now` (UTC epoch seconds), so tests drive it with any
clock. Semantics follow Alertmanager: a new group waits `group_wait` before its first
notification, later changes wait for the next `group_interval` tick, a still-firing group is
re-notified after `repeat_interval`, and resolves are sent when `send_resolved` is on and the
receiver was told the alert was firing. Flap damping holds an alert that flips state more than
`flap.max_flips` times within `flap.window` as "flapping" until it has been stable for
`flap.settle`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from infrawatch.alerting.config import AlertingConfig
from infrawatch.alerting.fingerprint import alert_labels, fingerprint, series_of_alert
from infrawatch.alerting.records import (
    TOLD_FIRING,
    AlertRecord,
    Notification,
    annotations_for,
)
from infrawatch.alerting.routing import Route, Silence, build_routes, build_silences, match_routes
from infrawatch.logging import get_logger
from infrawatch.model import Anomaly, SeriesKey

log = get_logger("infrawatch.alerting")

_SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}


@dataclass(slots=True)
class Group:
    """Alerts of one route sharing the route's group_by labels."""

    route: Route
    key: str
    labels: dict[str, str]
    members: set[str] = field(default_factory=set)
    next_flush: float | None = None
    last_notify: float | None = None


class Engine:
    """Alert state, dedup, grouping, timers and flap damping (no I/O)."""

    def __init__(self, cfg: AlertingConfig, sink_names: Sequence[str]) -> None:
        self.cfg = cfg
        self.routes = build_routes(cfg, sink_names)
        self._config_silences = build_silences(cfg)
        self.silences = list(self._config_silences)  # + the database's (set_runtime_silences)
        self.alerts: dict[str, AlertRecord] = {}
        self.groups: dict[str, Group] = {}
        # Added to what receivers see, not to the alert's identity: fingerprints, routes and
        # restore stay per series, while several agents' alerts stay apart downstream.
        self.external_labels = cfg.sent_labels()
        self._dirty: dict[str, AlertRecord] = {}

    # -- input -----------------------------------------------------------------------------

    def observe(self, anomalies: Iterable[Anomaly], now: float) -> None:
        """Apply detector state changes (firing / resolved) at `now`."""
        for anomaly in anomalies:
            labels = alert_labels(anomaly)
            fp = fingerprint(labels)
            rec = self.alerts.get(fp)
            if anomaly.status == "firing":
                self._fire(fp, rec, anomaly, labels, now)
            elif rec is not None and rec.state == "firing":
                rec.restored = False
                rec.state = "resolved"
                rec.ends_at = anomaly.ts
                self._flip(rec, now)
                self._changed(rec, now, anomaly.detector)
            # A resolve for an alert we do not know (or already resolved) changes nothing.

    def resolve_series(self, key: SeriesKey, now: float) -> int:
        """Resolve every firing alert of a series that stopped reporting; return how many.

        No detector will send a resolve for a series that is gone (a process exited, an
        instance was terminated), so without this its alerts would fire forever, the way
        Alertmanager resolves an alert Prometheus stops sending.
        """
        resolved = 0
        for rec in self.alerts.values():
            if rec.state != "firing" or series_of_alert(rec.labels) != key:
                continue
            rec.restored = False
            rec.state = "resolved"
            rec.ends_at = now
            rec.annotations = {**rec.annotations, "resolved_by": "series stopped reporting"}
            self._flip(rec, now)
            self._changed(rec, now, "series stopped reporting")
            resolved += 1
        return resolved

    def _fire(
        self,
        fp: str,
        rec: AlertRecord | None,
        anomaly: Anomaly,
        labels: dict[str, str],
        now: float,
    ) -> None:
        if rec is None:
            rec = AlertRecord(
                fp,
                labels,
                annotations_for(anomaly),
                anomaly.severity,
                "firing",
                anomaly.ts,
                None,
                now,
                detector=anomaly.detector,
            )
            self.alerts[fp] = rec
            self._changed(rec, now, anomaly.detector)
            return
        if rec.state == "firing":
            rec.restored = False
            # Dedup: a repeated firing changes nothing unless the severity rises.
            if _SEVERITY_RANK.get(anomaly.severity, 0) > _SEVERITY_RANK.get(rec.severity, 0):
                rec.severity = anomaly.severity
                rec.labels["severity"] = anomaly.severity
                rec.annotations = annotations_for(anomaly)
                # Receivers must hear about the escalation, yet still be owed a resolve.
                rec.notified = {
                    r: "escalated" if told in TOLD_FIRING else told
                    for r, told in rec.notified.items()
                }
                self._touch(rec, now)
            return
        rec.state = "firing"
        rec.ends_at = None
        # A new firing carries its own severity (up or down): routes match on it.
        rec.severity = anomaly.severity
        rec.labels["severity"] = anomaly.severity
        rec.annotations = annotations_for(anomaly) | _flap_note(rec, self.cfg.flap.window)
        if not rec.flapping:
            rec.starts_at = anomaly.ts
        self._flip(rec, now)
        self._changed(rec, now, anomaly.detector)

    def _flip(self, rec: AlertRecord, now: float) -> None:
        flap = self.cfg.flap
        rec.flips = [t for t in rec.flips if t > now - flap.window] + [now]
        if flap.enabled and not rec.flapping and len(rec.flips) > flap.max_flips:
            rec.flapping = True
            rec.annotations |= _flap_note(rec, flap.window)
            log.warning(
                "alert.flapping",
                fingerprint=rec.fingerprint,
                alertname=rec.labels.get("alertname"),
                flips=len(rec.flips),
                window=flap.window,
            )

    def restore(self, records: Iterable[AlertRecord], now: float) -> None:
        """Load alerts persisted by a previous run; firing ones await a detector's confirmation."""
        for rec in records:
            rec.restored = rec.state == "firing"
            self.alerts[rec.fingerprint] = rec
            for group in self._groups_for(rec, now):
                group.members.add(rec.fingerprint)
                if rec.last_notified_at is not None:
                    group.last_notify = max(group.last_notify or 0.0, rec.last_notified_at)
                if group.next_flush is None:
                    group.next_flush = now + group.route.group_wait

    def reconcile(self, now: float, still_anomalous: Callable[[AlertRecord], bool | None]) -> int:
        """Resolve restored alerts no detector confirms (they ended while we were down)."""
        resolved = 0
        for rec in list(self.alerts.values()):
            if not rec.restored:
                continue
            rec.restored = False
            if still_anomalous(rec):
                continue
            rec.state = "resolved"
            rec.ends_at = now
            rec.annotations["resolved_note"] = "not anomalous any more when infrawatch restarted"
            self._changed(rec, now, "restart reconcile")
            resolved += 1
        return resolved

    # -- timers ----------------------------------------------------------------------------

    def next_due(self) -> float | None:
        """When `flush` next has work (epoch seconds), or None when idle."""
        times = [g.next_flush for g in self.groups.values() if g.next_flush is not None]
        times += [r.flips[-1] + self.cfg.flap.settle for r in self.alerts.values() if r.flapping]
        return min(times) if times else None

    def flush(self, now: float) -> list[Notification]:
        """Settle flapping alerts and flush every group whose timer is due."""
        for rec in self.alerts.values():
            if rec.flapping and now >= rec.flips[-1] + self.cfg.flap.settle:
                rec.flapping = False
                rec.annotations.pop("flapping", None)
                log.info("alert.settled", fingerprint=rec.fingerprint, state=rec.state)
                self._touch(rec, now)
        out = []
        for key, group in list(self.groups.items()):
            if group.next_flush is None or group.next_flush > now:
                continue
            window = group.route.window
            if window and window.muted(now):
                # A muted route sends and marks nothing (Alertmanager's mute_time_intervals);
                # the flush at the window's end tells receivers whatever holds then.
                group.next_flush = window.change_after(now)
                continue
            note = self._flush_group(group, now)
            if note is not None:
                out.append(note)
            if group.members:
                group.next_flush = now + group.route.group_interval
            else:
                del self.groups[key]
        self._sweep(now)
        return out

    def _flush_group(self, group: Group, now: float) -> Notification | None:
        route = group.route
        firing: list[AlertRecord] = []
        resolved: list[AlertRecord] = []
        for fp in sorted(group.members):
            rec = self.alerts[fp]
            told = rec.notified.get(route.name)
            if rec.shown == "resolved":
                if told in TOLD_FIRING and not self._silenced(rec, now):
                    resolved.append(rec)
                else:
                    # Nobody was told it fired (or it is muted): nothing to resolve.
                    group.members.discard(fp)
                    self._mark(rec, route, "resolved", None)
            elif not self._silenced(rec, now):
                firing.append(rec)
        changed = any(rec.notified.get(route.name) != rec.shown for rec in firing)
        changed |= route.send_resolved and bool(resolved)
        # A repeat waits until a restored alert is confirmed (or resolved) by the restart
        # reconcile: an alert that ended while the agent was down must not be re-announced.
        repeat = (
            bool(firing)
            and not all(rec.restored for rec in firing)
            and (group.last_notify is None or now - group.last_notify >= route.repeat_interval)
        )
        if not (changed or repeat):
            for rec in resolved:
                group.members.discard(rec.fingerprint)
                self._mark(rec, route, "resolved", None)
            return None
        shown = firing + (resolved if route.send_resolved else [])
        limit = self.cfg.max_alerts_per_notification
        for rec in firing:
            self._mark(rec, route, rec.shown, now)
        for rec in resolved:
            group.members.discard(rec.fingerprint)
            self._mark(rec, route, "resolved", now if route.send_resolved else None)
        group.last_notify = now
        if not shown:
            return None
        return Notification(
            route=route.name,
            sinks=route.sinks,
            group_key=group.key,
            group_labels=dict(group.labels),
            status="firing" if firing else "resolved",
            alerts=[
                rec.as_payload(self.external_labels, external_url=self.cfg.external_url, now=now)
                for rec in shown[:limit]
            ],
            truncated=max(0, len(shown) - limit),
            created_at=now,
            external_url=self.cfg.external_url,
        )

    # -- bookkeeping -----------------------------------------------------------------------

    def take_dirty(self) -> list[AlertRecord]:
        """Alerts changed since the last call (to be persisted)."""
        dirty, self._dirty = list(self._dirty.values()), {}
        return dirty

    def firing_for_sink(self, sink: str) -> list[AlertRecord]:
        """Alerts currently shown as firing on a route that targets `sink` (not silenced)."""
        out: dict[str, AlertRecord] = {}
        for group in self.groups.values():
            if sink in group.route.sinks:
                for fp in group.members:
                    rec = self.alerts[fp]
                    if rec.shown != "resolved" and rec.notified.get(group.route.name):
                        out[fp] = rec
        return list(out.values())

    def _mark(self, rec: AlertRecord, route: Route, told: str, at: float | None) -> None:
        rec.notified[route.name] = told
        if at is not None:
            rec.last_notified_at = at
        self._dirty[rec.fingerprint] = rec

    def set_runtime_silences(self, silences: Sequence[Silence]) -> None:
        """Replace the silences from the database (`infrawatch silence`); config ones stay.

        Nothing else changes: a group checks silences when it is flushed, so what a removed
        silence held back goes out at the group's next tick, as when a config silence ends."""
        self.silences = [*self._config_silences, *silences]

    def _silenced(self, rec: AlertRecord, now: float) -> bool:
        return any(s.active(rec.labels, now) for s in self.silences)

    def _groups_for(self, rec: AlertRecord, now: float) -> list[Group]:
        routes = match_routes(self.routes, rec.labels)
        if not routes:
            log.warning("alert.unrouted", fingerprint=rec.fingerprint, labels=rec.labels)
        groups = []
        for route in routes:
            key = route.group_key(rec.labels)
            group = self.groups.get(key)
            if group is None:
                group = self.groups[key] = Group(route, key, route.group_labels(rec.labels))
            groups.append(group)
        return groups

    def _touch(self, rec: AlertRecord, now: float) -> None:
        """The alert changed: schedule its groups (a new group waits group_wait)."""
        rec.updated_at = now
        self._dirty[rec.fingerprint] = rec
        for group in self._groups_for(rec, now):
            group.members.add(rec.fingerprint)
            if group.next_flush is None:
                group.next_flush = now + group.route.group_wait

    def _changed(self, rec: AlertRecord, now: float, cause: str) -> None:
        """The alert started firing or resolved: log it (whatever the sinks) and schedule it."""
        log.info(
            "alert.state",
            alertname=rec.labels.get("alertname"),
            state=rec.state,
            severity=rec.severity,
            metric=rec.labels.get("metric"),
            fingerprint=rec.fingerprint,
            cause=cause,
            summary=rec.annotations.get("summary", ""),
        )
        self._touch(rec, now)

    def _sweep(self, now: float) -> None:
        """Forget resolved alerts that no group holds once their flip history has expired."""
        held = {fp for g in self.groups.values() for fp in g.members}
        horizon = now - self.cfg.flap.window
        for fp, rec in list(self.alerts.items()):
            if fp in held or rec.state == "firing" or rec.flapping:
                continue
            if not rec.flips or rec.flips[-1] <= horizon:
                del self.alerts[fp]


def _flap_note(rec: AlertRecord, window: float | None = None) -> dict[str, str]:
    if not rec.flapping:
        return {}
    span = f" in {window:g}s" if window is not None else ""
    return {"flapping": f"state changed {len(rec.flips)} times{span}; flips are held back"}
