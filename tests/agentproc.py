"""Run the real agent as a subprocess and follow its JSON log lines (shared by lifecycle tests)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

Event = dict[str, Any]


def write_config(tmp_path: Path, text: str, *, name: str = "infrawatch.toml") -> Path:
    """Write a TOML config under tmp_path; `storage.path` defaults to tmp_path/agent.db."""
    path = tmp_path / name
    if "[storage]" not in text:
        text += f'\n[storage]\npath = "{tmp_path / "agent.db"}"\n'
    if "[http]" not in text:
        text += "\n[http]\nenabled = false\n"
    path.write_text(text)
    return path


async def run_cli(*args: str) -> tuple[int, str, str]:
    """`python -m infrawatch ARGS` to completion: (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "infrawatch",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


class AgentProcess:
    """`python -m infrawatch run` with a config; collects stdout events and stderr text."""

    def __init__(
        self,
        config: Path,
        *args: str,
        env: Mapping[str, str] | None = None,
        command: str = "run",
    ) -> None:
        self.config = config
        self.args = args
        self.command = command
        self.env = {**os.environ, **(env or {})}
        # The agent must not inherit settings from the developer's shell.
        for key in list(self.env):
            if key.startswith("INFRAWATCH_") and key not in (env or {}):
                del self.env[key]
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        self.events: list[Event] = []
        self.raw_lines: list[str] = []
        self.stderr = ""
        self.proc: asyncio.subprocess.Process | None = None
        self._changed = asyncio.Condition()
        self._readers: list[asyncio.Task[None]] = []
        self._stdout_done = False

    async def start(self) -> AgentProcess:
        """Spawn the agent."""
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "infrawatch",
            self.command,
            "--config",
            str(self.config),
            "--log-format",
            "json",
            *self.args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env,
        )
        self._readers = [
            asyncio.create_task(self._read_stdout()),
            asyncio.create_task(self._read_stderr()),
        ]
        return self

    async def _read_stdout(self) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            text = line.decode()
            async with self._changed:
                self.raw_lines.append(text)
                # A non-JSON line stays in raw_lines for the tests that check every line.
                with contextlib.suppress(json.JSONDecodeError):
                    self.events.append(json.loads(text))
                self._changed.notify_all()
        async with self._changed:
            self._stdout_done = True
            self._changed.notify_all()

    async def _read_stderr(self) -> None:
        assert self.proc is not None
        assert self.proc.stderr is not None
        data = await self.proc.stderr.read()
        self.stderr = data.decode(errors="replace")

    async def wait_for(
        self, event: str, predicate: Callable[[Event], bool] | None = None, *, count: int = 1
    ) -> Event:
        """Wait until the `count`-th log event named `event` (matching `predicate`) appears."""

        def found() -> Event | None:
            hits = [
                e
                for e in self.events
                if e.get("event") == event and (predicate is None or predicate(e))
            ]
            return hits[count - 1] if len(hits) >= count else None

        async with self._changed:
            while (hit := found()) is None:
                if self._stdout_done:
                    raise AssertionError(
                        f"agent exited before logging {event!r}; stderr:\n{self.stderr}\n"
                        f"stdout tail:\n{''.join(self.raw_lines[-20:])}"
                    )
                await self._changed.wait()
        return hit

    def signal(self, sig: int = signal.SIGTERM) -> None:
        """Send `sig` to the agent."""
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait(self) -> int:
        """Wait for exit and for the output readers; return the exit code."""
        assert self.proc is not None
        code = await self.proc.wait()
        await asyncio.gather(*self._readers)
        return code

    async def stop(self) -> int:
        """SIGTERM and wait (for fixtures' clean-up); kills if it is already gone quietly."""
        if self.proc is None:
            return 0
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return await asyncio.wait_for(self.wait(), timeout=30)
            except TimeoutError:
                self.proc.kill()
                await self.wait()
                raise AssertionError(
                    "agent did not exit within 30 s of SIGTERM; stdout tail:\n"
                    + "".join(self.raw_lines[-30:])
                    + f"stderr:\n{self.stderr}"
                ) from None
        return await self.wait()

    def named(self, event: str) -> list[Event]:
        """Every logged event named `event`."""
        return [e for e in self.events if e.get("event") == event]
