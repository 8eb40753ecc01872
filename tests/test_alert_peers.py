"""Alertmanager peer health: down once, reminders doubling up to a cap, recovered once."""

from __future__ import annotations

from infrawatch.alerting.sinks.base import DeliveryResult
from infrawatch.alerting.sinks.peers import PeerHealth, describe_failure
from infrawatch.runtime.stats import PeerStats
from tests.support_alert_logs import captured_logs


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_failures_every_second_log_down_once_then_doubling_reminders() -> None:
    clock = Clock()
    stats = PeerStats()
    peer = PeerHealth("am", "http://am2:9093", stats, clock=clock, remind_initial=10, remind_max=40)
    with captured_logs("info") as logs:
        reminders_at = []
        for _ in range(200):  # a dead peer failing a keep-alive every second for 200 s
            before = len(logs.named("alertmanager.peer_still_down"))
            peer.failed("HTTP 503: busy")
            if len(logs.named("alertmanager.peer_still_down")) > before:
                reminders_at.append(clock.now - 1000.0)
            clock.now += 1.0
        assert len(logs.named("alertmanager.peer_down")) == 1
        # 10 s, then 20, then 40 (the cap) between reminders: 7 lines for 200 failures.
        assert reminders_at == [10, 30, 70, 110, 150, 190]
        last = logs.named("alertmanager.peer_still_down")[-1]
        assert last["reason"] == "HTTP 503: busy"
        assert last["failed_posts"] == 191
        assert last["not_logged"] == 39
        assert stats.failures == 200
        assert stats.outages == 1
        assert stats.down

        peer.succeeded()
        peer.succeeded()
        assert [e["failed_posts"] for e in logs.named("alertmanager.peer_recovered")] == [200]
        assert not stats.down

        peer.failed("ClientConnectorError: refused")  # down again: said at once, reset backoff
        down = logs.named("alertmanager.peer_down")
        assert [e["reason"] for e in down] == ["HTTP 503: busy", "ClientConnectorError: refused"]
        assert stats.outages == 2
        assert stats.failures == 201


def test_describe_failure_names_status_or_connection_error() -> None:
    assert describe_failure(DeliveryResult("fail", 400, "bad labels")) == "HTTP 400: bad labels"
    assert describe_failure(DeliveryResult("retry", 502)) == "HTTP 502"
    timeout = DeliveryResult("retry", detail="timed out after 10s")
    assert describe_failure(timeout) == "timed out after 10s"
