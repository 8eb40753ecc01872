"""Container limits from cgroup v2, v1 or a hybrid layout.

Only limits that are really set produce utilization: "max", -1 and absurdly large values (the
kernel's "no limit" sentinels, or more than the machine has) mean "no limit".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from infrawatch.collectors.rates import RateTracker
from infrawatch.model import Sample

# v1 reports "no limit" as a page-aligned LONG_MAX (9223372036854771712); anything this large is it.
_UNLIMITED_BYTES = 1 << 62

CgroupVersion = Literal["v1", "v2", "hybrid"]


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _read_int(path: Path) -> int | None:
    text = _read(path)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _read_stat(path: Path) -> dict[str, int]:
    text = _read(path) or ""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            out[key] = int(value)
    return out


def memory_limit(raw: str | int | None, machine_bytes: int) -> int | None:
    """The memory limit in bytes, or None for "max", -1, zero, huge, or above the machine's RAM."""
    if raw is None or raw == "max":
        return None
    try:
        value = int(raw)
    except ValueError:
        return None
    if value <= 0 or value >= _UNLIMITED_BYTES or (machine_bytes and value >= machine_bytes):
        return None
    return value


def cpu_limit(quota: int | None, period: int | None) -> float | None:
    """The CPU limit in cores from a CFS quota and period (µs), or None for no limit (-1/max)."""
    if quota is None or period is None or quota <= 0 or period <= 0:
        return None
    return quota / period


@dataclass(frozen=True, slots=True)
class CgroupPaths:
    """Where this process's memory and CPU controllers live."""

    version: CgroupVersion
    memory: Path
    cpu: Path
    cpuacct: Path


def _own_cgroups(proc: Path) -> dict[str, str]:
    """controller → path from /proc/self/cgroup ("" for the v2 unified entry)."""
    out: dict[str, str] = {}
    for line in (_read(proc / "self" / "cgroup") or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        for controller in controllers.split(",") if controllers else [""]:
            out[controller] = path
    return out


def _under(base: Path, rel: str) -> Path:
    """`base/rel` if that exists (a host view), else `base` (a container's own namespace)."""
    candidate = base / rel.lstrip("/") if rel and rel != "/" else base
    return candidate if candidate.is_dir() else base


def detect(root: Path, proc: Path) -> CgroupPaths | None:
    """Find the cgroup layout under `root` (normally /sys/fs/cgroup); None if there is none."""
    own = _own_cgroups(proc)
    v1_memory = root / "memory"
    if v1_memory.is_dir():
        # v1 or hybrid (v1 controllers plus a v2 "unified" mount): limits live in v1.
        cpu_dir = next(
            (root / n for n in ("cpu,cpuacct", "cpu") if (root / n).is_dir()), root / "cpu"
        )
        acct_dir = next(
            (root / n for n in ("cpu,cpuacct", "cpuacct") if (root / n).is_dir()), cpu_dir
        )
        version: CgroupVersion = "hybrid" if (root / "unified").is_dir() else "v1"
        return CgroupPaths(
            version,
            _under(v1_memory, own.get("memory", "")),
            _under(cpu_dir, own.get("cpu", "")),
            _under(acct_dir, own.get("cpuacct", "")),
        )
    if (root / "cgroup.controllers").is_file():
        path = _under(root, own.get("", ""))
        return CgroupPaths("v2", path, path, path)
    return None


class CgroupReader:
    """Reads container memory and CPU use against the cgroup's limits."""

    def __init__(self, paths: CgroupPaths, machine_memory: int, clock: Callable[[], float]) -> None:
        self.paths = paths
        self._machine_memory = machine_memory
        self._clock = clock
        self._rates = RateTracker()

    def limits(self) -> tuple[int | None, float | None]:
        """(memory limit in bytes, CPU limit in cores); None where unlimited."""
        p = self.paths
        if p.version == "v2":
            mem = memory_limit(_read(p.memory / "memory.max"), self._machine_memory)
            quota, period = None, None
            parts = (_read(p.cpu / "cpu.max") or "").split()
            if len(parts) == 2 and parts[0] != "max":
                quota, period = int(parts[0]), int(parts[1])
            return mem, cpu_limit(quota, period)
        mem = memory_limit(_read_int(p.memory / "memory.limit_in_bytes"), self._machine_memory)
        cpu = cpu_limit(
            _read_int(p.cpu / "cpu.cfs_quota_us"), _read_int(p.cpu / "cpu.cfs_period_us")
        )
        return mem, cpu

    def memory_working_set(self) -> int | None:
        """Bytes in use minus inactive file cache (what the OOM killer and kubelet count)."""
        p = self.paths
        if p.version == "v2":
            usage = _read_int(p.memory / "memory.current")
            inactive = _read_stat(p.memory / "memory.stat").get("inactive_file", 0)
        else:
            usage = _read_int(p.memory / "memory.usage_in_bytes")
            stat = _read_stat(p.memory / "memory.stat")
            inactive = stat.get("total_inactive_file", stat.get("inactive_file", 0))
        if usage is None:
            return None
        return max(0, usage - inactive)

    def cpu_seconds(self) -> float | None:
        """CPU time the cgroup has used, in seconds."""
        p = self.paths
        if p.version == "v2":
            usec = _read_stat(p.cpu / "cpu.stat").get("usage_usec")
            return usec / 1e6 if usec is not None else None
        nsec = _read_int(p.cpuacct / "cpuacct.usage")
        return nsec / 1e9 if nsec is not None else None

    def samples(self, ts: float) -> list[Sample]:
        """container.* samples for the limits that are set; nothing when there are none."""
        mem_limit, cpu_cores = self.limits()
        out: list[Sample] = []
        if mem_limit is not None:
            used = self.memory_working_set()
            if used is not None:
                out.append(Sample("container.memory.usage", float(used), ts))
                out.append(Sample("container.memory.limit", float(mem_limit), ts))
                out.append(Sample("container.memory.utilization", used / mem_limit, ts))
        if cpu_cores is not None:
            out.append(Sample("container.cpu.limit", cpu_cores, ts))
            used_s = self.cpu_seconds()
            if used_s is not None:
                rate = self._rates.rate("cpu", used_s, self._clock())
                if rate is not None:
                    out.append(Sample("container.cpu.utilization", rate / cpu_cores, ts))
        return out
