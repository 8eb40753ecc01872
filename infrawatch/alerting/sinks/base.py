"""What every sink shares: the delivery result, the protocol, an HTTP POST that classifies, and
`HttpSink`, the request path of the single-URL JSON sinks (Discord, Slack, webhook)."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from infrawatch import __version__
from infrawatch.alerting.config import SinkConfig
from infrawatch.jsontext import dumps
from infrawatch.logging import describe
from infrawatch.retry import bounded_wait, parse_retry_after

Outcome = Literal["ok", "retry", "fail", "gone"]
_MAX_RETRY_AFTER = 3600.0  # seconds; a larger hint is treated as this (never wait for a day)


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """What one attempt did: ok, retry (maybe after `retry_after` s), fail (never retry), gone.

    `pause` asks the worker to wait that many seconds before the sink's next request (a rate
    limit bucket that is empty but not yet exceeded). `detail` never contains the URL.
    """

    outcome: Outcome
    status: int | None = None
    detail: str = ""
    retry_after: float | None = None
    pause: float | None = None
    counts_as_failure: bool = True


class Sink(Protocol):
    """Delivers one outbox item; must not raise for delivery problems (return a result)."""

    name: str
    type: str

    async def send(self, item_id: str, payload: dict[str, Any]) -> DeliveryResult:
        """Deliver `payload` (the versioned notification document) once."""
        ...

    def describe(self) -> str:
        """A one-line description safe to print (no secrets: scheme and host only)."""
        ...


def safe_target(url: str) -> str:
    """scheme://host[:port] of a URL: enough to recognise it, without its token or path."""
    parsed = URL(url)
    port = f":{parsed.explicit_port}" if parsed.explicit_port else ""
    return f"{parsed.scheme}://{parsed.host}{port}"


USER_AGENT = f"infrawatch/{__version__}"


def secret_parts(url: str | URL) -> set[str]:
    """The parts of a URL that may carry a credential: itself, its password, its path+query."""
    parsed = URL(url)
    parts = {str(url), str(parsed)}
    if parsed.password:
        parts.add(parsed.password)
    if parsed.path_qs not in ("", "/", "/api/v2/alerts"):
        parts.add(parsed.path_qs)
    return parts


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with each of `secrets` (longest first) replaced by "<redacted>"."""
    for part in sorted(secrets, key=len, reverse=True):
        text = text.replace(part, "<redacted>")
    return text


@dataclass(frozen=True, slots=True)
class HttpReply:
    """Status, headers and (short) body text of one response."""

    status: int
    headers: Mapping[str, str]
    text: str
    json: Any = None


async def post(
    session: aiohttp.ClientSession,
    url: str | URL,
    body: bytes,
    headers: Mapping[str, str],
    timeout: float,  # noqa: ASYNC109 - passed to aiohttp's per-request ClientTimeout
) -> HttpReply | DeliveryResult:
    """POST a JSON `body` (timeout in seconds); a connection problem or timeout becomes a retry
    result. Every request says who sends it (User-Agent), whoever built the session."""
    try:
        async with session.post(
            url,
            data=body,
            headers={"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers},
            timeout=aiohttp.ClientTimeout(total=timeout),
            allow_redirects=False,
        ) as resp:
            text = (await resp.read())[:4096].decode("utf-8", "replace")
            parsed: Any = None
            if resp.content_type == "application/json":
                with contextlib.suppress(ValueError):
                    parsed = json.loads(text)
            # Header names are case-insensitive (HTTP/2 front ends send them lowercase): a
            # plain dict would miss `x-ratelimit-remaining` when looking up `X-RateLimit-…`.
            return HttpReply(resp.status, CIMultiDict(resp.headers), text, parsed)
    except TimeoutError:
        return DeliveryResult("retry", detail=f"timed out after {timeout:g}s")
    except aiohttp.ClientError as exc:
        # Most aiohttp messages name only host:port, but some (an invalid URL) quote the whole
        # URL: the token in a webhook's path or a password must not reach the log. Redacted
        # before it is shortened, so a cut cannot leave half a token that no longer matches.
        return DeliveryResult("retry", detail=_short(redact(describe(exc), secret_parts(url))))


def _short(text: str) -> str:
    return text if len(text) <= 200 else text[:200] + "…"


def classify(reply: HttpReply, *, gone_on: tuple[int, ...] = ()) -> DeliveryResult:
    """Map an HTTP reply to an outcome: 2xx ok, 429/5xx/408 retry, `gone_on` gone, 4xx fail."""
    snippet = reply.text[:300]
    if 200 <= reply.status < 300:
        return DeliveryResult("ok", reply.status)
    if reply.status == 429:
        after = _retry_after(reply)
        if isinstance(reply.json, dict) and "retry_after" in reply.json:
            with contextlib.suppress(TypeError, ValueError):
                hinted = bounded_wait(float(reply.json["retry_after"]), _MAX_RETRY_AFTER)
                after = after if hinted is None else hinted
        return DeliveryResult(
            "retry", 429, f"rate limited: {snippet}", retry_after=after, counts_as_failure=False
        )
    if reply.status in gone_on:
        return DeliveryResult("gone", reply.status, snippet)
    if reply.status >= 500 or reply.status == 408:
        return DeliveryResult("retry", reply.status, snippet, retry_after=_retry_after(reply))
    return DeliveryResult("fail", reply.status, snippet)


def _retry_after(reply: HttpReply) -> float | None:
    return parse_retry_after(
        reply.headers.get("Retry-After"), now=time.time(), cap=_MAX_RETRY_AFTER
    )


class HttpSink:
    """A sink that POSTs one JSON document per notification to one URL (Discord, Slack, webhook).

    The request, its timeout and the reading of the answer (2xx ok; 429 with its retry_after or
    Retry-After, 5xx, 408 and connection errors retried; other 4xx failed) live here. A subclass
    gives its document (`render`) and, where its service has them, extra headers, a URL tweak,
    the statuses that mean "gone", and its own reading of the answer (`interpret`).
    """

    type: str
    label: str  # what `describe` calls it, e.g. "Slack incoming webhook"
    gone_on: tuple[int, ...] = ()  # statuses meaning the webhook no longer exists

    def __init__(self, cfg: SinkConfig, session: aiohttp.ClientSession) -> None:
        if cfg.url is None:  # the config model refuses this; say so rather than assert
            raise ValueError(f"a {cfg.type} sink needs url")
        self.name = cfg.name
        self._url = self.endpoint(URL(cfg.url.get_secret_value()))
        self._session = session
        self._timeout = cfg.timeout

    def endpoint(self, url: URL) -> URL:
        """The URL requests go to (the configured one unless the service wants more)."""
        return url

    def render(self, item_id: str, payload: dict[str, Any]) -> Any:
        """The JSON document this service expects for one notification."""
        raise NotImplementedError

    def headers(self, item_id: str, body: bytes) -> dict[str, str]:
        """Extra request headers for this body."""
        return {}

    def interpret(self, reply: HttpReply) -> DeliveryResult:
        """The outcome of an HTTP answer."""
        return classify(reply, gone_on=self.gone_on)

    async def send(self, item_id: str, payload: dict[str, Any]) -> DeliveryResult:
        """POST the rendered notification once and classify the answer."""
        document = self.render(item_id, payload)
        body = dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
        reply = await post(
            self._session, self._url, body, self.headers(item_id, body), self._timeout
        )
        return self.interpret(reply) if isinstance(reply, HttpReply) else reply

    def describe(self) -> str:
        """Kind and host only: the path and query may hold the webhook's token."""
        return f"{self.label} at {safe_target(str(self._url))}"
