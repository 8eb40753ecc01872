"""The Dockerfile can't be built here (no Docker engine), so check what can be checked:
its build stage's COPY set and install command work in a fresh venv, and its ENTRYPOINT runs.

The install resolves from the configured package index (pip's cache or a local mirror);
about 15 s here.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
VENV = "/opt/venv"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    current = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        current += line.removesuffix("\\").strip() + " "
        if not line.endswith("\\"):
            keyword, _, rest = current.strip().partition(" ")
            out.append((keyword.upper(), rest.strip()))
            current = ""
    return out


def _pin(line: str) -> tuple[str, str]:
    name, _, version = line.partition("==")
    return re.sub(r"[-_.]+", "-", name).lower(), version.strip()


def _build_stage() -> list[tuple[str, str]]:
    instructions = _instructions()
    starts = [i for i, (k, _) in enumerate(instructions) if k == "FROM"]
    assert len(starts) >= 2, "multi-stage build expected"
    return instructions[starts[0] : starts[1]]


def test_runtime_stage_is_non_root_with_healthcheck_and_entrypoint() -> None:
    instructions = _instructions()
    runtime = instructions[[k for k, _ in instructions].index("FROM", 1) :]
    keywords = dict(runtime)
    assert "slim" in runtime[0][1]
    user = keywords["USER"].split(":")[0]
    assert user not in ("root", "0")
    assert "/healthz" in keywords["HEALTHCHECK"]
    assert json.loads(keywords["ENTRYPOINT"]) == ["python", "-m", "infrawatch", "run"]
    assert "/var/lib/infrawatch" in keywords["VOLUME"]
    # The database goes to the volume via STATE_DIRECTORY, so a mounted TOML can still move it.
    assert "STATE_DIRECTORY=/var/lib/infrawatch" in keywords["ENV"]
    assert "INFRAWATCH_STORAGE__PATH" not in keywords["ENV"]


@pytest.mark.timeout(180)
def test_image_install_command_and_entrypoint_work_in_a_fresh_venv(tmp_path: Path) -> None:
    stage = _build_stage()
    # The build context the image sees: exactly what the build stage COPYs.
    context = tmp_path / "context"
    context.mkdir()
    for keyword, args in stage:
        if keyword == "COPY":
            *sources, _dest = shlex.split(args)
            for source in sources:
                src = ROOT / source
                if src.is_dir():
                    shutil.copytree(
                        src, context / source, ignore=shutil.ignore_patterns("__pycache__")
                    )
                else:
                    shutil.copy2(src, context / source)
    installs = [a for k, a in stage if k == "RUN" and "pip install" in a]
    assert len(installs) == 1
    assert "-c constraints.txt" in installs[0]

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    command = shlex.split(installs[0].replace(VENV, str(venv)))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INFRAWATCH_", "VIRTUAL_ENV"))}
    done = subprocess.run(command, cwd=context, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

    # Versions in the image are the ones constraints.txt pins.
    frozen = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "freeze"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    pins = dict(
        _pin(line) for line in (ROOT / "constraints.txt").read_text().splitlines() if "==" in line
    )
    installed = dict(_pin(line) for line in frozen.splitlines() if "==" in line)
    assert {"aiohttp", "prometheus-client", "pydantic", "structlog"} <= installed.keys()
    for name, version in installed.items():
        if name in pins:
            assert version == pins[name], name

    # The ENTRYPOINT, with the image's environment (database under a temp "volume").
    entry = json.loads(dict(_instructions())["ENTRYPOINT"])
    entry[0] = str(venv / "bin" / entry[0])
    run_env = {
        **env,
        "STATE_DIRECTORY": str(tmp_path / "volume"),
        "INFRAWATCH_HTTP__LISTEN": "127.0.0.1:0",
        "INFRAWATCH_LOGGING__FORMAT": "json",
        "INFRAWATCH_HOST__INTERVAL": "1",
    }
    once = subprocess.run(
        [*entry, "--once"], cwd=tmp_path, env=run_env, capture_output=True, text=True, timeout=60
    )
    assert once.returncode == 0, once.stderr
    logged = [json.loads(line) for line in once.stdout.splitlines()]
    events = [e["event"] for e in logged]
    assert "agent.stopped" in events
    # The build stage has a C compiler (as this machine has, if gcc is here): setup.py compiled
    # the detectors.
    started = next(e for e in logged if e["event"] == "agent.started")
    assert started["detectors_compiled"] is (shutil.which("gcc") is not None)
    assert (tmp_path / "volume" / "infrawatch.db").is_file()
