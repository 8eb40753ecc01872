"""The real Alertmanager (Debian's prometheus-alertmanager) receives firing and resolved alerts."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from infrawatch.alerting.config import AlertingConfig
from infrawatch.alerting.service import AlertService
from infrawatch.model import Anomaly, make_labels
from infrawatch.storage.store import Store
from tests.support_alert_logs import LogEvents, captured_logs
from tests.support_alertmanager import available, run_alertmanager
from tests.support_receivers import free_port

# A real peer is the point of these tests: a missing binary fails them (make test installs it).
pytestmark = pytest.mark.usefixtures("_alertmanager_installed")


@pytest.fixture
def _alertmanager_installed() -> None:
    if not available():
        pytest.fail("prometheus-alertmanager is not installed: run `make test` (it installs it)")


def ends_at(alert: dict[str, Any]) -> float:
    return datetime.fromisoformat(alert["endsAt"].replace("Z", "+00:00")).timestamp()


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
        cfg = AlertingConfig.model_validate(
            {
                "group_wait": 0,
                "group_interval": 0.05,
                "sinks": [{"name": "am", "type": "alertmanager", "urls": [am.url, dead_peer]}],
            }
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


async def test_dead_peer_is_logged_once_not_every_keepalive_then_recovers(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    dead_port = free_port()
    # Credentials and a proxy path (which may hold a token) in the URL: never in any log line.
    dead_peer = f"http://iw:s3cr3t-pw@127.0.0.1:{dead_port}/tok3n-path"
    dead_key = f"http://127.0.0.1:{dead_port}"
    keepalives = "sink.keepalive"
    async with run_alertmanager(tmp_path) as am:
        sink = {"name": "am", "type": "alertmanager", "urls": [am.url, dead_peer]}
        # endsAt = now + 4 x resend_interval: the live peer keeps the alert only if re-posted.
        cfg = AlertingConfig.model_validate(
            {"group_wait": 0, "sinks": [{**sink, "resend_interval": 0.25}]}
        )
        with captured_logs() as logs:
            async with Store(tmp_path / "a.db") as store, AlertService(cfg, store) as svc:
                worker = svc.workers["am"]
                await svc.observe([anomaly("firing")])
                await worker.wait_until(lambda s: s.sent == 1)
                [first] = await am.alerts()
                seen = len(logs.named(keepalives))

                def rounds_done(log: LogEvents) -> bool:
                    return len(log.named(keepalives)) >= seen + 4

                await logs.wait_until(rounds_done)
                down = logs.named("alertmanager.peer_down")
                assert len(down) == 1  # one event, not one per keep-alive round
                assert logs.named("alertmanager.peer_still_down") == []  # first reminder: 60 s
                assert logs.named("sink.peer_failed") == []
                assert down[0]["peer"] == dead_key
                assert "ClientConnectorError" in down[0]["reason"]
                peers = svc.stats.alert_sinks["am"].peers
                assert peers[dead_key].down
                assert peers[dead_key].outages == 1
                assert peers[dead_key].failures >= 5  # the notification + 4 keep-alives
                assert peers[am.url].failures == 0
                assert not peers[am.url].down
                # The live peer got the re-posts: the alert is still active, its endsAt later.
                [now] = await am.alerts(active="true")
                assert now["fingerprint"] == first["fingerprint"]
                assert ends_at(now) > ends_at(first)

                # The dead peer comes back (under its proxy path): one recovery event, and it
                # learns the firing alert from the next keep-alive.
                async with run_alertmanager(
                    tmp_path_factory.mktemp("peer2"), port=dead_port, route_prefix="/tok3n-path"
                ) as back:
                    await logs.wait_until(
                        lambda log: bool(log.named("alertmanager.peer_recovered"))
                    )
                    [caught_up] = await back.alerts()
                    assert caught_up["labels"]["alertname"] == "disk_full"
                    recovered = logs.named("alertmanager.peer_recovered")
                    assert len(recovered) == 1
                    assert recovered[0]["peer"] == dead_key
                    assert recovered[0]["failed_posts"] >= 5
                    assert not peers[dead_key].down
                    assert len(logs.named("alertmanager.peer_down")) == 1
    assert logs.raw
    for line in logs.raw:
        assert "s3cr3t" not in line
        assert "tok3n" not in line
