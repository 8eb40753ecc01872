"""Notifications link to the page's chart of the alert's series (`alerting.external_url`), and
every JSON document sent or stored stays valid JSON when evidence holds NaN or infinity."""

from __future__ import annotations

import json
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from infrawatch.alerting import render
from infrawatch.alerting.config import AlertingConfig, SinkConfig
from infrawatch.alerting.links import chart_url
from infrawatch.alerting.outbox import Outbox, OutboxItem
from infrawatch.alerting.render import render_discord, render_slack, ulen
from infrawatch.alerting.service import AlertService
from infrawatch.alerting.sinks.webhook import WebhookSink
from infrawatch.jsontext import dumps
from infrawatch.model import Anomaly, make_labels
from infrawatch.storage.store import Store
from tests.support_alert_logs import LogEvents, captured_logs
from tests.support_alertmanager import available, run_alertmanager
from tests.support_receivers import (
    DiscordReceiver,
    Receiver,
    Reply,
    SlackReceiver,
    validate_discord,
    validate_slack,
)

EXTERNAL = "https://web-1.example.internal:9464"  # as configured: no trailing slash
PAGE = EXTERNAL + "/"
METRIC = "system.filesystem.utilization"
# Odd characters on purpose: a space, "&", "+", "=", "#", "|" and a label named like an alert
# label (`metric`, which the alert renames to exported_metric).
SERIES = {"mountpoint": "/mnt/a b&c+d", "device": "sd=a#1|x", "metric": "orig"}


def _reject(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def strict_json(body: bytes | str) -> Any:
    """Parse like Go, JavaScript or jq: NaN and Infinity are errors."""
    return json.loads(body, parse_constant=_reject)


class StrictReceiver(Receiver):
    """A webhook receiver with a strict JSON parser: 400 for a body that is not JSON."""

    path = "/hook"

    def answer(self, request: web.Request, body: bytes) -> Reply:
        """204 when the body parses strictly, else 400."""
        try:
            strict_json(body)
        except ValueError as err:
            return 400, {"error": str(err)}, {}
        return 204, None, {}


def parse_link(url: str) -> dict[str, Any]:
    """The parts of a deep link, read the way the page reads them (URLSearchParams semantics)."""
    base, _, fragment = url.partition("#")
    route, _, query = fragment.partition("?")
    params = parse_qs(query, strict_parsing=True)  # like URLSearchParams, "+" means a space
    labels = dict(item.split("=", 1) for item in params.get("label", []))
    return {
        "base": base,
        "route": route,
        "metric": params["metric"],
        "labels": labels,
        "range": params["range"],
        "until": int(params["until"][0]),
    }


def anomaly(
    status: str,
    ts: float,
    evidence: dict[str, float | str] | None = None,
    *,
    rule: str = "disk_full",
    labels: dict[str, str] = SERIES,
) -> Anomaly:
    return Anomaly(
        name=METRIC,
        labels=make_labels(labels),
        ts=ts,
        value=0.97,
        detector="threshold",
        rule=rule,
        severity="critical",
        status=status,  # type: ignore[arg-type]
        evidence=evidence if evidence is not None else {"level": 0.9},
        summary="disk /mnt/a is 97% full",
    )


# -- the link itself --------------------------------------------------------------------------


def test_link_names_the_series_and_a_window_around_the_alert() -> None:
    start = 1_800_000_000.0
    link = chart_url(PAGE, METRIC, SERIES, start, start + 300, now=start + 900)
    parts = parse_link(link)
    assert parts["base"] == PAGE
    assert parts["route"] == "/chart"
    assert parts["metric"] == [METRIC]
    assert parts["labels"] == SERIES  # every special character came back intact
    assert parts["range"] == ["1h"]
    assert parts["until"] == start + 300 + 360  # resolved: its end plus a tenth of the range
    # "&", "=", "#", "|", "+" and spaces never appear raw inside a value.
    for raw in ("b&c", "a b", "c+d", "sd=a", "#1", "|"):
        assert raw not in link
    # The range grows with the alert, and its start stays in view with room before it.
    for minutes, expected in [(1, "1h"), (47, "1h"), (50, "6h"), (300, "24h"), (3000, "7d")]:
        ends = start + minutes * 60.0
        parts = parse_link(chart_url(PAGE, METRIC, {}, start, ends, now=ends))
        assert parts["range"] == [expected]
        width = {"1h": 3600, "6h": 21600, "24h": 86400, "7d": 604800}[expected]
        assert parts["until"] - width < start - 0.09 * width
        assert parts["until"] > ends
    # A firing alert ends "now": the window reaches a little past the notification.
    parts = parse_link(chart_url(PAGE, METRIC, {}, start, None, now=start + 120.5))
    assert parts["until"] == math.ceil(start + 120.5 + 360)
    # Longer than the largest range: its latest 27 days are shown.
    parts = parse_link(chart_url(PAGE, METRIC, {}, start, start + 40 * 86400, now=0))
    assert parts["range"] == ["30d"]


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("https://web-1.example.internal:9464", PAGE),
        ("https://web-1.example.internal:9464///", PAGE),
        ("http://[::1]:9464/infrawatch", "http://[::1]:9464/infrawatch/"),
    ],
)
def test_external_url_is_kept_with_one_trailing_slash(given: str, stored: str) -> None:
    assert AlertingConfig.model_validate({"external_url": given}).external_url == stored
    assert AlertingConfig().external_url is None


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ("web-1:9464", "http:// or https://"),
        ("ftp://web-1/", "http:// or https://"),
        ("https://web-1/?x=1", "no ?query or #fragment"),
        ("https://web-1/#/", "no ?query or #fragment"),
        ("https://iw:pw@web-1/", "no user or password"),
        ("https://:9464/", "invalid URL"),
    ],
)
def test_a_bad_external_url_is_refused_naming_the_problem(given: str, problem: str) -> None:
    with pytest.raises(ValidationError) as info:
        AlertingConfig.model_validate({"external_url": given})
    assert problem in str(info.value)
    assert "external_url" in str(info.value)


