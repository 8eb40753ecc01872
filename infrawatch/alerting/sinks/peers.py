"""Health of each peer of an Alertmanager HA cluster: log a peer going bad once, remind rarely.

A dead peer fails every keep-alive round (every `resend_interval`), so logging each failure would
flood the log. Instead a peer's first failure logs `alertmanager.peer_down` with the reason,
further failures log `alertmanager.peer_still_down` at most once per reminder period (doubling
from `remind_initial` up to `remind_max`), and its first success logs
`alertmanager.peer_recovered`. Every failure is counted in the peer's `PeerStats`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from infrawatch.alerting.sinks.base import DeliveryResult
from infrawatch.logging import get_logger
from infrawatch.runtime.stats import PeerStats

log = get_logger("infrawatch.alerting")

REMIND_INITIAL = 60.0  # seconds from "peer down" to the first "still down" reminder
REMIND_MAX = 3600.0  # seconds: reminders double up to one an hour


def describe_failure(result: DeliveryResult) -> str:
    """A short reason for a failed post ("HTTP 503: …" or the connection error)."""
    if result.status is not None:
        return f"HTTP {result.status}: {result.detail}".rstrip(": ")
    return result.detail or result.outcome


class PeerHealth:
    """Tracks one peer (named by its safe `target`, never the URL) and logs its transitions."""

    def __init__(
        self,
        sink: str,
        target: str,
        stats: PeerStats,
        *,
        clock: Callable[[], float] = time.monotonic,
        remind_initial: float = REMIND_INITIAL,
        remind_max: float = REMIND_MAX,
    ) -> None:
        self.sink = sink
        self.target = target
        self.stats = stats
        self.clock = clock
        self.remind_initial = remind_initial
        self.remind_max = remind_max
        self._down_since = 0.0  # clock s
        self._failures_since_down = 0
        self._remind_in = remind_initial
        self._remind_at = 0.0  # clock s
        self._unlogged = 0  # failures since the last down/still-down event

    def succeeded(self) -> None:
        """The peer accepted a post."""
        if not self.stats.down:
            return
        self.stats.down = False
        log.info(
            "alertmanager.peer_recovered",
            sink=self.sink,
            peer=self.target,
            down_for=round(self.clock() - self._down_since, 3),
            failed_posts=self._failures_since_down,
        )

    def failed(self, reason: str) -> None:
        """The peer did not accept a post; `reason` must not contain the URL."""
        self.stats.failures += 1
        now = self.clock()
        if not self.stats.down:
            self.stats.down = True
            self.stats.outages += 1
            self._down_since = now
            self._failures_since_down = 1
            self._remind_in = self.remind_initial
            self._remind_at = now + self._remind_in
            self._unlogged = 0
            log.warning("alertmanager.peer_down", sink=self.sink, peer=self.target, reason=reason)
            return
        self._failures_since_down += 1
        self._unlogged += 1
        if now < self._remind_at:
            return
        log.warning(
            "alertmanager.peer_still_down",
            sink=self.sink,
            peer=self.target,
            reason=reason,
            down_for=round(now - self._down_since, 3),
            failed_posts=self._failures_since_down,
            not_logged=self._unlogged - 1,
        )
        self._unlogged = 0
        self._remind_in = min(self._remind_in * 2, self.remind_max)
        self._remind_at = now + self._remind_in
