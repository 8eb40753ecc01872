"""Capture the agent's structlog events in-process (as parsed JSON lines) and await them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import structlog

from infrawatch.logging import configure


class LogEvents:
    """A stream for the agent's JSON log handler: keeps every line, parsed, and wakes waiters."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self._changed = asyncio.Event()

    def write(self, text: str) -> int:
        """Called by the logging handler with one rendered record (plus newline)."""
        for line in text.splitlines():
            if line.strip():
                self.raw.append(line)
                self.events.append(json.loads(line))
        self._changed.set()
        return len(text)

    def flush(self) -> None:
        """Nothing is buffered."""

    def isatty(self) -> bool:
        """Never a terminal: JSON lines."""
        return False

    def named(self, event: str) -> list[dict[str, Any]]:
        """Captured events with this name, in order."""
        return [e for e in self.events if e.get("event") == event]

    async def wait_until(self, predicate: Callable[[LogEvents], bool]) -> None:
        """Wait until `predicate(self)` holds (re-checked after every log line)."""
        while not predicate(self):
            self._changed.clear()
            await self._changed.wait()


@contextlib.contextmanager
def captured_logs(level: str = "debug") -> Iterator[LogEvents]:
    """Route structlog (via the agent's own `configure`) into a `LogEvents`; restore after."""
    root = logging.getLogger()
    handlers, root_level = root.handlers[:], root.level
    saved = structlog.get_config()
    events = LogEvents()
    configure(level, "json", stream=events)
    try:
        yield events
    finally:
        root.handlers[:] = handlers
        root.setLevel(root_level)
        structlog.configure(**saved)