# -- every sink carries it ------------------------------------------------------------------


@asynccontextmanager
async def receivers() -> AsyncIterator[tuple[DiscordReceiver, SlackReceiver, StrictReceiver]]:
    discord, slack, hook = DiscordReceiver(), SlackReceiver(), StrictReceiver()
    for r in (discord, slack, hook):
        await r.start()
    try:
        yield discord, slack, hook
    finally:
        for r in (discord, slack, hook):
            await r.stop()


async def fire_and_resolve(
    tmp_path: Path, external_url: str | None
) -> tuple[dict[str, list[Any]], LogEvents, tuple[float, float], float]:
    """Fire then resolve one alert through Discord, Slack, webhook and log sinks; return each
    sink's two messages, the log, the clock around the firing notification and the start."""
    start = float(math.floor(time.time()) - 600)  # it began 10 minutes ago
    async with receivers() as (discord, slack, hook):
        cfg = AlertingConfig.model_validate(
            {
                "group_wait": 0,
                "group_interval": 0.05,
                "external_url": external_url,
                "sinks": [
                    {"name": "d", "type": "discord", "url": discord.url},
                    {"name": "s", "type": "slack", "url": slack.url},
                    {"name": "h", "type": "webhook", "url": hook.url},
                    {"name": "l", "type": "log"},
                ],
            }
        )
        with captured_logs() as logs:
            async with Store(tmp_path / "a.db") as store, AlertService(cfg, store) as svc:
                before = time.time()
                await svc.observe([anomaly("firing", start)])
                for worker in svc.workers.values():
                    await worker.wait_until(lambda s: s.sent == 1)
                after = time.time()
                await svc.observe([anomaly("resolved", start + 300)])
                for worker in svc.workers.values():
                    await worker.wait_until(lambda s: s.sent == 2)
        messages = {
            "discord": [r.json for r in discord.accepted()],
            "slack": [r.json for r in slack.accepted()],
            "webhook": [strict_json(r.body) for r in hook.accepted()],
            "log": logs.named("alert.firing") + logs.named("alert.resolved"),
        }
    assert [len(m) for m in messages.values()] == [2, 2, 2, 2]
    return messages, logs, (before, after), start


def slack_link(message: dict[str, Any]) -> str:
    text: str = message["blocks"][1]["text"]["text"]
    last = text.splitlines()[-1]
    assert last.startswith("<"), text
    assert last.endswith("|Open chart>"), text
    return last[1 : -len("|Open chart>")].replace("&amp;", "&")


