"""Alert latency: an anomalous sample entering the queue → the webhook request at a receiver.

The real pipeline (queue → detector → SQLite write → alerter → outbox → sink worker) runs with
group_wait 0 while a producer pushes 10,000 other samples per second (batches of 1,000 every
100 ms). Each anomalous sample is its own series and rule, so each makes a new group and one
signed webhook request to an aiohttp receiver on 127.0.0.1 in the same process. Prints p50/p99.

    .venv/bin/python bench/alert_latency.py [--anomalies 200] [--rate 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from infrawatch.alerting.config import AlertingConfig
from infrawatch.alerting.service import AlertService
from infrawatch.model import Anomaly, Sample, make_labels
from infrawatch.runtime.pipeline import Pipeline
from infrawatch.runtime.producer import Batch
from infrawatch.runtime.queue import BatchQueue
from infrawatch.runtime.stats import AgentStats
from infrawatch.storage.store import Store
from tests.support_detect import StatelessDetector


class SpikeDetector(StatelessDetector):
    """Fires on samples named bench.spike (a stand-in for a threshold rule)."""

    name = "bench"

    def observe(self, sample: Sample) -> list[Anomaly]:
        if sample.name != "bench.spike":
            return []
        rule = dict(sample.labels)["n"]
        return [
            Anomaly(sample.name, sample.labels, sample.ts, sample.value, "bench", f"spike{rule}",
                    "critical", "firing")
        ]  # fmt: skip


async def main(anomalies: int, rate: int) -> None:
    sent_at: dict[str, float] = {}
    latencies: list[float] = []
    done = asyncio.Event()

    async def handle(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        n = body["alerts"][0]["labels"]["n"]
        latencies.append(time.perf_counter() - sent_at[n])
        if len(latencies) == anomalies:
            done.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    stats = AgentStats()
    queue = BatchQueue(1000, "drop_oldest", stats)
    cfg = AlertingConfig.model_validate({
        "group_wait": 0,
        "sinks": [{"name": "h", "type": "webhook", "url": f"http://127.0.0.1:{port}/hook",
                   "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}],
    })  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        async with (
            Store(Path(tmp) / "bench.db") as store,
            AlertService(cfg, store, stats=stats) as alerter,
        ):
            pipeline = Pipeline(queue, store, [SpikeDetector()], alerter, stats)
            consumer = asyncio.create_task(pipeline.run())
            per_batch = 1000
            period = per_batch / rate

            async def background() -> None:
                tick = 0
                start = time.perf_counter()
                while True:
                    ts = time.time()
                    queue.put(Batch("load", [
                        Sample("bench.load", float(i), ts, make_labels({"i": str(i)}))
                        for i in range(per_batch)
                    ]))  # fmt: skip
                    tick += 1
                    await asyncio.sleep(max(0.0, start + tick * period - time.perf_counter()))

            load = asyncio.create_task(background())
            await asyncio.sleep(1.0)  # warm up: series rows created, steady state
            for n in range(anomalies):
                key = str(n)
                sent_at[key] = time.perf_counter()
                queue.put(Batch("spike", [Sample("bench.spike", 1.0, time.time(),
                                                 make_labels({"n": key}))]))  # fmt: skip
                await asyncio.sleep(0.05)
            await asyncio.wait_for(done.wait(), timeout=60)
            load.cancel()
            consumer.cancel()
            await asyncio.gather(load, consumer, return_exceptions=True)
    await runner.cleanup()
    q = statistics.quantiles(latencies, n=100, method="inclusive")  # never past max
    stored = sum(p.stored for p in stats.producers.values())
    print(f"anomalies={anomalies} background_rate={rate}/s samples_stored={stored}")
    print(f"latency_ms p50={q[49] * 1000:.1f} p90={q[89] * 1000:.1f} p99={q[98] * 1000:.1f} "
          f"max={max(latencies) * 1000:.1f}")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--anomalies", type=int, default=200)
    parser.add_argument("--rate", type=int, default=10_000)
    args = parser.parse_args()
    from infrawatch import logging as iw_logging

    # The agent's own logging (JSON at info), written to /dev/null so the terminal is not timed.
    with open(os.devnull, "w") as sink:
        iw_logging.configure("info", "json", stream=sink)
        asyncio.run(main(args.anomalies, args.rate))
