"""Delivery to real receivers on loopback: Discord (429, 5xx, 404, 400), Slack (429), a signed
webhook that is down then back (exactly once by id, counted backoff), Alertmanager keep-alive."""

from __future__ import annotations

import json
import random
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from infrawatch.alerting import delivery
from infrawatch.alerting.config import AlertingConfig, RetryConfig
from infrawatch.alerting.service import AlertService
from infrawatch.alerting.sinks.base import DeliveryResult, post
from infrawatch.model import Anomaly, make_labels
from infrawatch.storage.store import Store
from tests.support_alert_logs import captured_logs
from tests.support_receivers import (
    DiscordReceiver,
    OutageReceiver,
    Receiver,
    SignedWebhookReceiver,
    SlackReceiver,
    free_port,
)

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
FAST_RETRY = {"initial_delay": 0.02, "max_delay": 0.3, "multiplier": 2, "max_attempts": 50}
# A notification's own backoff explodes: after its 2nd failure it would wait 5,000 s or more.
# Whatever is delivered soon after that is paced by the sink's health, not by this timer.
EXPLODING_RETRY = {"initial_delay": 0.01, "multiplier": 1e6, "max_delay": 86400, "max_attempts": 50}


def anomaly(rule: str = "cpu_high", status: str = "firing", **labels: str) -> Anomaly:
    return Anomaly(
        name="system.cpu.utilization",
        labels=make_labels(labels or {"host": "web1"}),
        ts=time.time(),
        value=0.97,
        detector="threshold",
        rule=rule,
        severity="critical",
        status=status,  # type: ignore[arg-type]
        evidence={"threshold": 0.9},
        summary="cpu above 90%",
    )


@asynccontextmanager
async def alerting(
    tmp_path: Path, sinks: list[dict[str, Any]], **cfg: Any
) -> AsyncIterator[AlertService]:
    retry = cfg.pop("retry", FAST_RETRY)
    config = AlertingConfig.model_validate({"group_wait": 0, "sinks": sinks, "retry": retry, **cfg})
    async with (
        Store(tmp_path / "a.db") as store,
        AlertService(config, store, shutdown_deadline=2.0) as service,
    ):
        yield service


async def test_discord_429_is_honoured_then_delivered(tmp_path: Path) -> None:
    discord = DiscordReceiver()
    await discord.start()
    discord.then(DiscordReceiver.rate_limited(0.05))
    try:
        async with alerting(
            tmp_path, [{"name": "d", "type": "discord", "url": discord.url}]
        ) as svc:
            await svc.observe([anomaly()])
            worker = svc.workers["d"]
            await worker.wait_until(lambda s: s.sent == 1)
            assert [r.status for r in discord.requests] == [429, 200]
            assert worker.delays[0] >= 0.05  # waited at least what retry_after said
            assert worker.stats.rate_limited == 1
            assert worker.stats.pending == 0
            message = discord.requests[-1]
            assert message.query == {"wait": "true"}
            assert message.headers["User-Agent"].startswith("infrawatch/")
            embed = message.json["embeds"][0]
            assert embed["color"] == 0xE74C3C  # critical
            assert embed["title"] == "FIRING: cpu_high"
            assert {"name": "host", "value": "web1", "inline": True} in embed["fields"]
    finally:
        await discord.stop()


async def test_discord_5xx_retried_400_dropped_404_stops(tmp_path: Path) -> None:
    discord = DiscordReceiver()
    await discord.start()
    discord.then(
        (502, "bad gateway", {}),
        (400, {"code": 50035, "message": "Invalid Form Body"}, {}),  # first item: given up
        (500, "oops", {}),
        DiscordReceiver.GONE,  # second item: the webhook was deleted
    )
    try:
        async with alerting(
            tmp_path, [{"name": "d", "type": "discord", "url": discord.url}]
        ) as svc:
            worker = svc.workers["d"]
            await svc.observe([anomaly(rule="one")])
            await worker.wait_until(lambda s: s.failed == 1)
            assert [r.status for r in discord.requests] == [502, 400]  # a 400 is never retried
            await svc.observe([anomaly(rule="two")])
            await worker.wait_until(lambda s: s.gone)
            await svc.observe([anomaly(rule="three")])
            await svc.settled()
            assert [r.status for r in discord.requests] == [502, 400, 500, 404]
            # Nothing more is sent to a gone webhook; its notifications wait in the outbox.
            assert worker.stats.pending == 2
            assert len(worker.queue) == 2
            counts = await svc.outbox.counts()
            assert counts == {("d", "failed"): 1, ("d", "pending"): 2}
    finally:
        await discord.stop()


