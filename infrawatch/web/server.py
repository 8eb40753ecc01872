"""The HTTP server: /metrics (Prometheus), /healthz, /readyz, the status page and /api/v1.

One owner: `HttpServer` is an async context manager the agent enters at start-up and leaves at
shutdown. It reads the agent only through a `StatusSource`. Its route table is composed of
exact paths: the server's own three, the JSON API's (`web/api.py`) and the page's files
(`web/static_files.py`, read into memory at start: nothing is read from disk per request).
Every route is GET/HEAD; anything else is a plain 404 or 405. It is aiohttp's low-level server
(no router) with hardened connections (`web/connection.py`): malformed requests, too, get a
bare `400: Bad Request`, and slow or idle clients are bounded (`HttpLimits`).

Every answer carries the security headers (`web/security.py`). With `http.basic_auth_users`,
every path but /healthz and /readyz needs credentials (`web/auth.py`); with
`http.tls_cert_file`, the server speaks HTTPS only.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, Self

from aiohttp import web
from aiohttp.http import HttpVersion10
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.process_collector import ProcessCollector

from infrawatch.config import HttpConfig
from infrawatch.errors import StartupError
from infrawatch.logging import get_logger
from infrawatch.runtime.schedule import backoff_ticks
from infrawatch.runtime.stats import AgentStats
from infrawatch.web.api import api_routes
from infrawatch.web.auth import CHALLENGE, BasicAuth
from infrawatch.web.connection import HttpLimits, QuietRequestHandler, QuietServer
from infrawatch.web.exposition import AgentCollector
from infrawatch.web.security import TlsError, is_loopback, load_tls, secure
from infrawatch.web.static_files import static_routes
from infrawatch.web.view import StatusSource

log = get_logger("infrawatch.web.server")

STALE_FACTOR = 3.0  # a producer is stale when its last tick ended more than 3 intervals ago
SHUTDOWN_TIMEOUT = 1.0  # seconds an in-flight scrape may take to finish at shutdown
# Orchestrators probe these without credentials (as Prometheus' exporters leave them open);
# they say whether the agent keeps up, nothing about the host.
PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


def _strict_json(value: Any) -> str:
    """JSON text; NaN and Infinity (not JSON) raise instead of reaching a client's parser."""
    return json.dumps(value, allow_nan=False)


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
        quiet = protocol if isinstance(protocol, QuietRequestHandler) else None
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
            QuietServer(
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
