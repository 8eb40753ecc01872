"""/metrics cost with 10,000 series: scrape latency, size and target CPU per scrape.

Starts an agent (in a child process) whose only producer reports --series synthetic series,
and Debian's prometheus-node-exporter, both on loopback, then scrapes each --scrapes times in a
row the same way (one HTTP/1.1 GET per scrape, plain and with gzip) and prints the numbers.

    .venv/bin/python bench/scrape.py --series 10000 --scrapes 50
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
ROOT = Path(__file__).resolve().parent.parent


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of `pid` (from /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the agent side (child process) ----------------------------------------------------------


def serve(series: int, database: str, detectors: bool) -> None:
    """Run an agent with one synthetic producer of `series` series until SIGTERM."""
    sys.path.insert(0, str(ROOT))
    from infrawatch import logging as iw_logging
    from infrawatch.config import Settings
    from infrawatch.model import Sample, make_labels
    from infrawatch.runtime.agent import Agent, asyncio_run
    from infrawatch.runtime.producer import BaseProducer

    class Synthetic(BaseProducer):
        name = "synthetic"
        interval = 60.0  # one tick, then idle: the scrapes are what is measured

        async def collect(self) -> list[Sample]:
            now = time.time()
            return [
                Sample(
                    f"bench.metric{i % 50}.utilization",
                    (i % 1000) / 1000,
                    now,
                    make_labels({"instance": f"i-{i:08x}", "region": "eu-west-1"}),
                )
                for i in range(series)
            ]

    # As a TOML file would give it (and without the environment's INFRAWATCH_* variables).
    settings = Settings.model_validate(
        {
            "storage": {"path": database},
            "http": {"listen": "127.0.0.1:0"},
            "host": {"enabled": False},
            "logging": {"level": "info", "format": "json"},
            # Detector state adds two samples per series (anomalous, statistic) when enabled.
            "analysis": (
                {} if detectors else {"zscore": {"enabled": False}, "novelty": {"enabled": False}}
            ),
        }
    )
    iw_logging.configure("info", "json")
    asyncio_run(Agent(settings, producers=[Synthetic()]).serve())


# -- the measuring side ----------------------------------------------------------------------


def scrape(url: str, gzip_ok: bool) -> tuple[float, int, int]:
    """(seconds, bytes on the wire, bytes of text) of one GET."""
    headers = {"Accept-Encoding": "gzip"} if gzip_ok else {}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - loopback http only
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310 - loopback http only
        body = resp.read()
        encoding = resp.headers.get("Content-Encoding")
    elapsed = time.perf_counter() - started
    text = gzip.decompress(body) if encoding == "gzip" else body
    return elapsed, len(body), len(text)


def measure(name: str, url: str, pid: int, scrapes: int) -> dict[str, object]:
    """Scrape `url` `scrapes` times plain and gzip; CPU of `pid` per scrape."""
    scrape(url, False)  # warm-up (imports, caches)
    out: dict[str, object] = {"target": name}
    for gzip_ok in (False, True):
        cpu0 = cpu_seconds(pid)
        results = [scrape(url, gzip_ok) for _ in range(scrapes)]
        cpu = (cpu_seconds(pid) - cpu0) / scrapes
        times = sorted(r[0] for r in results)
        tag = "gzip" if gzip_ok else "plain"
        out[f"{tag}_median_ms"] = round(statistics.median(times) * 1000, 1)
        out[f"{tag}_p95_ms"] = round(times[int(0.95 * (len(times) - 1))] * 1000, 1)
        out[f"{tag}_wire_kb"] = round(results[-1][1] / 1024, 1)
        out[f"{tag}_cpu_ms_per_scrape"] = round(cpu * 1000, 1)
        out["text_kb"] = round(results[-1][2] / 1024, 1)
    text = urllib.request.urlopen(url, timeout=30).read().decode()  # noqa: S310 - loopback
    out["samples"] = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
    return out


def wait_http(url: str, accept: Callable[[str], bool] | None = None, limit: float = 60.0) -> str:
    """GET `url` until it answers 200 (and `accept(text)` holds); bounded."""
    deadline = time.monotonic() + limit
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback
                text: str = resp.read().decode()
                if accept is None or accept(text):
                    return text
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"{url} did not come up")
        time.sleep(0.1)


def run_agent(series: int, tmp: str, detectors: bool) -> tuple[subprocess.Popen[bytes], int]:
    """Start the child agent; return it and its port."""
    flags = [] if detectors else ["--no-detectors"]
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(series), "--database", f"{tmp}/bench.db", *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    if proc.stdout is None:
        raise RuntimeError("the child agent has no stdout pipe")
    for raw in proc.stdout:
        try:
            event = json.loads(raw)
        except json.JSONDecodeError:
            continue
        if event.get("event") == "http.listening":
            # Keep draining stdout so the child never blocks on a full pipe.
            threading_drain(proc.stdout)
            return proc, int(event["port"])
    raise SystemExit("agent exited before listening")


def threading_drain(stream: object) -> None:
    """Read and discard a stream in a daemon thread."""
    import threading

    def loop() -> None:
        for _ in stream:  # type: ignore[attr-defined]
            pass

    threading.Thread(target=loop, daemon=True).start()


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM and wait."""
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> None:
    """Parse arguments; serve (child) or measure (parent)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--scrapes", type=int, default=50)
    parser.add_argument(
        "--no-detectors", action="store_true", help="series only (no detector-state samples)"
    )
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--database", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve, args.database, not args.no_detectors)
        return

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        agent, port = run_agent(args.series, tmp, not args.no_detectors)
        try:
            url = f"http://127.0.0.1:{port}/metrics"
            wait_http(url, lambda text: f"infrawatch_series {float(args.series)}" in text)
            label = (
                f"infrawatch ({args.series} series{', no detectors' if args.no_detectors else ''})"
            )
            rows.append(measure(label, url, agent.pid, args.scrapes))
        finally:
            stop(agent)
        exporter = shutil.which("prometheus-node-exporter")
        if exporter:
            ne_port = free_port()
            node = subprocess.Popen(
                [exporter, f"--web.listen-address=127.0.0.1:{ne_port}", "--log.level=error"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                url = f"http://127.0.0.1:{ne_port}/metrics"
                wait_http(url)
                rows.append(measure("prometheus-node-exporter", url, node.pid, args.scrapes))
            finally:
                stop(node)
        else:
            print("prometheus-node-exporter not installed; comparison skipped")
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
