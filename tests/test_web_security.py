"""Safe by default: security headers on every answer, no listening beyond loopback without
auth (a configuration error naming http.listen), and TLS from cert/key files."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from infrawatch.config import ConfigError, HttpConfig, load
from infrawatch.runtime.latest import LatestValues
from infrawatch.runtime.queue import BatchQueue
from infrawatch.runtime.stats import AgentStats
from infrawatch.runtime.status import StatusView
from infrawatch.web.connection import HttpLimits
from infrawatch.web.security import CONTENT_SECURITY_POLICY, check_lines, is_loopback, load_tls
from infrawatch.web.server import HttpServer
from tests.support_web import CSP, self_signed, trusting

HASH = "$2b$04$abcdefghijklmnopqrstuuFZ5WeSdMgFzwQq3m6tvRtn0q6o6wCly"  # format only


@asynccontextmanager
async def serving(limits: HttpLimits | None = None, **http: Any) -> AsyncIterator[HttpServer]:
    """HttpServer on a loopback port over idle runtime parts, with `[http]` settings `http`."""
    stats = AgentStats()
    view = StatusView(stats, BatchQueue(10, "drop_oldest", stats), LatestValues(), [])
    config = HttpConfig.model_validate({"listen": "127.0.0.1:0", **http})
    async with HttpServer(view, config, limits=limits) as server:
        yield server


def _problems(tmp_path: Path, toml: str, env: dict[str, str] | None = None) -> list[str]:
    path = tmp_path / "c.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as err:
        load(path)
    return err.value.problems


def _loads(tmp_path: Path, toml: str) -> HttpConfig:
    path = tmp_path / "c.toml"
    path.write_text(toml)
    return load(path).settings.http


# -- headers -------------------------------------------------------------------------------


def _assert_secure(headers: Any, *, caching: str = "no-store") -> None:
    assert headers["Content-Security-Policy"] == CSP
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Cache-Control"] == caching


def test_the_policy_allows_nothing_inline() -> None:
    assert CONTENT_SECURITY_POLICY == CSP
    assert "unsafe" not in CSP
    assert "data:" not in CSP


async def test_every_answer_carries_the_security_headers() -> None:
    async with serving() as server, aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{server.port}"
        for path, status in [
            ("/metrics", 200),
            ("/healthz", 200),
            ("/readyz", 503),
            ("/api/v1/status", 200),
            ("/api/v1/series?bogus=1", 400),
            ("/nothing", 404),
        ]:
            async with session.get(url + path) as resp:
                assert resp.status == status, path
                _assert_secure(resp.headers)
        async with session.post(f"{url}/metrics") as resp:
            assert resp.status == 405
            _assert_secure(resp.headers)
        # The page's files revalidate by ETag instead (they change only with an upgrade).
        async with session.get(f"{url}/") as resp:
            assert resp.status == 200
            assert resp.content_type == "text/html"
            _assert_secure(resp.headers, caching="no-cache")
            etag = resp.headers["ETag"]
        async with session.get(f"{url}/", headers={"If-None-Match": etag}) as resp:
            assert resp.status == 304
            _assert_secure(resp.headers, caching="no-cache")


async def _raw(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()


def _head(answer: bytes) -> dict[str, str]:
    head = answer.partition(b"\r\n\r\n")[0].decode()
    fields = [line.partition(": ") for line in head.split("\r\n")[1:]]
    return {name.lower(): value for name, _, value in fields}


async def test_answers_written_outside_the_router_carry_them_too() -> None:
    async with serving(HttpLimits(max_connections=1)) as server:
        assert server.port is not None
        # Refused by the parser (a bad header) and before it (HTTP/0.9): both answer 400.
        for raw in (b"GET /metrics HTTP/1.1\r\nBad Header: 1\r\n\r\n", b"GET /metrics\r\n"):
            answer = await _raw(server.port, raw)
            assert answer.split(b" ", 2)[1] == b"400", answer
            headers = _head(answer)
            assert headers["content-security-policy"] == CSP
            assert headers["x-content-type-options"] == "nosniff"
            assert headers["referrer-policy"] == "no-referrer"
            assert headers["cache-control"] == "no-store"
        # Over the connection cap: a 503 written straight to the socket.
        _, holder = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            answer = await _raw(server.port, b"")
        finally:
            holder.close()
            await holder.wait_closed()
        assert answer.startswith(b"HTTP/1.1 503 "), answer
        assert _head(answer)["content-security-policy"] == CSP


# -- listening beyond loopback ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("::ffff:127.0.0.1", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.10", False),
        ("fe80::1%eth0", False),
        ("myhost.example", False),
        ("localhost.example", False),
    ],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize("listen", ["0.0.0.0:9464", "[::]:9464", "192.168.1.10:9464"])
def test_listening_beyond_loopback_without_auth_is_a_config_error(
    tmp_path: Path, listen: str
) -> None:
    problems = _problems(tmp_path, f'[http]\nlisten = "{listen}"\n')
    assert len(problems) == 1
    assert problems[0].startswith("http.listen: not a loopback address")
    assert "http.basic_auth_users" in problems[0]
    assert "http.allow_unauthenticated" in problems[0]


def test_a_variable_that_opens_the_listen_address_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INFRAWATCH_HTTP__LISTEN", "0.0.0.0:9464")
    problems = _problems(tmp_path, "")
    assert len(problems) == 1
    assert problems[0].startswith("http.listen (from INFRAWATCH_HTTP__LISTEN): not a loopback")


def test_auth_or_an_explicit_allowance_or_no_server_makes_it_valid(tmp_path: Path) -> None:
    allowed = _loads(tmp_path, '[http]\nlisten = "0.0.0.0:9464"\nallow_unauthenticated = true\n')
    assert allowed.allow_unauthenticated
    assert check_lines(allowed) == [
        "http: warning: listening on 0.0.0.0:9464 (beyond loopback) without authentication"
        " (http.allow_unauthenticated = true)"
    ]
    users = f'[http]\nlisten = "[::]:9464"\n[http.basic_auth_users]\nalice = "{HASH}"\n'
    with_auth = _loads(tmp_path, users)
    assert with_auth.basic_auth_users["alice"].get_secret_value() == HASH
    assert check_lines(with_auth)[0].startswith("http: listening on [::]:9464 (beyond loopback)")
    assert "no TLS" in check_lines(with_auth)[1]
    off = _loads(tmp_path, '[http]\nenabled = false\nlisten = "0.0.0.0:9464"\n')
    assert check_lines(off) == []
    assert check_lines(_loads(tmp_path, "")) == []


# -- TLS -------------------------------------------------------------------------------------


def test_tls_files_come_as_a_pair(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    assert _problems(tmp_path, f'[http]\ntls_cert_file = "{cert}"\n') == [
        "http.tls_key_file: required with tls_cert_file (TLS needs both, or neither)"
    ]
    assert _problems(tmp_path, f'[http]\ntls_key_file = "{key}"\n') == [
        "http.tls_cert_file: required with tls_key_file (TLS needs both, or neither)"
    ]


def test_tls_files_that_do_not_load_name_their_setting(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    for name in ("other", "locked"):
        (tmp_path / name).mkdir()
    _, other_key = self_signed(tmp_path / "other")
    _, locked_key = self_signed(tmp_path / "locked", passphrase=b"secret")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    cases = [
        (tmp_path / "missing.crt", key, "http.tls_cert_file: no such file: "),
        (cert, tmp_path / "missing.key", "http.tls_key_file: no such file: "),
        (garbage, key, "http.tls_cert_file: not a PEM certificate: "),
        (key, key, "http.tls_cert_file: not a PEM certificate: "),
        (cert, garbage, "http.tls_key_file: not usable (a PEM private key): "),
        (cert, other_key, "http.tls_key_file: does not match tls_cert_file"),
        (cert, locked_key, "http.tls_key_file: the key is encrypted"),
        (tmp_path, key, "http.tls_cert_file: is a directory"),
    ]
    for cert_file, key_file, expected in cases:
        toml = f'[http]\ntls_cert_file = "{cert_file}"\ntls_key_file = "{key_file}"\n'
        problems = _problems(tmp_path, toml)
        assert len(problems) == 1, problems
        assert problems[0].startswith(expected), (problems, expected)
    # Good files load; `check` says TLS is on.
    config = _loads(tmp_path, f'[http]\ntls_cert_file = "{cert}"\ntls_key_file = "{key}"\n')
    assert check_lines(config) == [f"http: TLS 1.2 or newer with {cert}"]


async def test_with_tls_the_server_speaks_https_only(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    async with (
        serving(tls_cert_file=str(cert), tls_key_file=str(key)) as server,
        aiohttp.ClientSession() as session,
    ):
        url = f"127.0.0.1:{server.port}"
        async with session.get(f"https://{url}/healthz", ssl=trusting(cert)) as resp:
            assert resp.status == 200
            _assert_secure(resp.headers)
        _, writer = await asyncio.open_connection("127.0.0.1", server.port, ssl=trusting(cert))
        try:
            assert writer.get_extra_info("ssl_object").version() in ("TLSv1.2", "TLSv1.3")
        finally:
            writer.close()
            await writer.wait_closed()
        # Plain HTTP to the TLS port gets no answer.
        with pytest.raises(aiohttp.ClientError):
            async with session.get(f"http://{url}/healthz") as resp:
                await resp.read()
    config = HttpConfig.model_validate({"tls_cert_file": str(cert), "tls_key_file": str(key)})
    context = load_tls(config)
    assert context is not None
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


async def test_tls_files_gone_by_start_are_a_startup_error(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    config = HttpConfig.model_validate(
        {"listen": "127.0.0.1:0", "tls_cert_file": str(cert), "tls_key_file": str(key)}
    )
    key.unlink()
    stats = AgentStats()
    view = StatusView(stats, BatchQueue(10, "drop_oldest", stats), LatestValues(), [])
    from infrawatch.errors import StartupError

    with pytest.raises(StartupError, match=r"^http\.tls_key_file: no such file: "):
        async with HttpServer(view, config):
            pass
