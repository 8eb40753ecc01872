"""`[cloud.aws]`: CloudWatch metrics for discovered EC2 instances and other namespaces.

Credentials are never part of the configuration: they come from the standard AWS chain
(environment, shared credentials/config files and `profile`, container or instance role).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from infrawatch.units import ConfigModel, Seconds, SecondsOrZero

# us-east-1, eu-central-2, us-gov-west-1, cn-north-1, ap-southeast-5 … (catches most typos early).
_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d{1,2}$")
# Average, Sum, Minimum, Maximum, SampleCount, and extended statistics such as p99, p99.9, tm90.
_STATISTIC = re.compile(
    r"^(Average|Sum|Minimum|Maximum|SampleCount|IQM|(p|tm|wm|tc|ts|pr)\d{1,2}(\.\d+)?"
    r"|(TM|WM|TC|TS|PR)\([^)]*\))$"
)
_SHARD = re.compile(r"^(\d+)/(\d+)$")
STATE_FILTER = "instance-state-name"


def _statistic(value: str) -> str:
    if not _STATISTIC.match(value):
        raise ValueError(
            f"unknown statistic {value!r}: use Average, Sum, Minimum, Maximum, SampleCount "
            "or a percentile such as p99"
        )
    return value


Statistic = Annotated[str, AfterValidator(_statistic)]


def check_regions(value: list[str]) -> list[str]:
    """Reject names that cannot be AWS regions; drop repeats (order kept)."""
    bad = [r for r in value if not _REGION.match(r)]
    if bad:
        raise ValueError(f"not an AWS region name: {', '.join(bad)} (e.g. us-east-1)")
    return list(dict.fromkeys(value))


def _default_ec2_metrics() -> dict[str, list[str]]:
    # Five metric/statistic pairs per instance: the cost unit of GetMetricData.
    return {
        "CPUUtilization": ["Average", "Maximum"],
        "NetworkIn": ["Sum"],
        "NetworkOut": ["Sum"],
        "StatusCheckFailed": ["Maximum"],
    }


class AwsMetric(ConfigModel):
    """`[[cloud.aws.metrics]]`: one metric of any namespace, with fixed dimensions."""

    namespace: str = Field(min_length=1, description='e.g. "AWS/RDS"')
    name: str = Field(min_length=1, description='metric name, e.g. "CPUUtilization"')
    dimensions: dict[str, str] = Field(default_factory=dict)
    statistics: list[Statistic] = Field(default_factory=lambda: ["Average"], min_length=1)
    # None: every configured region.
    regions: list[str] | None = None

    @field_validator("regions")
    @classmethod
    def _regions(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else check_regions(value)


class AwsConfig(ConfigModel):
    """The CloudWatch producer: regions, discovery, polling and retry behaviour."""

    enabled: bool = False
    regions: list[str] = Field(default_factory=lambda: ["us-east-1"], min_length=1)
    profile: str | None = None
    endpoint_url: str | None = None
    poll_interval: Seconds = 300.0
    period: int = 300
    lookback: Seconds = 900.0
    delay: SecondsOrZero = 60.0
    discovery_interval: Seconds = 300.0
    filters: dict[str, list[str]] = Field(default_factory=lambda: {STATE_FILTER: ["running"]})
    tag_labels: list[str] = Field(default_factory=list)
    ec2_metrics: dict[str, list[Statistic]] = Field(default_factory=_default_ec2_metrics)
    metrics: list[AwsMetric] = Field(default_factory=list)
    shard: str = "0/1"
    retry_mode: Literal["standard", "adaptive"] = "standard"
    max_attempts: int = Field(5, ge=1, le=20)
    connect_timeout: Seconds = 5.0
    read_timeout: Seconds = 30.0

    @field_validator("regions")
    @classmethod
    def _regions(cls, value: list[str]) -> list[str]:
        return check_regions(value)

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("expected an http:// or https:// URL, e.g. http://127.0.0.1:5000")
        return value

    @field_validator("period")
    @classmethod
    def _period(cls, value: int) -> int:
        # CloudWatch's rule: high-resolution periods 1, 5, 10, 30, else a multiple of 60.
        if value not in (1, 5, 10, 30) and (value <= 0 or value % 60):
            raise ValueError("must be 1, 5, 10, 30 or a multiple of 60 seconds")
        return value

    @field_validator("filters")
    @classmethod
    def _filters(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        # Only running instances report metrics worth paying for, unless the operator says so.
        if STATE_FILTER not in value:
            value = {STATE_FILTER: ["running"], **value}
        empty = [k for k, v in value.items() if not v]
        if empty:
            raise ValueError(f"filter {empty[0]!r} has no values")
        return value

    @field_validator("shard")
    @classmethod
    def _shard(cls, value: str) -> str:
        match = _SHARD.match(value.strip())
        if not match or not 0 <= int(match.group(1)) < int(match.group(2)):
            raise ValueError('expected "i/n" with 0 <= i < n, e.g. "0/3", "1/3", "2/3"')
        return value.strip()

    @model_validator(mode="after")
    def _windows(self) -> AwsConfig:
        if self.lookback < self.period:
            raise ValueError("lookback must cover at least one period")
        if self.lookback < self.poll_interval:
            # Each cycle reads only [end - lookback, end): periods between two cycles that fall
            # outside it would never be read.
            raise ValueError(
                "lookback must be at least poll_interval, or the periods between cycles are "
                "never read"
            )
        return self

    @property
    def shard_index(self) -> int:
        """This agent's shard, 0-based."""
        return int(self.shard.split("/")[0])

    @property
    def shard_count(self) -> int:
        """How many agents split the fleet."""
        return int(self.shard.split("/")[1])


class CloudConfig(ConfigModel):
    """Cloud producers."""

    aws: AwsConfig = AwsConfig()