async def test_every_sink_links_to_the_chart_around_the_alert(tmp_path: Path) -> None:
    messages, _, (before, after), start = await fire_and_resolve(tmp_path, EXTERNAL)
    resolved_link = chart_url(PAGE, METRIC, SERIES, start, start + 300, now=0)
    firing_links = {
        "discord": messages["discord"][0]["embeds"][0]["url"],
        "slack": slack_link(messages["slack"][0]),
        "webhook": messages["webhook"][0]["alerts"][0]["generatorURL"],
        "log": messages["log"][0]["chart_url"],
    }
    for sink, link in firing_links.items():
        parts = parse_link(link)
        assert parts["base"] == PAGE, sink
        assert parts["metric"] == [METRIC], sink
        assert parts["labels"] == SERIES, sink  # the series' own labels, `metric` un-renamed
        assert parts["range"] == ["1h"], sink
        # Firing: the window ends a tenth of the range after the notification was made.
        assert math.ceil(before + 360) <= parts["until"] <= math.ceil(after + 360), sink
        assert parts["until"] - 3600 < start - 360, sink
    assert messages["discord"][1]["embeds"][0]["url"] == resolved_link
    assert slack_link(messages["slack"][1]) == resolved_link
    assert messages["webhook"][1]["alerts"][0]["generatorURL"] == resolved_link
    assert messages["log"][1]["chart_url"] == resolved_link
    assert [m["externalURL"] for m in messages["webhook"]] == [PAGE, PAGE]


async def test_without_external_url_no_link_and_no_empty_field(tmp_path: Path) -> None:
    messages, _, _, _ = await fire_and_resolve(tmp_path, None)
    for message in messages["discord"]:
        assert "url" not in message["embeds"][0]
    for message in messages["slack"]:
        assert "Open chart" not in json.dumps(message)
        assert "<http" not in json.dumps(message)
    for message in messages["webhook"]:
        # Alertmanager's webhook format always has these two: empty, as Alertmanager sends them.
        assert message["externalURL"] == ""
        assert message["alerts"][0]["generatorURL"] == ""
    for event in messages["log"]:
        assert "chart_url" not in event


async def test_alertmanager_shows_the_link_as_generator_url(tmp_path: Path) -> None:
    if not available():
        pytest.fail("prometheus-alertmanager is not installed: run `make test` (it installs it)")
    start = float(math.floor(time.time()) - 600)
    async with run_alertmanager(tmp_path) as am:
        for external_url in (EXTERNAL, None):
            cfg = AlertingConfig.model_validate(
                {
                    "group_wait": 0,
                    "external_url": external_url,
                    "sinks": [{"name": "am", "type": "alertmanager", "urls": [am.url]}],
                }
            )
            rule = "linked" if external_url else "unlinked"
            async with Store(tmp_path / f"{rule}.db") as store, AlertService(cfg, store) as svc:
                before = time.time()
                await svc.observe([anomaly("firing", start, rule=rule)])
                await svc.workers["am"].wait_until(lambda s: s.sent == 1)
                after = time.time()
                [alert] = [a for a in await am.alerts() if a["labels"]["alertname"] == rule]
            if external_url is None:
                assert not alert.get("generatorURL")
                continue
            parts = parse_link(alert["generatorURL"])
            assert parts["base"] == PAGE
            assert parts["metric"] == [METRIC]
            assert parts["labels"] == SERIES
            assert math.ceil(before + 360) <= parts["until"] <= math.ceil(after + 360)


# -- links that do not fit --------------------------------------------------------------------


async def test_a_link_too_long_for_a_field_is_left_out_whole_and_logged_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(render, "_links_left_out", set())
    long_labels = {"mountpoint": "/" + "x" * 2100}
    async with receivers() as (discord, slack, hook):
        cfg = AlertingConfig.model_validate(
            {
                "group_wait": 0,
                "group_interval": 0.05,
                "external_url": EXTERNAL,
                "sinks": [
                    {"name": "d", "type": "discord", "url": discord.url},
                    {"name": "s", "type": "slack", "url": slack.url},
                    {"name": "h", "type": "webhook", "url": hook.url},
                ],
            }
        )
        with captured_logs() as logs:
            async with Store(tmp_path / "a.db") as store, AlertService(cfg, store) as svc:
                now = time.time()
                await svc.observe([anomaly("firing", now, labels=long_labels)])
                for worker in svc.workers.values():
                    await worker.wait_until(lambda s: s.sent == 1)
                await svc.observe([anomaly("resolved", now + 1, labels=long_labels)])
                for worker in svc.workers.values():
                    await worker.wait_until(lambda s: s.sent == 2)
        # Discord refuses an embed url over 2048 characters: the message went without it.
        assert [r.status for r in discord.requests] == [200, 200]
        assert all("url" not in r.json["embeds"][0] for r in discord.requests)
        assert all("Open chart" not in r.body.decode() for r in slack.accepted())
        link = strict_json(hook.accepted()[0].body)["alerts"][0]["generatorURL"]
        assert parse_link(link)["labels"] == long_labels  # the webhook has no limit: all of it
        left_out = logs.named("alert.link_left_out")
        assert sorted(e["message"] for e in left_out) == ["discord", "slack"]  # once each
        assert all(e["length"] > e["limit"] for e in left_out)


