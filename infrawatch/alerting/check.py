"""`infrawatch check` for alerting: describe each sink safely and, with --send-test, send one test
notification to each and report the outcome (URLs and secrets are never printed)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
from yarl import URL

from infrawatch.alerting.config import AlertingConfig
from infrawatch.alerting.outbox import new_notification_id
from infrawatch.alerting.records import rfc3339
from infrawatch.alerting.routing import build_routes
from infrawatch.alerting.service import effective_sinks
from infrawatch.alerting.sinks import build_sink
from infrawatch.alerting.sinks.base import USER_AGENT


def _warnings(cfg: AlertingConfig) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for sink in effective_sinks(cfg):
        notes = out.setdefault(sink.name, [])
        urls = [sink.url] if sink.url else list(sink.urls)
        for url in urls:
            text = url.get_secret_value()
            if sink.type == "discord" and "/api/webhooks/" not in text:
                notes.append("url does not look like a Discord webhook (/api/webhooks/ID/TOKEN)")
            if sink.type == "slack" and "/services/" not in text:
                notes.append("url does not look like a Slack incoming webhook (/services/…)")
            if text.startswith("http://") and "127.0.0.1" not in text and "localhost" not in text:
                notes.append("plain http: the webhook token travels unencrypted")
        if sink.type == "webhook" and sink.secret is None:
            notes.append("no secret: requests are not signed")
        elif sink.secret is not None and not sink.secret.get_secret_value().startswith("whsec_"):
            # Standard Webhooks libraries base64-decode a secret given as text: they would
            # verify with other key bytes than ours and reject every request.
            notes.append(
                "secret has no whsec_ prefix: signed with its raw bytes, which Standard Webhooks"
                " libraries (that expect whsec_<base64>) will not verify"
            )
    return out


def test_payload(sink: str, external_url: str | None) -> dict[str, Any]:
    """A notification document with one clearly-labelled test alert; with `external_url` its
    link opens the page's overview (a test alert has no series to chart)."""
    now = time.time()
    nid = new_notification_id()
    alert = {
        "status": "firing",
        "labels": {"alertname": "infrawatch_test", "severity": "info"},
        "annotations": {"summary": "Test notification from `infrawatch check --send-test`."},
        "startsAt": rfc3339(now),
        "endsAt": rfc3339(now + 300),
        "fingerprint": "0000000000000000",
        "generatorURL": external_url or "",
        "flapping": False,
    }
    return {
        "version": "4",
        "id": nid,
        "groupKey": "infrawatch-test",
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": sink,
        "groupLabels": {},
        "commonLabels": alert["labels"],
        "commonAnnotations": alert["annotations"],
        "externalURL": external_url or "",
        "alerts": [alert],
        "createdAt": rfc3339(now),
    }


def _links(external_url: str | None) -> str:
    if external_url is None:
        return "off (set alerting.external_url to the page's address)"
    host = URL(external_url).host or ""
    if host == "localhost" or host.startswith("127.") or host == "::1":
        return f"{external_url} (warning: loopback, opens only on this machine)"
    return external_url


async def _send_tests(cfg: AlertingConfig) -> dict[str, str]:
    results: dict[str, str] = {}
    async with aiohttp.ClientSession(headers={"User-Agent": USER_AGENT}) as session:
        for sink_cfg in effective_sinks(cfg):
            sink = build_sink(sink_cfg, session)
            payload = test_payload(sink.name, cfg.external_url)
            result = await sink.send(payload["id"], payload)
            status = f" (HTTP {result.status})" if result.status else ""
            detail = f": {result.detail}" if result.detail and result.outcome != "ok" else ""
            results[sink.name] = f"{result.outcome}{status}{detail}"
    return results


def report(cfg: AlertingConfig, *, send_test: bool) -> bool:
    """Print one block per sink; return False when a test notification was not accepted."""
    routes = build_routes(cfg, [s.name for s in effective_sinks(cfg)])
    warnings = _warnings(cfg)
    print("alerting sinks:")
    print(f"  chart links in notifications: {_links(cfg.external_url)}")
    ok = True
    for sink_cfg in effective_sinks(cfg):
        via = [r.name for r in routes if sink_cfg.name in r.sinks]

        class _NoSession:  # describe() needs no network; build_sink only stores the session
            pass

        described = build_sink(sink_cfg, _NoSession()).describe()  # type: ignore[arg-type]
        print(f"  {sink_cfg.name} ({sink_cfg.type}): {described}; routes: {', '.join(via) or '-'}")
        for note in warnings.get(sink_cfg.name, []):
            print(f"    warning: {note}")
    if send_test:
        results = asyncio.run(_send_tests(cfg))
        for name, outcome in results.items():
            print(f"  test notification to {name}: {outcome}")
            ok &= outcome.startswith("ok")
    return ok
