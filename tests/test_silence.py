"""`infrawatch silence add|list|expire`: bad input is one line, exit 2 and writes nothing; a
database no agent has opened is created with the agent's schema; the engine honours silences
from the database and notifies what is still firing when one ends."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from infrawatch.alerting.config import AlertingConfig
from infrawatch.alerting.engine import Engine
from infrawatch.alerting.silences import SilenceRecord
from infrawatch.cli.main import main
from infrawatch.model import Anomaly, make_labels
from infrawatch.storage.store import SCHEMA_VERSION


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "infrawatch.toml"
    path.write_text(
        f'[storage]\npath = "{tmp_path / "agent.db"}"\n'
        '[[alerting.silences]]\nmatchers = [\'alertname="from_config"\']\ncomment = "in toml"\n'
    )
    return path


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _dump(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return list(conn.iterdump())


def _add(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> str:
    code, out, err = _run(capsys, "silence", "add", "-c", str(config), *args)
    assert code == 0, err
    return out.strip()


BAD_INPUT = {
    "malformed matcher": (['alertname~"cpu"'], "invalid matcher"),
    "unbalanced quote": (['alertname=="cpu'], "unbalanced quotes"),
    "bad regex": (['alertname=~"("'], "invalid regex"),
    "2 parsecs": (['alertname="cpu"', "--for", "2 parsecs"], "malformed duration"),
    "zero duration": (['alertname="cpu"', "--for", "0s"], "longer than zero"),
    "end before start": (['alertname="cpu"', "--start", "2h", "--until", "1h"], "not after"),
    "end in the past": (
        ['alertname="cpu"', "--start", "2020-01-01T00:00:00Z", "--until", "2020-01-02T00:00:00Z"],
        "already past",
    ),
    "malformed time": (['alertname="cpu"', "--until", "tomorrow-ish"], "malformed time"),
    "unknown time zone": (
        ['alertname="cpu"', "--until", "2099-01-01T08:00", "--tz", "Mars/Olympus_Mons"],
        "unknown time zone",
    ),
    "for and until": (['alertname="cpu"', "--for", "1h", "--until", "2h"], "not both"),
    "no matchers": ([], "add --force"),
    "matches every alert": (['alertname=~".*"'], "add --force"),
    "catch-all negation": (['severity!~""', 'alertname=~".+|"'], "add --force"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT), ids=list(BAD_INPUT))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    config = _config(tmp_path)
    db = tmp_path / "agent.db"
    _add(capsys, config, 'alertname="existing"', "--for", "1h")
    before = _dump(db)
    args, message = BAD_INPUT[case]
    code, out, err = _run(capsys, "silence", "add", "-c", str(config), *args)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1, err
    assert message in err, err
    assert _dump(db) == before


def test_bad_input_creates_no_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path)
    code, _, err = _run(capsys, "silence", "add", "-c", str(config), 'a="b"', "--for", "2 parsecs")
    assert code == 2
    assert err.count("\n") == 1
    assert not (tmp_path / "agent.db").exists()


def test_unknown_id_and_config_silence_expire_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path)
    db = tmp_path / "agent.db"
    silence_id = _add(capsys, config, 'alertname="cpu_high"')
    before = _dump(db)
    for bad in ("0000000-nope", silence_id[:4], "config-1"):
        code, out, err = _run(capsys, "silence", "expire", "-c", str(config), bad)
        assert code == 2, (bad, err)
        assert out == ""
        assert err.count("\n") == 1, (bad, err)
    assert _dump(db) == before
    # No database at all: an unknown id, and still no file.
    other = tmp_path / "none.db"
    code, _, err = _run(capsys, "silence", "expire", "-c", str(config), "--db", str(other), "x")
    assert code == 2
    assert err.count("\n") == 1
    assert not other.exists()


def test_add_creates_the_database_with_the_agents_schema(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path)
    db = tmp_path / "sub" / "agent.db"
    code, out, err = _run(
        capsys, "silence", "add", "-c", str(config), "--db", str(db),
        'alertname="cpu_high"', 'host="web-1"', "--for", "2h", "--comment", "deploy",
        "--author", "alice",
    )  # fmt: skip
    assert code == 0, err
    assert "created database" in err
    silence_id = out.strip()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        row = conn.execute(
            "SELECT matchers, created_by, comment, ends_at - starts_at FROM silences WHERE id = ?",
            (silence_id,),
        ).fetchone()
    assert json.loads(row[0]) == ['alertname="cpu_high"', 'host="web-1"']
    assert row[1:] == ("alice", "deploy", pytest.approx(7200.0))
    assert (db.stat().st_mode & 0o777) == 0o600


def test_list_shows_config_and_database_silences_and_expire_ends_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path)
    keep = _add(capsys, config, 'alertname="disk_full"', "--until", "2099-01-01T00:00:00Z")
    gone = _add(capsys, config, 'alertname="cpu_high"', "--for", "2h", "--comment", "deploy")
    code, out, err = _run(capsys, "silence", "expire", "-c", str(config), gone[:8])
    assert code == 0, err
    assert out == f"{gone} expired\n"
    code, out, _ = _run(capsys, "silence", "list", "-c", str(config), "--format", "json")
    assert code == 0
    rows = {r["id"]: r for r in json.loads(out)}
    assert rows["config-1"]["origin"] == "config"
    assert rows["config-1"]["matchers"] == ['alertname="from_config"']
    assert rows[keep]["state"] == "active"
    assert rows[keep]["ends_at"] == "2099-01-01T00:00:00Z"
    assert rows[gone]["state"] == "expired"
    assert rows[gone]["comment"] == "deploy"
    assert [r["state"] for r in json.loads(out)] == ["active", "active", "expired"]
    code, out, _ = _run(capsys, "silence", "list", "-c", str(config))
    assert code == 0
    assert gone in out
    assert "config file" in out
    assert 'alertname="cpu_high"' in out


def test_force_allows_a_silence_of_everything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path)
    assert _add(capsys, config, "--force", "--comment", "maintenance")
    assert _add(capsys, config, 'alertname=~".*"', "--force")


def test_until_in_a_named_zone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path)
    silence_id = _add(
        capsys, config, 'a="b"', "--until", "2099-07-01T12:00", "--tz", "Europe/Berlin"
    )
    with sqlite3.connect(tmp_path / "agent.db") as conn:
        (ends,) = conn.execute(
            "SELECT ends_at FROM silences WHERE id = ?", (silence_id,)
        ).fetchone()
    assert ends == pytest.approx(4086583200.0)  # 10:00Z: Berlin is on summer time in July


def _firing(rule: str) -> Anomaly:
    return Anomaly(
        name="system.cpu.utilization", labels=make_labels({"cpu": "0"}), ts=time.time(),
        value=0.99, detector="threshold", rule=rule, severity="critical", status="firing",
    )  # fmt: skip


def test_engine_mutes_with_database_silences_and_notifies_when_one_ends() -> None:
    cfg = AlertingConfig.model_validate(
        {"group_wait": 0, "group_interval": 10, "repeat_interval": 100}
    )
    engine = Engine(cfg, ["log"])
    silence = SilenceRecord(
        "s1", ('alertname="cpu_high"',), 0.0, 1050.0, "alice", "deploy", 0.0, "db"
    )
    engine.set_runtime_silences([silence.to_silence()])
    engine.observe([_firing("cpu_high")], 1000.0)
    assert engine.flush(1000.0) == []  # muted from the start
    assert engine.flush(1040.0) == []
    # The silence ends at 1050: the group's next tick tells receivers it fires.
    notes = engine.flush(1050.0)
    assert [n.status for n in notes] == ["firing"]
    # Silenced again (a new database silence): the repeat at 1150 is held back …
    engine.set_runtime_silences([SilenceRecord(
        "s2", ('alertname="cpu_high"',), 1060.0, 1200.0, "bob", "", 1060.0, "db"
    ).to_silence()])  # fmt: skip
    assert engine.flush(1160.0) == []
    # … and removing it (silence expire) lets the repeat through at the next tick.
    engine.set_runtime_silences([])
    assert [n.status for n in engine.flush(1170.0)] == ["firing"]
