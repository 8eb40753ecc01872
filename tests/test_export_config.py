"""`[[export]]` configuration, what `check` shows of it, and what an agent imports for it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from infrawatch.config import ConfigError, load
from infrawatch.export.config import ExportConfig


def _load(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load(path)
    return info.value.problems


def test_defaults_and_endpoints() -> None:
    otlp = ExportConfig(name="o", type="otlp", url="http://collector:4318")
    assert (otlp.batch_samples, otlp.timeout, otlp.match, otlp.headers) == (2000, 10.0, [], {})
    assert otlp.endpoint == "http://collector:4318/v1/metrics"
    given = ExportConfig(name="o", type="otlp", url="https://c:4318/otlp/v1/metrics?x=1")
    assert given.endpoint == "https://c:4318/otlp/v1/metrics?x=1"
    assert given.target == "https://c:4318/otlp/v1/metrics"  # the query may hold a token
    rw = ExportConfig(name="p", type="remote_write", url="http://mimir:9009/api/v1/push")
    assert rw.endpoint == "http://mimir:9009/api/v1/push"


def test_invalid_entries_are_one_line_each(tmp_path: Path) -> None:
    problems = _load(
        tmp_path,
        textwrap.dedent(
            """
            [[export]]
            name = "a"
            type = "otlp"
            url = "ftp://collector:4318"
            [[export]]
            name = "b"
            type = "kafka"
            url = "http://x:1"
            [[export]]
            name = "c"
            type = "remote_write"
            url = "http://user:pw@x:9090/api/v1/write"
            [[export]]
            name = "d"
            type = "otlp"
            url = "http://x:4318"
            headers = { "Content-Encoding" = "br" }
            batch_samples = 0
            """
        ),
    )
    assert problems[0] == "export[0].url: url must start with http:// or https://"
    assert problems[1].startswith("export[1].type: Input should be 'otlp' or 'remote_write'")
    assert problems[2].startswith("export[2].url: url must not carry credentials")
    assert "pw" not in "".join(problems)
    assert problems[3] == "export[3].headers: header 'Content-Encoding' is set by the exporter"
    assert problems[4] == "export[3].batch_samples: Input should be greater than 0"
    assert len(problems) == 5


def test_names_are_unique(tmp_path: Path) -> None:
    entry = '[[export]]\nname = "x"\ntype = "otlp"\nurl = "http://a:1"\n'
    assert _load(tmp_path, entry * 2) == ["export: duplicate export names: x"]


def test_check_lists_exporters_with_headers_masked(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        textwrap.dedent(
            """
            [[export]]
            name = "grafana"
            type = "remote_write"
            url = "https://prom.example.net/api/prom/push?token=QUERYSECRET"
            headers = { Authorization = "Basic SEKRIT" }
            match = ["system.*"]
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "infrawatch", "check", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "SEKRIT" not in result.stdout + result.stderr
    line = next(x for x in result.stdout.splitlines() if x.startswith("export grafana:"))
    assert line == (
        "export grafana: remote_write → https://prom.example.net/api/prom/push "
        "(headers: Authorization: **********; 2000 samples per request; timeout 10s; system.*)"
    )


PROBE = """
import asyncio, json, sys
from contextlib import AsyncExitStack
from infrawatch.config import Settings
from infrawatch.runtime.agent import Agent

async def main():
    settings = Settings.model_validate(json.loads(sys.argv[1]))
    agent = Agent(settings)
    async with AsyncExitStack() as stack:
        await agent.startup(stack)
        loaded = [m for m in ("google.protobuf", "opentelemetry.proto", "cramjam")
                  if m in sys.modules]
    print(json.dumps(loaded))

asyncio.run(main())
"""


def _modules_after_startup(tmp_path: Path, export: list[dict[str, str]]) -> list[str]:
    settings = {
        "storage": {"path": str(tmp_path / "a.db")},
        "http": {"enabled": False},
        "export": export,
    }
    result = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(settings)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    loaded: list[str] = json.loads(result.stdout.strip().splitlines()[-1])
    return loaded


def test_protocol_libraries_load_only_for_configured_exporters(tmp_path: Path) -> None:
    assert _modules_after_startup(tmp_path, []) == []
    otlp = {"name": "o", "type": "otlp", "url": "http://127.0.0.1:9"}
    assert _modules_after_startup(tmp_path, [otlp]) == ["google.protobuf", "opentelemetry.proto"]
    rw = {"name": "p", "type": "remote_write", "url": "http://127.0.0.1:9"}
    assert _modules_after_startup(tmp_path, [rw]) == ["google.protobuf", "cramjam"]
