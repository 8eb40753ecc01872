"""Host metrics from psutil, named per the OpenTelemetry system semantic conventions.

Every psutil call runs in a worker thread (`asyncio.to_thread`), never on the event loop. The
collector is the only caller of psutil's delta functions (`cpu_percent(None)` and the per-process
`cpu_percent`), so their "since last call" windows are exactly one tick.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterable
from fnmatch import fnmatch
from typing import Any

import psutil

from infrawatch.collectors.cgroup import CgroupReader, detect
from infrawatch.collectors.rates import RateTracker
from infrawatch.config import HostConfig
from infrawatch.logging import get_logger
from infrawatch.model import Labels, Sample, make_labels
from infrawatch.producer import BaseProducer

log = get_logger("infrawatch.collectors.host")

_PROCESS_ATTRS = ["pid", "name", "cpu_percent", "memory_info"]


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch(name, p) for p in patterns)


class HostProducer(BaseProducer):
    """Samples CPU, load, memory, swap, filesystems, disk and network I/O, processes, cgroups."""

    name = "host"

    def __init__(self, config: HostConfig) -> None:
        self.config = config
        self.interval = config.interval
        self._groups = frozenset(config.metrics)
        self._rates = RateTracker()
        self._cpu_count = psutil.cpu_count() or 1
        self._next_process_scan = 0.0
        self._cgroup: CgroupReader | None = None
        self._primed = False

    async def __aenter__(self) -> HostProducer:
        await asyncio.to_thread(self._setup)
        return self

    def _setup(self) -> None:
        if str(self.config.procfs_path) != "/proc":
            # A sidecar watching its host reads the host's procfs mounted somewhere else.
            psutil.PROCFS_PATH = str(self.config.procfs_path)
        # Prime the delta counters so the first real tick reports a real interval, not 0.
        psutil.cpu_percent(interval=None)
        if self.config.per_cpu:
            psutil.cpu_percent(interval=None, percpu=True)
        if "container" in self._groups and self.config.container != "off":
            paths = detect(self.config.cgroup_path, self.config.procfs_path)
            if paths is None and self.config.container == "on":
                log.warning("host.cgroup_not_found", cgroup_path=str(self.config.cgroup_path))
            if paths is not None:
                reader = CgroupReader(paths, psutil.virtual_memory().total, time.monotonic)
                mem, cpu = reader.limits()
                log.info(
                    "host.cgroup_detected",
                    version=paths.version,
                    memory_limit_bytes=mem,
                    cpu_limit_cores=cpu,
                )
                self._cgroup = reader
        self._primed = True

    async def collect(self) -> list[Sample]:
        """One reading of every enabled metric group."""
        return await asyncio.to_thread(self.collect_sync)

    def collect_sync(self) -> list[Sample]:
        """The blocking body of `collect`; runs in a worker thread."""
        if not self._primed:
            self._setup()
        ts = time.time()
        now = time.monotonic()
        out: list[Sample] = []
        groups = self._groups
        if "cpu" in groups:
            self._cpu(out, ts)
        if "load" in groups:
            self._load(out, ts)
        if "memory" in groups:
            self._memory(out, ts)
        if "swap" in groups:
            self._swap(out, ts)
        if "filesystem" in groups:
            self._filesystems(out, ts)
        if "disk" in groups:
            self._disks(out, ts, now)
        if "network" in groups:
            self._network(out, ts, now)
        if "processes" in groups:
            self._processes(out, ts, now)
        if self._cgroup is not None:
            out.extend(self._cgroup.samples(ts))
        self._rates.forget_unseen()
        return out

    def _cpu(self, out: list[Sample], ts: float) -> None:
        out.append(Sample("system.cpu.utilization", psutil.cpu_percent(interval=None) / 100, ts))
        if self.config.per_cpu:
            for i, pct in enumerate(psutil.cpu_percent(interval=None, percpu=True)):
                out.append(Sample("system.cpu.utilization", pct / 100, ts, (("cpu", str(i)),)))

    def _load(self, out: list[Sample], ts: float) -> None:
        one, five, fifteen = psutil.getloadavg()
        out.append(Sample("system.cpu.load_average.1m", one, ts))
        out.append(Sample("system.cpu.load_average.5m", five, ts))
        out.append(Sample("system.cpu.load_average.15m", fifteen, ts))

    def _memory(self, out: list[Sample], ts: float) -> None:
        vm = psutil.virtual_memory()
        used = vm.total - vm.available
        out.append(Sample("system.memory.limit", float(vm.total), ts))
        out.append(Sample("system.memory.usage", float(used), ts, (("state", "used"),)))
        out.append(
            Sample("system.memory.usage", float(vm.available), ts, (("state", "available"),))
        )
        out.append(Sample("system.memory.utilization", used / vm.total if vm.total else 0.0, ts))

    def _swap(self, out: list[Sample], ts: float) -> None:
        sw = psutil.swap_memory()
        out.append(Sample("system.paging.usage", float(sw.used), ts, (("state", "used"),)))
        out.append(Sample("system.paging.usage", float(sw.free), ts, (("state", "free"),)))
        # No swap configured is 0 % used, not a division by zero.
        out.append(Sample("system.paging.utilization", sw.used / sw.total if sw.total else 0.0, ts))

    def _filesystems(self, out: list[Sample], ts: float) -> None:
        seen_devices: set[str] = set()
        rootfs = self.config.rootfs_path
        for part in psutil.disk_partitions(all=False):
            if part.fstype in self.config.exclude_fs_types or part.device in seen_devices:
                continue
            device_name = os.path.basename(part.device)
            if _matches(device_name, self.config.exclude_devices):
                continue
            seen_devices.add(part.device)
            try:
                st = os.statvfs(rootfs / part.mountpoint.lstrip("/"))
            except OSError:
                continue  # unmounted between listing and stat, or not ours to read
            total = st.f_blocks * st.f_frsize
            if total == 0:
                continue
            free = st.f_bavail * st.f_frsize
            # Like df: used excludes the root-reserved blocks, utilization is of what users can get.
            used = (st.f_blocks - st.f_bfree) * st.f_frsize
            labels = make_labels(
                {"device": part.device, "mountpoint": part.mountpoint, "type": part.fstype}
            )
            out.append(
                Sample("system.filesystem.usage", float(used), ts, _with(labels, "state", "used"))
            )
            out.append(
                Sample("system.filesystem.usage", float(free), ts, _with(labels, "state", "free"))
            )
            usable = used + free
            out.append(
                Sample(
                    "system.filesystem.utilization", used / usable if usable else 0.0, ts, labels
                )
            )
            if st.f_files:
                inodes_used = st.f_files - st.f_ffree
                out.append(
                    Sample(
                        "system.filesystem.inodes.utilization", inodes_used / st.f_files, ts, labels
                    )
                )

    def _disks(self, out: list[Sample], ts: float, now: float) -> None:
        counters: dict[str, Any] = psutil.disk_io_counters(perdisk=True) or {}
        for device, io in counters.items():
            if _matches(device, self.config.exclude_devices):
                continue
            for metric, direction, value in (
                ("system.disk.io", "read", io.read_bytes),
                ("system.disk.io", "write", io.write_bytes),
                ("system.disk.operations", "read", io.read_count),
                ("system.disk.operations", "write", io.write_count),
            ):
                rate = self._rates.rate((metric, device, direction), value, now)
                if rate is not None:
                    labels = (("device", device), ("direction", direction))
                    out.append(Sample(metric, rate, ts, labels))

    def _network(self, out: list[Sample], ts: float, now: float) -> None:
        counters: dict[str, Any] = psutil.net_io_counters(pernic=True) or {}
        for nic, io in counters.items():
            if _matches(nic, self.config.exclude_interfaces):
                continue
            for metric, direction, value in (
                ("system.network.io", "receive", io.bytes_recv),
                ("system.network.io", "transmit", io.bytes_sent),
                ("system.network.packets", "receive", io.packets_recv),
                ("system.network.packets", "transmit", io.packets_sent),
                ("system.network.errors", "receive", io.errin),
                ("system.network.errors", "transmit", io.errout),
                ("system.network.dropped", "receive", io.dropin),
                ("system.network.dropped", "transmit", io.dropout),
            ):
                rate = self._rates.rate((metric, nic, direction), value, now)
                if rate is not None:
                    out.append(
                        Sample(metric, rate, ts, (("device", nic), ("direction", direction)))
                    )

    def _processes(self, out: list[Sample], ts: float, now: float) -> None:
        pids = psutil.pids()
        out.append(Sample("system.processes.count", float(len(pids)), ts))
        top_n = self.config.top_processes
        # process_iter is the expensive call: it runs on its own, longer interval.
        if top_n == 0 or now < self._next_process_scan:
            return
        self._next_process_scan = now + self.config.process_interval
        procs: list[dict[str, Any]] = []
        for proc in psutil.process_iter(_PROCESS_ATTRS, ad_value=None):
            info = proc.info
            if info["memory_info"] is None or info["cpu_percent"] is None:
                continue
            procs.append(info)
        total_memory = psutil.virtual_memory().total or 1
        by_cpu = sorted(procs, key=lambda p: p["cpu_percent"], reverse=True)[:top_n]
        by_mem = sorted(procs, key=lambda p: p["memory_info"].rss, reverse=True)[:top_n]
        chosen = {p["pid"]: p for p in (*by_cpu, *by_mem)}
        for pid, info in chosen.items():
            labels: Labels = (("name", str(info["name"] or "?")), ("pid", str(pid)))
            cpu = info["cpu_percent"] / 100 / self._cpu_count
            rss = float(info["memory_info"].rss)
            out.append(Sample("process.cpu.utilization", cpu, ts, labels))
            out.append(Sample("process.memory.usage", rss, ts, labels))
            out.append(Sample("process.memory.utilization", rss / total_memory, ts, labels))


def _with(labels: Labels, key: str, value: str) -> Labels:
    return tuple(sorted((*labels, (key, value))))
