"""Host metrics from psutil, named per the OpenTelemetry system semantic conventions.

Every psutil call runs on the producer's own daemon worker thread (`collectors/worker.py`),
never on the event loop, and a call that hangs cannot keep the agent from exiting. The
collector is the only caller of psutil's delta functions (`cpu_percent(None)` and the per-process
`cpu_percent`), so their "since last call" windows are exactly one tick.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from fnmatch import fnmatch
from types import TracebackType
from typing import Any, Self

import psutil

from infrawatch.collectors.cgroup import CgroupReader, detect
from infrawatch.collectors.rates import RateTracker
from infrawatch.collectors.worker import DaemonWorker
from infrawatch.config import HostConfig
from infrawatch.logging import get_logger
from infrawatch.model import Labels, Sample, make_labels
from infrawatch.runtime.producer import BaseProducer

log = get_logger("infrawatch.collectors.host")

_PROCESS_ATTRS = ["pid", "name", "cpu_percent", "memory_info"]
# psutil's CPU utilization is a delta of clock ticks (10 ms): over a shorter window since the
# previous call it reads 0.0 even on a busy host. Seconds; only the first tick waits for it.
MIN_CPU_WINDOW = 0.25


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
        self._scanned: set[psutil.Process] = set()  # the processes of the last top-N scan
        self._cgroup: CgroupReader | None = None
        self._primed = False
        self._cpu_primed_at: float | None = None  # monotonic seconds; None once read
        self._group_failures: dict[str, int] = {}  # metric group → consecutive failed ticks
        self._worker: DaemonWorker | None = None

    async def __aenter__(self) -> Self:
        self._worker = DaemonWorker("infrawatch-host")
        await self._worker.run(self._setup)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._worker is not None:
            self._worker.close()
            self._worker = None

    def _setup(self) -> None:
        if str(self.config.procfs_path) != "/proc":
            # A sidecar watching its host reads the host's procfs mounted somewhere else.
            psutil.PROCFS_PATH = str(self.config.procfs_path)
        # Prime the delta counters so the first real tick reports a real interval, not 0.
        psutil.cpu_percent(interval=None)
        if self.config.per_cpu:
            psutil.cpu_percent(interval=None, percpu=True)
        self._cpu_primed_at = time.monotonic()
        if "container" in self._groups and self.config.container != "off":
            paths = detect(self.config.cgroup_path, self.config.procfs_path)
            if paths is None and self.config.container == "on":
                log.warning("host.cgroup_not_found", cgroup_path=str(self.config.cgroup_path))
            if paths is not None:
                reader = CgroupReader(paths, psutil.virtual_memory().total, time.monotonic)
                self._cgroup = reader
                try:
                    mem, cpu = reader.limits()
                except (OSError, ValueError) as exc:
                    # Unreadable now does not mean forever: the container group keeps trying
                    # each tick (and fails alone), the agent starts either way.
                    log.warning("host.cgroup_unreadable", version=paths.version, error=f"{exc}")
                else:
                    log.info(
                        "host.cgroup_detected",
                        version=paths.version,
                        memory_limit_bytes=mem,
                        cpu_limit_cores=cpu,
                    )
        self._primed = True

    async def collect(self) -> list[Sample]:
        """One reading of every enabled metric group."""
        if self._worker is None:
            raise RuntimeError("HostProducer.collect outside `async with`")
        return await self._worker.run(self.collect_sync)

    def collect_sync(self) -> list[Sample]:
        """The blocking body of `collect`; runs in a worker thread."""
        if not self._primed:
            self._setup()
        ts = time.time()
        now = time.monotonic()
        out: list[Sample] = []
        readers: list[tuple[str, Callable[[], None]]] = [
            ("cpu", lambda: self._cpu(out, ts)),
            ("load", lambda: self._load(out, ts)),
            ("memory", lambda: self._memory(out, ts)),
            ("swap", lambda: self._swap(out, ts)),
            ("filesystem", lambda: self._filesystems(out, ts)),
            ("disk", lambda: self._disks(out, ts, now)),
            ("network", lambda: self._network(out, ts, now)),
            ("processes", lambda: self._processes(out, ts, now)),
        ]
        enabled = [(group, read) for group, read in readers if group in self._groups]
        if self._cgroup is not None:
            cgroup = self._cgroup
            enabled.append(("container", lambda: out.extend(cgroup.samples(ts))))
        failed = 0
        for group, read in enabled:
            # One broken source (a hung mount, a malformed cgroup file) must not cost the others.
            try:
                read()
            except Exception as exc:
                failed += 1
                self._group_failed(group, exc)
            else:
                self._group_failures.pop(group, None)
        self._rates.forget_unseen()
        if enabled and failed == len(enabled):
            raise RuntimeError("every host metric group failed; see host.group_failed")
        return out

    def _group_failed(self, group: str, exc: Exception) -> None:
        streak = self._group_failures[group] = self._group_failures.get(group, 0) + 1
        if streak & (streak - 1) == 0:  # logged once per doubling of the failure streak
            log.error(
                "host.group_failed",
                group=group,
                error=f"{type(exc).__name__}: {exc}",
                consecutive_failures=streak,
            )

    def _cpu(self, out: list[Sample], ts: float) -> None:
        if self._cpu_primed_at is not None:
            # The first reading after priming; in a worker thread, so the wait delays only it.
            time.sleep(max(0.0, self._cpu_primed_at + MIN_CPU_WINDOW - time.monotonic()))
            self._cpu_primed_at = None
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
                    labels = make_labels({"device": device, "direction": direction})
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
                    labels = make_labels({"device": nic, "direction": direction})
                    out.append(Sample(metric, rate, ts, labels))

    def _processes(self, out: list[Sample], ts: float, now: float) -> None:
        pids = psutil.pids()
        out.append(Sample("system.processes.count", float(len(pids)), ts))
        top_n = self.config.top_processes
        # process_iter is the expensive call: it runs on its own, longer interval.
        if top_n == 0 or now < self._next_process_scan:
            return
        self._next_process_scan = now + self.config.process_interval
        procs: list[dict[str, Any]] = []
        # psutil's per-process cpu_percent is "since the previous call on this Process": on
        # the first scan of a process (agent start, or a new process) it is a meaningless 0.0.
        # Only processes seen at the previous scan have a real window (one process_interval).
        previous, self._scanned = self._scanned, set()
        measured: set[int] = set()
        for proc in psutil.process_iter(_PROCESS_ATTRS, ad_value=None):
            info = proc.info
            if info["memory_info"] is None or info["cpu_percent"] is None:
                continue
            procs.append(info)
            # Process equality is (pid, create time): a reused pid is a new process.
            self._scanned.add(proc)
            if proc in previous:
                measured.add(info["pid"])
        total_memory = psutil.virtual_memory().total or 1
        with_cpu = [p for p in procs if p["pid"] in measured]
        by_cpu = sorted(with_cpu, key=lambda p: p["cpu_percent"], reverse=True)[:top_n]
        by_mem = sorted(procs, key=lambda p: p["memory_info"].rss, reverse=True)[:top_n]
        chosen = {p["pid"]: p for p in (*by_cpu, *by_mem)}
        for pid, info in chosen.items():
            labels: Labels = make_labels({"name": info["name"] or "?", "pid": pid})
            rss = float(info["memory_info"].rss)
            if pid in measured:
                cpu = info["cpu_percent"] / 100 / self._cpu_count
                out.append(Sample("process.cpu.utilization", cpu, ts, labels))
            out.append(Sample("process.memory.usage", rss, ts, labels))
            out.append(Sample("process.memory.utilization", rss / total_memory, ts, labels))


def _with(labels: Labels, key: str, value: str) -> Labels:
    return tuple(sorted((*labels, (key, value))))
