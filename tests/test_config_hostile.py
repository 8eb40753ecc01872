"""Hostile configurations: every problem, from any source, is one line and exit 2, no traceback.

Most cases call `config.load()` in-process; a few run the CLI and the agent as subprocesses to
prove the exit code, the absence of a traceback, and the SIGHUP reload event.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from infrawatch import config
from infrawatch.config import ConfigError, load, override_value
from tests.agentproc import AgentProcess, write_config
from tests.support_http import ScriptedProducer, base_url, running_agent, settings

DEPTH = 500


def _deep(depth: int = DEPTH) -> str:
    return "[" * depth + "]" * depth


@pytest.fixture(autouse=True)
def _no_config_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config, "default_config_path", lambda: None)


def _problems(path: Path | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(path)
    problems = info.value.problems
    assert problems
    for problem in problems:
        assert "\n" not in problem
    return problems


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("INFRAWATCH_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "infrawatch", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
        check=False,
    )


def test_deeply_nested_toml_is_one_problem_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f"[host]\ninterval = 5\n\n[alerting]\n# a [comment\njunk = {_deep()}\n")
    (problem,) = _problems(path)
    assert problem.startswith(f"{path}: invalid TOML: "), problem
    assert "alerting.junk" in problem
    assert "line 6" in problem
    assert "nested" in problem
    # Nesting the parser copes with is an ordinary validation problem.
    path.write_text(f"[host]\nmetrics = {_deep(100)}\n")
    assert [p.partition(":")[0] for p in _problems(path)] == ["host.metrics[0]"]


def test_deeply_nested_set_value_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        override_value(["host", "metrics"], _deep())
    assert info.value.problems == ["host.metrics (from --set): value nested too deeply"]


def test_malformed_json_in_the_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("INFRAWATCH_HOST__METRICS", '["cpu"')
    monkeypatch.setenv("infrawatch_analysis__novelty", "{")
    monkeypatch.setenv("INFRAWATCH_ALERTING__SINKS", '[{"url": "https://hooks/S3CRET-TOKEN"')
    monkeypatch.setenv("INFRAWATCH_HOST__EXCLUDE_DEVICES", _deep(100_000))
    problems = sorted(_problems())
    assert [p.partition(":")[0] for p in problems] == [
        "INFRAWATCH_ALERTING__SINKS",
        "INFRAWATCH_HOST__EXCLUDE_DEVICES",
        "INFRAWATCH_HOST__METRICS",
        "infrawatch_analysis__novelty",
    ]
    assert problems[2].startswith("INFRAWATCH_HOST__METRICS: invalid JSON for host.metrics: ")
    assert "nested too deeply" in problems[1]
    assert "S3CRET" not in " ".join(problems)


def test_invalid_environment_values_name_field_and_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[host]\ntop_processes = 'many'\n")
    monkeypatch.setenv("INFRAWATCH_AGENT__QUEUE_SIZE", "lots")
    monkeypatch.setenv("INFRAWATCH_HOST__BOGUS", "1")
    secret = '[{"name": "d", "type": "discord", "url": "ftp://hooks/S3CRET-TOKEN"}]'
    monkeypatch.setenv("INFRAWATCH_ALERTING__SINKS", secret)
    problems = _problems(path)
    assert sorted(problems) == [
        "agent.queue_size (from INFRAWATCH_AGENT__QUEUE_SIZE): Input should be a valid integer",
        "alerting.sinks[0] (from INFRAWATCH_ALERTING__SINKS): "
        "url must start with http:// or https://",
        "host.bogus (from INFRAWATCH_HOST__BOGUS): unknown key",
        "host.top_processes: Input should be a valid integer",  # from the file: no source
    ]
    with pytest.raises(ConfigError) as info:
        load(None, {"host": {"interval": "inf"}})
    assert "host.interval (from --set): Input should be a finite number" in info.value.problems


HOSTILE = {
    "deep": f"junk = {_deep()}\n",
    "deep_inline_tables": "x = " + "{a = " * DEPTH + "1" + "}" * DEPTH + "\n",
    "wrong_types": (
        "[storage]\npath = 42\n[host]\nenabled = 1\ninterval = true\nmetrics = 'cpu'\n"
        "[agent]\nqueue_size = 1.5\n[http]\nlisten = 9464\n"
        "[[analysis.threshold]]\nname = 1\nmetric = []\nwarning = '0.5'\n"
        "[cloud.aws]\nperiod = '60'\n[alerting]\nsinks = {}\nexternal_labels = {a = 1}\n"
    ),
    "huge_numbers": (
        "[host]\ninterval = 1e400\n[agent]\nshutdown_deadline = -1e400\n"
        "queue_size = 99999999999999999999999999999999\n"
        "[[analysis.threshold]]\nname = 'x'\nmetric = 'm'\nwarning = nan\n"
        "[alerting.retry]\nmultiplier = inf\n"
    ),
    "unknown_keys": "[hosts]\ninterval = 1\n[host]\nintervall = 1\n[cloud.aws.x]\ny = 1\n",
    "table_in_place_of_a_value": "host = 1\nagent = [1, 2]\n[logging.level]\nx = 1\n",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_configs_are_config_errors(tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.toml"
    path.write_text(HOSTILE[name])
    _problems(path)


def test_hostile_configs_exit_2_without_traceback(tmp_path: Path) -> None:
    # One interpreter runs the CLI's main() for every case (a process each would be slow); an
    # exception escaping main() fails the run with its traceback on stderr.
    cases: list[tuple[list[str], dict[str, str]]] = []
    for name, text in HOSTILE.items():
        path = tmp_path / f"{name}.toml"
        path.write_text(text)
        cases.append((["check", "--config", str(path)], {}))
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"[host]\ninterval = '\xff\xfe'\n")
    cases.append((["check", "--config", str(binary)], {}))
    cases.append((["check", "--set", "host.interval=inf"], {}))
    cases.append((["check", "--set", f"host.metrics={_deep()}"], {}))
    cases.append((["check"], {"INFRAWATCH_HOST__METRICS": '["cpu"'}))
    cases.append((["run", "--once"], {"INFRAWATCH_HOST": "[" * 100_000}))
    script = (
        "import contextlib, io, json, os, sys\n"
        "from infrawatch.cli.main import main\n"
        "results = []\n"
        "for argv, env in json.loads(sys.argv[1]):\n"
        "    os.environ.update(env)\n"
        "    err = io.StringIO()\n"
        "    with contextlib.redirect_stderr(err):\n"
        "        code = main(argv)\n"
        "    for key in env:\n"
        "        del os.environ[key]\n"
        "    results.append([code, err.getvalue()])\n"
        "print(json.dumps(results))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFRAWATCH_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path)  # no user config file
    result = subprocess.run(
        [sys.executable, "-c", script, json.dumps(cases)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    for (argv, case_env), (code, stderr) in zip(cases, json.loads(result.stdout), strict=True):
        assert code == 2, (argv, case_env, stderr)
        assert stderr.strip(), (argv, case_env)
        assert "Traceback" not in stderr, (argv, stderr)


@pytest.mark.parametrize("command", ["check", "run"])
def test_deep_nesting_exits_2_with_one_line(tmp_path: Path, command: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f"junk = {_deep()}\n")
    result = _cli(command, "--config", str(path))
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"{path}: invalid TOML: junk (line 1)")


def test_run_with_malformed_env_json_exits_2_with_one_line(tmp_path: Path) -> None:
    result = _cli(
        "run",
        "--once",
        env={"INFRAWATCH_HOST__METRICS": '["cpu"', "XDG_CONFIG_HOME": str(tmp_path)},
    )
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("INFRAWATCH_HOST__METRICS: invalid JSON for host.metrics: ")


async def test_sighup_with_deep_nesting_is_an_invalid_config(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[host]\ninterval = 60\nmetrics = ['load']\n")
    proc = await AgentProcess(path).start()
    try:
        await proc.wait_for("agent.started")
        good = path.read_text()
        path.write_text(f"{good}\n[alerting]\njunk = {_deep()}\n")
        proc.signal(signal.SIGHUP)
        rejected = await proc.wait_for("config.reload_rejected")
        assert rejected["errors"] == 1
        (invalid,) = proc.named("config.reload_invalid")
        assert "alerting.junk" in invalid["problem"]
        assert proc.named("config.reload_failed") == []
    finally:
        assert await proc.stop() == 0, proc.stderr


async def test_healthz_never_sends_non_json_numbers(tmp_path: Path) -> None:
    # A producer that can no longer come from the configuration: its interval is infinite.
    stuck = ScriptedProducer("stuck", interval=float("inf"))
    async with (
        running_agent(settings(tmp_path), [stuck]) as agent,
        aiohttp.ClientSession() as session,
    ):
        await stuck.wait_ticks(1)
        async with session.get(f"{base_url(agent)}/healthz") as resp:
            text = await resp.text()
        for token in ("Infinity", "NaN"):
            assert token not in text, text
        if resp.status == 200:
            json.loads(text, parse_constant=lambda name: pytest.fail(name))
