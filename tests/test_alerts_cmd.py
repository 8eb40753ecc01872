"""`infrawatch alerts`: what fires, since when, which silence mutes it, the last notification per
sink (from the outbox) — read-only, as table and JSON."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from infrawatch.alerting.outbox import Outbox, OutboxItem
from infrawatch.alerting.records import AlertRecord
from infrawatch.cli.main import main
from infrawatch.storage.store import Store

NOW = time.time()


def _alert(fp: str, name: str, state: str, starts: float) -> AlertRecord:
    labels = {"alertname": name, "metric": "system.cpu.utilization", "severity": "critical",
              "cpu": "0"}  # fmt: skip
    return AlertRecord(
        fp, labels, {"summary": f"{name} summary"}, "critical", state,  # type: ignore[arg-type]
        starts, None if state == "firing" else starts + 60, starts,
    )  # fmt: skip


def _item(nid: str, sink: str, fps: list[str], created: float, status: str) -> OutboxItem:
    alerts = [{"fingerprint": fp, "status": status, "labels": {}} for fp in fps]
    return OutboxItem(nid, sink, "g", {"id": nid, "status": status, "alerts": alerts}, created)


async def _database(tmp_path: Path) -> Path:
    db = tmp_path / "agent.db"
    async with Store(db) as store:
        outbox = Outbox(store)
        await outbox.save(
            [
                _alert("fp-cpu", "cpu_high", "firing", NOW - 3600),
                _alert("fp-mem", "mem_high", "firing", NOW - 60),
                _alert("fp-old", "disk_full", "resolved", NOW - 7200),
            ],
            [
                _item("msg_1", "hook", ["fp-cpu"], NOW - 3500, "firing"),
                _item("msg_2", "hook", ["fp-cpu", "fp-mem"], NOW - 50, "firing"),
                _item("msg_3", "discord", ["fp-cpu"], NOW - 3400, "firing"),
            ],
        )
        for nid, sink in (("msg_1", "hook"), ("msg_3", "discord")):
            await outbox.mark_delivered(_item(nid, sink, [], 0.0, "firing"), NOW - 3300)
    return db


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "infrawatch.toml"
    path.write_text(
        f'[storage]\npath = "{tmp_path / "agent.db"}"\n'
        "[[alerting.silences]]\nmatchers = ['alertname=\"nothing_fires\"']\n"
    )
    return path


async def test_alerts_shows_firing_silences_and_last_notification_per_sink(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = await _database(tmp_path)
    config = _config(tmp_path)
    assert main(["silence", "add", "-c", str(config), 'alertname="mem_high"', "--for", "1h"]) == 0
    silence_id = capsys.readouterr().out.strip()
    with sqlite3.connect(db) as conn:
        before = list(conn.iterdump())

    assert main(["alerts", "-c", str(config), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["alertname"] for r in rows] == ["mem_high", "cpu_high"]  # newest first
    mem, cpu = rows
    assert mem["silenced_by"] == silence_id
    assert cpu["silenced_by"] is None
    assert cpu["since"].endswith("Z")
    assert cpu["labels"]["cpu"] == "0"
    assert cpu["notified"]["hook"]["delivery"] == "pending"  # msg_2, the newer one
    assert cpu["notified"]["discord"]["delivery"] == "delivered"
    assert cpu["notified"]["discord"]["done_at"] is not None
    assert set(mem["notified"]) == {"hook"}

    assert main(["alerts", "-c", str(config)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:4] == ["ALERTNAME", "SEVERITY", "SINCE", "SILENCED_BY"]
    assert silence_id in table[1]
    assert "hook" in table[1]
    assert "discord" in table[2]
    assert "delivered" in table[2]
    assert "disk_full" not in "\n".join(table)

    with sqlite3.connect(db) as conn:
        assert list(conn.iterdump()) == before  # read-only


async def test_alerts_on_a_missing_database_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path)
    assert main(["alerts", "-c", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "no such database" in err
    assert not (tmp_path / "agent.db").exists()