async def test_slack_retry_after_is_honoured(tmp_path: Path) -> None:
    slack = SlackReceiver()
    await slack.start()
    slack.then(SlackReceiver.rate_limited(1))
    try:
        async with alerting(tmp_path, [{"name": "s", "type": "slack", "url": slack.url}]) as svc:
            await svc.observe([anomaly()])
            await svc.workers["s"].wait_until(lambda s: s.sent == 1)
            assert [r.status for r in slack.requests] == [429, 200]
            assert svc.workers["s"].delays[0] >= 1.0
            body = slack.requests[-1].json
            assert body["text"] == "[FIRING:1] cpu_high"
            assert body["blocks"][0]["type"] == "header"
    finally:
        await slack.stop()


async def test_receiver_down_then_back_delivers_each_id_exactly_once(tmp_path: Path) -> None:
    hook = SignedWebhookReceiver(SECRET)  # not listening yet: connections are refused
    sink = {"name": "h", "type": "webhook", "url": hook.url, "secret": SECRET}
    async with alerting(tmp_path, [sink]) as svc:
        worker = svc.workers["h"]
        await svc.observe([anomaly(rule=f"rule{i}") for i in range(5)])  # 5 groups, 5 messages
        await worker.wait_until(lambda s: s.attempts >= 5)
        assert hook.requests == []
        hook.then((503, "busy", {}), (503, "busy", {}))
        await hook.start()
        try:
            await worker.wait_until(lambda s: s.sent == 5)
        finally:
            await hook.stop()
        ids = hook.accepted_ids()
        assert len(ids) == 5
        assert len(set(ids)) == 5
        assert hook.bad_signatures == 0
        # The id is stable across retries: the 503s were for the first message, same id.
        first = ids[0]
        assert [r.headers["webhook-id"] for r in hook.requests[:3]] == [first] * 3
        # One request in flight, oldest first: the retries backed off, never a storm.
        failed_attempts = worker.stats.attempts - 5
        assert failed_attempts == worker.stats.retries >= 6
        delays = list(worker.delays)
        capped = [d for d in delays if d < FAST_RETRY["max_delay"] / 2]
        assert capped == sorted(capped)
        assert max(delays) <= FAST_RETRY["max_delay"]
        payload = hook.accepted()[0].json
        assert payload["version"] == "4"
        assert payload["id"] == first
        assert payload["status"] == "firing"
        assert payload["receiver"] == "h"
        assert payload["alerts"][0]["labels"]["alertname"] == "rule0"
        assert payload["alerts"][0]["annotations"]["evidence_threshold"] == "0.9"
        async with svc.store.db.execute("SELECT state, count(*) FROM outbox GROUP BY 1") as cur:
            assert [tuple(r) for r in await cur.fetchall()] == [("delivered", 5)]


async def test_resolved_follows_firing_and_alert_row_is_kept(tmp_path: Path) -> None:
    hook = SignedWebhookReceiver(SECRET)
    await hook.start()
    sink = {"name": "h", "type": "webhook", "url": hook.url, "secret": SECRET}
    try:
        async with alerting(tmp_path, [sink], group_interval=0.05) as svc:
            await svc.observe([anomaly()])
            await svc.workers["h"].wait_until(lambda s: s.sent == 1)
            await svc.observe([anomaly(status="resolved")])
            await svc.workers["h"].wait_until(lambda s: s.sent == 2)
            statuses = [r.json["status"] for r in hook.accepted()]
            assert statuses == ["firing", "resolved"]
            async with svc.store.db.execute(
                "SELECT alertname, state, severity, ends_at IS NOT NULL,"
                " last_notified_at IS NOT NULL, labels FROM alerts"
            ) as cur:
                row = await cur.fetchone()
            assert row is not None
            assert row[:5] == ("cpu_high", "resolved", "critical", 1, 1)
            assert json.loads(row[5])["host"] == "web1"
    finally:
        await hook.stop()


