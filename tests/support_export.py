"""Receivers for the export tests: Debian's real Prometheus (remote-write receiver) and an
OTLP/HTTP receiver built here on opentelemetry-proto, both on 127.0.0.1.

The OTLP receiver decodes every request (gzip, protobuf), checks the headers, keeps every data
point it accepted, and can be told to answer the next requests with 503/429/400, garbage, or
nothing at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import shutil
import signal
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)

from tests.support_receivers import free_port

PROMETHEUS = "/usr/bin/prometheus"
PROMETHEUS_CONFIG = "global:\n  scrape_interval: 1h\n"  # scrapes nothing: remote-write only

Attributes = tuple[tuple[str, str], ...]
PointKey = tuple[str, str, Attributes]  # metric name, unit, data point attributes


def prometheus_available() -> bool:
    """Whether Debian's prometheus is installed (scripts/install-test-deps.sh)."""
    return shutil.which(PROMETHEUS) is not None


class Prometheus:
    """A real Prometheus with the remote-write receiver on; stop and start it on the same port
    and storage to simulate an outage."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.proc: asyncio.subprocess.Process | None = None
        self.log_path = directory / "prometheus.log"
        (directory / "prometheus.yml").write_text(PROMETHEUS_CONFIG)

    @property
    def url(self) -> str:
        """The base URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def write_url(self) -> str:
        """The remote-write endpoint."""
        return f"{self.url}/api/v1/write"

    async def start(self) -> None:
        """Start and wait until /-/ready answers 200."""
        with self.log_path.open("ab") as log_file:
            self.proc = await asyncio.create_subprocess_exec(
                PROMETHEUS,
                f"--config.file={self.directory / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-remote-write-receiver",
                stdout=log_file,
                stderr=log_file,
            )
        async with aiohttp.ClientSession() as session:
            for _ in range(400):  # up to ~20 s; it is usually ready within 1 s
                if self.proc.returncode is not None:
                    raise RuntimeError(f"prometheus exited: {self.log_path.read_text()[-2000:]}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"{self.url}/-/ready") as resp:
                        if resp.status == 200:
                            return
                await asyncio.sleep(0.05)  # polling a starting process: no event to await
        raise RuntimeError("prometheus did not become ready")

    async def stop(self) -> None:
        """SIGTERM and wait (it flushes its head to the WAL)."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout=20)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        self.proc = None

    async def samples(self, selector: str) -> dict[Attributes, list[tuple[int, float]]]:
        """Raw samples of every series matching `selector` over the last day: labels →
        [(timestamp ms, value)], from /api/v1/query with a range vector."""
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.url}/api/v1/query", params={"query": f"{selector}[1d]"}) as resp,
        ):
            body = await resp.json()
        if body.get("status") != "success":
            raise AssertionError(f"query failed: {body}")
        out: dict[Attributes, list[tuple[int, float]]] = {}
        for series in body["data"]["result"]:
            labels = tuple(sorted(series["metric"].items()))
            out[labels] = [(round(float(t) * 1000), float(v)) for t, v in series["values"]]
        return out


@dataclass
class OtlpRequest:
    """One request as the OTLP receiver saw it."""

    headers: dict[str, str]
    status: int
    request: ExportMetricsServiceRequest | None
    points: int = 0


Behaviour = Callable[[web.Request, ExportMetricsServiceRequest], Any]


@dataclass
class OtlpReceiver:
    """An OTLP/HTTP metrics receiver (POST /v1/metrics, protobuf, gzip) on 127.0.0.1."""

    required_headers: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    requests: list[OtlpRequest] = field(default_factory=list)
    # Accepted points: (name, unit, attributes) → [(time_unix_nano, value)], in arrival order.
    points: dict[PointKey, list[tuple[int, float]]] = field(default_factory=dict)
    resources: list[dict[str, str]] = field(default_factory=list)
    # Scripted answers for the next requests: (status, body, headers), "hang" or "garbage".
    script: deque[Any] = field(default_factory=deque)
    # Answer 400 to any request holding a point with this value (a "bad sample").
    poison: float | None = None
    keep_points: bool = True  # False: count them only (a test measuring the sender's memory)
    problems: list[str] = field(default_factory=list)
    released: asyncio.Event = field(default_factory=asyncio.Event)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """The base URL an exporter is given (it appends /v1/metrics)."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Listen (again) on the receiver's port."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/metrics", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def stop(self) -> None:
        """Stop listening; a request held by "hang" is released first."""
        self.released.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def then(self, *answers: Any) -> None:
        """Answer the next requests with these, in order."""
        self.script.extend(answers)

    def total_points(self) -> int:
        """Accepted data points, repeats included."""
        return sum(len(v) for v in self.points.values())

    async def wait_until(self, predicate: Callable[[OtlpReceiver], bool]) -> None:
        """Wait until `predicate(self)` holds (re-checked after every request)."""
        async with self._changed:
            await self._changed.wait_for(lambda: predicate(self))

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        headers = dict(request.headers)
        status, body, reply_headers = 200, b"", {}
        decoded: ExportMetricsServiceRequest | None = None
        problem = self._check(request)
        if problem:
            status, body = 400, problem.encode()
        else:
            decoded = ExportMetricsServiceRequest()
            try:
                # aiohttp's server already inflates a body sent with Content-Encoding: gzip
                # (so it was valid gzip); inflate here in case a version does not.
                body_bytes = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
                decoded.ParseFromString(body_bytes)
            except Exception as exc:
                self.problems.append(f"undecodable body: {exc}")
                status, body, decoded = 400, b"undecodable body", None
        answer = self.script.popleft() if self.script and decoded is not None else None
        if answer == "hang":
            self.requests.append(OtlpRequest(headers, 0, decoded))
            await self._notify()
            await self.released.wait()
            raise web.HTTPServiceUnavailable()
        if answer == "garbage":
            # 200 with a body that is no ExportMetricsServiceResponse.
            status, body = 200, b"\xff\xfe<html>not protobuf"
        elif answer is not None:
            status, body, reply_headers = answer
        elif decoded is not None and self.poison is not None and self._has(decoded, self.poison):
            status, body = 400, b"bad sample: poison value"
        count = 0
        if decoded is not None and 200 <= status < 300:
            count = self._keep(decoded)
        self.requests.append(OtlpRequest(headers, status, decoded, count))
        await self._notify()
        return web.Response(
            status=status,
            body=body,
            headers={"Content-Type": "application/x-protobuf", **reply_headers},
        )

    def _check(self, request: web.Request) -> str:
        if request.headers.get("Content-Type") != "application/x-protobuf":
            return f"bad content type {request.headers.get('Content-Type')}"
        if request.headers.get("Content-Encoding") != "gzip":
            return "body must be gzip"
        for key, value in self.required_headers.items():
            if request.headers.get(key) != value:
                return f"missing or wrong header {key}"
        return ""

    @staticmethod
    def _has(decoded: ExportMetricsServiceRequest, value: float) -> bool:
        return any(
            p.as_double == value
            for rm in decoded.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
            for p in m.gauge.data_points
        )

    def _keep(self, decoded: ExportMetricsServiceRequest) -> int:
        count = 0
        for rm in decoded.resource_metrics:
            self.resources.append({a.key: a.value.string_value for a in rm.resource.attributes})
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.WhichOneof("data") != "gauge":
                        self.problems.append(f"{metric.name} is not a gauge")
                    for p in metric.gauge.data_points:
                        count += 1
                        if not self.keep_points:
                            continue
                        attrs = tuple(sorted((a.key, a.value.string_value) for a in p.attributes))
                        key = (metric.name, metric.unit, attrs)
                        self.points.setdefault(key, []).append((p.time_unix_nano, p.as_double))
        return count

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()


def partial_success(rejected: int, message: str) -> bytes:
    """An ExportMetricsServiceResponse body reporting `rejected` data points."""
    response = ExportMetricsServiceResponse()
    response.partial_success.rejected_data_points = rejected
    response.partial_success.error_message = message
    return response.SerializeToString()


@contextlib.asynccontextmanager
async def junk_server(port: int) -> Any:
    """A TCP server on `port` that answers any request with bytes that are not HTTP."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await reader.read(1024)
            writer.write(b"\x00\x01garbage that is not HTTP\r\n\r\n")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, reuse_address=True)
    try:
        yield server
    finally:
        server.close()
        await server.wait_closed()
