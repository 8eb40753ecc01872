"""Cloud producer at fleet scale against moto: API calls per cycle, cycle time, agent RSS.

    .venv/bin/python bench/cloud.py [--instances 2000] [--with-data 100]

Seeds moto with N running instances (one reservation each, so moto pages DescribeInstances the
way AWS does: up to 1,000 instances per page) and datapoints for the first `--with-data` of them
(moto's GetMetricData scans every stored datapoint per query and period, so a full data set
would measure moto, not infrawatch). Then:

1. runs two cycles of the producer in-process, counting the requests botocore sends with a
   before-send hook: GetMetricData calls (target ceil(N × 5 / 500)) and DescribeInstances pages;
2. runs the real agent (`python -m infrawatch run`) host-only and cloud-enabled and reports
   its RSS after the first cloud cycle.

Nothing leaves 127.0.0.1; the credentials are moto's fake `testing` keys.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from infrawatch.collectors.aws_config import AwsConfig  # noqa: E402 - after the path set-up
from infrawatch.collectors.cloudwatch import CloudWatchProducer  # noqa: E402
from infrawatch.collectors.cloudwatch_window import window  # noqa: E402
from tests.agentproc import AgentProcess, write_config  # noqa: E402
from tests.support_moto import (  # noqa: E402
    REGION,
    MotoServer,
    boto3_client,
    fake_aws_env,
    start_moto,
    stop_moto,
)

PERIOD = 60
LOOKBACK = 300


def seed(server: MotoServer, instances: int, with_data: int) -> list[str]:
    """Start `instances` single-instance reservations; put one CPU datapoint for `with_data`."""

    def one(n: int) -> str:
        ec2 = boto3_client(server, "ec2")
        response = ec2.run_instances(
            ImageId="ami-12c6146b",
            MinCount=1,
            MaxCount=1,
            TagSpecifications=[
                {"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": f"node-{n}"}]}
            ],
        )
        instance_id: str = response["Instances"][0]["InstanceId"]
        return instance_id

    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(one, range(instances)))
    _, end = window(time.time(), PERIOD, LOOKBACK, 0)
    stamp = datetime.fromtimestamp(end - PERIOD + 1, UTC)
    cw = boto3_client(server, "cloudwatch")
    data = [
        {
            "MetricName": "CPUUtilization",
            "Dimensions": [{"Name": "InstanceId", "Value": i}],
            "Timestamp": stamp,
            "Value": 50.0,
        }
        for i in ids[:with_data]
    ]
    for start in range(0, len(data), 1000):  # PutMetricData's 1,000-datum limit
        cw.put_metric_data(Namespace="AWS/EC2", MetricData=data[start : start + 1000])
    return ids


def config(server: MotoServer) -> AwsConfig:
    """The benchmark's [cloud.aws]: 5 metric/statistic pairs per instance (the defaults)."""
    return AwsConfig(
        enabled=True,
        regions=[REGION],
        endpoint_url=server.url,
        period=PERIOD,
        poll_interval=60,
        lookback=LOOKBACK,
        delay=0,
    )


async def cycles(server: MotoServer) -> list[dict[str, Any]]:
    """Two producer cycles (the first discovers); requests counted per cycle."""
    sent: Counter[str] = Counter()
    biggest = 0

    def count(request: Any, **kwargs: Any) -> None:
        nonlocal biggest
        operation = kwargs["event_name"].rsplit(".", 1)[-1]
        sent[operation] += 1
        if operation == "GetMetricData":
            biggest = max(biggest, len(json.loads(request.body)["MetricDataQueries"]))

    rows = []
    async with CloudWatchProducer(config(server)) as producer:
        producer.ec2[REGION].meta.events.register("before-send.ec2.*", count)
        producer.cloudwatch[REGION].meta.events.register("before-send.cloudwatch.*", count)
        for n in (1, 2):
            sent.clear()
            started = time.perf_counter()
            cpu = time.process_time()
            samples = await producer.collect()
            rows.append(
                {
                    "cycle": n,
                    "queries": producer.last_cycle.queries,
                    "get_metric_data_calls": sent["GetMetricData"],
                    "describe_instances_pages": sent["DescribeInstances"],
                    "max_queries_per_call": biggest,
                    "samples": len(samples),
                    "seconds": round(time.perf_counter() - started, 2),
                    # This process only: botocore (de)serialisation and the producer, not moto.
                    "client_cpu_seconds": round(time.process_time() - cpu, 2),
                }
            )
    return rows


async def agent_rss(server: MotoServer, tmp: Path, cloud: bool, region: str = REGION) -> float:
    """RSS (MiB) of a running agent: after its first cloud cycle, or after 5 s host-only."""
    section = (
        f'[cloud.aws]\nenabled = true\nendpoint_url = "{server.url}"\nregions = ["{region}"]\n'
        f"period = {PERIOD}\nlookback = {LOOKBACK}\ndelay = 0\npoll_interval = 60\n"
        if cloud
        else ""
    )
    sub = tmp / (f"cloud-{region}" if cloud else "host")
    sub.mkdir()
    path = write_config(sub, "[host]\ninterval = 1\n" + section)
    agent = await AgentProcess(path, env=fake_aws_env(tmp)).start()
    try:
        await agent.wait_for("agent.started")
        if cloud:
            await agent.wait_for("cloudwatch.cycle")
        await asyncio.sleep(5)  # a few host ticks; a benchmark may wait on the clock
        if agent.proc is None:
            raise RuntimeError("the agent process was not started")
        rss = psutil.Process(agent.proc.pid).memory_info().rss / 2**20
    finally:
        await agent.stop()
    return round(rss, 1)


def main() -> None:
    """Run the benchmark and print its numbers."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--instances", type=int, default=2000)
    parser.add_argument("--with-data", type=int, default=100)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        os.environ.update(fake_aws_env(tmp))
        server = start_moto(tmp / "moto.log")
        try:
            started = time.perf_counter()
            seed(server, args.instances, args.with_data)
            print(f"seeded {args.instances} instances in {time.perf_counter() - started:.1f} s")
            target = math.ceil(args.instances * 5 / 500)
            for row in asyncio.run(cycles(server)):
                print(json.dumps(row))
                calls = row["get_metric_data_calls"]
                status = "OK" if calls == target else "MISMATCH"
                print(f"  GetMetricData calls {calls} (target {target}) {status}")
            host = asyncio.run(agent_rss(server, tmp, cloud=False))
            empty = asyncio.run(agent_rss(server, tmp, cloud=True, region="eu-west-1"))
            cloud = asyncio.run(agent_rss(server, tmp, cloud=True))
            print(f"agent RSS host-only: {host} MiB")
            print(f"agent RSS cloud-enabled, region without instances: {empty} MiB")
            print(f"agent RSS cloud-enabled ({args.instances} instances): {cloud} MiB")
        finally:
            stop_moto(server)


if __name__ == "__main__":
    main()