async def test_alertmanager_keepalive_reposts_with_future_ends_at(tmp_path: Path) -> None:
    peer = Receiver()
    await peer.start()
    dead = f"http://127.0.0.1:{free_port()}"
    sink = {"name": "am", "type": "alertmanager", "urls": [peer.url, dead], "resend_interval": 0.05}
    try:
        async with alerting(tmp_path, [sink]) as svc:
            await svc.observe([anomaly()])
            await peer.wait_until(lambda r: len(r.requests) >= 3)  # notification + 2 keep-alives
            assert svc.workers["am"].stats.sent == 1  # one live peer is enough
            posts = [r.json for r in peer.requests[:3]]
            assert all(p[0]["labels"]["alertname"] == "cpu_high" for p in posts)
            assert all(p[0]["endsAt"] > p[0]["startsAt"] for p in posts)
            assert {r.path for r in peer.requests} == {"/api/v2/alerts"}
    finally:
        await peer.stop()


class LockingReceiver(Receiver):
    """Accepts everything; when the first request arrives, another connection takes the
    database's write lock (as a backup tool might), so the outbox update after it fails."""

    path = "/hook"

    def __init__(self, db_path: Path) -> None:
        super().__init__()
        self.db_path = db_path
        self.locker: sqlite3.Connection | None = None

    def answer(self, request: web.Request, body: bytes) -> tuple[int, Any, dict[str, str]]:
        if self.locker is None:
            self.locker = sqlite3.connect(self.db_path, timeout=5, isolation_level=None)
            self.locker.execute("BEGIN IMMEDIATE")
        return 204, None, {}

    def release(self) -> None:
        if self.locker is not None and self.locker.in_transaction:
            self.locker.execute("ROLLBACK")

    def close(self) -> None:
        if self.locker is not None:
            self.locker.close()


async def test_outbox_update_failing_after_send_is_recorded_later_never_resent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(delivery, "OUTBOX_ERROR_PAUSE", 0.05)  # retry the write soon
    db_path = tmp_path / "a.db"
    hook = LockingReceiver(db_path)
    await hook.start()
    config = AlertingConfig.model_validate(
        {
            "group_wait": 0,
            "sinks": [{"name": "h", "type": "webhook", "url": hook.url}],
            "retry": FAST_RETRY,
        }
    )
    try:
        async with (
            Store(db_path, busy_timeout_ms=50) as store,
            AlertService(config, store, shutdown_deadline=2.0) as svc,
        ):
            worker = svc.workers["h"]
            await svc.observe([anomaly(rule="one")])
            await worker.wait_until(lambda s: s.unrecorded == 1)
            # Delivered, but the outbox still says pending: the database was locked.
            [first] = [r.headers["webhook-id"] for r in hook.requests]
            assert worker.unrecorded == [first]
            assert (worker.stats.sent, worker.stats.pending) == (1, 0)
            assert await svc.outbox.counts() == {("h", "pending"): 1}
            hook.release()
            await worker.wait_until(lambda s: s.unrecorded == 0)
            assert await svc.outbox.counts() == {("h", "delivered"): 1}
            await svc.observe([anomaly(rule="two")])
            await worker.wait_until(lambda s: s.sent == 2)
            assert await svc.outbox.counts() == {("h", "delivered"): 2}
        ids = [r.headers["webhook-id"] for r in hook.requests]
        assert ids[0] == first
        assert len(ids) == len(set(ids)) == 2  # the first was not sent again in this run
        # Nor after a restart: its row was recorded delivered once the lock was gone.
        async with Store(db_path) as store, AlertService(config, store) as svc:
            await svc.settled()
            assert await svc.outbox.pending() == []
        assert len(hook.requests) == 2
    finally:
        hook.release()
        hook.close()
        await hook.stop()


