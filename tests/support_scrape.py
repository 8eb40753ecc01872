"""Scrape targets for the tests: a real node_exporter, an app whose values are known, and hostile
servers (garbage, truncated, 500, redirect loops, oversized and gzip-bomb bodies, a server that
never answers, 100,000 series). Everything listens on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gzip
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder

from infrawatch.config import Settings
from tests.support_http import stop_process
from tests.support_receivers import free_port

BUCKETS = (0.1, 0.5, 1.0)  # seconds; the known app's histogram (and +Inf)
MANY = 100_000  # series of the cardinality-bomb target
READY_WITHIN = 20.0  # seconds for an external server to start answering


def wait_listening(port: int, proc: subprocess.Popen[bytes], limit: float = READY_WITHIN) -> None:
    """Block until something accepts connections on 127.0.0.1:`port` (another process)."""
    deadline = time.monotonic() + limit
    while True:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing listening on 127.0.0.1:{port} after {limit} s")
        time.sleep(0.02)


class NodeExporter:
    """Debian's prometheus-node-exporter on a free loopback port (`collectors`: only those)."""

    def __init__(self, *collectors: str) -> None:
        if shutil.which("prometheus-node-exporter") is None:
            raise AssertionError("Debian's prometheus-node-exporter is missing (make test)")
        self.port = free_port()
        self.args = [f"--web.listen-address=127.0.0.1:{self.port}"]
        if collectors:
            self.args += ["--collector.disable-defaults", *(f"--collector.{c}" for c in collectors)]
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{self.port}/metrics"

    def __enter__(self) -> NodeExporter:
        self.proc = subprocess.Popen(
            ["prometheus-node-exporter", *self.args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_listening(self.port, self.proc)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        stop_process(self.proc)


@functools.cache
def many_series_body() -> bytes:
    """A text-format body of MANY gauge series (about 3 MB)."""
    lines = ["# TYPE many_series gauge"]
    lines.extend(f'many_series{{i="{i}"}} {i}' for i in range(MANY))
    return ("\n".join(lines) + "\n").encode()


@functools.cache
def gzip_bomb(size: int = 64 * 1024 * 1024) -> bytes:
    """`size` bytes of newlines, gzip-compressed to a few tens of KiB."""
    return gzip.compress(b"\n" * size, compresslevel=1)


class MetricsApp:
    """An aiohttp app whose counter, gauge and histogram the test sets, and hostile routes.

    `on_scrape(n)` runs before the n-th /metrics answer is rendered (1-based), so a test can
    change the values between the agent's scrapes without timing anything.
    """

    def __init__(self, *, gzip_body: bool = False) -> None:
        self.registry = CollectorRegistry()
        self.counter = Counter("app_requests", "Requests served", registry=self.registry)
        self.gauge = Gauge("app_queue_depth", "Jobs waiting", registry=self.registry)
        self.histogram = Histogram(
            "app_latency_seconds", "Request latency", buckets=BUCKETS, registry=self.registry
        )
        self.gzip_body = gzip_body
        self.scrapes = 0
        self.requests: list[dict[str, str]] = []  # headers of every request, in order
        self.on_scrape: Callable[[int], None] | None = None
        self.scraped = asyncio.Condition()
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def base(self) -> str:
        """http://127.0.0.1:PORT."""
        return f"http://127.0.0.1:{self.port}"

    def reset_counter(self) -> None:
        """A process restart, as the scraper sees it: a new counter starting from zero."""
        self.registry.unregister(self.counter)
        self.counter = Counter("app_requests", "Requests served", registry=self.registry)

    async def __aenter__(self) -> MetricsApp:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/text", self._text)
        app.router.add_get("/garbage", self._garbage)
        app.router.add_get("/cut", self._cut)
        app.router.add_get("/500", self._error)
        app.router.add_get("/loop-a", self._loop_a)
        app.router.add_get("/loop-b", self._loop_b)
        app.router.add_get("/chain/{n}", self._chain)
        app.router.add_get("/big", self._big)
        app.router.add_get("/bomb", self._bomb)
        app.router.add_get("/many", self._many)
        app.router.add_get("/same-origin", self._same_origin)
        app.router.add_get("/other-origin", self._other_origin)
        app.router.add_get("/own-names", self._own_names)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait_scrapes(self, count: int, limit: float = 30.0) -> None:
        """Wait until /metrics has been answered `count` times in total."""
        async with self.scraped:
            await asyncio.wait_for(self.scraped.wait_for(lambda: self.scrapes >= count), limit)

    def _record(self, request: web.Request) -> None:
        self.requests.append(dict(request.headers))

    async def _metrics(self, request: web.Request) -> web.Response:
        self._record(request)
        n = self.scrapes + 1
        if self.on_scrape is not None:
            self.on_scrape(n)
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        body = encoder(self.registry)
        headers = {"Content-Type": content_type}
        if self.gzip_body and "gzip" in request.headers.get("Accept-Encoding", ""):
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        async with self.scraped:
            self.scrapes = n
            self.scraped.notify_all()
        return web.Response(body=body, headers=headers)

    async def _text(self, request: web.Request) -> web.Response:
        self._record(request)
        encoder, content_type = choose_encoder("text/plain")
        return web.Response(body=encoder(self.registry), headers={"Content-Type": content_type})

    @staticmethod
    def _plain(body: bytes) -> web.Response:
        return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4"})

    async def _garbage(self, request: web.Request) -> web.Response:
        return self._plain(b"<html><body>this is not {metrics} at all\n\x00\xff</body></html>\n")

    async def _cut(self, request: web.Request) -> web.Response:
        # Complete as HTTP, cut short as an exposition: the last line ends mid-label.
        return self._plain(b'# TYPE app_up gauge\napp_up 1\napp_cut{path="/api')

    async def _error(self, request: web.Request) -> web.Response:
        return web.Response(status=500, text="internal error\n")

    async def _loop_a(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop-b")

    async def _loop_b(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop-a")

    async def _chain(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(f"/chain/{int(request.match_info['n']) + 1}")

    async def _big(self, request: web.Request) -> web.Response:
        return self._plain(b"# padding\n" * 200_000)  # 2 MB

    async def _bomb(self, request: web.Request) -> web.Response:
        return web.Response(
            body=gzip_bomb(),
            headers={"Content-Type": "text/plain; version=0.0.4", "Content-Encoding": "gzip"},
        )

    async def _many(self, request: web.Request) -> web.Response:
        return self._plain(many_series_body())

    async def _same_origin(self, request: web.Request) -> web.Response:
        self._record(request)
        raise web.HTTPFound("/text")

    async def _other_origin(self, request: web.Request) -> web.Response:
        self._record(request)
        # localhost is the same machine but another origin than 127.0.0.1.
        raise web.HTTPFound(f"http://localhost:{self.port}/text")

    async def _own_names(self, request: web.Request) -> web.Response:
        return self._plain(
            b"# TYPE infrawatch_series gauge\ninfrawatch_series 7\n"
            b"# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 1.5\n"
        )


class RawServer:
    """A TCP server on 127.0.0.1 that answers every connection with `reply` then closes, or,
    with `reply=None`, accepts and never answers (the connection stays open until stop)."""

    def __init__(self, reply: bytes | None = None) -> None:
        self.reply = reply
        self.port = 0
        self.open_connections = 0
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        """http://127.0.0.1:PORT/metrics."""
        return f"http://127.0.0.1:{self.port}/metrics"

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.open_connections += 1
        self._writers.add(writer)
        try:
            if self.reply is None:
                await reader.read()  # until the client gives up and closes
                return
            await reader.readuntil(b"\r\n\r\n")
            writer.write(self.reply)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.open_connections -= 1
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


TRUNCATED_REPLY = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
    b"Content-Length: 10000\r\nConnection: close\r\n\r\n"
    b"# TYPE app_up gauge\napp_up 1\n"
)


async def fetch_metrics(url: str) -> str:
    """GET a /metrics page (the agent's) as text."""
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        assert resp.status == 200
        return await resp.text()


async def promtool_check(text: str) -> str:
    """`promtool check metrics` output for an exposition (empty when it is clean and promtool
    exits 0)."""
    check = await asyncio.create_subprocess_exec(
        "promtool",
        "check",
        "metrics",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await check.communicate(text.encode())
    output = (out + err).decode().strip()
    # Empty only when promtool exited 0 too: a crash with no output is not a clean check.
    return output if check.returncode == 0 else f"promtool exited {check.returncode}: {output}"


def scrape_toml(name: str, url: str, **fields: Any) -> str:
    """A [[scrape]] table for a config file."""
    lines = ["[[scrape]]", f'name = "{name}"', f'url = "{url}"']
    for key, value in fields.items():
        if isinstance(value, str):
            lines.append(f'{key} = "{value}"')
        elif isinstance(value, list):
            lines.append(f"{key} = {json.dumps(value)}")
        elif isinstance(value, dict):
            inner = ", ".join(f'{k} = "{v}"' for k, v in value.items())
            lines.append(f"{key} = {{ {inner} }}")
        else:
            lines.append(f"{key} = {value}")
    return "\n".join(lines) + "\n"


def agent_settings(tmp_path: Path, scrape: list[dict[str, Any]]) -> Settings:
    """Settings for an in-process agent: these targets only, HTTP on a free loopback port."""
    return Settings.model_validate(
        {
            "storage": {"path": str(tmp_path / "agent.db")},
            "http": {"listen": "127.0.0.1:0"},
            "host": {"enabled": False},
            "scrape": scrape,
        }
    )


def db_path(tmp_path: Path) -> Path:
    """Where tests.agentproc.write_config puts the database."""
    return tmp_path / "agent.db"
