"""Discord execute-webhook sink (`?wait=true`): coloured embeds, rate-limit headers honoured."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from yarl import URL

from infrawatch.alerting.config import SinkConfig
from infrawatch.alerting.render import render_discord
from infrawatch.alerting.sinks.base import DeliveryResult, HttpReply, classify, post, safe_target


def _bucket_pause(headers: dict[str, str] | Any) -> float | None:
    """Seconds to wait when the rate-limit bucket is empty (X-RateLimit-Remaining: 0)."""
    if headers.get("X-RateLimit-Remaining") != "0":
        return None
    try:
        return max(0.0, float(headers.get("X-RateLimit-Reset-After", "")))
    except ValueError:
        return None


class DiscordSink:
    """Posts one message per notification; a 401/404 means the webhook is gone."""

    type = "discord"

    def __init__(self, cfg: SinkConfig, session: aiohttp.ClientSession) -> None:
        assert cfg.url is not None
        self.name = cfg.name
        self._url = URL(cfg.url.get_secret_value()).update_query(wait="true")
        self._session = session
        self._timeout = cfg.timeout

    async def send(self, item_id: str, payload: dict[str, Any]) -> DeliveryResult:
        """POST the rendered message and classify Discord's answer."""
        body = json.dumps(render_discord(payload), ensure_ascii=False).encode()
        reply = await post(self._session, self._url, body, {}, self._timeout)
        if not isinstance(reply, HttpReply):
            return reply
        result = classify(reply, gone_on=(401, 404))
        if result.outcome == "ok":
            return DeliveryResult("ok", reply.status, pause=_bucket_pause(reply.headers))
        return result

    def describe(self) -> str:
        """Host only: the path holds the webhook token."""
        return f"Discord webhook at {safe_target(str(self._url))}"
