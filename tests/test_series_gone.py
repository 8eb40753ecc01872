"""A series that stops reporting while its alert fires: the alert resolves and the receiver is
told, because no detector will ever send that resolve."""

from __future__ import annotations

import time
from pathlib import Path

from infrawatch.model import Sample, make_labels
from tests.support_http import ScriptedProducer, running_agent, settings
from tests.support_receivers import Receiver, SignedWebhookReceiver

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def _statuses(receiver: Receiver) -> list[str]:
    return [a["status"] for x in receiver.accepted() for a in x.json["alerts"]]


async def test_alert_of_an_exited_process_resolves(tmp_path: Path) -> None:
    hook = SignedWebhookReceiver(SECRET)
    await hook.start()

    def make(tick: int) -> list[Sample]:
        now = time.time()
        batch = [Sample("system.memory.utilization", 0.5, now)]
        if tick <= 3:  # the process runs for three ticks, then exits
            labels = make_labels({"pid": "42", "name": "java"})
            batch.append(Sample("process.cpu.utilization", 0.99, now, labels))
        return batch

    config = settings(
        tmp_path,
        http={"enabled": False},
        analysis={
            "threshold": [
                {"name": "proc_cpu", "metric": "process.cpu.utilization", "op": ">",
                 "critical": 0.9},
            ],
            "zscore": {"enabled": False},
            "novelty": {"enabled": False},
        },
        alerting={
            "group_wait": 0,
            "group_interval": 0.1,
            "sinks": [{"name": "hook", "type": "webhook", "url": hook.url, "secret": SECRET}],
        },
    )  # fmt: skip
    try:
        async with running_agent(config, [ScriptedProducer(interval=0.05, make=make)]) as agent:
            await hook.wait_until(
                lambda r: any(
                    a["status"] == "resolved" for x in r.accepted() for a in x.json["alerts"]
                )
            )
            # The detectors forgot the series before its alert was resolved (forget_series).
            key = ("process.cpu.utilization", make_labels({"pid": "42", "name": "java"}))
            threshold = next(d for d in agent.current_detectors() if d.name == "threshold")
            assert threshold.state_of(key, "proc_cpu") is None
    finally:
        await hook.stop()
    alerts = [a for x in hook.accepted() for a in x.json["alerts"]]
    assert _statuses(hook) == ["firing", "resolved"]
    assert alerts[1]["labels"]["pid"] == "42"
    assert alerts[1]["annotations"]["resolved_by"] == "series stopped reporting"
