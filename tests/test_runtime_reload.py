"""A reload is all or nothing: one that fails half-way leaves the running agent as it was."""

from __future__ import annotations

import logging
import sqlite3
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from infrawatch.config import load
from infrawatch.runtime.agent import Agent
from tests.agentproc import write_config
from tests.support_alert_logs import captured_logs

BASE = """
[logging]
level = "info"
format = "json"

[host]
enabled = false

[analysis.zscore]
threshold = 3.0
"""


def _rename_table(db: Path, old: str, new: str) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute(f"ALTER TABLE {old} RENAME TO {new}")
    finally:
        conn.close()


async def test_a_reload_whose_detector_restore_fails_changes_nothing(tmp_path: Path) -> None:
    config = write_config(tmp_path, BASE)
    agent = Agent(load(config).settings, producers=[], config_path=config)
    root = logging.getLogger()
    with captured_logs("info"):
        async with AsyncExitStack() as stack:
            await agent.startup(stack)
            assert agent.pipeline is not None
            settings, detectors = agent.settings, list(agent.pipeline.detectors)
            handlers, level = root.handlers[:], root.level
            # The new detectors are warmed up from stored samples: that read is what fails.
            _rename_table(tmp_path / "agent.db", "samples", "samples_away")
            config.write_text(
                config.read_text()
                .replace('level = "info"', 'level = "debug"')
                .replace('format = "json"', 'format = "console"')
                .replace("threshold = 3.0", "threshold = 4.0")
            )
            with pytest.raises(sqlite3.OperationalError, match="no such table"):
                await agent.reloader.reload()
            assert (root.handlers, root.level) == (handlers, level)  # logging as it was
            assert agent.settings is settings
            assert list(agent.pipeline.detectors) == detectors

            # Once the history reads again, the same file applies, every change of it.
            _rename_table(tmp_path / "agent.db", "samples_away", "samples")
            assert await agent.reloader.reload()
            assert root.level == logging.DEBUG
            assert agent.settings.logging.format == "console"
            assert agent.settings.analysis.zscore.threshold == 4.0
            assert list(agent.pipeline.detectors) != detectors
