"""One real agent, every stage: host sample → threshold rule → stored anomaly → alert → signed
webhook, visible in /metrics and in `infrawatch query` while the agent runs."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp

from tests.agentproc import AgentProcess, write_config
from tests.support_receivers import WEBHOOK_SECRET, SignedWebhookReceiver, always_firing_toml


def _config(tmp_path: Path, hook_url: str) -> Path:
    http = '\n[http]\nenabled = true\nlisten = "127.0.0.1:0"\n'
    return write_config(tmp_path, always_firing_toml(hook_url) + http)


def _query(db: Path, *args: str) -> list[dict[str, object]]:
    result = subprocess.run(
        [sys.executable, "-m", "infrawatch", "query", *args, "--db", str(db), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    rows: list[dict[str, object]] = json.loads(result.stdout)
    return rows


async def test_anomaly_flows_to_webhook_metrics_and_query(tmp_path: Path) -> None:
    hook = SignedWebhookReceiver(WEBHOOK_SECRET)
    await hook.start()
    agent = await AgentProcess(_config(tmp_path, hook.url)).start()
    try:
        listening = await agent.wait_for("http.listening")
        await hook.wait_until(lambda r: len(r.accepted()) >= 1)
        url = f"http://127.0.0.1:{listening['port']}/metrics"
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            assert response.status == 200
            metrics = await response.text()
        db = tmp_path / "agent.db"
        anomalies = await asyncio.to_thread(_query, db, "anomalies")
        alerts = await asyncio.to_thread(_query, db, "alerts", "--state", "firing")
        agent.signal(signal.SIGTERM)
        assert await agent.wait() == 0, agent.stderr
    finally:
        await agent.stop()
        await hook.stop()

    payload = hook.accepted()[0].json
    assert hook.bad_signatures == 0
    assert hook.accepted()[0].headers["User-Agent"].startswith("infrawatch/")
    (alert,) = payload["alerts"]
    assert alert["status"] == "firing"
    assert alert["labels"]["alertname"] == "memory_in_use"
    assert alert["labels"]["severity"] == "critical"

    assert 'infrawatch_alerts{alertname="memory_in_use",alertstate="firing"' in metrics
    assert 'infrawatch_alert_notifications_sent_total{sink="hook"} 1.0' in metrics
    assert "system_memory_utilization " in metrics

    assert any(a["rule"] == "memory_in_use" and a["status"] == "firing" for a in anomalies)
    # The state change is in the agent's own log whatever the sinks are.
    (state,) = [e for e in agent.named("alert.state") if e["alertname"] == "memory_in_use"]
    assert (state["state"], state["severity"]) == ("firing", "critical")
    assert [a["alertname"] for a in alerts] == ["memory_in_use"]
    # The webhook URL and its secret are never written to stdout, stderr or the database.
    for secret in (WEBHOOK_SECRET, hook.url):
        assert secret not in agent.stderr
        assert all(secret not in line for line in agent.raw_lines)
        assert secret.encode() not in (tmp_path / "agent.db").read_bytes()


async def test_once_sends_what_it_found_without_waiting_for_group_wait(tmp_path: Path) -> None:
    hook = SignedWebhookReceiver(WEBHOOK_SECRET)
    await hook.start()
    config = _config(tmp_path, hook.url).read_text().replace("group_wait = 0", "group_wait = 600")
    (tmp_path / "once.toml").write_text(config)
    try:
        agent = await AgentProcess(tmp_path / "once.toml", "--once").start()
        assert await agent.wait() == 0, agent.stderr
    finally:
        await hook.stop()
    (delivery,) = hook.accepted()
    assert delivery.json["alerts"][0]["labels"]["alertname"] == "memory_in_use"
