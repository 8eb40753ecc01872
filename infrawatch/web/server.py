"""The HTTP server: /metrics (Prometheus), /healthz (liveness) and /readyz (readiness).

One owner: `HttpServer` is an async context manager the agent enters at start-up and leaves at
shutdown. The server only answers these three GET/HEAD paths; everything else is a plain 404
or 405, and nothing is served from disk. It is aiohttp's low-level server (no router) so that
malformed requests, too, get a bare `400: Bad Request` instead of aiohttp's default answer,
which quotes the offending request line or header back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from http import HTTPStatus
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.process_collector import ProcessCollector

from infrawatch.config import HttpConfig
from infrawatch.detect.base import Detector
from infrawatch.errors import StartupError
from infrawatch.logging import get_logger
from infrawatch.runtime.latest import LatestValues
from infrawatch.runtime.queue import BatchQueue
from infrawatch.runtime.schedule import backoff_ticks
from infrawatch.runtime.stats import AgentStats
from infrawatch.web.exposition import AgentCollector

if TYPE_CHECKING:
    from infrawatch.runtime.agent import Agent

log = get_logger("infrawatch.web.server")

STALE_FACTOR = 3.0  # a producer is stale when its last tick ended more than 3 intervals ago
SHUTDOWN_TIMEOUT = 1.0  # seconds an in-flight scrape may take to finish at shutdown


class _AgentAdapter:
    """The agent as the /metrics collector sees it (see exposition.AgentView)."""

    def __init__(self, agent: Agent) -> None:
        self._agent = agent
        self.stats: AgentStats = agent.stats
        self.queue: BatchQueue = agent.queue
        self.latest: LatestValues = agent.latest

    @property
    def alerter(self) -> object:
        """The agent's current alerter."""
        return self._agent.alerter

    def detectors(self) -> Sequence[Detector]:
        """The pipeline's detectors (none before start-up)."""
        pipeline = self._agent.pipeline
        return pipeline.detectors if pipeline is not None else ()

    def buffered_samples(self) -> int:
        """Samples waiting for a database write."""
        pipeline = self._agent.pipeline
        return pipeline.pending_samples if pipeline is not None else 0


def health_report(stats: AgentStats, now: float, started: float) -> tuple[bool, dict[str, Any]]:
    """(healthy, JSON body): every producer finished a tick within 3× its interval.

    `now` and `started` are monotonic seconds; a producer that has not finished its first tick
    yet is measured from `started`. Ticks the scheduler skips on purpose (backoff after
    repeated failures) extend the allowance, so a source that is down is reported by its error
    counters, not by restarting the agent.
    """
    producers: dict[str, Any] = {}
    stale: list[str] = []
    for name, p in sorted(stats.producers.items()):
        last = p.last_tick_done if p.last_tick_done is not None else started
        age = max(0.0, now - last)
        skipped = backoff_ticks(p.consecutive_failures, p.interval) if p.interval > 0 else 0
        limit = STALE_FACTOR * p.interval * (1 + skipped)
        ok = age <= limit
        producers[name] = {
            "ok": ok,
            "seconds_since_tick": round(age, 3),
            "limit_seconds": round(limit, 3),
            "consecutive_failures": p.consecutive_failures,
        }
        if not ok:
            stale.append(name)
    body: dict[str, Any] = {"status": "ok" if not stale else "stale", "producers": producers}
    if stale:
        body["stale"] = stale
    return not stale, body


