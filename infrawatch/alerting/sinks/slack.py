"""Slack incoming-webhook sink: `text` fallback plus blocks; honours 429 Retry-After."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from infrawatch.alerting.config import SinkConfig
from infrawatch.alerting.render import render_slack
from infrawatch.alerting.sinks.base import DeliveryResult, HttpReply, classify, post, safe_target


class SlackSink:
    """Posts one message per notification."""

    type = "slack"

    def __init__(self, cfg: SinkConfig, session: aiohttp.ClientSession) -> None:
        assert cfg.url is not None
        self.name = cfg.name
        self._url = cfg.url.get_secret_value()
        self._session = session
        self._timeout = cfg.timeout

    async def send(self, item_id: str, payload: dict[str, Any]) -> DeliveryResult:
        """POST the rendered message; Slack answers 200 "ok" or an error word."""
        body = json.dumps(render_slack(payload), ensure_ascii=False).encode()
        reply = await post(self._session, self._url, body, {}, self._timeout)
        if not isinstance(reply, HttpReply):
            return reply
        return classify(reply)

    def describe(self) -> str:
        """Host only: the path holds the webhook token."""
        return f"Slack incoming webhook at {safe_target(self._url)}"
