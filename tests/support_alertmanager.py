"""Start Debian's prometheus-alertmanager on a free loopback port for a test, and stop it."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from tests.support_receivers import free_port

BINARY = "/usr/bin/prometheus-alertmanager"
CONFIG = """
route:
  receiver: blackhole
  group_wait: 1h
receivers:
  - name: blackhole
"""


class Alertmanager:
    """A running Alertmanager: its base URL and a reader for GET /api/v2/alerts."""

    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.url = url
        self._session = session

    async def alerts(self, **params: str) -> list[dict[str, Any]]:
        """GET /api/v2/alerts (active, unresolved alerts by default)."""
        async with self._session.get(f"{self.url}/api/v2/alerts", params=params) as resp:
            resp.raise_for_status()
            data: list[dict[str, Any]] = await resp.json()
            return data


def available() -> bool:
    """Whether the binary is installed (make test-deps installs it)."""
    return shutil.which(BINARY) is not None


@contextlib.asynccontextmanager
async def run_alertmanager(
    tmp_path: Path, port: int | None = None, route_prefix: str = ""
) -> AsyncIterator[Alertmanager]:
    """Run one Alertmanager (no cluster) until the block ends; waits for /-/ready.

    Its files go in the directory `tmp_path`; `port` defaults to a free one; `route_prefix`
    ("/x") serves everything under a path, like behind a reverse proxy."""
    port = port or free_port()
    config = tmp_path / "alertmanager.yml"
    config.write_text(CONFIG)
    storage = tmp_path / "am-data"
    storage.mkdir()
    log_path = tmp_path / "alertmanager.log"
    with log_path.open("wb") as log_file:
        proc = await asyncio.create_subprocess_exec(
            BINARY,
            f"--config.file={config}",
            f"--storage.path={storage}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--web.route-prefix={route_prefix or '/'}",
            "--cluster.listen-address=",
            stdout=log_file,
            stderr=log_file,
        )
        url = f"http://127.0.0.1:{port}{route_prefix}"
        try:
            async with aiohttp.ClientSession() as session:
                for _ in range(200):  # up to ~10 s: it usually answers within 0.3 s
                    if proc.returncode is not None:
                        raise RuntimeError(f"alertmanager exited: {log_path.read_text()}")
                    with contextlib.suppress(aiohttp.ClientError):
                        async with session.get(f"{url}/-/ready") as resp:
                            if resp.status == 200:
                                break
                    await asyncio.sleep(0.05)  # polling a starting process: no event to await
                else:
                    raise RuntimeError("alertmanager did not become ready")
                yield Alertmanager(url, session)
        finally:
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), timeout=10)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
