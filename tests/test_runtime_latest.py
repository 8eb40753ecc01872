"""Series lifetime: expiry has one owner, a timer; reading the latest values never expires."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from infrawatch.detect import build_detectors
from infrawatch.detect.config import AnalysisConfig
from infrawatch.model import Sample, make_labels
from infrawatch.runtime.latest import LatestValues
from infrawatch.runtime.producer import Timing
from tests.support_http import ScriptedProducer, running_agent, settings, wait_until

PROC = "process.cpu.utilization"
ANALYSIS: dict[str, Any] = {
    "threshold": [{"name": "proc_cpu", "metric": PROC, "op": ">", "critical": 0.9}],
    "zscore": {"enabled": False},
    "novelty": {"enabled": False},
    "art": {"enabled": False},
}


def test_series_that_stop_reporting_expire() -> None:
    now = [1000.0]
    expired: list[Any] = []
    latest = LatestValues({"host": Timing(10.0)}, clock=lambda: now[0], on_expire=expired.append)

    def proc(pid: int) -> Sample:
        return Sample(PROC, 0.1, now[0], make_labels({"pid": pid}))

    cpu = Sample("system.cpu.utilization", 0.3, now[0])
    # Processes are scanned every 30 s while the host ticks every 10 s.
    for step in range(12):
        batch = [cpu]
        if step % 3 == 0:
            batch += [proc(1)] + ([proc(2)] if step < 3 else [])
        latest.update("host", batch)
        latest.sweep()
        now[0] += 10.0
    keys = {dict(labels).get("pid") for _, labels in (k for k, _ in latest.items())}
    # pid 1 is refreshed every scan and stays, although it is missing from 2 of 3 ticks;
    # pid 2 was gone after its second scan and expired a few cadences later.
    assert keys == {None, "1"}
    assert expired == [(PROC, make_labels({"pid": 2}))]
    assert latest.expired == 1
    # A whole producer going quiet takes its series with it.
    now[0] += 200.0
    assert latest.sweep() == 2
    assert list(latest.items()) == []


def test_sparse_series_live_for_their_producers_ttl() -> None:
    # CloudWatch: polled every 60 s, but an instance on basic monitoring reports every 300 s.
    now = [1000.0]
    expired: list[Any] = []
    timings = {"cloudwatch": Timing(60.0, series_ttl=900.0 + 60.0)}
    latest = LatestValues(timings, clock=lambda: now[0], on_expire=expired.append)
    detailed = make_labels({"instance_id": "i-detailed"})
    basic = make_labels({"instance_id": "i-basic"})
    name = "aws.ec2.cpuutilization.average"
    for step in range(30):  # 30 minutes of polls
        batch = [Sample(name, 1.0, now[0], detailed)]
        if step % 5 == 0:
            batch.append(Sample(name, 2.0, now[0], basic))
        latest.update("cloudwatch", batch)
        latest.sweep()
        now[0] += 60.0
    assert expired == []
    assert latest.get((name, basic)) is not None
    # Terminated: no datapoint for longer than the TTL while the others keep reporting.
    for _ in range(17):
        latest.update("cloudwatch", [Sample(name, 1.0, now[0], detailed)])
        latest.sweep()
        now[0] += 60.0
    assert latest.get((name, basic)) is None
    assert expired == [(name, basic)]


def test_a_read_never_expires_anything() -> None:
    now = [1000.0]
    (detector,) = build_detectors(AnalysisConfig.model_validate(ANALYSIS))
    latest = LatestValues({"host": Timing(10.0)}, clock=lambda: now[0], on_expire=detector.forget)
    key = (PROC, make_labels({"pid": "42"}))
    for _ in range(3):
        sample = Sample(PROC, 0.5, now[0], key[1])
        detector.observe(sample)
        latest.update("host", [sample])
        now[0] += 10.0
    now[0] += 600.0  # long past its deadline, but nothing has swept yet
    assert [k for k, _ in latest.items()] == [key]
    assert latest.get(key) is not None
    assert len(latest) == 1
    assert latest.expired == 0
    assert key in detector.states()  # what /metrics reads was left as it was
    # A batch of another series does not sweep either: only the owner's sweep expires.
    latest.update("host", [Sample("system.cpu.utilization", 0.1, now[0])])
    assert latest.get(key) is not None
    assert key in detector.states()
    assert latest.sweep() == 1
    assert key not in detector.states()


def test_the_sweep_period_follows_the_fastest_producer() -> None:
    timings = {"host": Timing(10.0), "cloudwatch": Timing(60.0)}
    latest = LatestValues(timings)
    assert latest.sweep_every() == 5.0  # at most SWEEP_EVERY
    timings["host"] = Timing(1.0)  # a reload changed the interval: read live
    assert latest.sweep_every() == 1.0
    timings["host"] = Timing(0.001)
    assert latest.sweep_every() == 0.05  # never a busy loop
    assert LatestValues().sweep_every() == 5.0


async def test_a_series_expires_on_the_timer_when_no_batch_arrives(tmp_path: Path) -> None:
    def make(tick: int) -> list[Sample]:
        if tick > 3:  # the process exits, and the producer has nothing else to report
            return []
        return [Sample(PROC, 0.5, time.time(), make_labels({"pid": "42"}))]

    config = settings(tmp_path, http={"enabled": False}, analysis=ANALYSIS)
    producer = ScriptedProducer(interval=0.05, make=make)
    async with running_agent(config, [producer]) as agent:
        assert agent.pipeline is not None
        (detector,) = agent.pipeline.detectors
        await wait_until(lambda: len(detector.states()) == 1)
        await producer.wait_ticks(5)  # past the last batch: from here on the queue stays empty
        await wait_until(lambda: agent.latest.expired == 1)
        assert len(agent.latest) == 0
        assert detector.states() == {}
