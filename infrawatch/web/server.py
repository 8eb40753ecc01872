"""The HTTP server: /metrics (Prometheus), /healthz, /readyz, the status page and /api/v1.

One owner: `HttpServer` is an async context manager the agent enters at start-up and leaves at
shutdown. It reads the agent only through a `StatusSource`. Its route table is composed of
exact paths: the server's own three, the JSON API's (`web/api.py`) and the page's files
(`web/static_files.py`, read into memory at start: nothing is read from disk per request).
Every route is GET/HEAD; anything else is a plain 404 or 405. It is aiohttp's low-level server
(no router) so that malformed requests, too, get a bare `400: Bad Request` instead of aiohttp's
default answer, which quotes the offending request line or header back. Slow or idle clients
are bounded (`HttpLimits`): a connection must deliver a request's headers within
`header_timeout`, may idle `keepalive_timeout` between requests, and connections beyond
`max_connections` are answered 503 and closed.

Every answer carries the security headers (`web/security.py`). With `http.basic_auth_users`,
every path but /healthz and /readyz needs credentials (`web/auth.py`); with
`http.tls_cert_file`, the server speaks HTTPS only.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from types import TracebackType
from typing import Any, Self

from aiohttp import web
from aiohttp.http import HttpVersion10
from aiohttp.http_exceptions import BadStatusLine, HttpProcessingError
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.process_collector import ProcessCollector

from infrawatch.config import HttpConfig
from infrawatch.errors import StartupError
from infrawatch.logging import at_doubling, get_logger
from infrawatch.runtime.schedule import backoff_ticks
from infrawatch.runtime.stats import AgentStats
from infrawatch.web.api import api_routes
from infrawatch.web.auth import CHALLENGE, BasicAuth
from infrawatch.web.exposition import AgentCollector
from infrawatch.web.security import TlsError, is_loopback, load_tls, secure
from infrawatch.web.static_files import static_routes
from infrawatch.web.view import StatusSource

log = get_logger("infrawatch.web.server")

STALE_FACTOR = 3.0  # a producer is stale when its last tick ended more than 3 intervals ago
SHUTDOWN_TIMEOUT = 1.0  # seconds an in-flight scrape may take to finish at shutdown
# A scraper sends its headers in one packet; seconds are generous even across a slow WAN,
# and a client that trickles them (slowloris) holds a connection no longer than this.
HEADER_TIMEOUT = 10.0
# Prometheus scrapes every 15-60 s and reconnects cheaply; idle connections are not kept longer.
KEEPALIVE_TIMEOUT = 15.0
MAX_CONNECTIONS = 128  # a few scrapers and probes need a handful; the rest is someone hoarding
# Orchestrators probe these without credentials (as Prometheus' exporters leave them open);
# they say whether the agent keeps up, nothing about the host.
PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


def _strict_json(value: Any) -> str:
    """JSON text; NaN and Infinity (not JSON) raise instead of reaching a client's parser."""
    return json.dumps(value, allow_nan=False)


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """How long and how many: the bounds that keep slow or idle clients from holding the server."""

    # Seconds for a request's headers to arrive in full, counted from the connection's start
    # for its first request and from the first byte of each later one.
    header_timeout: float = HEADER_TIMEOUT
    keepalive_timeout: float = KEEPALIVE_TIMEOUT  # seconds a connection may idle between requests
    max_connections: int = MAX_CONNECTIONS  # open at once; more are answered 503 and closed


