"""SIGHUP: re-read and validate the configuration, apply what can change live.

The new configuration is loaded exactly like at start (same file, same command-line overrides,
the environment as it is now). If it is invalid, every problem is logged and the agent keeps
running on the configuration it has. If it is valid, the changes that can be applied in place
are applied (log level and format, host interval, detectors, scrape targets); the rest is
logged, as a warning, as needing a restart.

A reload is all or nothing: whatever can fail (loading, validating, building the new detectors
and warming them up from storage) runs first and touches nothing live; only then is every change
committed, by operations that do not fail. The reloader reaches the agent only through
`Reloadable`, the few operations it performs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel

from infrawatch.alerting.outbox import Outbox
from infrawatch.collectors.scrape_config import ScrapeTarget
from infrawatch.config import ConfigError, Settings, load
from infrawatch.detect import build_detectors
from infrawatch.detect.base import Detector
from infrawatch.detect.restore import restore_detectors
from infrawatch.logging import describe, get_logger
from infrawatch.storage.store import Store

log = get_logger("infrawatch.runtime.reload")


class Reloadable(Protocol):
    """What a reload reads from the running agent and the changes it makes to it."""

    @property
    def settings(self) -> Settings:
        """The configuration in force: what a reload compares the file against."""
        ...

    @property
    def store(self) -> Store:
        """The open store, which new detectors are warmed up from."""
        ...

    def apply_logging(self, level: str, fmt: Literal["auto", "json", "console"]) -> None:
        """Switch the log level and renderer."""
        ...

    def set_producer_interval(self, name: str, seconds: float) -> None:
        """Run producer `name` every `seconds` from its next tick on."""
        ...

    def replace_detectors(self, detectors: Sequence[Detector]) -> None:
        """Run `detectors` (already warmed up) from the next batch on."""
        ...

    def replace_settings(self, settings: Settings) -> None:
        """Make `settings` the configuration in force."""
        ...

    def replace_scrape_targets(self, targets: Sequence[ScrapeTarget]) -> None:
        """Scrape exactly `targets`: start new ones, stop removed ones, restart changed ones."""
        ...


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

    def __init__(
        self,
        target: Reloadable,
        *,
        config_path: Path | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> None:
        self._target = target
        # Re-read the way the configuration was loaded at start.
        self._config_path = config_path
        self._overrides = dict(overrides or {})
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
                # Nothing was applied (see `reload`): the agent runs on as it was.
                log.error("config.reload_failed", error=describe(exc))
            self.reloads += 1
            if not self._again:
                return

    async def aclose(self) -> None:
        """Cancel a reload in progress (shutdown)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def reload(self) -> bool:
        """Load, validate and apply the configuration; return False if it was rejected.

        Raises (having changed nothing) when preparing the change fails, e.g. a store read."""
        target = self._target
        source = str(self._config_path) if self._config_path else None
        log.info("config.reloading", path=source)
        try:
            loaded = await asyncio.to_thread(load, self._config_path, self._overrides)
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
        old, new = target.settings, loaded.settings
        paths = list(changed_paths(old, new))
        applied: list[str] = []
        restart: list[str] = []
        for path in paths:
            (applied if _live(path) else restart).append(path)
        detectors: list[Detector] | None = None
        if any(p.startswith("analysis.") for p in applied):
            # New detectors are warmed up from stored history, like at start-up. This is the
            # step that can fail, so it runs before anything live is touched.
            detectors = build_detectors(new.analysis)
            firing = await Outbox(target.store).firing_rules()
            await restore_detectors(
                target.store, detectors, firing=firing, max_history=new.storage.retention
            )
        # Commit: steps that cannot fail, with no await in between, so no batch sees half of it.
        if detectors is not None:
            target.replace_detectors(detectors)
        if any(p.startswith("logging.") for p in applied):
            target.apply_logging(new.logging.level, new.logging.format)
        if "host.interval" in applied:
            target.set_producer_interval("host", new.host.interval)
        if "scrape" in applied:
            target.replace_scrape_targets(new.scrape)
        target.replace_settings(new)
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


def _live(path: str) -> bool:
    """Whether the setting at `path` can be applied without a restart."""
    return path.startswith(("logging.", "analysis.")) or path in ("host.interval", "scrape")
