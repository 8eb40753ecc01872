"""The CloudWatch producer: GetMetricData for discovered EC2 instances and configured metrics.

Importing this module imports aiobotocore, so the agent imports it only when `cloud.aws.enabled`.

Each cycle reads the aligned window [end - lookback, end), where `end` is the start of the
newest period that finished at least `delay` seconds ago, so only complete periods are read.
Re-reading the look-back picks up datapoints CloudWatch publishes late; `EmittedTimestamps`
remembers, per series, which timestamps inside the window were already emitted, so every
(series, timestamp) reaches the pipeline once, even a late point older than one emitted before.
At start-up the agent calls `resume` with a reader of the store, so that memory also covers what
the run before a restart emitted and stored.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession

from infrawatch.collectors.aws_config import AwsConfig
from infrawatch.collectors.aws_errors import CloudError, ErrorKind, explain
from infrawatch.collectors.cloudwatch_queries import (
    SAMPLE_PREFIX,
    Query,
    batches,
    ec2_queries,
    extra_queries,
)
from infrawatch.collectors.cloudwatch_window import EmittedTimestamps, window
from infrawatch.collectors.ec2 import (
    DESCRIBE_PAGE_SIZE,
    Instance,
    discover,
)
from infrawatch.logging import get_logger
from infrawatch.model import Sample
from infrawatch.runtime.producer import BaseProducer, StoredTimestamps

log = get_logger("infrawatch.collectors.cloudwatch")

CALLS_IN_FLIGHT_PER_REGION = 4  # well under the 50 TPS GetMetricData quota


@dataclass(slots=True)
class CycleStats:
    """What one collection cycle did (also logged as `cloudwatch.cycle`)."""

    queries: int = 0
    get_metric_data_calls: int = 0
    describe_pages: int = 0
    instances: int = 0
    datapoints: int = 0
    samples: int = 0
    late: int = 0
    failed_regions: int = 0
    seconds: float = 0.0


@dataclass(slots=True)
class _RegionResult:
    points: list[tuple[Query, float, float]]  # (query, ts, value)
    calls: int
    describe_pages: int


def client_config(config: AwsConfig, *, max_attempts: int | None = None) -> Any:
    """The botocore client config: retry mode, attempts, timeouts (seconds)."""
    return AioConfig(
        # botocore's "max_attempts" counts retries only; "total_max_attempts" includes the first.
        retries={
            "mode": config.retry_mode,
            "total_max_attempts": max_attempts or config.max_attempts,
        },
        connect_timeout=config.connect_timeout,
        read_timeout=config.read_timeout,
        max_pool_connections=CALLS_IN_FLIGHT_PER_REGION * 2,
    )


class CloudWatchProducer(BaseProducer):
    """Discovers EC2 instances per region and reads their metrics with batched GetMetricData."""

    name = "cloudwatch"

    def __init__(
        self,
        config: AwsConfig,
        *,
        clock: Callable[[], float] = time.time,
        describe_page_size: int = DESCRIBE_PAGE_SIZE,
    ) -> None:
        self.config = config
        self.interval = config.poll_interval
        # A series is live while it has datapoints in the look-back window: an instance on basic
        # monitoring reports every 5 minutes even when the producer polls every minute.
        self.series_ttl = config.lookback + config.poll_interval
        self._clock = clock
        self._describe_page_size = describe_page_size
        self._stack: AsyncExitStack | None = None
        # One client per region per service, opened once and closed in __aexit__.
        self.ec2: dict[str, Any] = {}
        self.cloudwatch: dict[str, Any] = {}
        self._instances: dict[str, list[Instance]] = {}
        self._next_discovery: dict[str, float] = {}  # monotonic seconds
        self._emitted = EmittedTimestamps()
        self._region_failures: Counter[str] = Counter()
        self.errors: Counter[ErrorKind] = Counter()
        self.last_cycle = CycleStats()

    # -- resources -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._stack = AsyncExitStack()
        try:
            await self._open_clients()
        except Exception as exc:
            # A missing profile must not stop the agent: collect() retries and reports it.
            err = explain(exc)
            self.errors[err.kind] += 1
            log.error("cloudwatch.clients_failed", error=str(err), kind=err.kind)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        self.ec2.clear()
        self.cloudwatch.clear()
        if stack is not None:
            await stack.aclose()

    async def _open_clients(self) -> None:
        if self._stack is None:
            raise RuntimeError("CloudWatchProducer used outside `async with`")
        if len(self.cloudwatch) == len(self.config.regions):
            return
        session = AioSession(profile=self.config.profile)
        cfg = client_config(self.config)
        for region in self.config.regions:
            if self.config.ec2_metrics and region not in self.ec2:
                self.ec2[region] = await self._stack.enter_async_context(
                    session.create_client(
                        "ec2",
                        region_name=region,
                        endpoint_url=self.config.endpoint_url,
                        config=cfg,
                    )
                )
            if region not in self.cloudwatch:
                self.cloudwatch[region] = await self._stack.enter_async_context(
                    session.create_client(
                        "cloudwatch",
                        region_name=region,
                        endpoint_url=self.config.endpoint_url,
                        config=cfg,
                    )
                )

    async def resume(self, stored: StoredTimestamps) -> None:
        """Treat the `aws.*` points stored inside the current look-back window as emitted, so
        the first cycle after a restart does not feed the detectors that window again."""
        start, _ = window(
            self._clock(), self.config.period, self.config.lookback, self.config.delay
        )
        found = await stored(SAMPLE_PREFIX, start)
        self._emitted.seed(found)
        # Series no longer queried (other shard, instance gone) are pruned after the first cycle.
        log.info("cloudwatch.resumed", since=start, series=len(found), points=len(self._emitted))

    # -- one cycle -------------------------------------------------------------------------

    def instances(self, region: str) -> list[Instance]:
        """The instances last discovered in `region` (this shard's)."""
        return list(self._instances.get(region, []))

    def queries(self, region: str) -> list[Query]:
        """Every query one cycle sends in `region`."""
        return ec2_queries(self.config, self._instances.get(region, [])) + extra_queries(
            self.config, region
        )

    async def collect(self) -> list[Sample]:
        """One cycle over every region; raises CloudError only if every region failed."""
        started = time.monotonic()
        try:
            await self._open_clients()
        except Exception as exc:
            err = explain(exc)
            self.errors[err.kind] += 1
            raise err from None
        start, end = window(
            self._clock(), self.config.period, self.config.lookback, self.config.delay
        )
        regions = self.config.regions
        results = await asyncio.gather(
            *(self._collect_region(r, start, end) for r in regions), return_exceptions=True
        )
        stats = CycleStats()
        samples: list[Sample] = []
        failures: list[tuple[str, CloudError]] = []
        for region, result in zip(regions, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result
                err = explain(result, where=region)
                self.errors[err.kind] += 1
                self._region_failures[region] += 1
                failures.append((region, err))
                continue
            if self._region_failures.pop(region, 0):
                log.info("cloudwatch.region_recovered", region=region)
            stats.get_metric_data_calls += result.calls
            stats.describe_pages += result.describe_pages
            stats.datapoints += len(result.points)
            for query, ts, value in result.points:
                # Marked only now, when the region's whole cycle succeeded.
                status = self._emitted.check(query.key, ts)
                if status == "seen":
                    continue
                self._emitted.mark(query.key, ts)
                stats.late += status == "late"
                samples.append(Sample(query.name, value, ts, query.labels))
        live = {q.key for r in regions for q in self.queries(r)}
        stats.queries = sum(1 for r in regions for _ in self.queries(r))
        stats.instances = sum(len(self._instances.get(r, [])) for r in regions)
        self._emitted.prune(start, live)
        stats.samples = len(samples)
        stats.failed_regions = len(failures)
        stats.seconds = round(time.monotonic() - started, 3)
        self.last_cycle = stats
        if failures and len(failures) == len(regions):
            # The scheduler logs this (once per doubling of the failure streak) and backs off.
            raise CloudError("; ".join(str(f) for _, f in failures), failures[0][1].kind)
        for region, err in failures:
            self._log_region_failure(region, err)
        log.info(
            "cloudwatch.cycle",
            start=start,
            end=end,
            queries=stats.queries,
            get_metric_data_calls=stats.get_metric_data_calls,
            describe_pages=stats.describe_pages,
            instances=stats.instances,
            samples=stats.samples,
            late=stats.late,
            failed_regions=stats.failed_regions,
            seconds=stats.seconds,
        )
        return samples

    def _log_region_failure(self, region: str, err: CloudError) -> None:
        # When every region fails the scheduler reports it; a region failing alone is logged
        # here, once per doubling of its failure streak (like the scheduler's own backoff).
        streak = self._region_failures[region]
        if streak & (streak - 1) == 0:
            log.error(
                "cloudwatch.region_failed",
                region=region,
                error=str(err),
                kind=err.kind,
                consecutive_failures=streak,
            )

    async def _collect_region(self, region: str, start: int, end: int) -> _RegionResult:
        describe_pages = 0
        now = time.monotonic()
        if self.config.ec2_metrics and now >= self._next_discovery.get(region, 0.0):
            found = await discover(
                self.ec2[region],
                region,
                self.config.filters,
                self.config.tag_labels,
                shard_index=self.config.shard_index,
                shard_count=self.config.shard_count,
                page_size=self._describe_page_size,
            )
            before = {i.instance_id for i in self._instances.get(region, [])}
            after = {i.instance_id for i in found.instances}
            self._instances[region] = found.instances
            self._next_discovery[region] = now + self.config.discovery_interval
            describe_pages = found.pages
            if before != after:
                log.info(
                    "cloudwatch.discovered",
                    region=region,
                    instances=len(after),
                    matched=found.matched,
                    added=len(after - before),
                    removed=len(before - after),
                    pages=found.pages,
                )
        points, calls = await self._fetch(self.cloudwatch[region], self.queries(region), start, end)
        return _RegionResult(points, calls, describe_pages)

    async def _fetch(
        self, client: Any, queries: Sequence[Query], start: int, end: int
    ) -> tuple[list[tuple[Query, float, float]], int]:
        chunks = batches(queries)
        gate = asyncio.Semaphore(CALLS_IN_FLIGHT_PER_REGION)

        async def one(chunk: Sequence[Query]) -> tuple[list[tuple[Query, float, float]], int]:
            async with gate:
                return await self._get_metric_data(client, chunk, start, end)

        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(one(c)) for c in chunks]
        except ExceptionGroup as eg:
            # Report the first underlying failure; the others are usually the same cause.
            first: BaseException = eg
            while isinstance(first, BaseExceptionGroup):
                first = first.exceptions[0]
            raise first from None
        points: list[tuple[Query, float, float]] = []
        calls = 0
        for task in tasks:
            chunk_points, chunk_calls = task.result()
            points.extend(chunk_points)
            calls += chunk_calls
        return points, calls

    async def _get_metric_data(
        self, client: Any, chunk: Sequence[Query], start: int, end: int
    ) -> tuple[list[tuple[Query, float, float]], int]:
        """Every page of one GetMetricData request; returns (query, ts, value) and the calls."""
        kwargs: dict[str, Any] = {
            "MetricDataQueries": [
                q.request(f"q{i}", self.config.period) for i, q in enumerate(chunk)
            ],
            "StartTime": datetime.fromtimestamp(start, UTC),
            "EndTime": datetime.fromtimestamp(end, UTC),
            "ScanBy": "TimestampAscending",
        }
        points: list[tuple[Query, float, float]] = []
        calls = 0
        while True:
            response = await client.get_metric_data(**kwargs)
            calls += 1
            for result in response.get("MetricDataResults", []):
                query = chunk[int(result["Id"][1:])]
                for stamp, value in zip(
                    result.get("Timestamps", []), result.get("Values", []), strict=False
                ):
                    ts = stamp.timestamp()
                    if start <= ts < end:  # only complete periods inside the window
                        points.append((query, ts, float(value)))
            for message in response.get("Messages", []):
                log.warning(
                    "cloudwatch.message", code=message.get("Code"), text=message.get("Value")
                )
            token = response.get("NextToken")
            if not token:
                return points, calls
            kwargs["NextToken"] = token