class HttpServer:
    """The aiohttp server of one agent; `port` is the bound port once entered."""

    def __init__(
        self, agent: Agent, config: HttpConfig, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.config = config
        self.clock = clock
        self.started = clock()
        self.port: int | None = None
        self._agent = agent
        self.registry = CollectorRegistry(auto_describe=False)
        self.collector = AgentCollector(_AgentAdapter(agent), config.detector_states)
        self.registry.register(self.collector)
        self._render_lock = asyncio.Lock()
        # The agent's own CPU seconds, RSS, open fds (Linux /proc/self; absent elsewhere).
        ProcessCollector(namespace="infrawatch", registry=self.registry)
        self._runner: web.ServerRunner | None = None
        self._routes: dict[str, Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]] = {
            "/metrics": self._metrics,
            "/healthz": self._healthz,
            "/readyz": self._readyz,
        }

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """Route one request: three GET/HEAD paths, else a plain 404 or 405 (no echo, no files)."""
        route = self._routes.get(request.path)
        response: web.StreamResponse
        if route is None:
            response = web.Response(status=404, text="404: Not Found")
        elif request.method not in ("GET", "HEAD"):
            response = web.Response(
                status=405, text="405: Method Not Allowed", headers={"Allow": "GET,HEAD"}
            )
        else:
            response = await route(request)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "no-store"
        return response

    async def __aenter__(self) -> Self:
        runner = web.ServerRunner(
            _QuietServer(self.handle, access_log=None),
            handle_signals=False,
            shutdown_timeout=SHUTDOWN_TIMEOUT,
        )
        await runner.setup()
        site = web.TCPSite(runner, self.config.host, self.config.port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            log.error("http.bind_failed", listen=self.config.listen, error=exc.strerror)
            raise StartupError(
                f"cannot listen on {self.config.listen}: {exc.strerror}"
                " (set http.listen, or http.enabled = false)"
            ) from None
        self._runner = runner
        self.started = self.clock()
        address = runner.addresses[0]
        self.port = int(address[1])
        log.info("http.listening", host=address[0], port=self.port)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- handlers --------------------------------------------------------------------------------

    async def _metrics(self, request: web.BaseRequest) -> web.Response:
        async with self._render_lock:
            # Copy the state on the loop, format it in a thread: a 10,000-series scrape takes
            # ~0.1 s of CPU, which must not stall producers' schedules or the pipeline.
            self.collector.snapshot()
            body = await asyncio.to_thread(generate_latest, self.registry)
        response = web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
        # Compressed only when the scraper asks (Prometheus does); aiohttp checks Accept-Encoding.
        response.enable_compression()
        return response

    async def _healthz(self, request: web.BaseRequest) -> web.Response:
        # Answering at all means the event loop turns; the body says whether producers keep up.
        healthy, body = health_report(self._agent.stats, self.clock(), self.started)
        return web.json_response(body, status=200 if healthy else 503)

    async def _readyz(self, request: web.BaseRequest) -> web.Response:
        stats = self._agent.stats
        body = {"store_open": stats.store_open, "first_batch_stored": stats.first_batch_stored}
        ready = stats.store_open and stats.first_batch_stored
        body_out: dict[str, Any] = {"status": "ready" if ready else "not ready", **body}
        return web.json_response(body_out, status=200 if ready else 503)


class _QuietRequestHandler(web.RequestHandler):
    """aiohttp's connection handler, except that error answers never quote the request."""

    server: _QuietServer  # set by the server that made this handler

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """The status alone as the body: aiohttp's parser errors (bad method, over-long line,
        bad header) would otherwise echo the offending bytes back."""
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
        response = super().handle_error(request, status, exc, f"{status}: {phrase}")
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    def log_exception(self, *args: Any, **kw: Any) -> None:
        """A malformed request is the client's problem: one line, no traceback, no request
        bytes (they would land in the log), and fewer lines as a scanner keeps going. A failure
        in our own handlers keeps its traceback."""
        exc = kw.get("exc_info")
        if not isinstance(exc, HttpProcessingError):
            super().log_exception(*args, **kw)
            return
        self.server.malformed += 1
        count = self.server.malformed
        if count & (count - 1) == 0:  # logged once per doubling of the count
            log.warning("http.malformed_request", error=type(exc).__name__, total=count)


class _QuietServer(web.Server):
    """aiohttp's low-level server, with `_QuietRequestHandler` per connection."""

    def __init__(
        self, handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]], **kwargs: Any
    ) -> None:
        super().__init__(handler, **kwargs)
        self._handler_kwargs = kwargs
        self.malformed = 0  # malformed requests since start

    def __call__(self) -> web.RequestHandler:
        handler = _QuietRequestHandler(
            self, loop=asyncio.get_running_loop(), **self._handler_kwargs
        )
        handler.server = self
        return handler
