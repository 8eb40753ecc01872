"""Slack incoming-webhook sink: `text` fallback plus blocks; honours 429 Retry-After."""

from __future__ import annotations

from typing import Any

from infrawatch.alerting.render import render_slack
from infrawatch.alerting.sinks.base import HttpSink


class SlackSink(HttpSink):
    """Posts one message per notification; Slack answers 200 "ok" or an error word."""

    type = "slack"
    label = "Slack incoming webhook"

    def render(self, item_id: str, payload: dict[str, Any]) -> Any:
        """`text` fallback, a header and one section per alert."""
        return render_slack(payload)
