"""The real agent restarted (SIGTERM, SIGKILL) with undelivered notifications and an ongoing
alert: the outbox drains after the restart, each notification once, and nothing is re-announced."""

from __future__ import annotations

import signal
import sqlite3
import time
from pathlib import Path

import pytest

from infrawatch.alerting.config import AlertingConfig
from infrawatch.alerting.service import AlertService
from infrawatch.model import Anomaly, make_labels
from infrawatch.storage.store import Store
from tests.agentproc import AgentProcess, write_config
from tests.support_receivers import SignedWebhookReceiver

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def anomaly(rule: str) -> Anomaly:
    return Anomaly(
        name="system.memory.utilization",
        labels=make_labels({"host": "db1"}),
        ts=time.time(),
        value=0.99,
        detector="threshold",
        rule=rule,
        severity="critical",
        status="firing",
    )


async def undelivered(db: Path, url: str) -> list[str]:
    """Run the alerter in-process while the receiver is down: 3 notifications stay pending."""
    cfg = AlertingConfig.model_validate(
        {
            "group_wait": 0,
            "sinks": [{"name": "h", "type": "webhook", "url": url, "secret": SECRET}],
            "retry": {"initial_delay": 10},
        }
    )
    async with Store(db) as store, AlertService(cfg, store, shutdown_deadline=0.5) as svc:
        await svc.observe([anomaly("ongoing"), anomaly("mem_high"), anomaly("swap_high")])
        await svc.settled()
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT id FROM outbox WHERE state = 'pending'").fetchall()
    return sorted(r[0] for r in rows)


def agent_config(tmp_path: Path, url: str) -> Path:
    return write_config(
        tmp_path,
        f"""
[agent]
shutdown_deadline = 3
[host]
interval = 3600
[alerting]
group_wait = 0
repeat_interval = "1h"
restart_grace = "1h"
[alerting.retry]
initial_delay = 0.05
max_delay = 0.2
[[alerting.sinks]]
name = "h"
type = "webhook"
url = "{url}"
secret = "{SECRET}"
""",
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
async def test_outbox_drains_after_restart_without_duplicates(tmp_path: Path, sig: int) -> None:
    hook = SignedWebhookReceiver(SECRET)
    db = tmp_path / "agent.db"
    pending = await undelivered(db, hook.url)
    assert len(pending) == 3
    config = agent_config(tmp_path, hook.url)
    await hook.start()
    try:
        # First run: the receiver answers 503 to everything; the agent is stopped mid-retry.
        hook.then(*[(503, "down for maintenance", {})] * 1000)
        first = await AgentProcess(config).start()
        try:
            await hook.wait_until(lambda r: len(r.requests) >= 2)
            first.signal(sig)
            code = await first.wait()
        finally:
            await first.stop()
        assert code == (0 if sig == signal.SIGTERM else -signal.SIGKILL)
        assert hook.accepted() == []
        hook.script.clear()
        # Second run: the receiver is healthy; everything left in the outbox arrives once.
        second = await AgentProcess(config).start()
        try:
            await hook.wait_until(lambda r: len(r.accepted()) >= 3)
            second.signal(signal.SIGTERM)
            assert await second.wait() == 0
        finally:
            await second.stop()
        started = second.named("alerting.started")[0]
        assert started["restored_alerts"] == 3
        assert started["pending_notifications"] == 3
    finally:
        await hook.stop()
    assert sorted(hook.accepted_ids()) == pending  # each exactly once, by id
    assert hook.bad_signatures == 0
    with sqlite3.connect(db) as conn:
        outbox = conn.execute("SELECT state, count(*) FROM outbox GROUP BY state").fetchall()
        alerts = conn.execute("SELECT alertname, state FROM alerts ORDER BY 1").fetchall()
    # No new notification was made: the ongoing alerts were not re-announced after restart.
    assert outbox == [("delivered", 3)]
    assert alerts == [("mem_high", "firing"), ("ongoing", "firing"), ("swap_high", "firing")]


RULE = """
[[analysis.threshold]]
name = "{name}"
metric = "system.memory.utilization"
labels = {{ exported_job = "node" }}
op = ">"
warning = 0.9
"""


async def test_restart_reconcile_after_a_sighup_asks_the_reloaded_detectors(
    tmp_path: Path,
) -> None:
    # Two alerts were firing at shutdown, on a series whose own label starts with exported_.
    # The agent restarts without the rule mem_high, gets it back by SIGHUP within restart_grace:
    # the reconcile must ask the detectors running then, which restored mem_high as firing.
    db = tmp_path / "agent.db"
    series = make_labels({"exported_job": "node", "host": "db1"})
    was_firing = [
        Anomaly("system.memory.utilization", series, time.time(), 0.95, "threshold", rule,
                "warning", "firing")
        for rule in ("mem_high", "retired")
    ]  # fmt: skip
    cfg = AlertingConfig.model_validate(
        {"group_wait": 0, "sinks": [{"name": "log", "type": "log"}]}
    )
    async with Store(db) as store, AlertService(cfg, store, shutdown_deadline=0.5) as svc:
        await svc.observe(was_firing)
        await svc.settled()
    base = """
[host]
interval = 3600
metrics = ["memory"]
[alerting]
restart_grace = "2s"
[analysis.zscore]
enabled = false
[analysis.novelty]
enabled = false
"""
    config = write_config(tmp_path, base + RULE.format(name="disk_full"))
    proc = await AgentProcess(config).start()
    try:
        await proc.wait_for("agent.started")
        config.write_text(config.read_text() + RULE.format(name="mem_high"))
        proc.signal(signal.SIGHUP)
        reloaded = await proc.wait_for("config.reloaded")
        assert reloaded["applied"] == ["analysis.threshold"]
        reconciled = await proc.wait_for("alert.resolved_while_down")
        # The grace period must outlast the reload for this test to say anything.
        assert proc.events.index(reloaded) < proc.events.index(reconciled)
        assert reconciled["alerts"] == 1  # only the rule that no longer exists
        proc.signal(signal.SIGTERM)
        assert await proc.wait() == 0
    finally:
        await proc.stop()
    with sqlite3.connect(db) as conn:
        alerts = conn.execute("SELECT alertname, state FROM alerts ORDER BY 1").fetchall()
    assert alerts == [("mem_high", "firing"), ("retired", "resolved")]
