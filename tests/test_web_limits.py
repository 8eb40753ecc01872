"""Hostile or broken HTTP clients: slow headers, idle hoarding, too many connections, HTTP/0.9.

Raw sockets on loopback against the real server. Deadlines are short (0.5 s) so the tests are
quick; each waits for the server to act (the socket closing), bounded so a server that never
acts fails the test instead of hanging it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from infrawatch.web.connection import HttpLimits
from tests.support_alert_logs import captured_logs
from tests.support_http import http_server

SHORT = 0.5  # seconds: the deadline under test
NEVER = 3600.0  # seconds: a deadline that must not be the one that acts
BOUND = 10.0  # seconds a test waits for the server before it fails


@pytest.fixture
async def port() -> AsyncIterator[int]:
    limits = HttpLimits(header_timeout=SHORT, keepalive_timeout=NEVER, max_connections=2)
    async with http_server(limits) as server:
        assert server.port is not None
        yield server.port


async def _until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection (fails after BOUND)."""
    async with asyncio.timeout(BOUND):
        return await reader.read()


async def _connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    await writer.wait_closed()


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    """One keep-alive GET /readyz on an open connection; its status line."""
    writer.write(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    async with asyncio.timeout(BOUND):
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        await reader.readexactly(length)
    return head.split(b"\r\n")[0]


async def test_a_client_that_trickles_its_headers_is_disconnected(port: int) -> None:
    reader, writer = await _connect(port)
    try:
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # the blank line never comes
        await writer.drain()
        with captured_logs() as logs:
            assert await _until_closed(reader) == b""
    finally:
        await _close(writer)
    assert [e["total"] for e in logs.named("http.header_timeout")] == [1]


async def test_a_client_that_connects_and_says_nothing_is_disconnected(port: int) -> None:
    reader, writer = await _connect(port)
    try:
        assert await _until_closed(reader) == b""
    finally:
        await _close(writer)


async def test_the_header_deadline_starts_again_for_each_request(port: int) -> None:
    reader, writer = await _connect(port)
    try:
        # A keep-alive client that asks promptly is served, and then cut off for trickling.
        assert await _get(reader, writer) == b"HTTP/1.1 503 Service Unavailable"
        writer.write(b"GET /healthz HTTP/1.1\r\n")
        await writer.drain()
        assert await _until_closed(reader) == b""
    finally:
        await _close(writer)


async def test_connections_over_the_cap_are_answered_503_and_closed(port: int) -> None:
    held = [await _connect(port) for _ in range(2)]
    try:
        # A request answered on each proves the server has registered both connections.
        for reader, writer in held:
            assert await _get(reader, writer) == b"HTTP/1.1 503 Service Unavailable"  # not ready
        with captured_logs() as logs:
            reader, writer = await _connect(port)
            try:
                answer = await _until_closed(reader)
            finally:
                await _close(writer)
        assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), answer
        assert answer.endswith(b"\r\n\r\n503: Service Unavailable"), answer
        assert [e["limit"] for e in logs.named("http.connection_refused")] == [2]
        # The connections within the cap were not disturbed.
        for reader, writer in held:
            assert await _get(reader, writer) == b"HTTP/1.1 503 Service Unavailable"
    finally:
        for _, writer in held:
            await _close(writer)


@pytest.mark.parametrize("request_bytes", [b"GET /metrics\r\n", b"GET /metrics\r\n\r\n"])
async def test_an_http09_request_gets_a_400(port: int, request_bytes: bytes) -> None:
    reader, writer = await _connect(port)
    try:
        writer.write(request_bytes)
        await writer.drain()
        answer = await _until_closed(reader)
    finally:
        await _close(writer)
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n"), answer
    assert answer.endswith(b"\r\n\r\n400: Bad Request"), answer


async def test_an_http09_request_after_a_good_one_gets_no_metrics(port: int) -> None:
    reader, writer = await _connect(port)
    try:
        assert await _get(reader, writer) == b"HTTP/1.1 503 Service Unavailable"
        writer.write(b"GET /metrics\r\n\r\n")
        await writer.drain()
        answer = await _until_closed(reader)
    finally:
        await _close(writer)
    assert b" 400 Bad Request\r\n" in answer.split(b"\r\n\r\n")[0] + b"\r\n", answer
    assert answer.endswith(b"\r\n\r\n400: Bad Request"), answer


async def test_default_limits_bound_every_client() -> None:
    # Without limits given, the server applies finite, modest ones (aiohttp's own keep-alive
    # default is an hour, and it has no header deadline or connection cap at all).
    async with http_server() as server:
        limits = server.limits
    assert 0 < limits.header_timeout <= 30
    assert 0 < limits.keepalive_timeout <= 120
    assert 0 < limits.max_connections <= 1024
