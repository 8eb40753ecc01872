"""Discord execute-webhook sink (`?wait=true`): coloured embeds, rate-limit headers honoured."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from yarl import URL

from infrawatch.alerting.render import render_discord
from infrawatch.alerting.sinks.base import DeliveryResult, HttpReply, HttpSink


def _bucket_pause(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait when the rate-limit bucket is empty (X-RateLimit-Remaining: 0)."""
    if headers.get("X-RateLimit-Remaining") != "0":
        return None
    try:
        return max(0.0, float(headers.get("X-RateLimit-Reset-After", "")))
    except ValueError:
        return None


class DiscordSink(HttpSink):
    """Posts one message per notification; a 401/404 means the webhook is gone."""

    type = "discord"
    label = "Discord webhook"
    gone_on = (401, 404)

    def endpoint(self, url: URL) -> URL:
        """`?wait=true`: Discord validates the message before answering, so a 400 is seen."""
        return url.update_query(wait="true")

    def render(self, item_id: str, payload: dict[str, Any]) -> Any:
        """Content headline plus one embed per alert."""
        return render_discord(payload)

    def interpret(self, reply: HttpReply) -> DeliveryResult:
        """As any webhook, and an empty rate-limit bucket pauses the sink before it is refused."""
        result = super().interpret(reply)
        if result.outcome == "ok":
            return DeliveryResult("ok", reply.status, pause=_bucket_pause(reply.headers))
        return result
