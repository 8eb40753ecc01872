"""Basic auth against bcrypt hashes: every path but the probes, checks off the event loop,
passed credentials remembered, unknown users as slow as wrong passwords, nothing logged."""

from __future__ import annotations

import asyncio
import base64
import re
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import bcrypt
import pytest
from pydantic import SecretStr

from infrawatch.config import ConfigError, HttpConfig, load
from infrawatch.runtime.latest import LatestValues
from infrawatch.runtime.queue import BatchQueue
from infrawatch.runtime.stats import AgentStats
from infrawatch.runtime.status import StatusView
from infrawatch.web.auth import BasicAuth, parse_basic
from infrawatch.web.server import HttpServer
from tests.support_alert_logs import captured_logs
from tests.support_web import basic

PASSWORD = "correct horse"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
OTHER_HASH = bcrypt.hashpw(b"another one", bcrypt.gensalt(4)).decode()
CHALLENGE = 'Basic realm="infrawatch", charset="UTF-8"'


def _auth() -> BasicAuth:
    return BasicAuth({"alice": SecretStr(HASH), "bob": SecretStr(OTHER_HASH)})


# -- the header ------------------------------------------------------------------------------


def test_basic_headers_are_parsed_strictly() -> None:
    assert parse_basic(basic("alice", "pa:ss")) == ("alice", b"pa:ss")  # colons in passwords
    assert parse_basic("basic " + base64.b64encode(b"al:").decode()) == ("al", b"")
    assert parse_basic(basic("zoë", "ü")) == ("zoë", "ü".encode())
    for bad in [
        None,
        "",
        "Bearer abc",
        "Basic",
        "Basic !!!not-base64",
        "Basic " + base64.b64encode(b"no colon").decode(),
        "Basic " + base64.b64encode(b"\xff\xfe:x").decode(),  # user not UTF-8
    ]:
        assert parse_basic(bad) is None, bad


# -- the checks ------------------------------------------------------------------------------


async def test_right_and_wrong_passwords() -> None:
    auth = _auth()
    assert await auth.check(basic("alice", PASSWORD))
    assert not await auth.check(basic("alice", "wrong"))
    assert not await auth.check(basic("bob", PASSWORD))  # alice's password is not bob's
    assert await auth.check(basic("bob", "another one"))
    assert not await auth.check(None)
    assert not await auth.check(basic("alice", "x" * 100))  # beyond bcrypt's 72 bytes


async def test_passed_credentials_are_remembered_and_wrong_ones_are_not() -> None:
    auth = _auth()
    for _ in range(5):
        assert await auth.check(basic("alice", PASSWORD))
    assert auth.bcrypt_checks == 1  # a scraper pays for bcrypt once
    for _ in range(3):
        assert not await auth.check(basic("alice", "guess"))
    assert auth.bcrypt_checks == 4  # every guess pays
    assert auth.rejected == 3
    # A different password for a remembered user is checked, not taken from memory.
    assert not await auth.check(basic("alice", PASSWORD + "!"))
    assert await auth.check(basic("alice", PASSWORD))
    assert auth.bcrypt_checks == 5


async def test_an_unknown_user_costs_a_bcrypt_check_like_a_wrong_password() -> None:
    auth = _auth()
    assert not await auth.check(basic("mallory", PASSWORD))
    assert auth.bcrypt_checks == 1
    assert not await auth.check(basic("mallory", "another one"))
    assert auth.bcrypt_checks == 2


async def test_checks_run_in_a_worker_thread_and_identical_ones_share_a_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    auth = _auth()
    threads: list[int] = []
    real = bcrypt.checkpw

    def recording(password: bytes, hashed: bytes) -> bool:
        threads.append(threading.get_ident())
        return real(password, hashed)

    monkeypatch.setattr(auth, "_checkpw", recording)
    results = await asyncio.gather(*(auth.check(basic("alice", PASSWORD)) for _ in range(8)))
    assert results == [True] * 8
    assert len(threads) == 1  # eight requests at once (a page load): one bcrypt run
    assert threads[0] != threading.get_ident()  # and not on the event loop's thread


# -- the server ------------------------------------------------------------------------------


@pytest.fixture
async def server() -> AsyncIterator[HttpServer]:
    stats = AgentStats()
    view = StatusView(stats, BatchQueue(10, "drop_oldest", stats), LatestValues(), [])
    config = HttpConfig.model_validate(
        {"listen": "127.0.0.1:0", "basic_auth_users": {"alice": HASH}}
    )
    async with HttpServer(view, config) as running:
        yield running


async def test_every_path_but_the_probes_asks_for_credentials(server: HttpServer) -> None:
    url = f"http://127.0.0.1:{server.port}"
    paths = ["/", "/metrics", "/api/v1/status", "/static/app.js", "/nothing", "/healthz/"]
    with captured_logs() as logs:
        async with aiohttp.ClientSession() as session:
            for path in paths:
                for headers in ({}, {"Authorization": basic("alice", "wrong-pw")}):
                    async with session.get(url + path, headers=headers) as resp:
                        assert resp.status == 401, path
                        assert resp.headers["WWW-Authenticate"] == CHALLENGE
                        assert resp.headers["Cache-Control"] == "no-store"
                        assert (await resp.text()) == "401: Unauthorized"
            # Unknown paths stay unknown until the client authenticates.
            good = {"Authorization": basic("alice", PASSWORD)}
            for path, status in [("/", 200), ("/metrics", 200), ("/api/v1/status", 200)]:
                async with session.get(url + path, headers=good) as resp:
                    assert resp.status == status, path
            async with session.get(f"{url}/nothing", headers=good) as resp:
                assert resp.status == 404
            async with session.post(f"{url}/metrics", headers=good) as resp:
                assert resp.status == 405
            # Probes answer without credentials (orchestrators don't have any).
            async with session.get(f"{url}/healthz") as resp:
                assert resp.status == 200
            async with session.get(f"{url}/readyz") as resp:
                assert resp.status == 503  # nothing stored yet: not ready, but not 401
    assert server.auth is not None
    assert server.auth.bcrypt_checks == len(paths) + 1  # each wrong guess, the right one once
    # Neither the password, the hash nor the header reaches the log.
    text = "\n".join(logs.raw)
    assert "http.auth_rejected" in text
    for secret in ("wrong-pw", PASSWORD, HASH, basic("alice", "wrong-pw").split()[1]):
        assert secret not in text


# -- configuration ---------------------------------------------------------------------------


def test_a_password_or_a_malformed_hash_is_a_config_error_naming_the_user(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        "[http.basic_auth_users]\n"
        f'alice = "{HASH}"\n'
        'bob = "hunter2"\n'
        f'carol = "{HASH[:-1]}"\n'
        f'dave = "{HASH.replace("$04$", "$99$")}"\n'
    )
    with pytest.raises(ConfigError) as err:
        load(path)
    problems = err.value.problems
    assert [p.partition(":")[0] for p in problems] == [
        "http.basic_auth_users.bob",
        "http.basic_auth_users.carol",
        "http.basic_auth_users.dave",
    ]
    assert "not a password" in problems[0]
    text = "\n".join(problems)
    assert "hunter2" not in text
    assert HASH[10:] not in text


def test_check_masks_the_hashes(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'[http.basic_auth_users]\nalice = "{HASH}"\n')
    result = subprocess.run(
        [sys.executable, "-m", "infrawatch", "check", "--config", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert HASH not in result.stdout
    assert re.search(r'^http\.basic_auth_users +\{"alice": "\*{10}"\}', result.stdout, re.M)
    assert "http: basic auth for 1 user on every path but /healthz and /readyz" in result.stdout
