"""Real aiohttp servers on 127.0.0.1 that behave like Discord, Slack and a signed-webhook receiver.

Each receiver records every request, can be told to answer the next requests with scripted
failures (429 with retry_after, 5xx, 404, 400), and can be stopped and restarted on the same
port (a receiver that is down, then back).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import math
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from infrawatch.alerting.render import ulen

Reply = tuple[int, Any, dict[str, str]]  # status, JSON body (or text), headers


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Received:
    """One request as the receiver saw it, and what it answered."""

    path: str
    query: dict[str, str]
    headers: CIMultiDict[str]
    body: bytes
    status: int
    at: float = field(default_factory=time.monotonic)

    @property
    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


class Receiver:
    """Base: an aiohttp app on a fixed loopback port, with scripted replies and a request log."""

    path = "/"

    def __init__(self) -> None:
        self.port = free_port()
        self.requests: list[Received] = []
        self.script: deque[Reply] = deque()
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """The URL a sink should post to."""
        return f"http://127.0.0.1:{self.port}{self.path}"

    async def start(self) -> None:
        """Listen (again) on the receiver's port."""
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def stop(self) -> None:
        """Stop listening (connections are refused until `start`)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def then(self, *replies: Reply) -> None:
        """Answer the next requests with these replies, in order."""
        self.script.extend(replies)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if self.script:
            status, payload, headers = self.script.popleft()
        else:
            status, payload, headers = self.answer(request, body)
        self.requests.append(
            Received(request.path, dict(request.query), CIMultiDict(request.headers), body, status)
        )
        async with self._changed:
            self._changed.notify_all()
        if isinstance(payload, str):
            return web.Response(status=status, text=payload, headers=headers)
        if payload is None:
            return web.Response(status=status, headers=headers)
        return web.json_response(payload, status=status, headers=headers)

    def answer(self, request: web.Request, body: bytes) -> Reply:
        """The reply when nothing is scripted (subclasses validate like the real service)."""
        return 200, "ok", {}

    def accepted(self) -> list[Received]:
        """Requests answered with 2xx."""
        return [r for r in self.requests if 200 <= r.status < 300]

    def accepted_ids(self) -> list[str]:
        """webhook-id of every accepted delivery, in arrival order (repeats kept)."""
        return [r.headers["webhook-id"] for r in self.accepted()]

    async def wait_until(self, predicate: Callable[[Receiver], bool]) -> None:
        """Wait until `predicate(self)` holds (re-checked after every request)."""
        async with self._changed:
            await self._changed.wait_for(lambda: predicate(self))


# -- Discord --------------------------------------------------------------------------------


def validate_discord(body: Any) -> list[str]:
    """Every documented execute-webhook limit this body breaks (empty list: valid)."""
    errors: list[str] = []
    if not isinstance(body, dict):
        return ["body is not an object"]
    content = body.get("content")
    embeds = body.get("embeds") or []
    if not content and not embeds:
        errors.append("empty message: content or embeds required")
    if content is not None and ulen(content) > 2000:
        errors.append(f"content {ulen(content)} > 2000")
    if len(embeds) > 10:
        errors.append(f"{len(embeds)} embeds > 10")
    total = 0
    for i, e in enumerate(embeds):
        for key, limit in (("title", 256), ("description", 4096)):
            if key in e:
                n = ulen(e[key])
                total += n
                if n > limit:
                    errors.append(f"embeds[{i}].{key} {n} > {limit}")
                if n == 0:
                    errors.append(f"embeds[{i}].{key} is empty")
        footer = e.get("footer", {}).get("text")
        if footer is not None:
            total += ulen(footer)
            if ulen(footer) > 2048:
                errors.append(f"embeds[{i}].footer.text > 2048")
        fields = e.get("fields", [])
        if len(fields) > 25:
            errors.append(f"embeds[{i}] has {len(fields)} fields > 25")
        for j, f in enumerate(fields):
            name, value = f.get("name", ""), f.get("value", "")
            total += ulen(name) + ulen(value)
            if not name.strip() or ulen(name) > 256:
                errors.append(f"embeds[{i}].fields[{j}].name length {ulen(name)} not in 1..256")
            if not value.strip() or ulen(value) > 1024:
                errors.append(f"embeds[{i}].fields[{j}].value length {ulen(value)} not in 1..1024")
        if "color" in e and not 0 <= e["color"] <= 0xFFFFFF:
            errors.append(f"embeds[{i}].color out of range")
        url = e.get("url")  # not counted in the 6000; Discord: "Must be 2048 or fewer in length"
        if url is not None and (
            not isinstance(url, str) or not url.startswith(("http://", "https://"))
        ):
            errors.append(f"embeds[{i}].url is not an http(s) URL")
        elif url is not None and len(url) > 2048:
            errors.append(f"embeds[{i}].url {len(url)} > 2048")
    if total > 6000:
        errors.append(f"embeds total {total} > 6000")
    return errors


class DiscordReceiver(Receiver):
    """Discord's execute-webhook: 400 on any broken limit, rate-limit headers on every reply."""

    path = "/api/webhooks/123456/token-abc"

    def answer(self, request: web.Request, body: bytes) -> Reply:
        """Validate and store the message (200 + message with ?wait=true, else 204)."""
        try:
            payload = json.loads(body)
        except ValueError:
            return 400, {"code": 50109, "message": "The request body contains invalid JSON."}, {}
        errors = validate_discord(payload)
        if errors:
            return 400, {"code": 50035, "message": "Invalid Form Body", "errors": errors}, {}
        headers = {
            "X-RateLimit-Limit": "5",
            "X-RateLimit-Remaining": "4",
            "X-RateLimit-Reset-After": "0.4",
            "X-RateLimit-Bucket": "abcd",
        }
        if request.query.get("wait") == "true":
            return 200, {"id": str(len(self.requests) + 1), **payload}, headers
        return 204, None, headers

    @staticmethod
    def rate_limited(retry_after: float) -> Reply:
        """A 429 as Discord sends it: JSON retry_after plus Retry-After and X-RateLimit-*."""
        return (
            429,
            {"message": "You are being rate limited.", "retry_after": retry_after, "global": False},
            {
                "Retry-After": str(math.ceil(retry_after)),
                "X-RateLimit-Limit": "5",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset-After": str(retry_after),
                "X-RateLimit-Scope": "user",
            },
        )

    GONE: Reply = (404, {"message": "Unknown Webhook", "code": 10015}, {})