async def test_outcome_still_unrecorded_at_shutdown_is_resent_with_same_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(delivery, "OUTBOX_ERROR_PAUSE", 0.05)
    db_path = tmp_path / "a.db"
    hook = LockingReceiver(db_path)
    await hook.start()
    config = AlertingConfig.model_validate(
        {
            "group_wait": 0,
            "sinks": [{"name": "h", "type": "webhook", "url": hook.url}],
            "retry": FAST_RETRY,
        }
    )
    try:
        with captured_logs("info") as logs:
            async with (
                Store(db_path, busy_timeout_ms=50) as store,
                AlertService(config, store, shutdown_deadline=1.0) as svc,
            ):
                await svc.observe([anomaly()])
                await svc.workers["h"].wait_until(lambda s: s.unrecorded == 1)
            # Still locked at shutdown: said so, and the service stopped cleanly.
            [warning] = logs.named("sink.outcomes_unrecorded")
            assert warning["notification_ids"] == [hook.requests[0].headers["webhook-id"]]
            assert logs.named("sink.worker_crashed") == []
        hook.release()
        async with Store(db_path) as store, AlertService(config, store) as svc:
            await svc.workers["h"].wait_until(lambda s: s.sent == 1)
            assert await svc.outbox.counts() == {("h", "delivered"): 1}
        # At-least-once: sent again after the restart, with the same id receivers dedupe by.
        ids = [r.headers["webhook-id"] for r in hook.requests]
        assert len(ids) == 2
        assert ids[0] == ids[1]
    finally:
        hook.release()
        hook.close()
        await hook.stop()


@pytest.mark.parametrize(
    "url",
    [
        "ftp://user:pw-S3CRET@127.0.0.1:9/hooks/TOKEN-XYZ",  # aiohttp quotes the whole URL
        "http://user:pw-S3CRET@127.0.0.1:9/hooks/TOKEN-XYZ",  # connection refused
    ],
)
async def test_delivery_errors_never_carry_the_url_token_or_password(url: str) -> None:
    async with aiohttp.ClientSession() as session:
        result = await post(session, url, b"{}", {}, 2.0)
    assert isinstance(result, DeliveryResult)
    assert result.outcome == "retry"
    assert result.detail
    for secret in ("pw-S3CRET", "TOKEN-XYZ", url):
        assert secret not in result.detail


async def test_rate_limit_headers_are_read_case_insensitively() -> None:
    # HTTP header names are case-insensitive; proxies and HTTP/2 front ends send them lowercase.
    from infrawatch.alerting.sinks.base import HttpReply, classify
    from infrawatch.alerting.sinks.discord import _bucket_pause

    recv = Receiver()
    await recv.start()
    recv.then(
        (429, "rate_limited", {"retry-after": "7"}),
        (200, "ok", {"x-ratelimit-remaining": "0", "x-ratelimit-reset-after": "0.25"}),
    )
    try:
        async with aiohttp.ClientSession() as session:
            limited = await post(session, recv.url, b"{}", {}, 2.0)
            bucket = await post(session, recv.url, b"{}", {}, 2.0)
        assert isinstance(limited, HttpReply)
        assert isinstance(bucket, HttpReply)
        assert classify(limited).retry_after == 7.0
        assert _bucket_pause(bucket.headers) == 0.25
    finally:
        await recv.stop()


async def test_429_without_retry_after_still_backs_off(tmp_path: Path) -> None:
    # A proxy's 429 often has no Retry-After: 429s don't count toward max_attempts, so without
    # a growing delay the receiver would be asked once per initial_delay until max_age.
    hook = SignedWebhookReceiver(SECRET)
    await hook.start()
    hook.then(*[(429, "slow down", {})] * 4)
    sink = {"name": "h", "type": "webhook", "url": hook.url, "secret": SECRET}
    try:
        async with alerting(tmp_path, [sink]) as svc:
            await svc.observe([anomaly()])
            worker = svc.workers["h"]
            await worker.wait_until(lambda s: s.sent == 1)
            assert worker.stats.rate_limited == 4
            assert worker.stats.failed == 0
            # Steps of [d/2, d] with d doubling from initial_delay 0.02 s.
            assert worker.delays[3] >= 0.08
    finally:
        await hook.stop()


async def test_backlog_drains_at_once_when_the_receiver_answers_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The outside trial: 32 notifications waited 392 s after the receiver came back, behind the
    # oldest one's grown backoff. Probing the sink on a short schedule ends the wait.
    monkeypatch.setattr(delivery, "PROBE_MAX_DELAY", 0.05)
    hook = OutageReceiver(down=True)
    await hook.start()
    sink = {"name": "h", "type": "webhook", "url": hook.url}
    try:
        async with alerting(tmp_path, [sink], retry=EXPLODING_RETRY) as svc:
            worker = svc.workers["h"]
            await svc.observe([anomaly(rule=f"rule{i}") for i in range(5)])
            await hook.wait_until(lambda r: len(r.requests) >= 2)  # both answered 503
            assert worker.stats.pending == 5
            assert worker.stats.sent == 0
            # In order: only the oldest notification is tried while the receiver fails.
            tried = {r.json["alerts"][0]["labels"]["alertname"] for r in hook.requests}
            assert tried == {"rule0"}
            hook.down = False
            await worker.wait_until(lambda s: s.sent == 5)
            assert hook.alertnames() == [f"rule{i}" for i in range(5)]
            assert len(set(hook.accepted_ids())) == 5
            stats = worker.stats
            assert (stats.pending, stats.failed, stats.rate_limited) == (0, 0, 0)
            assert stats.retries == stats.attempts - 5 == len(hook.requests) - 5 >= 1
    finally:
        await hook.stop()


