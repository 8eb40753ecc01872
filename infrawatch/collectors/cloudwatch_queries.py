"""What one CloudWatch cycle asks for: a MetricDataQuery per series, batched by 500.

Pure data (no AWS SDK import), shared by the producer and the `check` report.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from infrawatch.collectors.aws_config import AwsConfig, AwsMetric
from infrawatch.collectors.ec2 import Instance, in_shard, label_key
from infrawatch.model import Labels, SeriesKey, make_labels

MAX_QUERIES_PER_CALL = 500  # GetMetricData's limit on MetricDataQuery entries
SAMPLE_PREFIX = "aws."  # every CloudWatch sample name starts with it (and no other does)


def _clean(part: str) -> str:
    return re.sub(r"[^a-z0-9_]+", "_", part.lower()).strip("_")


def sample_name(namespace: str, metric: str, stat: str) -> str:
    """`aws.<namespace>.<metric>.<stat>`, lower-cased: ("AWS/EC2", "CPUUtilization", "Average")
    → "aws.ec2.cpuutilization.average"; a custom "MyApp/Web" namespace becomes "myapp.web"."""
    ns = ".".join(_clean(p) for p in namespace.removeprefix("AWS/").split("/") if _clean(p))
    return f"{SAMPLE_PREFIX}{ns}.{_clean(metric)}.{_clean(stat)}"


@dataclass(frozen=True, slots=True)
class Query:
    """One MetricDataQuery (one metric requested, the GetMetricData cost unit) and its series."""

    name: str
    labels: Labels
    namespace: str
    metric: str
    dimensions: tuple[tuple[str, str], ...]
    stat: str

    @property
    def key(self) -> SeriesKey:
        """The series the query's datapoints belong to."""
        return (self.name, self.labels)

    def request(self, query_id: str, period: int) -> dict[str, Any]:
        """The MetricDataQuery for GetMetricData; `period` in seconds."""
        return {
            "Id": query_id,
            "ReturnData": True,
            "MetricStat": {
                "Metric": {
                    "Namespace": self.namespace,
                    "MetricName": self.metric,
                    "Dimensions": [{"Name": n, "Value": v} for n, v in self.dimensions],
                },
                "Period": period,
                "Stat": self.stat,
            },
        }


def ec2_queries(config: AwsConfig, instances: Sequence[Instance]) -> list[Query]:
    """One query per instance × configured EC2 metric × statistic."""
    out = []
    for instance in instances:
        for metric, stats in config.ec2_metrics.items():
            for stat in stats:
                out.append(
                    Query(
                        sample_name("AWS/EC2", metric, stat),
                        instance.labels,
                        "AWS/EC2",
                        metric,
                        (("InstanceId", instance.instance_id),),
                        stat,
                    )
                )
    return out


def extra_key(metric: AwsMetric) -> str:
    """The stable key a `[[cloud.aws.metrics]]` entry is sharded by."""
    dims = ",".join(f"{k}={v}" for k, v in sorted(metric.dimensions.items()))
    return f"{metric.namespace}|{metric.name}|{dims}"


def extra_queries(config: AwsConfig, region: str) -> list[Query]:
    """Queries for the `[[cloud.aws.metrics]]` entries that apply to `region` and this shard."""
    out = []
    for metric in config.metrics:
        if metric.regions is not None and region not in metric.regions:
            continue
        if not in_shard(extra_key(metric), config.shard_index, config.shard_count):
            continue
        labels = make_labels(
            {"region": region, **{label_key(k): v for k, v in metric.dimensions.items()}}
        )
        dims = tuple(sorted(metric.dimensions.items()))
        for stat in metric.statistics:
            out.append(
                Query(
                    sample_name(metric.namespace, metric.name, stat),
                    labels,
                    metric.namespace,
                    metric.name,
                    dims,
                    stat,
                )
            )
    return out


def batches(queries: Sequence[Query], size: int = MAX_QUERIES_PER_CALL) -> list[Sequence[Query]]:
    """Split `queries` into GetMetricData-sized chunks."""
    return [queries[i : i + size] for i in range(0, len(queries), size)]
