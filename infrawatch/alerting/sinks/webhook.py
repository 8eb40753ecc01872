"""Generic JSON webhook sink, signed per Standard Webhooks (webhook-id/-timestamp/-signature)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

import aiohttp

from infrawatch.alerting.config import SinkConfig
from infrawatch.alerting.sinks.base import HttpSink


def signing_key(secret: str) -> bytes:
    """The HMAC key: base64 after a "whsec_" prefix (the spec's format), else the raw bytes."""
    if secret.startswith("whsec_"):
        return base64.b64decode(secret.removeprefix("whsec_"))
    return secret.encode()


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: "v1," + base64(HMAC-SHA256(key, id.timestamp.body))."""
    signed = msg_id.encode() + b"." + str(timestamp).encode() + b"." + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


class WebhookSink(HttpSink):
    """POSTs the versioned notification document; the webhook-id is the outbox id."""

    type = "webhook"
    label = "JSON webhook"

    def __init__(self, cfg: SinkConfig, session: aiohttp.ClientSession) -> None:
        super().__init__(cfg, session)
        self._key = signing_key(cfg.secret.get_secret_value()) if cfg.secret else None

    def render(self, item_id: str, payload: dict[str, Any]) -> Any:
        """The notification document as stored in the outbox."""
        return payload

    def headers(self, item_id: str, body: bytes) -> dict[str, str]:
        """Standard Webhooks headers (the signature only with a secret)."""
        now = int(time.time())
        headers = {"webhook-id": item_id, "webhook-timestamp": str(now)}
        if self._key is not None:
            headers["webhook-signature"] = sign(self._key, item_id, now, body)
        return headers

    def describe(self) -> str:
        """Target host and whether requests are signed."""
        signed = "signed" if self._key is not None else "UNSIGNED (no secret)"
        return f"{super().describe()}, {signed}"
