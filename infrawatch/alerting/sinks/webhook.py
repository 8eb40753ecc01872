"""Generic JSON webhook sink, signed per Standard Webhooks (webhook-id/-timestamp/-signature)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import aiohttp

from infrawatch.alerting.config import SinkConfig
from infrawatch.alerting.sinks.base import DeliveryResult, HttpReply, classify, post, safe_target


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


class WebhookSink:
    """POSTs the versioned notification document; the webhook-id is the outbox id."""

    type = "webhook"

    def __init__(self, cfg: SinkConfig, session: aiohttp.ClientSession) -> None:
        assert cfg.url is not None
        self.name = cfg.name
        self._url = cfg.url.get_secret_value()
        self._key = signing_key(cfg.secret.get_secret_value()) if cfg.secret else None
        self._session = session
        self._timeout = cfg.timeout

    async def send(self, item_id: str, payload: dict[str, Any]) -> DeliveryResult:
        """POST the payload with Standard Webhooks headers (signature only with a secret)."""
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        now = int(time.time())
        headers = {"webhook-id": item_id, "webhook-timestamp": str(now)}
        if self._key is not None:
            headers["webhook-signature"] = sign(self._key, item_id, now, body)
        reply = await post(self._session, self._url, body, headers, self._timeout)
        if not isinstance(reply, HttpReply):
            return reply
        return classify(reply)

    def describe(self) -> str:
        """Target host and whether requests are signed."""
        signed = "signed" if self._key is not None else "UNSIGNED (no secret)"
        return f"JSON webhook at {safe_target(self._url)}, {signed}"
