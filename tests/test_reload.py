"""SIGHUP: a valid change is applied live; an invalid file is rejected and the agent carries on."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from infrawatch.config import Settings
from infrawatch.runtime.reload import changed_paths
from tests.agentproc import AgentProcess, write_config

BASE = """
[logging]
level = "info"

[host]
interval = 2
metrics = ["cpu", "memory"]

[http]
listen = "127.0.0.1:0"
"""


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[tuple[AgentProcess, Path, str]]:
    config = write_config(tmp_path, BASE)
    proc = await AgentProcess(config).start()
    try:
        listening = await proc.wait_for("http.listening")
        yield proc, config, f"http://127.0.0.1:{listening['port']}"
    finally:
        assert await proc.stop() == 0, proc.stderr


async def _host_stats(url: str) -> dict[str, float]:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as resp:
        text = await resp.text()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.labels.get("producer") == "host":
                out[s.name] = float(s.value)
    return out


async def test_sighup_applies_a_valid_change(agent: tuple[AgentProcess, Path, str]) -> None:
    proc, config, url = agent
    assert (await _host_stats(url))["infrawatch_producer_interval_seconds"] == 2.0
    changed = (
        config.read_text()
        .replace('level = "info"', 'level = "debug"')
        .replace("interval = 2", "interval = 0.2")
    )
    config.write_text(
        changed + "\n[agent]\nqueue_size = 50\n\n[analysis.zscore]\nthreshold = 4.0\n"
    )
    proc.signal(signal.SIGHUP)
    reloaded = await proc.wait_for("config.reloaded")
    assert set(reloaded["applied"]) == {
        "logging.level",
        "host.interval",
        "analysis.zscore.threshold",
    }
    assert reloaded["restart_required"] == ["agent.queue_size"]
    assert reloaded["level"] == "warning"  # the file and the running agent disagree until then
    # Debug logging is live: batch events (debug level) now appear.
    await proc.wait_for("pipeline.batch_done", count=3)
    # /metrics reports the interval the producer runs on now.
    stats = await _host_stats(url)
    assert stats["infrawatch_producer_interval_seconds"] == 0.2
    assert proc.proc is not None
    assert proc.proc.returncode is None


async def test_sighup_with_an_invalid_file_keeps_the_old_config(
    agent: tuple[AgentProcess, Path, str],
) -> None:
    proc, config, url = agent
    good = config.read_text()
    config.write_text(good.replace("interval = 2", 'interval = "soon"\nbogus = 1'))
    proc.signal(signal.SIGHUP)
    rejected = await proc.wait_for("config.reload_rejected")
    assert rejected["errors"] == 2
    problems = {e["problem"] for e in proc.named("config.reload_invalid")}
    assert any(p.startswith("host.interval:") for p in problems), problems
    assert "host.bogus: unknown key" in problems
    assert proc.named("config.reloaded") == []

    # Broken TOML is rejected the same way.
    config.write_text("[host\n")
    proc.signal(signal.SIGHUP)
    await proc.wait_for("config.reload_rejected", count=2)
    assert any("invalid TOML" in e["problem"] for e in proc.named("config.reload_invalid"))

    # Still running, on the old interval, and healthy.
    ticks = (await _host_stats(url))["infrawatch_producer_ticks_total"]
    async with aiohttp.ClientSession() as session, session.get(f"{url}/healthz") as resp:
        assert resp.status == 200
    stats = await _host_stats(url)
    assert stats["infrawatch_producer_interval_seconds"] == 2.0
    assert stats["infrawatch_producer_ticks_total"] >= ticks

    # Fixing the file and signalling again works.
    config.write_text(good.replace("interval = 2", "interval = 3"))
    proc.signal(signal.SIGHUP)
    reloaded = await proc.wait_for("config.reloaded")
    assert reloaded["applied"] == ["host.interval"]


def test_changed_paths_lists_leaves() -> None:
    old = Settings()
    new = Settings.model_validate(
        {"host": {"interval": 5, "per_cpu": False}, "logging": {"level": "debug"}}
    )
    assert sorted(changed_paths(old, new)) == ["host.interval", "host.per_cpu", "logging.level"]
    assert list(changed_paths(old, Settings())) == []
