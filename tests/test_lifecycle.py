"""The agent as a real process: cycles, SIGTERM, counts that add up, a clean exit."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import sqlite3
from pathlib import Path

import aiohttp

from tests.agentproc import AgentProcess, write_config

CONFIG = """
[host]
interval = 1
top_processes = 3
process_interval = 1

[agent]
shutdown_deadline = 10
"""

DIRTY_SHUTDOWN_MARKERS = ("Task was destroyed", "Unclosed", "ResourceWarning", "Traceback")


def _rows(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        (count,) = conn.execute("SELECT count(*) FROM samples").fetchone()
    return int(count)


async def test_sigterm_drains_and_exits_cleanly(tmp_path: Path) -> None:
    config = write_config(tmp_path, CONFIG)
    agent = await AgentProcess(
        config, "--log-level", "debug", env={"PYTHONWARNINGS": "default"}
    ).start()
    await agent.wait_for("pipeline.batch_done", count=3)
    agent.signal(signal.SIGTERM)
    code = await agent.wait()

    assert code == 0, agent.stderr
    for line in agent.raw_lines:
        json.loads(line)  # every stdout line is one JSON object
    stopped = agent.named("agent.stopped")
    assert len(stopped) == 1
    final = stopped[0]
    assert final["collected"] > 0
    assert final["collected"] == final["stored"] + final["dropped"]
    assert final["stored"] == _rows(tmp_path / "agent.db")
    (first,) = agent.named("producer.first_collection")
    assert first["producer"] == "host"
    assert first["samples"] > 0
    assert {"timestamp", "level", "event", "logger"} <= final.keys()
    assert final["timestamp"].endswith("Z")
    for marker in DIRTY_SHUTDOWN_MARKERS:
        assert marker not in agent.stderr
        assert all(marker not in line for line in agent.raw_lines)


async def test_sigint_is_graceful_too(tmp_path: Path) -> None:
    agent = await AgentProcess(write_config(tmp_path, CONFIG), "--log-level", "debug").start()
    await agent.wait_for("pipeline.batch_done")
    agent.signal(signal.SIGINT)
    assert await agent.wait() == 0
    assert agent.named("agent.stopping")[0]["signal"] == "SIGINT"


async def test_second_signal_exits_at_once(tmp_path: Path) -> None:
    # Hold the database's write lock so the drain is stuck waiting on SQLite's busy timeout:
    # the agent is then provably mid-shutdown when the second signal arrives.
    config = write_config(tmp_path, CONFIG.replace("interval = 1", "interval = 0.2"))
    agent = await AgentProcess(config, "--log-level", "debug").start()
    await agent.wait_for("pipeline.batch_done")
    locker = sqlite3.connect(tmp_path / "agent.db", isolation_level=None)
    try:
        locker.execute("BEGIN EXCLUSIVE")
        # Once a write has failed, the drain must retry it and will block on the lock.
        await agent.wait_for("store.write_failed")
        agent.signal(signal.SIGTERM)
        await agent.wait_for("agent.stopping")
        agent.signal(signal.SIGTERM)
        code = await agent.wait()
    finally:
        locker.close()
    assert code == 130
    assert agent.named("agent.forced_exit")
    assert not agent.named("agent.stopped")


async def test_port_in_use_is_one_clear_error_not_a_traceback(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(tmp_path, f'[http]\nenabled = true\nlisten = "127.0.0.1:{port}"\n')
        agent = await AgentProcess(config).start()
        code = await agent.wait()
    assert code == 1
    (failed,) = agent.named("agent.start_failed")
    assert f"cannot listen on 127.0.0.1:{port}" in failed["error"]
    assert "Traceback" not in agent.stderr
    assert all("Traceback" not in line for line in agent.raw_lines)


async def test_a_hung_host_call_does_not_block_shutdown(tmp_path: Path) -> None:
    # psutil reads <procfs>/filesystems first; as a FIFO nobody writes to, that open never
    # returns: a stand-in for statvfs on a dead NFS mount.
    procfs = tmp_path / "proc"
    procfs.mkdir()
    shutil.copy("/proc/stat", procfs / "stat")
    os.mkfifo(procfs / "filesystems")
    config = write_config(
        tmp_path,
        f"""
[host]
interval = 0.2
metrics = ["filesystem"]
procfs_path = "{procfs}"
[http]
enabled = true
listen = "127.0.0.1:0"
[agent]
shutdown_deadline = 2
""",
    )
    agent = await AgentProcess(config).start()
    try:
        listening = await agent.wait_for("http.listening")
        url = f"http://127.0.0.1:{listening['port']}/healthz"
        # /healthz turning 503 for "host" proves the tick is stuck in the blocked call.
        async with aiohttp.ClientSession() as session:
            for _ in range(200):  # bounded: 200 × 0.05 s
                async with session.get(url) as response:
                    if response.status == 503 and "host" in (await response.json())["stale"]:
                        break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the host producer never went stale")
        agent.signal(signal.SIGTERM)
        code = await agent.wait()
    finally:
        await agent.stop()
    assert code == 0, agent.stderr
    assert agent.named("agent.stopped")
