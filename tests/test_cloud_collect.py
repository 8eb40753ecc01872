"""GetMetricData collection against moto: names, labels, values, timestamps, late datapoints,
no duplicates across cycles, batching at 500 queries, NextToken pages, other namespaces."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from infrawatch.collectors.cloudwatch import CloudWatchProducer
from infrawatch.collectors.cloudwatch_queries import sample_name
from infrawatch.collectors.cloudwatch_window import window
from infrawatch.model import Sample
from infrawatch.storage.store import Store
from tests.support_moto import (
    REGION,
    MotoServer,
    RequestLog,
    aws_config,
    boto3_client,
    moto,
    moto_server,
    put_metric,
    run_instances,
)

__all__ = ["moto", "moto_server"]  # fixtures used by name

OTHER = "eu-west-1"
PERIOD = 60


class Clock:
    """A settable wall clock for the producer (epoch seconds)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def period_start(clock: Clock, periods_ago: int) -> int:
    """The start (epoch seconds) of the complete period `periods_ago` before the window's end."""
    _, end = window(clock.now, PERIOD, 600, 0)
    return end - periods_ago * PERIOD


def at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def by_series(samples: list[Sample]) -> dict[tuple[str, str, float], float]:
    return {(s.name, dict(s.labels)["instance_id"], s.ts): s.value for s in samples}


def test_sample_names_follow_the_design() -> None:
    assert sample_name("AWS/EC2", "CPUUtilization", "Average") == "aws.ec2.cpuutilization.average"
    assert sample_name("AWS/ApplicationELB", "TargetResponseTime", "p99.9") == (
        "aws.applicationelb.targetresponsetime.p99_9"
    )
    assert sample_name("MyApp/Web", "Latency", "Maximum") == "aws.myapp.web.latency.maximum"


def test_window_is_aligned_to_complete_periods() -> None:
    start, end = window(1_000_000_123.4, 60, 600, 0)
    assert (start, end) == (999_999_480, 1_000_000_080)
    # A delay holds back periods that ended less than `delay` ago.
    assert window(1_000_000_123.4, 60, 600, 90)[1] == 1_000_000_020
    # A look-back that is not a whole number of periods is rounded up.
    start, end = window(1_000_000_123.4, 300, 700, 0)
    assert (end - start, end % 300) == (900, 0)


async def test_metrics_read_back_with_names_labels_values_timestamps(moto: MotoServer) -> None:
    clock = Clock()
    (web,) = run_instances(moto, 1, {"Name": "web-1", "Team": "blue"})
    (db,) = run_instances(moto, 1, {"Name": "db-1"}, region=OTHER)
    p2, p1 = period_start(clock, 2), period_start(clock, 1)
    put_metric(moto, web, "CPUUtilization", 10.0, at(p2 + 5))
    put_metric(moto, web, "CPUUtilization", 30.0, at(p2 + 35))
    put_metric(moto, web, "NetworkIn", 1000.0, at(p1 + 1))
    put_metric(moto, web, "NetworkIn", 500.0, at(p1 + 50))
    put_metric(moto, db, "CPUUtilization", 55.0, at(p1 + 10), region=OTHER)
    # Inside the current, incomplete period: not read until it is complete.
    put_metric(moto, web, "CPUUtilization", 99.0, at(period_start(clock, 0) + 1))
    config = aws_config(moto, regions=[REGION, OTHER], tag_labels=["Team"])
    async with CloudWatchProducer(config, clock=clock) as producer:
        samples = await producer.collect()

    assert by_series(samples) == {
        ("aws.ec2.cpuutilization.average", web, p2): 20.0,
        ("aws.ec2.cpuutilization.maximum", web, p2): 30.0,
        ("aws.ec2.networkin.sum", web, p1): 1500.0,
        ("aws.ec2.cpuutilization.average", db, p1): 55.0,
        ("aws.ec2.cpuutilization.maximum", db, p1): 55.0,
    }
    labels = {s.labels for s in samples}
    assert labels == {
        (("instance_id", web), ("name", "web-1"), ("region", REGION), ("tag_team", "blue")),
        (("instance_id", db), ("name", "db-1"), ("region", OTHER)),
    }
    assert all(isinstance(s.ts, float) and s.ts % PERIOD == 0 for s in samples)


