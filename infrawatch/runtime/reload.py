"""SIGHUP: re-read and validate the configuration, apply what can change live.

The new configuration is loaded exactly like at start (same file, same command-line overrides,
the environment as it is now). If it is invalid, every problem is logged and the agent keeps
running on the configuration it has. If it is valid, the changes that can be applied in place
are applied (log level and format, host interval, detectors); the rest is logged, as a warning,
as needing a restart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import TYPE_CHECKING

from pydantic import BaseModel

from infrawatch import logging as iw_logging
from infrawatch.config import ConfigError, Settings, load
from infrawatch.detect import build_detectors
from infrawatch.detect.restore import restore_detectors
from infrawatch.logging import get_logger

if TYPE_CHECKING:
    from infrawatch.runtime.agent import Agent

log = get_logger("infrawatch.runtime.reload")


def changed_paths(old: BaseModel, new: BaseModel, prefix: str = "") -> Iterator[str]:
    """The dotted paths of every leaf setting that differs between `old` and `new`."""
    for name in type(old).model_fields:
        a, b = getattr(old, name), getattr(new, name)
        path = f"{prefix}{name}"
        if isinstance(a, BaseModel) and isinstance(b, BaseModel) and type(a) is type(b):
            yield from changed_paths(a, b, f"{path}.")
        elif a != b:
            yield path


class Reloader:
    """Runs one reload at a time; a SIGHUP during a reload queues exactly one more."""

    def __init__(self, agent: Agent) -> None:
        self._agent = agent
        self._task: asyncio.Task[None] | None = None
        self._again = False
        self.reloads = 0  # completed reload attempts (valid or not)

    def request(self) -> None:
        """Signal handler: start a reload, or queue one if a reload is running."""
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.get_running_loop().create_task(self._run(), name="config-reload")

    async def _run(self) -> None:
        while True:
            self._again = False
            try:
                await self.reload()
            except Exception as exc:
                # A failed apply must never take the agent down; the old settings stay in place.
                log.error("config.reload_failed", error=f"{type(exc).__name__}: {exc}")
            self.reloads += 1
            if not self._again:
                return

    async def aclose(self) -> None:
        """Cancel a reload in progress (shutdown)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def reload(self) -> bool:
        """Load, validate and apply the configuration; return False if it was rejected."""
        agent = self._agent
        source = str(agent.config_path) if agent.config_path else None
        log.info("config.reloading", path=source)
        try:
            loaded = await asyncio.to_thread(load, agent.config_path, agent.overrides)
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("config.reload_invalid", path=source, problem=problem)
            log.error(
                "config.reload_rejected",
                path=source,
                errors=len(exc.problems),
                action="kept the running configuration",
            )
            return False
        old, new = agent.settings, loaded.settings
        paths = list(changed_paths(old, new))
        applied: list[str] = []
        restart: list[str] = []
        for path in paths:
            (applied if _live(path) else restart).append(path)
        await self._apply(old, new, applied)
        agent.settings = new
        # Settings that only a restart applies are worth a warning: the file says one thing and
        # the running agent does another until then.
        (log.warning if restart else log.info)(
            "config.reloaded",
            path=source,
            changed=len(paths),
            applied=applied,
            restart_required=restart,
        )
        return True

    async def _apply(self, old: Settings, new: Settings, applied: list[str]) -> None:
        agent = self._agent
        if any(p.startswith("logging.") for p in applied):
            iw_logging.configure(new.logging.level, new.logging.format)
        if "host.interval" in applied:
            for producer in agent.producers:
                if producer.name == "host":
                    agent.set_producer_interval(producer.name, new.host.interval)
        if any(p.startswith("analysis.") for p in applied) and agent.pipeline is not None:
            # New detectors are warmed up from stored history, like at start-up.
            detectors = build_detectors(new.analysis)
            await restore_detectors(agent.store, detectors, max_history=new.storage.retention)
            agent.pipeline.set_detectors(detectors)


def _live(path: str) -> bool:
    """Whether the setting at `path` can be applied without a restart."""
    return path.startswith(("logging.", "analysis.")) or path == "host.interval"
