"""The `infrawatch check` report for `[cloud.aws]`: credentials, identity, instances, cost.

Credentials are described by their source only (environment, shared file, role …), never by
value. Importing this module imports aiobotocore; the CLI imports it only when the cloud
producer is enabled.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from typing import Any

from aiobotocore.session import AioSession

from infrawatch.collectors.aws_config import AwsConfig
from infrawatch.collectors.aws_errors import CHAIN, explain
from infrawatch.collectors.cloudwatch import client_config
from infrawatch.collectors.cloudwatch_queries import (
    MAX_QUERIES_PER_CALL,
    ec2_queries,
    extra_queries,
)
from infrawatch.collectors.ec2 import DESCRIBE_PAGE_SIZE, discover
from infrawatch.units import format_duration

PRICE_PER_1000_METRICS = 0.01  # USD, GetMetricData, public price
MONTH_SECONDS = 30 * 86400
CHECK_ATTEMPTS = 2  # `check` is interactive: fail fast instead of the producer's patient retries

# botocore's credential `method` names, in words.
_SOURCES = {
    "env": "environment variables",
    "shared-credentials-file": "shared credentials file",
    "config-file": "shared config file",
    "custom-process": "credential_process in the shared config",
    "assume-role": "assumed role from the shared config",
    "assume-role-with-web-identity": "web identity token (e.g. EKS IRSA)",
    "sso": "IAM Identity Center (SSO)",
    "container-role": "container role (ECS/EKS task credentials)",
    "iam-role": "instance role (EC2 instance metadata)",
    "boto-config": "boto config file",
}


@dataclass(slots=True)
class CheckReport:
    """The report's lines and whether everything needed to collect works."""

    lines: list[str] = field(default_factory=list)
    ok: bool = True

    def fail(self, what: str, message: str) -> None:
        """Add a failure line."""
        self.lines.append(f"{what}: FAILED - {message}")
        self.ok = False


def credential_source(method: str, profile: str | None) -> str:
    """Where botocore found credentials, in words (never the credentials themselves)."""
    words = _SOURCES.get(method, method)
    if profile and method in ("shared-credentials-file", "config-file", "assume-role", "sso"):
        words += f", profile {profile!r}"
    return f"{words} [{method}]"


def monthly_cost(metrics_per_cycle: int, poll_interval: float) -> tuple[int, float]:
    """(metrics requested per 30 days, USD per 30 days) at $0.01 per 1,000 metrics."""
    requested = math.ceil(metrics_per_cycle * MONTH_SECONDS / poll_interval)
    return requested, requested / 1000 * PRICE_PER_1000_METRICS


async def build_report(
    config: AwsConfig, *, describe_page_size: int = DESCRIBE_PAGE_SIZE
) -> CheckReport:
    """Resolve credentials, call STS GetCallerIdentity, discover instances, estimate the cost."""
    report = CheckReport()
    endpoint = config.endpoint_url or "AWS default endpoints"
    report.lines.append(f"aws endpoint: {endpoint}; regions: {', '.join(config.regions)}")
    try:
        session = AioSession(profile=config.profile)
        credentials = await session.get_credentials()
    except Exception as exc:
        report.fail("aws credentials", str(explain(exc)))
        return report
    if credentials is None:
        report.fail("aws credentials", f"no AWS credentials found (looked in: {CHAIN})")
        return report
    report.lines.append(
        f"aws credentials: found in {credential_source(credentials.method, config.profile)}"
    )
    cfg = client_config(config, max_attempts=CHECK_ATTEMPTS)
    region0 = config.regions[0]
    try:
        async with session.create_client(
            "sts", region_name=region0, endpoint_url=config.endpoint_url, config=cfg
        ) as sts:
            identity = await sts.get_caller_identity()
    except Exception as exc:
        report.fail("aws identity", str(explain(exc)))
        return report
    report.lines.append(
        f"aws identity: account {identity.get('Account')}, {identity.get('Arn')} "
        "(STS GetCallerIdentity)"
    )
    total_queries = 0
    calls = 0
    for region in config.regions:
        queries = await _region_report(report, session, cfg, config, region, describe_page_size)
        if queries is None:
            continue
        total_queries += queries
        calls += math.ceil(queries / MAX_QUERIES_PER_CALL)
    requested, cost = monthly_cost(total_queries, config.poll_interval)
    report.lines.append(
        f"aws metrics per cycle: {total_queries} metrics in {calls} GetMetricData calls "
        f"(≤{MAX_QUERIES_PER_CALL} each), every {format_duration(config.poll_interval)}"
    )
    report.lines.append(
        f"aws estimated GetMetricData cost: ${cost:,.2f} per 30 days "
        f"({requested:,} metrics requested at ${PRICE_PER_1000_METRICS} per 1,000)"
    )
    return report


async def _region_report(
    report: CheckReport,
    session: Any,
    cfg: Any,
    config: AwsConfig,
    region: str,
    page_size: int,
) -> int | None:
    """Add one region's line; return its queries per cycle, or None if it failed."""
    instances = 0
    shard = f", {config.shard} shard" if config.shard_count > 1 else ""
    detail = ""
    if config.ec2_metrics:
        try:
            async with session.create_client(
                "ec2", region_name=region, endpoint_url=config.endpoint_url, config=cfg
            ) as ec2:
                found = await discover(
                    ec2,
                    region,
                    config.filters,
                    config.tag_labels,
                    shard_index=config.shard_index,
                    shard_count=config.shard_count,
                    page_size=page_size,
                )
        except Exception as exc:
            report.fail(f"aws region {region}", str(explain(exc)))
            return None
        instances = len(found.instances)
        queries = len(ec2_queries(config, found.instances))
        detail = f"{found.matched} instances match the filters, {instances} polled here{shard}; "
    else:
        queries = 0
    extra = len(extra_queries(config, region))
    report.lines.append(
        f"aws region {region}: {detail}{queries + extra} metrics per cycle "
        f"({queries} EC2, {extra} from [[cloud.aws.metrics]])"
    )
    return queries + extra


def print_report(config: AwsConfig) -> bool:
    """Run the checks and print the report on stdout; return whether they all passed."""
    report = asyncio.run(build_report(config))
    for line in report.lines:
        print(line)
    if report.ok:
        print("aws: ready to collect")
    else:
        print("aws: NOT ready - the agent will run host collection and keep retrying AWS")
    return report.ok
