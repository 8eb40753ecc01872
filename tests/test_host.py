"""The host producer against the real machine (psutil, no mocks)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infrawatch.collectors.host import HostProducer
from infrawatch.config import HostConfig
from infrawatch.model import Sample, make_labels


def _cpu_by_pid(samples: list[Sample]) -> dict[int, float]:
    return {
        int(dict(s.labels)["pid"]): s.value for s in samples if s.name == "process.cpu.utilization"
    }


def _burn_cpu(seconds: float) -> None:
    start = time.process_time()
    while time.process_time() - start < seconds:
        pass


def test_process_cpu_is_reported_only_over_a_real_window() -> None:
    # psutil's per-process cpu_percent is "since the previous call": on a process's first scan
    # it is a meaningless 0.0, which must neither be stored nor decide the top-N by CPU.
    producer = HostProducer(
        HostConfig(metrics=["processes"], top_processes=10_000, process_interval=0.001)
    )
    first = producer.collect_sync()
    assert any(s.name == "process.memory.usage" for s in first)
    assert _cpu_by_pid(first) == {}

    _burn_cpu(0.05)
    second = _cpu_by_pid(producer.collect_sync())
    assert second[os.getpid()] > 0.0
    assert all(v >= 0.0 for v in second.values())


def test_first_cpu_sample_measures_a_real_window() -> None:
    # Priming cpu_percent at start-up and reading it again a few ms later measures nothing
    # (no clock tick passed): psutil then says 0.0 even on a busy machine.
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        _burn_cpu(0.05)  # the burner is surely running by now
        producer = HostProducer(HostConfig(metrics=["cpu"], per_cpu=False))
        (total,) = producer.collect_sync()
    finally:
        burner.kill()
        burner.wait()
    assert total.name == "system.cpu.utilization"
    assert total.value > 0.1  # one core of this machine was spinning the whole time


def test_a_failing_metric_group_does_not_cost_the_others(tmp_path: Path) -> None:
    # A malformed cgroup file (cpu.max that is not "quota period") breaks only container metrics.
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    (cgroup / "cgroup.controllers").write_text("cpu memory")
    (cgroup / "memory.max").write_text("max")
    (cgroup / "cpu.max").write_text("lots 100000")
    producer = HostProducer(
        HostConfig(metrics=["memory", "container"], cgroup_path=cgroup, container="on")
    )
    samples = producer.collect_sync()
    assert {s.name for s in samples} == {
        "system.memory.limit",
        "system.memory.usage",
        "system.memory.utilization",
    }


def test_all_groups_failing_is_a_failed_tick(tmp_path: Path) -> None:
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    (cgroup / "cgroup.controllers").write_text("cpu memory")
    (cgroup / "memory.max").write_text("max")
    (cgroup / "cpu.max").write_text("lots 100000")
    producer = HostProducer(HostConfig(metrics=["container"], cgroup_path=cgroup, container="on"))
    with pytest.raises(RuntimeError, match="every host metric group failed"):
        producer.collect_sync()


def test_labels_from_undecodable_names_are_valid_utf8() -> None:
    # psutil decodes a process name such as b"y\xffz" with surrogateescape.
    name = b"y\xffz".decode("utf-8", "surrogateescape")
    labels = make_labels({"name": name, "pid": 7})
    assert labels == (("name", "y\ufffdz"), ("pid", "7"))
    for _, value in labels:
        value.encode("utf-8")  # storable in SQLite and JSON