def health_report(
    stats: AgentStats, intervals: Mapping[str, float], now: float, started: float
) -> tuple[bool, dict[str, Any]]:
    """(healthy, JSON body): every producer finished a tick within 3× its interval (seconds).

    `now` and `started` are monotonic seconds; a producer that has not finished its first tick
    yet is measured from `started`. Ticks the scheduler skips on purpose (backoff after
    repeated failures) extend the allowance, so a source that is down is reported by its error
    counters, not by restarting the agent.
    """
    producers: dict[str, Any] = {}
    stale: list[str] = []
    for name, interval in sorted(intervals.items()):
        p = stats.producers.get(name)
        done = p.last_tick_done if p is not None else None
        failures = p.consecutive_failures if p is not None else 0
        age = max(0.0, now - (done if done is not None else started))
        skipped = backoff_ticks(failures, interval) if interval > 0 else 0
        limit = STALE_FACTOR * interval * (1 + skipped)
        ok = age <= limit
        producers[name] = {
            "ok": ok,
            "seconds_since_tick": round(age, 3),
            "limit_seconds": round(limit, 3),
            "consecutive_failures": failures,
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
        self,
        view: StatusSource,
        config: HttpConfig,
        *,
        limits: HttpLimits | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.limits = limits if limits is not None else HttpLimits()
        self.clock = clock
        self.started = clock()
        self.port: int | None = None
        self._view = view
        self.registry = CollectorRegistry(auto_describe=False)
        self.collector = AgentCollector(view, config.detector_states)
        self.registry.register(self.collector)
        self._render_lock = asyncio.Lock()
        # The agent's own CPU seconds, RSS, open fds (Linux /proc/self; absent elsewhere).
        ProcessCollector(namespace="infrawatch", registry=self.registry)
        self._runner: web.ServerRunner | None = None
        self.auth = BasicAuth(config.basic_auth_users) if config.basic_auth_users else None
        # Exact paths only: a path that is not a key is not served, whatever it encodes.
        self._routes: dict[str, Handler] = {
            **static_routes(),
            **api_routes(view),
            "/metrics": self._metrics,
            "/healthz": self._healthz,
            "/readyz": self._readyz,
        }

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """Route one request to an exact GET/HEAD path, else a plain 401, 404 or 405 (no echo)."""
        protocol = request.protocol
        quiet = protocol if isinstance(protocol, _QuietRequestHandler) else None
        if quiet is not None:
            quiet.request_started()
        try:
            response = await self._answer(request)
        finally:
            if quiet is not None:
                quiet.request_finished()
        secure(response.headers)
        return response

    async def _answer(self, request: web.BaseRequest) -> web.StreamResponse:
        route = self._routes.get(request.path)
        response: web.StreamResponse
        if request.version < HttpVersion10:
            # HTTP/0.9 (a request line without a version) would get a bare body with no status;
            # a connection's first request never gets here (see data_received), a later one may.
            response = web.Response(status=400, text="400: Bad Request")
            response.force_close()
        elif not await self._authorized(request):
            response = web.Response(
                status=401, text="401: Unauthorized", headers={"WWW-Authenticate": CHALLENGE}
            )
        elif route is None:
            response = web.Response(status=404, text="404: Not Found")
        elif request.method not in ("GET", "HEAD"):
            response = web.Response(
                status=405, text="405: Method Not Allowed", headers={"Allow": "GET,HEAD"}
            )
        else:
            response = await route(request)
        return response

    async def _authorized(self, request: web.BaseRequest) -> bool:
        # Before routing: without credentials, even which paths exist stays unknown.
        if self.auth is None or request.path in PUBLIC_PATHS:
            return True
        return await self.auth.check(request.headers.get("Authorization"))

    async def __aenter__(self) -> Self:
        runner = web.ServerRunner(
            _QuietServer(
                self.handle,
                self.limits,
                access_log=None,
                keepalive_timeout=self.limits.keepalive_timeout,
            ),
            handle_signals=False,
            shutdown_timeout=SHUTDOWN_TIMEOUT,
        )
        try:
            tls = load_tls(self.config)
        except TlsError as exc:  # the files changed since the configuration was checked
            raise StartupError(f"http.{exc}") from None
        await runner.setup()
        site = web.TCPSite(
            runner, self.config.host, self.config.port, reuse_address=True, ssl_context=tls
        )
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
        log.info(
            "http.listening",
            host=address[0],
            port=self.port,
            tls=tls is not None,
            auth=self.auth is not None,
        )
        if self.auth is None and not is_loopback(self.config.host):
            log.warning("http.unauthenticated", listen=self.config.listen)
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
        view = self._view
        healthy, body = health_report(
            view.stats, view.producer_intervals(), self.clock(), self.started
        )
        return web.json_response(body, status=200 if healthy else 503, dumps=_strict_json)

    async def _readyz(self, request: web.BaseRequest) -> web.Response:
        stats = self._view.stats
        body = {"store_open": stats.store_open, "first_batch_stored": stats.first_batch_stored}
        ready = stats.store_open and stats.first_batch_stored
        body_out: dict[str, Any] = {"status": "ready" if ready else "not ready", **body}
        return web.json_response(body_out, status=200 if ready else 503, dumps=_strict_json)


def _plain_answer(status: int) -> bytes:
    """A complete HTTP/1.1 response whose body is the status alone, closing the connection."""
    phrase = HTTPStatus(status).phrase
    body = f"{status}: {phrase}".encode()
    headers = {
        "Content-Type": "text/plain; charset=utf-8",
        "Content-Length": str(len(body)),
        "Connection": "close",
    }
    secure(headers)
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return f"HTTP/1.1 {status} {phrase}\r\n{lines}\r\n".encode() + body


def _has_version(request_line: bytes) -> bool:
    # `GET /metrics` alone is an HTTP/0.9 request; every request we answer names its version.
    parts = request_line.split()
    return len(parts) >= 3 and parts[-1].startswith(b"HTTP/")


class _QuietRequestHandler(web.RequestHandler):
    """aiohttp's connection handler, except that error answers never quote the request, a
    connection's first request line must name an HTTP version, and slow clients are cut off."""

    server: _QuietServer  # set by the server that made this handler

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Refuse the connection beyond the cap; otherwise start the header deadline."""
        self._in_request = False
        self._header_timer: asyncio.TimerHandle | None = None
        # The connection's first request line, held back from the parser until it is complete
        # (None once it was checked): an HTTP/0.9 line gets a 400 before the parser sees it.
        self._first_line: bytearray | None = bytearray()
        super().connection_made(transport)
        server = self.server
        if len(server.connections) > server.limits.max_connections:
            server.refused += 1
            if at_doubling(server.refused):
                log.warning(
                    "http.connection_refused",
                    limit=server.limits.max_connections,
                    total=server.refused,
                )
            self._answer_and_close(503)
            return
        self._arm_header_deadline()

    def connection_lost(self, exc: BaseException | None) -> None:
        """Stop the header deadline with the connection."""
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Feed the parser, once the first request line is known to name an HTTP version."""
        if data and not self._in_request:
            self._arm_header_deadline()
        if self._first_line is not None and data:
            self._first_line += data
            # Empty lines before a request line are allowed (RFC 9112 §2.2).
            line, newline, _ = self._first_line.lstrip(b"\r\n").partition(b"\n")
            if not newline and len(line) <= self.max_line_size:
                return  # the line is not complete yet: wait for more
            data, self._first_line = bytes(self._first_line), None
            if newline and not _has_version(bytes(line)):
                self._malformed(BadStatusLine("no HTTP version"))
                self._answer_and_close(400)
                return
        super().data_received(data)

    def request_started(self) -> None:
        """Headers are in and the request is being answered: no deadline while it is."""
        self._in_request = True
        self._disarm_header_deadline()

    def request_finished(self) -> None:
        """The answer is handed over: the next request's bytes start a new deadline."""
        self._in_request = False

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """The status alone as the body: aiohttp's parser errors (bad method, over-long line,
        bad header) would otherwise echo the offending bytes back."""
        self._disarm_header_deadline()
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
        response = super().handle_error(request, status, exc, f"{status}: {phrase}")
        secure(response.headers)
        return response

    def log_exception(self, *args: Any, **kw: Any) -> None:
        """A malformed request is the client's problem: one line, no traceback, no request
        bytes (they would land in the log), and fewer lines as a scanner keeps going. A failure
        in our own handlers keeps its traceback."""
        exc = kw.get("exc_info")
        if not isinstance(exc, HttpProcessingError):
            super().log_exception(*args, **kw)
            return
        self._malformed(exc)

    def _malformed(self, exc: HttpProcessingError) -> None:
        self.server.malformed += 1
        if at_doubling(self.server.malformed):
            log.warning(
                "http.malformed_request", error=type(exc).__name__, total=self.server.malformed
            )

    def _answer_and_close(self, status: int) -> None:
        # Written straight to the transport: no request was parsed to answer through aiohttp.
        # Closing the transport still sends what was written.
        if self.transport is not None:
            self.transport.write(_plain_answer(status))
        self._disarm_header_deadline()
        self.force_close()

    def _arm_header_deadline(self) -> None:
        if self._header_timer is None and self.transport is not None:
            self._header_timer = asyncio.get_running_loop().call_later(
                self.server.limits.header_timeout, self._header_deadline_passed
            )

    def _disarm_header_deadline(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_deadline_passed(self) -> None:
        self._header_timer = None
        if self._in_request:
            return
        server = self.server
        server.header_timeouts += 1
        if at_doubling(server.header_timeouts):
            log.info(
                "http.header_timeout",
                timeout=server.limits.header_timeout,
                total=server.header_timeouts,
            )
        self.force_close()


class _QuietServer(web.Server):
    """aiohttp's low-level server, with `_QuietRequestHandler` per connection."""

    def __init__(
        self,
        handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]],
        limits: HttpLimits,
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, **kwargs)
        self._handler_kwargs = kwargs
        self.limits = limits
        self.malformed = 0  # malformed requests since start
        self.refused = 0  # connections refused over the cap since start
        self.header_timeouts = 0  # connections closed for headers that never completed

    def __call__(self) -> web.RequestHandler:
        handler = _QuietRequestHandler(
            self, loop=asyncio.get_running_loop(), **self._handler_kwargs
        )
        handler.server = self
        return handler
