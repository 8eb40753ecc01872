"""`run --once`: one cycle of host samples with plausible values."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import sqlite3
from pathlib import Path

import psutil

from tests.agentproc import AgentProcess, write_config


def _samples(db: Path) -> list[tuple[str, dict[str, str], float]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT name, labels, value FROM samples JOIN series ON series.id = series_id"
        ).fetchall()
    return [(name, json.loads(labels), value) for name, labels, value in rows]


async def test_once_stores_one_plausible_cycle(tmp_path: Path) -> None:
    agent = await AgentProcess(write_config(tmp_path, "[host]\ninterval = 5\n"), "--once").start()
    assert await agent.wait() == 0, agent.stderr
    final = agent.named("agent.stopped")[0]
    rows = _samples(tmp_path / "agent.db")
    assert final["stored"] == len(rows) == final["collected"]

    names = {name for name, _, _ in rows}
    assert {
        "system.cpu.utilization",
        "system.cpu.load_average.1m",
        "system.memory.utilization",
        "system.memory.limit",
        "system.paging.utilization",
        "system.filesystem.utilization",
        "system.processes.count",
        "process.memory.usage",
    } <= names
    for name, labels, value in rows:
        if name.endswith(".utilization"):
            assert 0.0 <= value <= 1.0, (name, labels, value)
        if name == "system.filesystem.utilization":
            assert labels["type"] not in ("tmpfs", "overlay", "proc")
    (memory_total,) = [v for n, _, v in rows if n == "system.memory.limit"]
    assert memory_total == psutil.virtual_memory().total
    # Counters become rates only from the second reading: a single cycle has none.
    assert "system.network.io" not in names
    assert "system.disk.io" not in names


async def test_host_disabled_once_stores_nothing(tmp_path: Path) -> None:
    agent = await AgentProcess(
        write_config(tmp_path, "[host]\nenabled = false\n"), "--once"
    ).start()
    assert await agent.wait() == 0, agent.stderr
    final = agent.named("agent.stopped")[0]
    assert final["collected"] == final["stored"] == 0


async def test_once_does_not_need_the_http_port(tmp_path: Path) -> None:
    # `run --once` next to a running agent (which holds the port) must still work: a single
    # cycle has nothing to serve and must not try to bind.
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = write_config(
            tmp_path, f'[host]\nmetrics = ["memory"]\n[http]\nlisten = "127.0.0.1:{port}"\n'
        )
        agent = await AgentProcess(config, "--once").start()
        assert await agent.wait() == 0, agent.stderr
    assert agent.named("agent.stopped")[0]["stored"] > 0
    assert not agent.named("http.bind_failed")


async def test_a_process_with_an_undecodable_name_is_stored(tmp_path: Path) -> None:
    # Any local user can start a program whose name is not UTF-8; it must not cost a batch.
    odd = tmp_path / os.fsdecode(b"y\xffz")
    shutil.copy("/bin/sleep", odd)
    sleeper = await asyncio.create_subprocess_exec(odd, "60")
    try:
        config = write_config(tmp_path, "[host]\nmetrics = ['processes']\ntop_processes = 10000\n")
        agent = await AgentProcess(config, "--once").start()
        assert await agent.wait() == 0, agent.stderr
    finally:
        sleeper.kill()
        await sleeper.wait()
    final = agent.named("agent.stopped")[0]
    assert final["stored"] == final["collected"] > 0
    names = {labels.get("name") for _, labels, _ in _samples(tmp_path / "agent.db")}
    assert "y\ufffdz" in names
