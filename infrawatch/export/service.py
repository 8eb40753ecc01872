"""Every configured exporter as one async resource the agent owns (runtime/agent.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Self

from infrawatch.export.config import ExportConfig
from infrawatch.export.cursor import sync_export_log
from infrawatch.export.exporter import Exporter
from infrawatch.runtime.stats import AgentStats, ExporterStats
from infrawatch.storage.store import Store


class ExportService:
    """Every configured exporter, as one async resource owned by the agent.

    Entering syncs the export log with the configuration (so it records writes only while
    exporters exist), opens each exporter and starts its task; `flush` is the shutdown step;
    leaving stops and closes them (before the store closes).
    """

    def __init__(
        self,
        configs: Sequence[ExportConfig],
        store: Store,
        stats: AgentStats,
        *,
        retention: float,
        external_labels: Mapping[str, str],
    ) -> None:
        self.configs = list(configs)
        self.store = store
        self.stats = stats
        self.retention = retention
        self.external_labels = dict(external_labels)
        self.exporters: list[Exporter] = []
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> Self:
        await sync_export_log(self.store, [c.name for c in self.configs])
        try:
            for cfg in self.configs:
                stats = self.stats.exporters[cfg.name] = ExporterStats(cfg.type)
                exporter = Exporter(
                    cfg,
                    self.store,
                    stats,
                    retention=self.retention,
                    external_labels=self.external_labels,
                )
                self.exporters.append(await self._stack.enter_async_context(exporter))
        except BaseException:
            await self._stack.aclose()
            raise
        for exporter in self.exporters:
            exporter.start()
        return self

    async def flush(self, budget: float) -> None:
        """Give every exporter one last delivery round, together, within `budget` seconds."""
        await asyncio.gather(*(e.flush(budget) for e in self.exporters))

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()
