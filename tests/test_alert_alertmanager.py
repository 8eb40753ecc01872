"""The real Alertmanager (Debian's prometheus-alertmanager) receives firing and resolved alerts."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import pytest

from infrawatch.alerting.config import AlertingConfig
from infrawatch.alerting.service import AlertService
from infrawatch.model import Anomaly, make_labels
from infrawatch.store import Store
from tests.support_alertmanager import available, run_alertmanager
from tests.support_receivers import free_port

pytestmark = pytest.mark.skipif(not available(), reason="prometheus-alertmanager not installed")


def anomaly(status: str) -> Anomaly:
    return Anomaly(
        name="system.filesystem.utilization",
        labels=make_labels({"mountpoint": "/", "device": "sda1", "odd label!": "x"}),
        ts=time.time(),
        value=0.95,
        detector="threshold",
        rule="disk_full",
        severity="critical",
        status=status,  # type: ignore[arg-type]
        summary="disk / is 95% full",
    )


async def test_alertmanager_gets_firing_then_resolved(tmp_path: Path) -> None:
    dead_peer = f"http://127.0.0.1:{free_port()}"  # an HA peer that is down
    async with run_alertmanager(tmp_path) as am:
        cfg = AlertingConfig(
            group_wait=0,
            group_interval=0.05,
            sinks=[{"name": "am", "type": "alertmanager", "urls": [am.url, dead_peer]}],
        )
        async with Store(tmp_path / "a.db") as store, AlertService(cfg, store) as svc:
            worker = svc.workers["am"]
            await svc.observe([anomaly("firing")])
            await worker.wait_until(lambda s: s.sent == 1)
            alerts = await am.alerts()
            assert len(alerts) == 1
            alert = alerts[0]
            assert alert["labels"]["alertname"] == "disk_full"
            assert alert["labels"]["severity"] == "critical"
            assert alert["labels"]["odd_label_"] == "x"  # made a valid label name
            assert alert["annotations"]["summary"] == "disk / is 95% full"
            assert alert["status"]["state"] == "active"
            ends = datetime.fromisoformat(alert["endsAt"].replace("Z", "+00:00")).timestamp()
            assert ends > time.time() + 60  # firing: endsAt well in the future (4 x resend)
            await svc.observe([anomaly("resolved")])
            await worker.wait_until(lambda s: s.sent == 2)
            # Resolved (endsAt in the past) alerts are no longer listed as active.
            assert await am.alerts(active="true") == []
