"""Alert delivery after a receiver outage: how soon the backlog is out once the receiver is back.

A webhook receiver on 127.0.0.1 answers 503 for `--outage` seconds while 32 notifications are
created, evenly spread over the outage, then answers 204. The alerter runs with the default
retry settings. Time is scaled down by `--scale` (every retry delay, the probe cap and the
outage are multiplied by it; waits are printed scaled back), so a 10-minute outage takes 12 s
at the default scale 0.02; `--scale 1` runs it in real time. Prints, per run, the time from the
receiver's return to the first delivery (the probe that finds it back) and from there to the
last backlog delivery (real time: sending is not scaled).

    .venv/bin/python bench/alert_outage.py [--outage 600] [--notifications 32] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from infrawatch.alerting import delivery
from infrawatch.alerting.config import AlertingConfig, RetryConfig
from infrawatch.alerting.service import AlertService
from infrawatch.model import Anomaly, make_labels
from infrawatch.runtime.stats import AgentStats
from infrawatch.storage.store import Store


class Receiver:
    """503 while `down`; afterwards 204, with the arrival time of each accepted notification."""

    def __init__(self, expected: int) -> None:
        self.down = True
        self.expected = expected
        self.accepted: list[tuple[float, str]] = []  # (perf_counter s, alertname)
        self.refused = 0
        self.all_in = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        if self.down:
            self.refused += 1
            return web.Response(status=503, text="upstream unavailable")
        self.accepted.append((time.perf_counter(), body["alerts"][0]["labels"]["alertname"]))
        if len(self.accepted) >= self.expected:
            self.all_in.set()
        return web.Response(status=204)


def anomaly(n: int) -> Anomaly:
    return Anomaly(
        "bench.outage", make_labels({"n": str(n)}), time.time(), 1.0, "bench", f"rule{n:03d}",
        "critical", "firing",
    )  # fmt: skip


async def one_run(outage: float, notifications: int, scale: float) -> tuple[float, float, int, int]:
    """(s from return to the first delivery, scaled back; s from there to the last, real;
    requests refused; notifications given up)."""
    receiver = Receiver(notifications)
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    defaults = RetryConfig()
    retry = {
        "initial_delay": defaults.initial_delay * scale,
        "max_delay": defaults.max_delay * scale,
        "multiplier": defaults.multiplier,
        "max_attempts": defaults.max_attempts,
        "max_age": defaults.max_age * scale,
    }
    cfg = AlertingConfig.model_validate(
        {
            "group_wait": 0,
            "retry": retry,
            "sinks": [{"name": "h", "type": "webhook", "url": f"http://127.0.0.1:{port}/hook"}],
        }
    )
    stats = AgentStats()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            async with (
                Store(Path(tmp) / "bench.db") as store,
                AlertService(cfg, store, stats=stats) as alerter,
            ):
                start = time.perf_counter()
                for n in range(notifications):
                    await alerter.observe([anomaly(n)])
                    await asyncio.sleep(start + (n + 1) * outage * scale / notifications
                                        - time.perf_counter())  # fmt: skip
                receiver.down = False
                back = time.perf_counter()
                await asyncio.wait_for(receiver.all_in.wait(), timeout=120 * scale + 60)
    finally:
        await runner.cleanup()
    names = [name for _, name in receiver.accepted]
    if names != sorted(names) or len(set(names)) != notifications:
        raise SystemExit(f"delivered out of order or repeated: {names}")
    first, last = receiver.accepted[0][0], receiver.accepted[-1][0]
    # Waiting for the probe is scaled time; sending the backlog is real work, not scaled.
    return (first - back) / scale, last - first, receiver.refused, stats.alert_sinks["h"].failed


async def main(outage: float, notifications: int, runs: int, scale: float) -> None:
    # The probe cap is a constant, not a setting: scale it with the rest.
    delivery.PROBE_MAX_DELAY *= scale
    totals = []
    for run in range(runs):
        probe, drain, refused, failed = await one_run(outage, notifications, scale)
        totals.append(probe + drain)
        print(f"run {run + 1}: outage {outage:g}s, {notifications} notifications, "
              f"{refused} requests refused during the outage, {failed} given up; "
              f"receiver back → first delivery {probe:.1f}s, whole backlog "
              f"{drain * 1000:.0f} ms later")  # fmt: skip
    print(f"receiver back → last backlog delivery: min {min(totals):.1f}s "
          f"max {max(totals):.1f}s over {runs} runs (probe cap "
          f"{delivery.PROBE_MAX_DELAY / scale:g}s, time scale {scale:g})")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--outage", type=float, default=600.0, help="seconds (before scaling)")
    parser.add_argument("--notifications", type=int, default=32)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--scale", type=float, default=0.02, help="1 = real time")
    args = parser.parse_args()
    from infrawatch import logging as iw_logging

    with open(os.devnull, "w") as sink:
        iw_logging.configure("info", "json", stream=sink)
        asyncio.run(main(args.outage, args.notifications, args.runs, args.scale))
