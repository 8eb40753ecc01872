"""The server's connections: aiohttp's low-level server and connection handler, hardened.

Error answers never quote the request (aiohttp's default answer echoes the offending request
line or header back); a connection's first request line must name an HTTP version (a bare
`GET /metrics` is HTTP/0.9, which would get a body with no status); slow or idle clients are
bounded (`HttpLimits`): a connection must deliver a request's headers within `header_timeout`,
may idle `keepalive_timeout` between requests, and connections beyond `max_connections` are
answered 503 and closed. Malformed requests, refused connections and header timeouts are
counted and logged at each doubling.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadStatusLine, HttpProcessingError

from infrawatch.logging import at_doubling, get_logger
from infrawatch.web.security import secure

log = get_logger("infrawatch.web.server")

# A scraper sends its headers in one packet; seconds are generous even across a slow WAN,
# and a client that trickles them (slowloris) holds a connection no longer than this.
HEADER_TIMEOUT = 10.0
# Prometheus scrapes every 15-60 s and reconnects cheaply; idle connections are not kept longer.
KEEPALIVE_TIMEOUT = 15.0
MAX_CONNECTIONS = 128  # a few scrapers and probes need a handful; the rest is someone hoarding


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """How long and how many: the bounds that keep slow or idle clients from holding the server."""

    # Seconds for a request's headers to arrive in full, counted from the connection's start
    # for its first request and from the first byte of each later one.
    header_timeout: float = HEADER_TIMEOUT
    keepalive_timeout: float = KEEPALIVE_TIMEOUT  # seconds a connection may idle between requests
    max_connections: int = MAX_CONNECTIONS  # open at once; more are answered 503 and closed


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


class QuietRequestHandler(web.RequestHandler):
    """aiohttp's connection handler, except that error answers never quote the request, a
    connection's first request line must name an HTTP version, and slow clients are cut off."""

    server: QuietServer  # set by the server that made this handler

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


class QuietServer(web.Server):
    """aiohttp's low-level server, with `QuietRequestHandler` per connection."""

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
        handler = QuietRequestHandler(self, loop=asyncio.get_running_loop(), **self._handler_kwargs)
        handler.server = self
        return handler