link_text = st.text(alphabet="a&<>|%=#+ 😀", max_size=4000)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.dictionaries(st.text(max_size=300), st.text(max_size=3000), max_size=20),
            link_text,
        ),
        min_size=1,
        max_size=12,
    )
)
def test_any_link_is_whole_or_absent_and_messages_stay_within_limits(
    alerts: list[tuple[dict[str, str], str]],
) -> None:
    payload: dict[str, Any] = {
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "rule", **labels},
                "annotations": {"summary": "s" * 200},
                "fingerprint": "0123456789abcdef",
                "generatorURL": f"{PAGE}#/chart?metric={tail}",
            }
            for labels, tail in alerts
        ]
    }
    discord = render_discord(payload)
    assert validate_discord(discord) == []
    for embed, alert in zip(discord["embeds"], payload["alerts"], strict=False):
        url = alert["generatorURL"]
        if ulen(url) <= render.DISCORD_URL and "title" in embed:
            assert embed["url"] == url
        else:
            assert "url" not in embed
    slack = render_slack(payload)
    assert validate_slack(slack) == []
    for block, alert in zip(slack["blocks"][1:], payload["alerts"], strict=False):
        text = block["text"]["text"]
        link = f"<{render.slack_escape(alert['generatorURL'])}|Open chart>"
        if ulen(link) <= render.SLACK_LINK:
            assert text.endswith("\n" + link)
        else:
            assert "|Open chart>" not in text


# -- valid JSON whatever the evidence ---------------------------------------------------------


def test_dumps_writes_null_for_nan_and_infinity() -> None:
    value = {"a": [math.inf, -math.inf, math.nan, 1.5], "b": (math.nan,), "c": "inf", "d": 0}
    assert dumps(value, separators=(",", ":")) == (
        '{"a":[null,null,null,1.5],"b":[null],"c":"inf","d":0}'
    )
    assert strict_json(dumps({"x": 1e308 * 10}))["x"] is None


async def test_non_finite_evidence_reaches_a_strict_receiver_and_stays_json_in_the_store(
    tmp_path: Path,
) -> None:
    evidence: dict[str, float | str] = {
        "z": math.inf,
        "mean": math.nan,
        "std": 0.0,
        "low": -math.inf,
    }
    hook = StrictReceiver()
    await hook.start()
    try:
        cfg = AlertingConfig.model_validate(
            {"group_wait": 0, "sinks": [{"name": "h", "type": "webhook", "url": hook.url}]}
        )
        async with Store(tmp_path / "a.db") as store, AlertService(cfg, store) as svc:
            firing = anomaly("firing", time.time(), evidence)
            await store.write([], [firing])
            await svc.observe([firing])
            await svc.workers["h"].wait_until(lambda s: s.sent == 1)
            async with store.db.execute("SELECT evidence FROM anomalies") as cur:
                [(stored,)] = await cur.fetchall()
            async with store.db.execute("SELECT payload FROM outbox") as cur:
                [(payload,)] = await cur.fetchall()
            async with store.db.execute("SELECT annotations FROM alerts") as cur:
                [(annotations,)] = await cur.fetchall()
        assert strict_json(stored) == {"z": None, "mean": None, "std": 0.0, "low": None}
        strict_json(payload)
        strict_json(annotations)
        [message] = [strict_json(r.body) for r in hook.accepted()]
        assert message["alerts"][0]["annotations"]["evidence_z"] == "inf"  # text says it
    finally:
        await hook.stop()


async def test_a_payload_with_a_non_finite_number_is_sent_and_stored_as_json(
    tmp_path: Path,
) -> None:
    hook = StrictReceiver()
    await hook.start()
    payload = {"version": "4", "alerts": [{"labels": {"alertname": "x"}, "value": math.inf}]}
    try:
        cfg = SinkConfig.model_validate({"name": "h", "type": "webhook", "url": hook.url})
        async with aiohttp.ClientSession() as session:
            result = await WebhookSink(cfg, session).send("msg_1", payload)
        assert result.outcome == "ok", result
        assert strict_json(hook.accepted()[0].body)["alerts"][0]["value"] is None
        async with Store(tmp_path / "a.db") as store:
            outbox = Outbox(store)
            await outbox.save([], [OutboxItem("msg_1", "h", "g", payload, time.time())])
            async with store.db.execute("SELECT payload FROM outbox") as cur:
                [(stored,)] = await cur.fetchall()
        assert strict_json(stored)["alerts"][0]["value"] is None
    finally:
        await hook.stop()
