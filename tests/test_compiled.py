"""The detectors compiled by mypyc (setup.py) decide exactly as their pure-Python source does."""

from __future__ import annotations

import importlib.util
import math
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

import infrawatch.detect
from infrawatch.detect import build_detectors, compiled
from infrawatch.detect.base import Detector, state_rows_of
from infrawatch.detect.config import AnalysisConfig
from infrawatch.model import Anomaly, Sample

DETECT = Path(infrawatch.detect.__file__).parent
COMPILED = ["art", "feed", "match", "novelty", "seasonal", "threshold", "zscore"]

needs_compiled = pytest.mark.skipif(not compiled(), reason="detectors not compiled here")


@pytest.fixture
def pure() -> Iterator[dict[str, ModuleType]]:
    """The detector modules loaded from their .py source beside the compiled ones."""
    modules: dict[str, ModuleType] = {}
    for name in COMPILED:
        full = f"infrawatch.detect._pure_{name}"
        spec = importlib.util.spec_from_file_location(full, DETECT / f"{name}.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[full] = module  # dataclasses look their module up while being built
        spec.loader.exec_module(module)
        modules[name] = module
    yield modules
    for name in COMPILED:
        sys.modules.pop(f"infrawatch.detect._pure_{name}", None)


def _samples() -> list[Sample]:
    """Four days of 5-minute samples: daily waves, noise, spikes, a level shift, a gap in time."""
    rng = random.Random(7)
    out: list[Sample] = []
    for i in range(1200):
        ts = 1_700_000_000.0 + 300.0 * i + (3600.0 if i > 900 else 0.0)
        day = math.sin(2 * math.pi * i / 288)
        latency = 10.0 + 3.0 * day + rng.gauss(0, 0.5) + (25.0 if i in (700, 1000) else 0.0)
        memory = 0.97 if 1050 <= i < 1080 else 0.5 + 0.1 * day
        errors = float(rng.random() < 0.05) + (8.0 if i >= 1100 else 0.0)
        out.append(Sample("app.latency", latency, ts, (("route", "/"),)))
        out.append(Sample("system.memory.utilization", memory, ts))
        out.append(Sample("app.errors", errors, ts))
    return out


def _run(detectors: list[Detector]) -> list[Anomaly]:
    return [a for s in _samples() for d in detectors for a in d.observe(s)]


@needs_compiled
def test_the_modules_in_use_are_the_compiled_ones() -> None:
    for name in COMPILED:
        module = importlib.import_module(f"infrawatch.detect.{name}")
        assert not (module.__file__ or "").endswith(".py"), name
        built = Path(module.__file__ or "")
        # A compiled copy older than its source is stale: `pip install -e .` (make) rebuilds.
        assert built.stat().st_mtime >= (DETECT / f"{name}.py").stat().st_mtime, name


@needs_compiled
def test_compiled_detectors_decide_exactly_as_the_source(pure: dict[str, ModuleType]) -> None:
    config = AnalysisConfig()
    compiled_set = build_detectors(config)
    novelty = pure["novelty"].NoveltyDetector(config.novelty)
    art = pure["art"].ArtDetector(config.art, novelty)
    source_set: list[Detector] = [
        pure["threshold"].ThresholdDetector(config.threshold),
        pure["zscore"].ZScoreDetector(config.zscore, config.novelty, novelty),
        novelty,
        art,
    ]
    assert [d.name for d in source_set] == [d.name for d in compiled_set]
    got, expected = _run(compiled_set), _run(source_set)
    # The rule, Z-score and novelty fire and resolve on this data; ART is past learning (its
    # score and best match per series are compared below).
    assert {a.detector for a in expected} == {"threshold", "zscore", "novelty"}
    assert {a.status for a in expected} == {"firing", "resolved"}
    assert art.categories(("app.latency", (("route", "/"),))) > 0
    assert got == expected  # floats compared exactly: evidence, scores, summaries
    for c, p in zip(compiled_set, source_set, strict=True):
        assert state_rows_of(c) == state_rows_of(p), c.name


@pytest.mark.timeout(180)
def test_an_install_that_cannot_compile_is_pure_python_and_works(tmp_path: Path) -> None:
    # What a machine without a C compiler gets (INFRAWATCH_PURE stands in for the missing gcc):
    # an install, not an error, that says what it is.
    root = DETECT.parent.parent
    target = tmp_path / "site"
    env = {**os.environ, "INFRAWATCH_PURE": "1"}
    env.pop("PYTHONPATH", None)
    install = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    install += ["--no-deps", "--target", str(target), str(root)]
    done = subprocess.run(install, env=env, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not list(target.rglob("*.so")), "nothing compiled"
    assert (target / "infrawatch" / "detect" / "zscore.py").is_file()
    # The installed copy, ahead of this checkout on the path, runs and says it is pure Python.
    env["PYTHONPATH"] = str(target)
    check = subprocess.run(
        [sys.executable, "-m", "infrawatch", "check"],
        env={k: v for k, v in env.items() if not k.startswith("INFRAWATCH_")},
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert check.returncode == 0, check.stderr
    assert "detectors: pure Python" in check.stdout