async def test_notification_after_recovery_does_not_wait_behind_an_old_backoff(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The sink's next probe is half an hour away: only the new notification can explain an
    # early attempt, and it goes out behind the backlog, in order.
    monkeypatch.setattr(delivery, "PROBE_MAX_DELAY", 3600.0)
    hook = OutageReceiver(down=True)
    await hook.start()
    sink = {"name": "h", "type": "webhook", "url": hook.url}
    try:
        async with alerting(tmp_path, [sink], retry=EXPLODING_RETRY) as svc:
            worker = svc.workers["h"]
            await svc.observe([anomaly(rule=f"old{i}") for i in range(3)])
            await hook.wait_until(lambda r: len(r.requests) >= 2)  # both answered 503
            hook.down = False
            await svc.observe([anomaly(rule="new")])
            await worker.wait_until(lambda s: s.sent == 4)
            assert hook.alertnames() == ["old0", "old1", "old2", "new"]
            assert worker.stats.pending == 0
    finally:
        await hook.stop()


async def test_probes_of_a_dead_receiver_do_not_use_up_a_notifications_attempts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Probing every few ms must not give a notification up after max_attempts probes: its
    # attempts count on its own backoff (here the 3rd would count after 5,000 s).
    monkeypatch.setattr(delivery, "PROBE_MAX_DELAY", 0.01)
    hook = OutageReceiver(down=True)
    await hook.start()
    sink = {"name": "h", "type": "webhook", "url": hook.url}
    try:
        async with alerting(tmp_path, [sink], retry={**EXPLODING_RETRY, "max_attempts": 3}) as svc:
            worker = svc.workers["h"]
            await svc.observe([anomaly()])
            await hook.wait_until(lambda r: len(r.requests) >= 10)
            assert worker.stats.failed == 0
            assert worker.queue[0].failures == 2
            hook.down = False
            await worker.wait_until(lambda s: s.sent == 1)
            assert hook.alertnames() == ["cpu_high"]
    finally:
        await hook.stop()


async def test_given_up_after_max_attempts_counted_once_not_as_a_retry(tmp_path: Path) -> None:
    hook = OutageReceiver(down=True)
    await hook.start()
    sink = {"name": "h", "type": "webhook", "url": hook.url}
    retry = {"initial_delay": 0.01, "max_delay": 0.02, "max_attempts": 3}
    try:
        with captured_logs("info") as logs:
            async with alerting(tmp_path, [sink], retry=retry) as svc:
                worker = svc.workers["h"]
                await svc.observe([anomaly()])
                await worker.wait_until(lambda s: s.failed == 1)
                stats = worker.stats
                assert stats.attempts == len(hook.requests) >= 3
                # Every failed attempt but the last was retried; the last gave up.
                assert stats.retries == stats.attempts - 1
                assert (stats.sent, stats.pending, stats.rate_limited) == (0, 0, 0)
                assert await svc.outbox.counts() == {("h", "failed"): 1}
            [failed] = logs.named("sink.notification_failed")
            assert failed["reason"].startswith("3 failed attempts")
    finally:
        await hook.stop()


def test_backoff_after_a_day_of_probes_stays_at_the_cap() -> None:
    # A day-long outage probed every 30 s is ~3,000 failures in a row: 2.0 ** 3000 overflows.
    rng = random.Random(7)
    retry = RetryConfig()
    for failures in (1, 20, 1100, 3000):
        delay = delivery.backoff_delay(failures, retry, rng, cap=30.0)
        assert 0.5 <= delay <= 30.0
    assert 150.0 <= delivery.backoff_delay(3000, retry, rng) <= 300.0
