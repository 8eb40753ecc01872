"""EC2 discovery: which instances to query, with the labels their samples carry.

DescribeInstances is called with the configured filters, every page followed, once per region;
instances outside this agent's shard (a stable hash of the instance id) are left to other agents.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from infrawatch.model import Labels, make_labels

DESCRIBE_PAGE_SIZE = 1000  # DescribeInstances' maximum MaxResults


def label_key(name: str) -> str:
    """A CloudWatch dimension or tag key as a label name: InstanceId → instance_id."""
    snake = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    snake = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", snake)
    return re.sub(r"[^A-Za-z0-9]+", "_", snake).strip("_").lower() or "_"


def shard_of(key: str, count: int) -> int:
    """The shard (0 … count-1) that owns `key`; the same on every host and Python run."""
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") % count


def in_shard(key: str, index: int, count: int) -> bool:
    """Whether this agent (shard `index` of `count`) owns `key`."""
    return count == 1 or shard_of(key, count) == index


@dataclass(frozen=True, slots=True)
class Instance:
    """One discovered EC2 instance and the labels its samples carry."""

    instance_id: str
    region: str
    labels: Labels


@dataclass(frozen=True, slots=True)
class Discovery:
    """One region's discovery result: the instances this shard owns and the API pages read."""

    region: str
    instances: list[Instance]
    pages: int
    matched: int  # before sharding


def instance_labels(
    instance_id: str, region: str, tags: Mapping[str, str], tag_labels: Iterable[str]
) -> Labels:
    """instance_id, region, the Name tag as `name`, and each selected tag key as `tag_<key>`."""
    labels = {"instance_id": instance_id, "region": region}
    if tags.get("Name"):
        labels["name"] = tags["Name"]
    for key in tag_labels:
        if key in tags:
            labels[f"tag_{label_key(key)}"] = tags[key]
    return make_labels(labels)


def ec2_filters(filters: Mapping[str, Sequence[str]]) -> list[dict[str, Any]]:
    """The config's filter table in the EC2 API's shape."""
    return [{"Name": name, "Values": list(values)} for name, values in filters.items()]


async def discover(
    client: Any,
    region: str,
    filters: Mapping[str, Sequence[str]],
    tag_labels: Sequence[str],
    *,
    shard_index: int = 0,
    shard_count: int = 1,
    page_size: int = DESCRIBE_PAGE_SIZE,
) -> Discovery:
    """Describe the instances matching `filters` in `region` (every page) and keep this shard's."""
    paginator = client.get_paginator("describe_instances")
    pages = 0
    matched = 0
    found: dict[str, Instance] = {}
    async for page in paginator.paginate(
        Filters=ec2_filters(filters), PaginationConfig={"PageSize": page_size}
    ):
        pages += 1
        for reservation in page.get("Reservations", []):
            for raw in reservation.get("Instances", []):
                instance_id = raw["InstanceId"]
                matched += 1
                if not in_shard(instance_id, shard_index, shard_count):
                    continue
                tags = {t["Key"]: t["Value"] for t in raw.get("Tags", [])}
                found[instance_id] = Instance(
                    instance_id, region, instance_labels(instance_id, region, tags, tag_labels)
                )
    return Discovery(region, sorted(found.values(), key=lambda i: i.instance_id), pages, matched)
