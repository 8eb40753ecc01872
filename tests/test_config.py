"""Configuration: precedence, one-line errors with TOML paths, the example file, init/check."""

from __future__ import annotations

import re
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from infrawatch import config
from infrawatch.config import ConfigError, Settings, load


def _cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    import os

    full_env = {k: v for k, v in os.environ.items() if not k.startswith("INFRAWATCH_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "infrawatch", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=60,
        check=False,
    )


def test_defaults_without_any_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config, "default_config_path", lambda: None)
    loaded = load()
    assert loaded.path is None
    assert loaded.settings.host.interval == 10
    assert loaded.settings.agent.queue_full_policy == "drop_oldest"


def test_precedence_flag_over_env_over_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[host]\ninterval = 3\ntop_processes = 7\n[logging]\nlevel = 'debug'\n")
    monkeypatch.setenv("INFRAWATCH_HOST__INTERVAL", "2.5")
    monkeypatch.setenv("INFRAWATCH_LOGGING__LEVEL", "warning")
    loaded = load(path, {"logging": {"level": "error"}})
    s = loaded.settings
    assert s.host.interval == 2.5  # env beats file
    assert s.host.top_processes == 7  # file beats default
    assert s.logging.level == "error"  # flag beats env
    origins = {p: o for p, _, o in config.effective_items(loaded)}
    assert origins["host.interval"] == "env"
    assert origins["host.top_processes"] == "file"
    assert origins["logging.level"] == "flag"
    assert origins["agent.queue_size"] == "default"


def test_config_file_from_env_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[host]\ninterval = 4\n")
    monkeypatch.setenv("INFRAWATCH_CONFIG", str(path))
    assert load().settings.host.interval == 4


def test_durations_accept_units(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[host]\ninterval = '1m'\n[storage]\nretention = '2d'\n")
    s = load(path).settings
    assert s.host.interval == 60
    assert s.storage.retention == 2 * 86400


def test_every_problem_is_one_line_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        "[host]\ninterval = 0\nbogus = 1\ntop_processes = 'many'\n[nosuchsection]\nx = 1\n"
    )
    with pytest.raises(ConfigError) as info:
        load(path)
    problems = info.value.problems
    assert "host.interval: Input should be greater than 0" in problems
    assert "host.bogus: unknown key" in problems
    assert any(p.startswith("host.top_processes: ") for p in problems)
    assert "nosuchsection: unknown key" in problems
    assert len(problems) == 4


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[host\ninterval = 1\n")
    with pytest.raises(ConfigError) as info:
        load(path)
    assert info.value.problems[0].startswith(f"{path}: invalid TOML")


def _leaf_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    paths = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            paths.extend(_leaf_paths(annotation, f"{prefix}{name}."))
        else:
            paths.append(f"{prefix}{name}")
    return paths


def test_example_config_loads_and_documents_every_field() -> None:
    example = Path(__file__).parent.parent / "config" / "infrawatch.example.toml"
    text = example.read_text()
    tomllib.loads(text)
    loaded = load(example)
    assert loaded.settings.host.interval == 10
    for path in _leaf_paths(Settings):
        section, _, key = path.rpartition(".")
        table = re.escape(section).replace(r"\.", r"\.")
        # The key appears (set or commented out) after its section's header; a top-level key
        # (the [[scrape]] list) anywhere, as a comment.
        pattern = rf"^\[{table}\][\s\S]*?^#?\s*{re.escape(key)}\s*="
        if not section:
            pattern = rf"^#?\s*{re.escape(key)}\s*="
        assert re.search(pattern, text, re.MULTILINE), f"{path} is not documented"


def test_cli_check_reports_sources_and_exit_codes(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[host]\ninterval = 3\n")
    ok = _cli("check", "--config", str(path), env={"INFRAWATCH_AGENT__QUEUE_SIZE": "50"})
    assert ok.returncode == 0, ok.stderr
    # Durations also show in a readable unit.
    assert re.search(r"^host\.interval\s+3\.0 \(3s\)\s+\[file\]$", ok.stdout, re.MULTILINE)
    assert re.search(r"^agent\.queue_size\s+50\s+\[env\]$", ok.stdout, re.MULTILINE)
    deadline = r"^agent\.shutdown_deadline\s+10\.0 \(10s\)\s+\[default\]$"
    assert re.search(deadline, ok.stdout, re.MULTILINE)

    path.write_text("[host]\ninterval = 'often'\nunknown = true\n")
    bad = _cli("check", "--config", str(path))
    assert bad.returncode == 2
    lines = bad.stderr.strip().splitlines()
    assert lines == [
        "host.interval: malformed duration 'often': use a number of seconds or e.g. 30s, 5m, 7d",
        "host.unknown: unknown key",
    ]
    assert "Traceback" not in bad.stderr


def test_cli_run_with_invalid_env_exits_2_without_traceback(tmp_path: Path) -> None:
    result = _cli("run", "--once", env={"INFRAWATCH_HOST__INTERVAL": "-5"})
    assert result.returncode == 2
    # The problem names the variable: the value is not in the file.
    assert result.stderr.strip() == (
        "host.interval (from INFRAWATCH_HOST__INTERVAL): Input should be greater than 0"
    )


def test_cli_init_writes_and_refuses_to_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "etc" / "infrawatch.toml"
    first = _cli("init", "--path", str(target))
    assert first.returncode == 0
    assert first.stdout.strip() == f"wrote {target}"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600  # it will hold webhook secrets
    assert tomllib.loads(target.read_text()) == tomllib.loads(config.example_config_text())
    target.write_text("# mine\n")
    again = _cli("init", "--path", str(target))
    assert again.returncode == 2
    assert "--force" in again.stderr
    assert target.read_text() == "# mine\n"
    forced = _cli("init", "--path", str(target), "--force")
    assert forced.returncode == 0
    assert target.read_text() == config.example_config_text()


def test_cli_bad_arguments_are_one_line(tmp_path: Path) -> None:
    result = _cli("run", "--bogus")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert _cli("--version").stdout.startswith("infrawatch ")


def test_help_does_not_import_heavy_dependencies() -> None:
    code = (
        "import sys; from infrawatch.cli.main import build_parser; build_parser();"
        "heavy = {'aiohttp', 'aiosqlite', 'psutil', 'pydantic', 'botocore', 'structlog'};"
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_origin_is_per_value_not_per_section(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Setting one key of a section must not make its siblings look configured.
    path = tmp_path / "c.toml"
    path.write_text("[host]\ninterval = 3\n")
    loaded = load(path, {"agent": {"queue_size": 5}})
    origins = {p: o for p, _, o in config.effective_items(loaded)}
    assert origins["host.interval"] == "file"
    assert origins["host.top_processes"] == "default"
    assert origins["agent.queue_size"] == "flag"
    assert origins["agent.shutdown_deadline"] == "default"


def test_configuration_reference_is_current() -> None:
    # docs/configuration.md's table is generated from the models and the example file.
    script = Path(__file__).parent.parent / "scripts" / "config_reference.py"
    result = subprocess.run(
        [sys.executable, str(script), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
