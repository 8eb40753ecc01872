"""A moto server on loopback for the cloud tests, fake credentials, and botocore hooks.

`moto_session` starts one `moto_server -H 127.0.0.1 -p <free port>` per test run (tests/conftest.py
makes it visible to every module) and stops it at the end; `moto_server` hands it to a module;
`moto` resets its state before each test and points the AWS environment at fake credentials
(`testing`) with instance-metadata lookups and the user's ~/.aws files disabled.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support_receivers import free_port

REGION = "us-east-1"
AMI = "ami-12c6146b"  # one of moto's built-in images
STARTUP_TIMEOUT = 20.0  # seconds


def _server_command(port: int) -> list[str]:
    script = Path(sys.executable).with_name("moto_server")
    if script.exists():
        return [str(script), "-H", "127.0.0.1", "-p", str(port)]
    return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]


@dataclass
class MotoServer:
    """A running moto server."""

    url: str
    proc: subprocess.Popen[bytes]

    def reset(self) -> None:
        """Forget every resource (instances, metrics) created so far."""
        url = f"{self.url}/moto-api/reset"
        request = urllib.request.Request(url, method="POST")  # noqa: S310 - our loopback http URL
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - same URL
            assert response.status == 200


def start_moto(log_path: Path) -> MotoServer:
    """Start moto on a free loopback port and wait until it answers."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = log_path.open("wb")
    proc = subprocess.Popen(_server_command(port), stdout=log, stderr=subprocess.STDOUT)
    log.close()
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"moto_server exited: {log_path.read_text()[-2000:]}")
        try:
            ready = f"{url}/moto-api/data.json"
            with urllib.request.urlopen(ready, timeout=1):  # noqa: S310 - our loopback http URL
                return MotoServer(url, proc)
        except OSError:
            if time.monotonic() > deadline:
                stop_moto(MotoServer(url, proc))
                raise RuntimeError("moto_server did not answer in time") from None
            time.sleep(0.05)  # polling a child process for readiness; there is no event to await


def stop_moto(server: MotoServer) -> None:
    """Stop the server and reap it."""
    server.proc.terminate()
    try:
        server.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()


@pytest.fixture(scope="session")
def moto_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """One moto server for the whole run: starting and stopping one per module cost seconds
    each, and `moto` resets it before every test anyway."""
    server = start_moto(tmp_path_factory.mktemp("moto") / "moto.log")
    try:
        yield server
    finally:
        stop_moto(server)


@pytest.fixture(scope="module")
def moto_server(moto_session: MotoServer) -> MotoServer:
    """The run's moto server (the cloud modules import this name)."""
    return moto_session


def no_aws_env(tmp: Path) -> dict[str, str]:
    """Environment for a process that must find no AWS credentials anywhere."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=str(tmp / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp / "no-aws-credentials"),
    )
    return env


def fake_aws_env(tmp: Path) -> dict[str, str]:
    """Environment with moto's fake credentials (tests only)."""
    env = no_aws_env(tmp)
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=REGION,
    )
    return env


@pytest.fixture
def moto(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> MotoServer:
    """A clean moto server and fake credentials in this process's environment."""
    moto_server.reset()
    for key in list(os.environ):
        if key.startswith("AWS_"):
            monkeypatch.delenv(key)
    for key, value in fake_aws_env(tmp_path).items():
        if key.startswith("AWS_"):
            monkeypatch.setenv(key, value)
    return moto_server


def boto3_client(server: MotoServer, service: str, region: str = REGION) -> Any:
    """A plain boto3 client for seeding moto (tests only)."""
    import boto3

    return boto3.client(
        service,
        region_name=region,
        endpoint_url=server.url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def run_instances(
    server: MotoServer, count: int, tags: dict[str, str], region: str = REGION
) -> list[str]:
    """Start `count` instances with `tags` in `region`; return their ids."""
    ec2 = boto3_client(server, "ec2", region)
    response = ec2.run_instances(
        ImageId=AMI,
        MinCount=count,
        MaxCount=count,
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ],
    )
    return [i["InstanceId"] for i in response["Instances"]]


def put_metric(
    server: MotoServer,
    instance_id: str,
    metric: str,
    value: float,
    when: datetime,
    region: str = REGION,
) -> None:
    """Put one AWS/EC2 datapoint for `instance_id` at `when`."""
    cw = boto3_client(server, "cloudwatch", region)
    cw.put_metric_data(
        Namespace="AWS/EC2",
        MetricData=[
            {
                "MetricName": metric,
                "Dimensions": [{"Name": "InstanceId", "Value": instance_id}],
                "Timestamp": when,
                "Value": value,
            }
        ],
    )


@dataclass
class RequestLog:
    """Requests a botocore client sent (every HTTP attempt), recorded by a before-send hook."""

    operations: list[str] = field(default_factory=list)
    query_counts: list[int] = field(default_factory=list)
    next_tokens: list[str | None] = field(default_factory=list)

    def hook(self, request: Any, **kwargs: Any) -> None:
        """before-send handler: record the operation and, for GetMetricData, its queries."""
        event = kwargs.get("event_name", "")
        operation = event.rsplit(".", 1)[-1]
        self.operations.append(operation)
        if operation == "GetMetricData":
            body = json.loads(request.body)
            self.query_counts.append(len(body["MetricDataQueries"]))
            self.next_tokens.append(body.get("NextToken"))

    def count(self, operation: str) -> int:
        """How many requests for `operation` were sent."""
        return self.operations.count(operation)


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data = data

    async def read(self) -> bytes:
        return self._data


def throttling_response(url: str) -> Any:
    """An AWS-shaped 400 Throttling response for CloudWatch's JSON protocol."""
    from aiobotocore.awsrequest import AioAWSResponse

    body = json.dumps(
        {"__type": "com.amazonaws.cloudwatch#Throttling", "message": "Rate exceeded"}
    ).encode()
    headers = {
        "Content-Type": "application/x-amz-json-1.0",
        "x-amzn-query-error": "Throttling;Sender",
        "x-amzn-RequestId": "throttled-by-test",
        "Content-Length": str(len(body)),
    }
    return AioAWSResponse(url, 400, headers, _Body(body))


def aws_config(server: MotoServer, **overrides: Any) -> Any:
    """An enabled `[cloud.aws]` config pointed at `server` (1-minute periods, no delay)."""
    from infrawatch.collectors.aws_config import AwsConfig

    values: dict[str, Any] = {
        "enabled": True,
        "regions": [REGION],
        "endpoint_url": server.url,
        "poll_interval": 60,
        "period": 60,
        "lookback": 600,
        "delay": 0,
        "max_attempts": 3,
    }
    values.update(overrides)
    return AwsConfig(**values)
