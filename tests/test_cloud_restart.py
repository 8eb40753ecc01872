"""A restart does not emit (or detect) again what the run before it stored: the CloudWatch
producer's look-back memory is seeded from the store at start-up."""

from __future__ import annotations

from pathlib import Path

from infrawatch.collectors.cloudwatch import CloudWatchProducer
from infrawatch.model import Sample, make_labels
from infrawatch.storage.store import Store
from tests.agentproc import AgentProcess, write_config
from tests.support_moto import (
    MotoServer,
    aws_config,
    fake_aws_env,
    moto,
    moto_server,
    put_metric,
    run_instances,
)
from tests.test_cloud_collect import PERIOD, Clock, at, by_series, period_start

__all__ = ["moto", "moto_server"]  # fixtures used by name

CPU = {"CPUUtilization": ["Average", "Maximum"]}


async def test_store_returns_aws_timestamps_inside_the_window_only(tmp_path: Path) -> None:
    web = make_labels({"instance_id": "i-1", "region": "us-east-1"})
    async with Store(tmp_path / "db.sqlite") as store:
        await store.write(
            [
                Sample("aws.ec2.cpuutilization.average", 1.0, 1000.0, web),
                Sample("aws.ec2.cpuutilization.average", 2.0, 1060.0, web),
                Sample("aws.ec2.cpuutilization.average", 3.0, 900.0, web),  # before `since`
                Sample("aws.ec2.networkin.sum", 4.0, 1060.0, web),
                Sample("system.cpu.utilization", 0.5, 1060.0, ()),  # not a CloudWatch series
                Sample("awsx.other", 0.5, 1060.0, ()),  # shares the letters, not the prefix
            ]
        )
        found = await store.timestamps_since("aws.", 1000.0)
    assert {k: sorted(v) for k, v in found.items()} == {
        ("aws.ec2.cpuutilization.average", web): [1000.0, 1060.0],
        ("aws.ec2.networkin.sum", web): [1060.0],
    }


async def test_restart_emits_only_points_not_stored_before(
    moto: MotoServer, tmp_path: Path
) -> None:
    clock = Clock()
    (web,) = run_instances(moto, 1, {"Name": "web"})
    config = aws_config(moto, ec2_metrics=CPU)
    p4, p3, p2, p1 = (period_start(clock, n) for n in (4, 3, 2, 1))
    put_metric(moto, web, "CPUUtilization", 30.0, at(p3 + 1))
    put_metric(moto, web, "CPUUtilization", 20.0, at(p2 + 1))
    path = tmp_path / "db.sqlite"
    async with Store(path) as store, CloudWatchProducer(config, clock=clock) as cw:
        first = await cw.collect()
        await store.write(first)
    assert len(first) == 4  # p3 and p2, Average and Maximum

    # While the agent is down: a late point for an older period and a point for a new one.
    put_metric(moto, web, "CPUUtilization", 7.0, at(p4 + 1))
    put_metric(moto, web, "CPUUtilization", 50.0, at(p1 + 1))
    clock.now += PERIOD  # the window moved on; every point is still inside it

    async with Store(path) as store, CloudWatchProducer(config, clock=clock) as cw:
        await cw.resume(store.timestamps_since)
        second = await cw.collect()
        await store.write(second)
        third = await cw.collect()
        stored = await store.count_samples()
        # Control: a producer that did not resume re-emits every point of the window.
        async with CloudWatchProducer(config, clock=clock) as forgetful:
            replayed = await forgetful.collect()

    assert cw.last_cycle.datapoints == 8  # CloudWatch returned all four periods again …
    assert by_series(second) == {  # … but only the two not stored before came out
        ("aws.ec2.cpuutilization.average", web, p4): 7.0,
        ("aws.ec2.cpuutilization.maximum", web, p4): 7.0,
        ("aws.ec2.cpuutilization.average", web, p1): 50.0,
        ("aws.ec2.cpuutilization.maximum", web, p1): 50.0,
    }
    assert third == []
    assert stored == 8
    assert len(replayed) == 8


async def test_restarted_agent_does_not_emit_its_stored_window_again(
    moto: MotoServer, tmp_path: Path
) -> None:
    clock = Clock()
    (web,) = run_instances(moto, 1, {"Name": "web"})
    put_metric(moto, web, "CPUUtilization", 30.0, at(period_start(clock, 3) + 1))
    put_metric(moto, web, "CPUUtilization", 20.0, at(period_start(clock, 2) + 1))
    config = write_config(
        tmp_path,
        "[host]\nenabled = false\n"
        f'[cloud.aws]\nenabled = true\nendpoint_url = "{moto.url}"\n'
        'period = 60\nlookback = "10m"\ndelay = 0\n'
        'ec2_metrics = { CPUUtilization = ["Average", "Maximum"] }\n',
    )
    cycles = []
    for run in range(2):
        if run == 1:
            put_metric(moto, web, "CPUUtilization", 7.0, at(period_start(clock, 5) + 1))  # late
        agent = await AgentProcess(config, "--once", env=fake_aws_env(tmp_path)).start()
        try:
            cycles.append(await agent.wait_for("cloudwatch.cycle"))
            stopped = await agent.wait_for("agent.stopped")
            assert await agent.wait() == 0
        finally:
            await agent.stop()
        resumed = agent.named("cloudwatch.resumed")
    # The second run found the first run's 4 points in the store and emitted only the late one.
    assert [c["samples"] for c in cycles] == [4, 2]
    assert [(e["series"], e["points"]) for e in resumed] == [(2, 4)]
    assert stopped["stored"] == 2