# -- Slack ----------------------------------------------------------------------------------


def validate_slack(body: Any) -> list[str]:
    """Every documented incoming-webhook limit this body breaks."""
    errors: list[str] = []
    if not isinstance(body, dict) or not isinstance(body.get("text"), str) or not body["text"]:
        return ["missing text fallback"]
    blocks = body.get("blocks", [])
    if len(blocks) > 50:
        errors.append(f"{len(blocks)} blocks > 50")
    for i, b in enumerate(blocks):
        text = b.get("text", {}).get("text", "")
        if b["type"] == "header" and not 1 <= ulen(text) <= 150:
            errors.append(f"blocks[{i}] header text {ulen(text)} not in 1..150")
        if b["type"] == "section" and not 1 <= ulen(text) <= 3000:
            errors.append(f"blocks[{i}] section text {ulen(text)} not in 1..3000")
        if b["type"] == "context" and not 1 <= len(b.get("elements", [])) <= 10:
            errors.append(f"blocks[{i}] context elements not in 1..10")
    return errors


class SlackReceiver(Receiver):
    """Slack's incoming webhook: "ok", "invalid_blocks" (400), 429 with Retry-After."""

    path = "/services/T0001/B0001/secretsecret"

    def answer(self, request: web.Request, body: bytes) -> Reply:
        """Validate blocks like Slack does."""
        try:
            payload = json.loads(body)
        except ValueError:
            return 400, "invalid_payload", {}
        if validate_slack(payload):
            return 400, "invalid_blocks", {}
        return 200, "ok", {}

    @staticmethod
    def rate_limited(seconds: int) -> Reply:
        """Slack's 429: a Retry-After header in whole seconds."""
        return 429, "rate_limited", {"Retry-After": str(seconds)}


# -- Standard Webhooks ----------------------------------------------------------------------


class SignedWebhookReceiver(Receiver):
    """Verifies Standard Webhooks signatures; counts accepted deliveries per webhook-id."""

    path = "/hook"

    def __init__(self, secret: str, tolerance: float = 300.0) -> None:
        super().__init__()
        self.key = base64.b64decode(secret.removeprefix("whsec_"))
        self.tolerance = tolerance
        self.bad_signatures = 0

    def verify(self, headers: dict[str, str] | Any, body: bytes) -> bool:
        """Check webhook-signature against id.timestamp.body, and the timestamp's freshness."""
        msg_id = headers.get("webhook-id")
        ts = headers.get("webhook-timestamp")
        sigs = headers.get("webhook-signature", "")
        if not msg_id or not ts or abs(time.time() - int(ts)) > self.tolerance:
            return False
        expected = hmac.new(self.key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
        for sig in sigs.split(" "):
            version, _, value = sig.partition(",")
            if version == "v1" and hmac.compare_digest(base64.b64decode(value), expected):
                return True
        return False

    def answer(self, request: web.Request, body: bytes) -> Reply:
        """204 when the signature verifies, else 401."""
        if not self.verify(request.headers, body):
            self.bad_signatures += 1
            return 401, {"error": "bad signature"}, {}
        return 204, None, {}


# -- a receiver that is down, then back -------------------------------------------------------


class OutageReceiver(Receiver):
    """A webhook receiver behind a failing proxy: 503 while `down`, 204 once it is back.

    It listens throughout, so a test switches it with one assignment and no port race."""

    path = "/hook"

    def __init__(self, *, down: bool = True) -> None:
        super().__init__()
        self.down = down

    def answer(self, request: web.Request, body: bytes) -> Reply:
        """503 during the outage, else 204."""
        return (503, "upstream unavailable", {}) if self.down else (204, None, {})

    def alertnames(self) -> list[str]:
        """The first alert's `alertname` of every accepted notification, in arrival order."""
        return [r.json["alerts"][0]["labels"]["alertname"] for r in self.accepted()]


WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def always_firing_toml(hook_url: str, *, agent: str = "", alerting: str = "") -> str:
    """Config text with one threshold rule that fires on the first host sample and keeps firing
    (memory utilization is always ≥ 0, sampled every 0.5 s), notifying a webhook at `hook_url`
    signed with WEBHOOK_SECRET. `agent` and `alerting` are extra lines for those tables."""
    return f"""
[agent]
{agent}
[host]
interval = 0.5
metrics = ["memory"]
[analysis.zscore]
enabled = false
[analysis.novelty]
enabled = false
[[analysis.threshold]]
name = "memory_in_use"
metric = "system.memory.utilization"
op = ">="
critical = 0.0
[alerting]
group_wait = 0
{alerting}
[[alerting.sinks]]
name = "hook"
type = "webhook"
url = "{hook_url}"
secret = "{WEBHOOK_SECRET}"
"""
