"""Container limits from fabricated cgroup v1, v2 and hybrid trees."""

from __future__ import annotations

from pathlib import Path

import pytest

from infrawatch.collectors.cgroup import CgroupReader, cpu_limit, detect, memory_limit

GIB = 1 << 30
MACHINE = 16 * GIB


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _proc(tmp_path: Path, cgroup_file: str) -> Path:
    proc = tmp_path / "proc"
    _write(proc, {"self/cgroup": cgroup_file})
    return proc


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("max", None),
        (-1, None),
        ("9223372036854771712", None),  # v1's page-aligned LONG_MAX
        (str(MACHINE * 2), None),  # more than the machine has: no real limit
        ("0", None),
        ("garbage", None),
        (str(GIB), GIB),
    ],
)
def test_memory_limit_sentinels(raw: str | int, expected: int | None) -> None:
    assert memory_limit(raw, MACHINE) == expected


def test_cpu_limit_sentinels() -> None:
    assert cpu_limit(-1, 100000) is None
    assert cpu_limit(None, None) is None
    assert cpu_limit(150000, 100000) == 1.5


def test_v2_limits_and_utilization(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    _write(
        root,
        {
            "cgroup.controllers": "cpu memory",
            "memory.max": str(GIB),
            "memory.current": str(GIB // 2 + 1000),
            "memory.stat": "anon 1\ninactive_file 1000\n",
            "cpu.max": "50000 100000",
            "cpu.stat": "usage_usec 1000000\nuser_usec 1\n",
        },
    )
    paths = detect(root, _proc(tmp_path, "0::/\n"))
    assert paths is not None
    assert paths.version == "v2"
    clock = FakeClock()
    reader = CgroupReader(paths, MACHINE, clock)
    first = {s.name: s.value for s in reader.samples(ts=1.0)}
    assert first["container.memory.utilization"] == pytest.approx(0.5)
    assert first["container.cpu.limit"] == 0.5
    assert "container.cpu.utilization" not in first  # a rate needs two readings

    (root / "cpu.stat").write_text("usage_usec 1250000\n")  # 0.25 s of CPU in 1 s
    clock.now += 1.0
    second = {s.name: s.value for s in reader.samples(ts=2.0)}
    assert second["container.cpu.utilization"] == pytest.approx(0.5)  # 0.25 of a 0.5-core limit


def test_v2_unlimited_emits_nothing(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    _write(
        root,
        {"cgroup.controllers": "cpu memory", "memory.max": "max", "cpu.max": "max 100000",
         "memory.current": "5", "cpu.stat": "usage_usec 5\n"},
    )  # fmt: skip
    paths = detect(root, _proc(tmp_path, "0::/\n"))
    assert paths is not None
    assert CgroupReader(paths, MACHINE, FakeClock()).samples(ts=1.0) == []


def test_v2_host_view_follows_own_cgroup_path(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    _write(
        root,
        {
            "cgroup.controllers": "cpu memory",
            "memory.max": "max",
            "system.slice/app.service/memory.max": str(2 * GIB),
            "system.slice/app.service/memory.current": str(GIB),
            "system.slice/app.service/cpu.max": "max 100000",
        },
    )
    paths = detect(root, _proc(tmp_path, "0::/system.slice/app.service\n"))
    assert paths is not None
    mem, cpu = CgroupReader(paths, MACHINE, FakeClock()).limits()
    assert (mem, cpu) == (2 * GIB, None)


def test_v1_limits(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    _write(
        root,
        {
            "memory/memory.limit_in_bytes": str(4 * GIB),
            "memory/memory.usage_in_bytes": str(GIB + 500),
            "memory/memory.stat": "cache 10\ntotal_inactive_file 500\n",
            "cpu,cpuacct/cpu.cfs_quota_us": "200000",
            "cpu,cpuacct/cpu.cfs_period_us": "100000",
            "cpu,cpuacct/cpuacct.usage": "3000000000",
        },
    )
    paths = detect(root, _proc(tmp_path, "4:memory:/\n3:cpu,cpuacct:/\n"))
    assert paths is not None
    assert paths.version == "v1"
    clock = FakeClock()
    reader = CgroupReader(paths, MACHINE, clock)
    values = {s.name: s.value for s in reader.samples(ts=1.0)}
    assert values["container.memory.utilization"] == pytest.approx(0.25)
    assert values["container.cpu.limit"] == 2.0
    (root / "cpu,cpuacct/cpuacct.usage").write_text("4000000000")  # +1 s of CPU in 2 s
    clock.now += 2.0
    values = {s.name: s.value for s in reader.samples(ts=3.0)}
    assert values["container.cpu.utilization"] == pytest.approx(0.25)  # 0.5 cores of 2


def test_v1_unlimited_sentinels(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    _write(
        root,
        {
            "memory/memory.limit_in_bytes": "9223372036854771712",
            "memory/memory.usage_in_bytes": "100",
            "cpu/cpu.cfs_quota_us": "-1",
            "cpu/cpu.cfs_period_us": "100000",
        },
    )
    paths = detect(root, _proc(tmp_path, ""))
    assert paths is not None
    assert CgroupReader(paths, MACHINE, FakeClock()).samples(ts=1.0) == []


def test_hybrid_uses_v1_controllers(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    _write(
        root,
        {
            "unified/cgroup.controllers": "",
            "memory/memory.limit_in_bytes": str(GIB),
            "memory/memory.usage_in_bytes": str(GIB // 4),
            "cpu/cpu.cfs_quota_us": "-1",
        },
    )
    paths = detect(root, _proc(tmp_path, "0::/\n5:memory:/\n"))
    assert paths is not None
    assert paths.version == "hybrid"
    values = {s.name: s.value for s in CgroupReader(paths, MACHINE, FakeClock()).samples(ts=1.0)}
    assert values["container.memory.utilization"] == pytest.approx(0.25)


def test_no_cgroup_filesystem(tmp_path: Path) -> None:
    assert detect(tmp_path / "nothing", _proc(tmp_path, "")) is None
