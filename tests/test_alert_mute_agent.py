"""A one-minute mute window computed from now, in a named zone, mutes and then unmutes a route:
the alerter runs for real (store, outbox, sink worker, a webhook receiver on loopback); only its
clock is driven, so the minute passes without waiting for it."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from infrawatch.alerting.config import AlertingConfig
from infrawatch.alerting.service import AlertService
from infrawatch.model import Anomaly, make_labels
from infrawatch.storage.store import Store
from tests.support_receivers import Receiver

ZONE = "Asia/Kathmandu"  # +05:45: its minutes are not UTC's hours, a zone mix-up shows


def cpu(host: str, status: str, ts: float) -> Anomaly:
    return Anomaly(
        name="system.cpu.utilization",
        labels=make_labels({"host": host}),
        ts=ts,
        value=0.99,
        detector="threshold",
        rule="cpu_high",
        severity="critical",
        status=status,  # type: ignore[arg-type]
        summary="cpu above 97 %",
    )


def next_minute_window(now: float) -> tuple[dict[str, object], float, float]:
    """The next whole wall-clock minute in ZONE as a time interval entry, and its start and end
    (epoch s). Its day, month and year are pinned too, so it happens exactly once."""
    local = datetime.fromtimestamp(now, ZoneInfo(ZONE)).replace(second=0, microsecond=0)
    start = local + timedelta(minutes=1)
    end = start + timedelta(minutes=1)
    entry: dict[str, object] = {
        "times": [
            {
                "start_time": start.strftime("%H:%M"),
                # The day's last minute ends at 24:00, as in Alertmanager.
                "end_time": "24:00" if end.day != start.day else end.strftime("%H:%M"),
            }
        ],
        "days_of_month": [str(start.day)],
        "months": [str(start.month)],
        "years": [str(start.year)],
        "location": ZONE,
    }
    return entry, start.timestamp(), end.timestamp()


async def test_mute_window_of_the_next_minute_mutes_then_unmutes_a_route(tmp_path: Path) -> None:
    entry, start, end = next_minute_window(time.time())
    clock = [start - 30.0]
    hook = Receiver()
    await hook.start()
    cfg = AlertingConfig.model_validate(
        {
            "group_wait": 0,
            "group_interval": 10,
            "repeat_interval": 86400,
            "time_intervals": [{"name": "deploy", "time_intervals": [entry]}],
            "sinks": [{"name": "hook", "type": "webhook", "url": hook.url}],
            "routes": [{"sinks": ["hook"], "mute_time_intervals": ["deploy"]}],
        }
    )

    async def step_at(now: float, *anomalies: Anomaly) -> None:
        """Move the clock to `now` and let the engine take one step there."""
        clock[0] = now
        await svc.observe(list(anomalies))
        await svc.settled()

    try:
        async with (
            Store(tmp_path / "a.db") as store,
            AlertService(cfg, store, clock=lambda: clock[0]) as svc,
        ):
            # Before the window: notified at once.
            await step_at(clock[0], cpu("web-1", "firing", clock[0]))
            await hook.wait_until(lambda r: len(r.accepted()) == 1)
            # In the window: a new alert and a resolve are kept back, though group_interval has
            # passed several times.
            await step_at(start, cpu("web-2", "firing", start))
            await step_at(start + 20, cpu("web-1", "resolved", start + 20))
            await step_at(start + 59.9)
            assert len(hook.requests) == 1
            group = next(iter(svc.engine.groups.values()))
            assert group.next_flush == end  # woken at the window's end
            # The window ends: what holds then goes out.
            await step_at(end)
            await hook.wait_until(lambda r: len(r.accepted()) == 2)
    finally:
        await hook.stop()
    first, second = (r.json for r in hook.accepted())
    assert [a["labels"]["host"] for a in first["alerts"]] == ["web-1"]
    shown = {a["labels"]["host"]: a["status"] for a in second["alerts"]}
    assert shown == {"web-1": "resolved", "web-2": "firing"}
    assert datetime.fromisoformat(second["createdAt"]).timestamp() == end
    assert len(hook.requests) == 2
