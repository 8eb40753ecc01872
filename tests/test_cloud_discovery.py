"""EC2 discovery against moto: regions, tags as labels, filters, pagination, stopped instances,
sharding, and the config rules of `[cloud.aws]`."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from infrawatch.collectors.aws_config import AwsConfig
from infrawatch.collectors.cloudwatch import CloudWatchProducer
from infrawatch.collectors.ec2 import discover, in_shard, label_key, shard_of
from tests.support_moto import (
    REGION,
    MotoServer,
    RequestLog,
    aws_config,
    boto3_client,
    moto,
    moto_server,
    run_instances,
)

__all__ = ["moto", "moto_server"]  # fixtures used by name

OTHER = "eu-west-1"


async def test_discovers_tagged_instances_in_two_regions_with_labels(moto: MotoServer) -> None:
    east = run_instances(moto, 2, {"Name": "web", "Env": "prod", "Team": "blue"})
    west = run_instances(moto, 1, {"Name": "db", "Env": "prod"}, region=OTHER)
    run_instances(moto, 2, {"Name": "scratch", "Env": "dev"})  # filtered out by tag
    config = aws_config(
        moto, regions=[REGION, OTHER], filters={"tag:Env": ["prod"]}, tag_labels=["Team"]
    )
    async with CloudWatchProducer(config) as producer:
        await producer.collect()
        found_east = producer.instances(REGION)
        found_west = producer.instances(OTHER)
    assert sorted(i.instance_id for i in found_east) == sorted(east)
    assert [i.instance_id for i in found_west] == west
    labels = dict(found_east[0].labels)
    assert labels == {
        "instance_id": found_east[0].instance_id,
        "region": REGION,
        "name": "web",
        "tag_team": "blue",
    }
    assert dict(found_west[0].labels) == {"instance_id": west[0], "region": OTHER, "name": "db"}
    # The default state filter was kept next to the tag filter.
    assert config.filters == {"instance-state-name": ["running"], "tag:Env": ["prod"]}


async def test_every_describe_page_is_followed(moto: MotoServer) -> None:
    # moto pages by reservation (AWS by instance): 12 single-instance reservations, 5 per page.
    ids = [i for _ in range(12) for i in run_instances(moto, 1, {"Env": "prod"})]
    requests = RequestLog()
    config = aws_config(moto)
    async with CloudWatchProducer(config, describe_page_size=5) as producer:
        producer.ec2[REGION].meta.events.register(
            "before-send.ec2.DescribeInstances", requests.hook
        )
        await producer.collect()
        assert sorted(i.instance_id for i in producer.instances(REGION)) == sorted(ids)
        assert producer.last_cycle.describe_pages == 3
    assert requests.count("DescribeInstances") == 3


async def test_stopped_instance_is_dropped_and_no_longer_queried(moto: MotoServer) -> None:
    keep, stop = run_instances(moto, 2, {"Env": "prod"})
    requests = RequestLog()
    # A tiny discovery interval: every cycle re-discovers.
    config = aws_config(moto, discovery_interval=0.001, ec2_metrics={"CPUUtilization": ["Average"]})
    async with CloudWatchProducer(config) as producer:
        producer.cloudwatch[REGION].meta.events.register(
            "before-send.cloudwatch.GetMetricData", requests.hook
        )
        await producer.collect()
        assert {i.instance_id for i in producer.instances(REGION)} == {keep, stop}
        boto3_client(moto, "ec2").stop_instances(InstanceIds=[stop])
        await producer.collect()
        assert [i.instance_id for i in producer.instances(REGION)] == [keep]
        assert {dict(q.labels)["instance_id"] for q in producer.queries(REGION)} == {keep}
    assert requests.query_counts == [2, 1]


async def test_shards_split_the_fleet_without_overlap(moto: MotoServer) -> None:
    ids = set(run_instances(moto, 30, {"Env": "prod"}))
    seen: list[set[str]] = []
    for index in range(3):
        config = aws_config(moto, shard=f"{index}/3")
        async with CloudWatchProducer(config) as producer:
            found = await discover(
                producer.ec2[REGION],
                REGION,
                config.filters,
                [],
                shard_index=config.shard_index,
                shard_count=config.shard_count,
            )
        assert found.matched == 30
        seen.append({i.instance_id for i in found.instances})
    assert set.union(*seen) == ids
    assert sum(len(s) for s in seen) == len(ids)  # disjoint
    assert all(seen), "30 ids hashed into 3 shards leave none empty"


def test_shard_hash_is_stable_and_spreads() -> None:
    # sha256-based: the same on every host and Python run (unlike hash()).
    assert shard_of("i-0123456789abcdef0", 4) == shard_of("i-0123456789abcdef0", 4)
    counts = [0, 0, 0, 0]
    for n in range(4000):
        counts[shard_of(f"i-{n:017x}", 4)] += 1
    assert all(800 < c < 1200 for c in counts), counts
    assert in_shard("anything", 0, 1)


def test_label_keys_are_snake_case() -> None:
    assert label_key("InstanceId") == "instance_id"
    assert label_key("DBInstanceIdentifier") == "db_instance_identifier"
    assert label_key("aws:autoscaling:groupName") == "aws_autoscaling_group_name"
    assert label_key("Env") == "env"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"regions": ["us-east1"]}, "not an AWS region name: us-east1"),
        ({"period": 90}, "multiple of 60"),
        ({"shard": "3/3"}, "0 <= i < n"),
        ({"shard": "1-3"}, "0 <= i < n"),
        ({"endpoint_url": "localhost:5000"}, "http:// or https://"),
        ({"ec2_metrics": {"CPUUtilization": ["Avg"]}}, "unknown statistic 'Avg'"),
        ({"filters": {"tag:Env": []}}, "has no values"),
        ({"lookback": 30, "period": 60}, "lookback must cover"),
        # A cycle reads only the look-back: a longer poll interval would skip periods for good.
        ({"poll_interval": "1h", "lookback": "15m"}, "lookback must be at least poll_interval"),
        ({"retry_mode": "legacy"}, "standard"),
    ],
)
def test_invalid_config_is_rejected_with_a_reason(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        AwsConfig.model_validate({"enabled": True, **values})


def test_config_accepts_documented_shapes() -> None:
    config = AwsConfig.model_validate(
        {
            "enabled": True,
            "regions": ["us-east-1", "eu-west-1", "us-east-1"],
            "period": 60,
            "poll_interval": "1m",
            "shard": "2/3",
            "ec2_metrics": {"CPUUtilization": ["p99", "Average"]},
            "metrics": [
                {"namespace": "AWS/RDS", "name": "FreeStorageSpace", "dimensions": {"A": "b"}}
            ],
        }
    )
    assert config.regions == ["us-east-1", "eu-west-1"]
    assert (config.shard_index, config.shard_count) == (2, 3)
    assert config.poll_interval == 60
    assert config.metrics[0].statistics == ["Average"]
