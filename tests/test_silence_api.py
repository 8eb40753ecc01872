"""`/api/v1/silences` (read-only): config and database silences, active and recently expired,
with the firing alerts each mutes; `/api/v1/alerts` says which silence mutes an alert."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from infrawatch.alerting import silences as sil
from infrawatch.alerting.config import AlertingConfig
from infrawatch.alerting.outbox import Outbox
from infrawatch.alerting.records import AlertRecord
from infrawatch.storage.store import Store
from infrawatch.web.api import api_routes
from tests.test_api import Source

NOW = 1_800_000_000.0


def _alert(fp: str, name: str, state: str) -> AlertRecord:
    labels = {"alertname": name, "metric": "system.cpu.utilization", "severity": "critical"}
    return AlertRecord(
        fp, labels, {"summary": name}, "critical", state,  # type: ignore[arg-type]
        NOW - 600, None if state == "firing" else NOW - 60, NOW - 600,
    )  # fmt: skip


@dataclass
class SilencingSource(Source):
    configured: list[sil.SilenceRecord] = field(default_factory=list)

    def config_silences(self) -> Sequence[sil.SilenceRecord]:
        return self.configured


async def _database(path: Path) -> dict[str, str]:
    async with Store(path) as store:
        await Outbox(store).save(
            [_alert("fp-cpu", "cpu_high", "firing"), _alert("fp-disk", "disk_full", "firing"),
             _alert("fp-gone", "mem_high", "resolved")],
            [],
        )  # fmt: skip
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        ids = {
            "cpu": sil.insert(conn, ['alertname="cpu_high"'], starts_at=NOW - 60,
                              ends_at=NOW + 3600, created_by="alice", comment="deploy", now=NOW),
            "mem": sil.insert(conn, ['alertname="mem_high"'], starts_at=NOW - 60,
                              ends_at=NOW + 60, created_by="bob", comment="", now=NOW),
            "later": sil.insert(conn, ['alertname="disk_full"'], starts_at=NOW + 600,
                                ends_at=NOW + 900, created_by="carol", comment="", now=NOW),
            "recent": sil.insert(conn, ['alertname="disk_full"'], starts_at=NOW - 7200,
                                 ends_at=NOW - 3600, created_by="dave", comment="", now=NOW),
            "old": sil.insert(conn, ['alertname="disk_full"'], starts_at=NOW - 9 * 86400,
                              ends_at=NOW - 8 * 86400, created_by="erin", comment="", now=NOW),
        }  # fmt: skip
    finally:
        conn.close()
    return ids


@pytest.fixture
async def client(
    tmp_path: Path,
) -> AsyncIterator[tuple[aiohttp.ClientSession, str, dict[str, str]]]:
    db = tmp_path / "api.db"
    ids = await _database(db)
    cfg = AlertingConfig.model_validate(
        {
            "silences": [
                {"matchers": ['severity="critical"', 'alertname="disk_full"'], "comment": "known"}
            ]
        }
    )
    source = SilencingSource(database=db, configured=sil.config_silences(cfg))
    routes = api_routes(source, clock=lambda: NOW)

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        route = routes.get(request.path)
        return web.Response(status=404) if route is None else await route(request)

    runner = web.ServerRunner(web.Server(handle), handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    async with aiohttp.ClientSession() as session:
        yield session, f"http://127.0.0.1:{port}/api/v1/", ids
    await runner.cleanup()


async def _get(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as resp:
        assert resp.status == 200, await resp.text()
        body = await resp.json()
    assert body["status"] == "success"
    return body["data"]


async def test_silences_lists_active_pending_and_recent_with_what_they_mute(
    client: tuple[aiohttp.ClientSession, str, dict[str, str]],
) -> None:
    session, base, ids = client
    data = await _get(session, base + "silences")
    by_id = {s["id"]: s for s in data}
    assert set(by_id) == {"config-1", ids["cpu"], ids["mem"], ids["later"], ids["recent"]}
    assert [s["state"] for s in data] == ["active", "active", "active", "pending", "expired"]
    assert by_id["config-1"]["origin"] == "config"
    assert [a["fingerprint"] for a in by_id["config-1"]["mutes"]] == ["fp-disk"]
    cpu = by_id[ids["cpu"]]
    assert cpu["created_by"] == "alice"
    assert cpu["comment"] == "deploy"
    assert cpu["ends_at"] == NOW + 3600
    assert cpu["matchers"] == ['alertname="cpu_high"']
    assert [a["alertname"] for a in cpu["mutes"]] == ["cpu_high"]
    assert by_id[ids["mem"]]["mutes"] == []  # its alert resolved
    assert by_id[ids["later"]]["mutes"] == []
    assert by_id[ids["recent"]]["mutes"] == []

    alerts = {a["alertname"]: a for a in await _get(session, base + "alerts")}
    assert alerts["cpu_high"]["silenced_by"] == ids["cpu"]
    assert alerts["disk_full"]["silenced_by"] == "config-1"
    assert alerts["mem_high"]["silenced_by"] == ids["mem"]
