"""Agent overhead: CPU (% of one core) and peak RSS of a host-only agent, and `--help` start-up.

Runs `python -m infrawatch run` host-only at a 1 s and a 10 s interval for --seconds each,
reads CPU time and peak RSS from /proc, and measures Glances the same way when it is installed.

    .venv/bin/python bench/overhead.py --seconds 60
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of `pid` (from /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def peak_rss_mb(pid: int) -> float:
    """Peak resident set size of `pid` in MB (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(
    cmd: list[str], seconds: float, warmup: float, env: dict[str, str]
) -> tuple[float, float]:
    """Run `cmd`, skip `warmup` seconds, then return (CPU % of one core, peak RSS MB)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        time.sleep(warmup)
        c0, t0 = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(seconds)
        c1, t1 = cpu_seconds(proc.pid), time.monotonic()
        rss = peak_rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return 100 * (c1 - c0) / (t1 - t0), rss


def help_startup_ms(runs: int = 15) -> float:
    """Median wall time of `python -m infrawatch --help` in milliseconds."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "infrawatch", "--help"], capture_output=True, check=True
        )
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    """Print the overhead table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0, help="measurement time per run")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds skipped after start")
    parser.add_argument("--glances", help="path of a glances executable to compare with")
    args = parser.parse_args()

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"python -m infrawatch --help: {help_startup_ms():.0f} ms (median of 15)")
    with tempfile.TemporaryDirectory() as tmp:
        for interval in (1, 10):
            env = {
                **{k: v for k, v in os.environ.items() if not k.startswith("INFRAWATCH_")},
                "INFRAWATCH_HOST__INTERVAL": str(interval),
                "INFRAWATCH_STORAGE__PATH": f"{tmp}/bench-{interval}.db",
                "INFRAWATCH_HTTP__ENABLED": "true",
                "INFRAWATCH_HTTP__LISTEN": "127.0.0.1:0",
                "INFRAWATCH_LOGGING__LEVEL": "warning",
            }
            cmd = [sys.executable, "-m", "infrawatch", "run"]
            cpu, rss = measure(cmd, args.seconds, args.warmup, env)
            print(
                f"infrawatch host-only, interval {interval:>2} s: CPU {cpu:.2f} % of one core, "
                f"peak RSS {rss:.1f} MB ({args.seconds:.0f} s)"
            )
    glances = args.glances or shutil.which("glances")
    if glances and Path(glances).exists():
        cmd = [glances, "--stdout", "cpu.total,mem.percent", "-t", "1"]
        cpu, rss = measure(cmd, args.seconds, args.warmup, dict(os.environ))
        print(
            f"glances --stdout cpu.total,mem.percent -t 1: CPU {cpu:.2f} % of one core, "
            f"peak RSS {rss:.1f} MB ({args.seconds:.0f} s)"
        )
    else:
        print("glances: not installed (pip install glances) — comparison skipped")


if __name__ == "__main__":
    main()
