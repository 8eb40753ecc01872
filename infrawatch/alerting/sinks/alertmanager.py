"""Alertmanager API v2 sink: POST /api/v2/alerts to every peer of an HA cluster.

Notifications post their alerts at once; a keep-alive loop re-posts firing alerts every
`resend_interval` with `endsAt` = now + 4 × resend_interval (what Prometheus does), and re-posts
resolved ones with their `endsAt` for `resolve_resend` seconds, so a restarted or newly joined
peer learns the current state. A peer that fails is logged when it goes down, rarely while it
stays down, and when it recovers (see `peers.py`), never on every keep-alive.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from infrawatch.alerting.config import SinkConfig
from infrawatch.alerting.records import rfc3339
from infrawatch.alerting.sinks.base import (
    DeliveryResult,
    classify,
    post,
    redact,
    safe_target,
    secret_parts,
)
from infrawatch.alerting.sinks.peers import PeerHealth, describe_failure
from infrawatch.jsontext import dumps
from infrawatch.logging import get_logger
from infrawatch.runtime.stats import PeerStats

log = get_logger("infrawatch.alerting")

_INVALID = re.compile(r"[^A-Za-z0-9_]")


def label_name(name: str) -> str:
    """A valid Prometheus label name (other characters become "_")."""
    cleaned = _INVALID.sub("_", name) or "_"
    return "_" + cleaned if cleaned[0].isdigit() else cleaned


def _label_set(values: dict[str, str]) -> dict[str, str]:
    # An empty value means "no such label" to Alertmanager; drop it rather than be rejected.
    return {label_name(k): str(v) for k, v in values.items() if str(v)}


def am_alert(alert: dict[str, Any], now: float, resend_interval: float) -> dict[str, Any]:
    """One notification alert as an Alertmanager v2 postable alert."""
    resolved = alert.get("status") == "resolved"
    ends = alert.get("endsAt") if resolved else rfc3339(now + 4 * resend_interval)
    posted = {
        "labels": _label_set(alert.get("labels", {})),
        "annotations": _label_set(alert.get("annotations", {})),
        "startsAt": alert.get("startsAt"),
        "endsAt": ends,
    }
    # The chart of the alert's series (alerting.external_url), as Prometheus links its graph.
    if alert.get("generatorURL"):
        posted["generatorURL"] = alert["generatorURL"]
    return posted


class AlertmanagerSink:
    """Sends to every peer; a notification counts as delivered once one peer accepted it."""

    type = "alertmanager"

    def __init__(self, cfg: SinkConfig, session: aiohttp.ClientSession) -> None:
        self.name = cfg.name
        self._urls = [self._endpoint(u.get_secret_value()) for u in cfg.urls]
        # Per peer, keyed by scheme://host:port (what logs and /metrics may show).
        self.peer_stats: dict[str, PeerStats] = {}
        self._peers: list[PeerHealth] = []
        for url in self._urls:
            target = safe_target(url)
            key, n = target, 1
            while key in self.peer_stats:  # two peers on one host:port, different paths
                n += 1
                key = f"{target}#{n}"
            self.peer_stats[key] = PeerStats()
            self._peers.append(PeerHealth(self.name, key, self.peer_stats[key]))
        self._secrets = sorted(self._secret_parts(), key=len, reverse=True)
        self._session = session
        self._timeout = cfg.timeout
        self.resend_interval = cfg.resend_interval
        self._resolve_resend = cfg.resolve_resend
        # fingerprint → (alert, re-send until epoch s): resolves repeated for late peers.
        self._recent_resolved: dict[str, tuple[dict[str, Any], float]] = {}

    def _secret_parts(self) -> set[str]:
        # What must never reach a log line: whole URLs, passwords, and paths that are not the
        # plain API path (a reverse proxy may put a token there).
        return {part for url in self._urls for part in secret_parts(url)}

    def _redact(self, text: str) -> str:
        """`text` with any part of a peer URL that could carry credentials replaced."""
        return redact(text, self._secrets)

    @staticmethod
    def _endpoint(url: str) -> str:
        url = url.rstrip("/")
        return url if url.endswith("/api/v2/alerts") else url + "/api/v2/alerts"

    async def send(self, item_id: str, payload: dict[str, Any]) -> DeliveryResult:
        """Post the notification's alerts to every peer."""
        now = time.time()
        alerts = payload.get("alerts", [])
        for alert in alerts:
            if alert.get("status") == "resolved":
                self._recent_resolved[alert["fingerprint"]] = (alert, now + self._resolve_resend)
            else:
                self._recent_resolved.pop(alert.get("fingerprint", ""), None)
        return await self._post([am_alert(a, now, self.resend_interval) for a in alerts])

    async def _post(self, alerts: list[dict[str, Any]]) -> DeliveryResult:
        body = dumps(alerts, ensure_ascii=False).encode()
        replies = await asyncio.gather(
            *(post(self._session, url, body, {}, self._timeout) for url in self._urls)
        )
        results = [r if isinstance(r, DeliveryResult) else classify(r) for r in replies]
        for peer, result in zip(self._peers, results, strict=True):
            if result.outcome == "ok":
                peer.succeeded()
            else:
                peer.failed(self._redact(describe_failure(result)))
        if any(r.outcome == "ok" for r in results):
            return DeliveryResult("ok", next(r.status for r in results if r.outcome == "ok"))
        retry = [r for r in results if r.outcome == "retry"]
        return retry[0] if retry else results[0]

    async def keepalive(self, firing: Callable[[], list[dict[str, Any]]]) -> None:
        """Re-post current alerts every resend_interval (s) until cancelled."""
        while True:
            await asyncio.sleep(self.resend_interval)
            try:
                await self._keepalive_round(firing)
            except Exception:
                # A bug in one round must not end the re-posts silently (peers would let the
                # alerts expire): log it and try again next round.
                log.exception("alertmanager.keepalive_failed", sink=self.name)

    async def _keepalive_round(self, firing: Callable[[], list[dict[str, Any]]]) -> None:
        now = time.time()
        self._recent_resolved = {fp: v for fp, v in self._recent_resolved.items() if v[1] > now}
        alerts = [am_alert(a, now, self.resend_interval) for a in firing()]
        resolved = [a for a, _ in self._recent_resolved.values()]
        alerts += [am_alert(a, now, self.resend_interval) for a in resolved]
        if alerts:
            result = await self._post(alerts)
            log.debug("sink.keepalive", sink=self.name, alerts=len(alerts), outcome=result.outcome)

    def describe(self) -> str:
        """Peers by host (no paths)."""
        peers = ", ".join(safe_target(u) for u in self._urls)
        return f"Alertmanager API v2 at {peers}"
