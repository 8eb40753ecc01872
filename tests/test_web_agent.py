"""The real agent (a subprocess) serving the page and /api/v1 safely: headers, basic auth,
TLS, and no start at all on a non-loopback address without auth."""

from __future__ import annotations

import socket
from pathlib import Path

import aiohttp
import bcrypt
import pytest

from tests.agentproc import AgentProcess, write_config
from tests.support_web import CSP, basic, self_signed, trusting

PASSWORD = "s3cret pass"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
HOST = '[host]\ninterval = 1\nmetrics = ["memory"]\n'


def _config(tmp_path: Path, http: str) -> Path:
    return write_config(tmp_path, f'{HOST}\n[http]\nlisten = "127.0.0.1:0"\n{http}')


async def test_the_agent_serves_the_page_and_the_api(tmp_path: Path) -> None:
    agent = await AgentProcess(_config(tmp_path, ""), "--log-level", "debug").start()
    try:
        listening = await agent.wait_for("http.listening")
        assert listening["tls"] is False
        assert listening["auth"] is False
        url = f"http://127.0.0.1:{listening['port']}"
        await agent.wait_for("pipeline.batch_done")  # the store is open and written to
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{url}/api/v1/status") as resp:
                assert resp.status == 200
                assert resp.headers["Content-Security-Policy"] == CSP
                assert resp.headers["Cache-Control"] == "no-store"
                body = await resp.json()
            async with session.get(f"{url}/") as resp:
                assert resp.status == 200
                assert resp.content_type == "text/html"
                assert resp.headers["Content-Security-Policy"] == CSP
                assert resp.headers["X-Content-Type-Options"] == "nosniff"
                page = await resp.text()
            async with session.get(f"{url}/static/app.js") as resp:
                assert resp.status == 200
                assert resp.content_type == "text/javascript"
    finally:
        assert await agent.stop() == 0, agent.stderr
    assert body["status"] == "success"
    status = body["data"]
    assert status["host"] == socket.gethostname()
    assert [p["name"] for p in status["producers"]] == ["host"]
    assert status["interval_seconds"] == 1.0
    assert status["store"] == {"open": True, "path_name": "agent.db", "errors": 0}
    assert status["queue"]["capacity"] == 1000
    assert "<script" in page
    assert "style=" not in page  # nothing the CSP would block


async def test_with_users_every_path_but_the_probes_needs_the_password(tmp_path: Path) -> None:
    users = f'[http.basic_auth_users]\nalice = "{HASH}"\n'
    agent = await AgentProcess(_config(tmp_path, users)).start()
    try:
        listening = await agent.wait_for("http.listening")
        assert listening["auth"] is True
        url = f"http://127.0.0.1:{listening['port']}"
        good = {"Authorization": basic("alice", PASSWORD)}
        bad = {"Authorization": basic("alice", "nope")}
        async with aiohttp.ClientSession() as session:
            for path in ("/metrics", "/", "/api/v1/status"):
                for headers in ({}, bad):
                    async with session.get(url + path, headers=headers) as resp:
                        assert resp.status == 401, path
                        assert resp.headers["WWW-Authenticate"].startswith('Basic realm="')
                        assert resp.headers["Content-Security-Policy"] == CSP
                async with session.get(url + path, headers=good) as resp:
                    assert resp.status == 200, path
            async with session.get(f"{url}/healthz") as resp:
                assert resp.status == 200
    finally:
        assert await agent.stop() == 0, agent.stderr
    logged = "".join(agent.raw_lines) + agent.stderr
    for secret in (PASSWORD, "nope", HASH):
        assert secret not in logged
    assert agent.named("http.auth_rejected")


async def test_with_tls_the_agent_answers_https(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    tls = f'tls_cert_file = "{cert}"\ntls_key_file = "{key}"\n'
    agent = await AgentProcess(_config(tmp_path, tls)).start()
    try:
        listening = await agent.wait_for("http.listening")
        assert listening["tls"] is True
        url = f"https://127.0.0.1:{listening['port']}"
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{url}/healthz", ssl=trusting(cert)) as resp:
                assert resp.status == 200
            async with session.get(f"{url}/", ssl=trusting(cert)) as resp:
                assert resp.status == 200
                assert resp.headers["Content-Security-Policy"] == CSP
    finally:
        assert await agent.stop() == 0, agent.stderr


@pytest.mark.parametrize("listen", ["0.0.0.0:0", "[::]:0"])
async def test_beyond_loopback_without_auth_check_and_run_refuse(
    tmp_path: Path, listen: str
) -> None:
    config = write_config(tmp_path, f'{HOST}\n[http]\nlisten = "{listen}"\n')
    for command in ("check", "run"):
        proc = await AgentProcess(config, command=command).start()
        assert await proc.wait() == 2, proc.stderr
        lines = proc.stderr.splitlines()
        assert len(lines) == 1, proc.stderr
        assert lines[0].startswith("http.listen: not a loopback address"), lines
    # Refused while reading the configuration: nothing was opened, bound or written.
    assert proc.events == []
    assert not (tmp_path / "agent.db").exists()


async def test_beyond_loopback_with_an_explicit_allowance_check_passes(tmp_path: Path) -> None:
    config = write_config(
        tmp_path, f'{HOST}\n[http]\nlisten = "0.0.0.0:9464"\nallow_unauthenticated = true\n'
    )
    proc = await AgentProcess(config, command="check").start()
    assert await proc.wait() == 0, proc.stderr
    assert (
        "http: warning: listening on 0.0.0.0:9464 (beyond loopback) without authentication"
        " (http.allow_unauthenticated = true)\n"
    ) in proc.raw_lines
