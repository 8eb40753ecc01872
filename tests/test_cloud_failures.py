"""Failure behaviour: throttling is retried while the host producer keeps ticking; missing
credentials, access denied and an unreachable endpoint give clear messages, `check` exits 2,
and the agent still collects host metrics. A host-only agent never imports botocore."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from infrawatch.collectors.aws_errors import CloudError
from infrawatch.collectors.cloudwatch import CloudWatchProducer
from infrawatch.collectors.host import HostProducer
from infrawatch.config import HostConfig
from infrawatch.model import Sample
from infrawatch.runtime.queue import BatchQueue
from infrawatch.runtime.schedule import run_producer, tick
from infrawatch.runtime.stats import AgentStats
from tests.agentproc import AgentProcess, write_config
from tests.support_moto import (
    REGION,
    MotoServer,
    aws_config,
    fake_aws_env,
    moto,
    moto_server,
    no_aws_env,
    put_metric,
    run_instances,
    throttling_response,
)
from tests.support_receivers import free_port

__all__ = ["moto", "moto_server"]  # fixtures used by name


class TickingHost(HostProducer):
    """The real host producer, announcing each finished tick."""

    def __init__(self, config: HostConfig) -> None:
        super().__init__(config)
        self.ticks = 0
        self.ticked = asyncio.Condition()

    async def collect(self) -> list[Sample]:
        samples = await super().collect()
        async with self.ticked:
            self.ticks += 1
            self.ticked.notify_all()
        return samples

    async def wait_ticks(self, n: int) -> None:
        async with self.ticked:
            await self.ticked.wait_for(lambda: self.ticks >= n)


async def test_throttling_is_retried_and_recovers_while_host_keeps_ticking(
    moto: MotoServer,
) -> None:
    (web,) = run_instances(moto, 1, {"Name": "web"})
    from datetime import UTC, datetime

    from infrawatch.collectors.cloudwatch_window import window

    _, end = window(datetime.now(UTC).timestamp(), 60, 600, 0)
    put_metric(moto, web, "CPUUtilization", 12.5, datetime.fromtimestamp(end - 60, UTC))

    host = TickingHost(HostConfig(interval=0.1, metrics=["cpu", "memory"], per_cpu=False))
    config = aws_config(moto, max_attempts=3, ec2_metrics={"CPUUtilization": ["Average"]})
    stats = AgentStats()
    queue = BatchQueue(100, "drop_oldest", stats)
    attempts: list[str] = []
    throttle = 4  # tick 1: all 3 attempts throttled; tick 2: 1 throttled, then through

    async def before_send(request: Any, **kwargs: Any) -> Any:
        nonlocal throttle
        attempts.append("throttled" if throttle else "sent")
        if not throttle:
            return None
        throttle -= 1
        if len(attempts) == 2:
            # Mid-retry, the host producer must still be collecting on its own schedule.
            await host.wait_ticks(host.ticks + 3)
        return throttling_response(request.url)

    async with host, CloudWatchProducer(config) as cloud:
        cloud.cloudwatch[REGION].meta.events.register(
            "before-send.cloudwatch.GetMetricData", before_send
        )
        host_task = asyncio.create_task(run_producer(host, queue, stats.producer("host")))
        cloud_stats = stats.producer("cloudwatch")
        try:
            first = await tick(cloud, queue, cloud_stats)
            assert not first
            assert cloud.errors["throttled"] == 1
            assert attempts == ["throttled"] * 3
            second = await tick(cloud, queue, cloud_stats)
        finally:
            host_task.cancel()
            await asyncio.gather(host_task, return_exceptions=True)

    assert second, "the retry after one Throttling response succeeded"
    assert attempts == ["throttled"] * 4 + ["sent"]
    assert cloud_stats.errors == 1
    assert cloud_stats.consecutive_failures == 0
    batches = []
    while (batch := queue.get_nowait()) is not None:
        batches.append(batch)
    cloud_samples = [s for b in batches if b.producer == "cloudwatch" for s in b.samples]
    assert [(s.name, s.value) for s in cloud_samples] == [("aws.ec2.cpuutilization.average", 12.5)]
    assert stats.producers["host"].errors == 0
    assert stats.producers["host"].ticks >= 3


async def test_access_denied_is_one_clear_error(moto: MotoServer) -> None:
    from aiobotocore.awsrequest import AioAWSResponse

    from tests.support_moto import _Body

    run_instances(moto, 1, {"Name": "web"})
    body = json.dumps(
        {
            "__type": "com.amazonaws.cloudwatch#AccessDenied",
            "message": "User: arn:aws:iam::123456789012:user/x is not authorized",
        }
    ).encode()

    def deny(request: Any, **kwargs: Any) -> Any:
        headers = {
            "Content-Type": "application/x-amz-json-1.0",
            "x-amzn-query-error": "AccessDenied;Sender",
        }
        return AioAWSResponse(request.url, 403, headers, _Body(body))

    async with CloudWatchProducer(aws_config(moto)) as cloud:
        cloud.cloudwatch[REGION].meta.events.register("before-send.cloudwatch.GetMetricData", deny)
        with pytest.raises(CloudError) as caught:
            await cloud.collect()
    assert caught.value.kind == "access_denied"
    assert str(caught.value).startswith(f"{REGION}: access denied for GetMetricData (AccessDenied)")


async def test_missing_credentials_raise_a_clear_error(
    moto: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    async with CloudWatchProducer(aws_config(moto)) as cloud:
        with pytest.raises(CloudError, match="no AWS credentials found") as caught:
            await cloud.collect()
    assert caught.value.kind == "no_credentials"


def _check(config: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "infrawatch", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=50,
        check=False,
    )


def _cloud_config(tmp_path: Path, endpoint: str, extra: str = "") -> Path:
    return write_config(
        tmp_path,
        f'[cloud.aws]\nenabled = true\nendpoint_url = "{endpoint}"\n'
        f'regions = ["{REGION}", "eu-west-1"]\n{extra}',
    )


def test_check_reports_source_identity_instances_and_cost(moto: MotoServer, tmp_path: Path) -> None:
    run_instances(moto, 3, {"Name": "web"})
    run_instances(moto, 1, {"Name": "db"}, region="eu-west-1")
    config = _cloud_config(tmp_path, moto.url, 'poll_interval = "1m"\n')
    result = _check(config, fake_aws_env(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "aws credentials: found in environment variables [env]" in out
    assert "testing" not in out  # never the key values
    assert "aws identity: account 123456789012, arn:aws:sts::123456789012:user/moto" in out
    assert f"aws region {REGION}: 3 instances match the filters, 3 polled here; 15 metrics" in out
    assert "aws region eu-west-1: 1 instances match the filters, 1 polled here; 5 metrics" in out
    assert "aws metrics per cycle: 20 metrics in 2 GetMetricData calls" in out
    # 20 metrics × 43,200 one-minute cycles per 30 days = 864,000 metrics → $8.64.
    assert "aws estimated GetMetricData cost: $8.64 per 30 days (864,000 metrics requested" in out
    assert out.rstrip().endswith("aws: ready to collect")


def test_check_without_credentials_exits_2(moto: MotoServer, tmp_path: Path) -> None:
    result = _check(_cloud_config(tmp_path, moto.url), no_aws_env(tmp_path))
    assert result.returncode == 2
    assert "aws credentials: FAILED - no AWS credentials found (looked in: environment" in (
        result.stdout
    )
    assert "Traceback" not in result.stderr


def test_check_with_unreachable_endpoint_exits_2(tmp_path: Path) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    result = _check(_cloud_config(tmp_path, endpoint), fake_aws_env(tmp_path))
    assert result.returncode == 2
    assert f"aws identity: FAILED - AWS endpoint unreachable: {endpoint}" in result.stdout
    assert "testing" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("problem", ["no_credentials", "unreachable"])
async def test_agent_still_collects_host_metrics_when_aws_fails(
    moto: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, problem: str
) -> None:
    if problem == "unreachable":
        endpoint, env = f"http://127.0.0.1:{free_port()}", fake_aws_env(tmp_path)
    else:
        # AgentProcess starts from this process's environment: drop the fake keys there too.
        monkeypatch.delenv("AWS_ACCESS_KEY_ID")
        monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
        endpoint, env = moto.url, no_aws_env(tmp_path)
    config = write_config(
        tmp_path,
        f'[host]\ninterval = 0.2\nmetrics = ["cpu", "memory"]\n'
        f'[cloud.aws]\nenabled = true\nendpoint_url = "{endpoint}"\nmax_attempts = 2\n',
    )
    agent = await AgentProcess(config, "--once", env=env).start()
    try:
        failed = await agent.wait_for("producer.failed", lambda e: e["producer"] == "cloudwatch")
        stopped = await agent.wait_for("agent.stopped")
        code = await agent.wait()
    finally:
        await agent.stop()
    assert code == 0
    expected = "no AWS credentials found" if problem == "no_credentials" else "endpoint unreachable"
    assert expected in failed["error"]
    assert "testing" not in "".join(agent.raw_lines)
    assert stopped["collected"] > 0
    assert stopped["stored"] == stopped["collected"]


HOST_ONLY = """
import json, sys
from infrawatch.cli.main import main
code = main(["run", "--once", "--config", sys.argv[1], "--log-format", "json"])
print(json.dumps({"code": code, "loaded": sorted(
    m for m in ("botocore", "aiobotocore", "boto3") if m in sys.modules)}))
"""


@pytest.mark.parametrize("cloud", [False, True])
def test_botocore_is_imported_only_when_cloud_is_enabled(
    moto: MotoServer, tmp_path: Path, cloud: bool
) -> None:
    section = f'[cloud.aws]\nenabled = {str(cloud).lower()}\nendpoint_url = "{moto.url}"\n'
    config = write_config(tmp_path, '[host]\nmetrics = ["cpu"]\n' + section)
    result = subprocess.run(
        [sys.executable, "-c", HOST_ONLY, str(config)],
        capture_output=True,
        text=True,
        env=fake_aws_env(tmp_path),
        timeout=50,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["code"] == 0
    assert report["loaded"] == (["aiobotocore", "botocore"] if cloud else [])