async def test_late_datapoint_is_picked_up_once_and_cycles_store_no_duplicates(
    moto: MotoServer, tmp_path: Path
) -> None:
    clock = Clock()
    (web,) = run_instances(moto, 1, {"Name": "web"})
    config = aws_config(moto, ec2_metrics={"CPUUtilization": ["Average", "Maximum"]})
    p1, p3 = period_start(clock, 1), period_start(clock, 3)
    put_metric(moto, web, "CPUUtilization", 40.0, at(p1 + 1))
    emitted: list[list[Sample]] = []
    async with (
        Store(tmp_path / "db.sqlite") as store,
        CloudWatchProducer(config, clock=clock) as cw,
    ):
        for step in range(4):
            if step == 1:
                # Published late: older than the point already emitted, still inside the window.
                put_metric(moto, web, "CPUUtilization", 7.0, at(p3 + 1))
            if step == 3:
                clock.now += PERIOD  # the window moves on; both points are still inside it
            batch = await cw.collect()
            emitted.append(batch)
            await store.write(batch)
        assert cw.last_cycle.datapoints == 4  # moto still returns both points …
        stored = await store.count_samples()
        history = await store.history(emitted[0][0].key, 0)

    assert [len(b) for b in emitted] == [2, 2, 0, 0]  # … but each reaches the pipeline once
    assert by_series(emitted[1]) == {
        ("aws.ec2.cpuutilization.average", web, p3): 7.0,
        ("aws.ec2.cpuutilization.maximum", web, p3): 7.0,
    }
    assert stored == 4
    assert history == [(float(p3), 7.0), (float(p1), 40.0)]


async def test_1200_queries_go_out_as_3_get_metric_data_calls(moto: MotoServer) -> None:
    ids = run_instances(moto, 240, {"Env": "prod"})  # 240 instances × 5 default metric/stats
    clock = Clock()
    put_metric(moto, ids[-1], "StatusCheckFailed", 1.0, at(period_start(clock, 2)))
    requests = RequestLog()
    async with CloudWatchProducer(aws_config(moto), clock=clock) as producer:
        producer.cloudwatch[REGION].meta.events.register(
            "before-send.cloudwatch.GetMetricData", requests.hook
        )
        samples = await producer.collect()
        assert producer.last_cycle.queries == 1200
        assert producer.last_cycle.get_metric_data_calls == 3
    assert requests.count("GetMetricData") == 3
    assert sorted(requests.query_counts) == [200, 500, 500]
    # The one datapoint came back through whichever batch held its query.
    assert [(s.name, dict(s.labels)["instance_id"]) for s in samples] == [
        ("aws.ec2.statuscheckfailed.maximum", ids[-1])
    ]


async def test_next_token_pages_are_followed(moto: MotoServer) -> None:
    clock = Clock()
    (web,) = run_instances(moto, 1, {"Name": "web"})
    p2, p1 = period_start(clock, 2), period_start(clock, 1)
    put_metric(moto, web, "CPUUtilization", 1.0, at(p2))
    put_metric(moto, web, "CPUUtilization", 2.0, at(p1))
    requests = RequestLog()
    first_page = True

    def split_pages(parsed: dict[str, Any], **kwargs: Any) -> None:
        # moto never pages GetMetricData: make its first answer a partial page with a NextToken.
        nonlocal first_page
        if first_page:
            first_page = False
            for result in parsed["MetricDataResults"]:
                result["Timestamps"], result["Values"] = (
                    result["Timestamps"][:1],
                    result["Values"][:1],
                )
                result["StatusCode"] = "PartialData"
            parsed["NextToken"] = "page-2"

    config = aws_config(moto, ec2_metrics={"CPUUtilization": ["Average"]})
    async with CloudWatchProducer(config, clock=clock) as producer:
        events = producer.cloudwatch[REGION].meta.events
        events.register("before-send.cloudwatch.GetMetricData", requests.hook)
        events.register("after-call.cloudwatch.GetMetricData", split_pages)
        samples = await producer.collect()
    assert requests.next_tokens == [None, "page-2"]
    assert sorted((s.ts, s.value) for s in samples) == [(p2, 1.0), (p1, 2.0)]


async def test_other_namespaces_with_dimensions(moto: MotoServer) -> None:
    clock = Clock()
    p1 = period_start(clock, 1)
    boto3_client(moto, "cloudwatch").put_metric_data(
        Namespace="AWS/RDS",
        MetricData=[
            {
                "MetricName": "FreeStorageSpace",
                "Dimensions": [{"Name": "DBInstanceIdentifier", "Value": "orders-db"}],
                "Timestamp": at(p1 + 3),
                "Value": 5e9,
            }
        ],
    )
    config = aws_config(
        moto,
        ec2_metrics={},  # no EC2 discovery at all
        metrics=[
            {
                "namespace": "AWS/RDS",
                "name": "FreeStorageSpace",
                "dimensions": {"DBInstanceIdentifier": "orders-db"},
                "statistics": ["Minimum", "Average"],
            }
        ],
    )
    async with CloudWatchProducer(config, clock=clock) as producer:
        assert producer.ec2 == {}
        samples = await producer.collect()
    labels = (("db_instance_identifier", "orders-db"), ("region", REGION))
    assert sorted(samples, key=lambda s: s.name) == [
        Sample("aws.rds.freestoragespace.average", 5e9, float(p1), labels),
        Sample("aws.rds.freestoragespace.minimum", 5e9, float(p1), labels),
    ]
