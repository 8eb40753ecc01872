"""The HTTP scrape producer: one per `[[scrape]]` target, each on its own schedule.

A scrape is bounded in time (`timeout`, covering connect, redirects and the whole body) and in
size (`max_body_bytes`, counted while reading the decompressed body, so a gzip bomb stops at the
cap). A failed scrape does not raise: it reports `up` 0 with the reason in the log and on
/metrics, so the scheduler's backoff never hides a dead target and `up == 0` can alert.

Each producer owns one aiohttp ClientSession, opened in `__aenter__` and closed in `__aexit__`.
Sessions are per target, not shared: a target's lifetime is its producer's (a SIGHUP that
removes it closes exactly its connections), and a hostile target cannot hold connections that
another target's scrapes would wait for.

Parsing and conversion (`collectors/openmetrics.py`) run in a worker thread: a large body takes
tens to hundreds of milliseconds of CPU, which must not stall the event loop that every other
producer, the pipeline and /metrics share.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

import aiohttp
from prometheus_client.metrics_core import Metric
from yarl import URL

from infrawatch import __version__
from infrawatch.collectors.openmetrics import (
    Conversion,
    Converter,
    ParseCache,
    ParseError,
    parse,
)
from infrawatch.collectors.scrape_config import ScrapeTarget
from infrawatch.logging import at_doubling, describe, get_logger
from infrawatch.model import Sample, make_labels
from infrawatch.runtime.stats import ScrapeStats

log = get_logger("infrawatch.collectors.scrape")

USER_AGENT = f"infrawatch/{__version__}"
MAX_REDIRECTS = 5
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024  # bytes read per step: the overshoot past max_body_bytes at most
_DETAIL_CHARS = 200  # a parse error may quote a line of the body: keep log lines short

# Failure reasons: a small fixed set, since each is a label value on /metrics.
REASONS = (
    "connection",  # refused, reset, DNS, TLS: no HTTP answer
    "timeout",  # no complete answer within `timeout`
    "http_status",  # an answer other than 200 (or a redirect without a usable Location)
    "redirects",  # more than MAX_REDIRECTS redirects, or a redirect loop
    "body_too_large",  # more than max_body_bytes (decompressed)
    "payload",  # a truncated body, or a transfer/content encoding that does not decode
    "parse",  # a body that is not the text format or OpenMetrics
)

# Synthetic series per target, as Prometheus adds them (names agreed in docs/scrape.md).
UP = "up"
DURATION = "scrape.duration_seconds"
SAMPLES_SCRAPED = "scrape.samples_scraped"


class ScrapeFailed(Exception):
    """A scrape that did not produce samples: `reason` is one of REASONS."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class ScrapeResult:
    """One scrape's outcome (what `check --scrape` prints); `duration` in seconds."""

    ok: bool
    duration: float
    reason: str = ""
    detail: str = ""
    content_type: str = ""
    samples_scraped: int = 0  # samples in the response
    series: int = 0  # series seen, before the cap
    dropped_series: int = 0  # beyond max_series
    filtered: int = 0  # removed by keep/drop
    stored: int = 0  # samples handed to the pipeline (rates need two scrapes)
    names: tuple[str, ...] = field(default=())  # the metric names emitted, sorted


def _client_detail(exc: BaseException) -> str:
    # aiohttp's response errors quote the request URL, whose query may carry a token.
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"{type(exc).__name__}: {exc.message}" if exc.message else type(exc).__name__
    if isinstance(exc, aiohttp.InvalidURL):
        return type(exc).__name__
    return describe(exc)


class ScrapeProducer:
    """Scrapes one target every `interval` seconds; yields its samples plus `up`, duration and
    sample count (a failed scrape yields those three only, `up` 0)."""

    series_ttl = 0.0

    def __init__(
        self, target: ScrapeTarget, stats: ScrapeStats | None = None, *, quiet: bool = False
    ) -> None:
        self.target = target
        self._quiet = quiet  # `check --scrape` prints the outcome itself
        self.name = f"scrape:{target.name}"
        self.interval = target.interval
        self.stats = stats if stats is not None else ScrapeStats()
        self.last: ScrapeResult | None = None
        self._origin = URL(target.url).origin()
        self._labels = make_labels(target.target_labels)
        self._converter = Converter(
            labels=target.target_labels,
            keep=target.keep,
            drop=target.drop,
            max_series=target.max_series,
        )
        # Re-reads only the values of a body laid out as the last one (most scrapes).
        self._cache = ParseCache()
        self._session: aiohttp.ClientSession | None = None
        self._failures = 0  # consecutive failed scrapes
        self._capped_logged = False

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession(
            # One scrape at a time per target; a redirect to another host needs a second.
            connector=aiohttp.TCPConnector(limit=2),
            # A scrape is stateless: a cookie set by one answer must not reach the next request.
            cookie_jar=aiohttp.DummyCookieJar(),
            # The whole scrape is bounded by asyncio.timeout in `collect`; this bounds connects.
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.target.timeout),
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- one scrape -----------------------------------------------------------------------------

    async def collect(self) -> list[Sample]:
        """Scrape once; never raises for a failed scrape (that is `up` 0, reason logged)."""
        ts = time.time()
        started = time.monotonic()
        stats = self.stats
        stats.scrapes += 1
        try:
            async with asyncio.timeout(self.target.timeout):
                body, content_type = await self._fetch()
            families, conversion = await asyncio.to_thread(
                self._parse_convert, body, content_type, ts
            )
        except (ScrapeFailed, aiohttp.ClientError, OSError) as exc:  # OSError: TimeoutError too
            return self._failed(self._failure(exc), ts, time.monotonic() - started)
        duration = time.monotonic() - started
        scraped = sum(len(f.samples) for f in families)
        stats.samples += scraped
        stats.series = conversion.series
        stats.series_dropped += conversion.dropped_series
        stats.up = True
        if conversion.dropped_series and not self._capped_logged and not self._quiet:
            self._capped_logged = True  # once per target: the counter on /metrics keeps count
            log.warning(
                "scrape.series_capped",
                target=self.target.name,
                max_series=self.target.max_series,
                series=conversion.series,
                dropped=conversion.dropped_series,
            )
        if self._failures and not self._quiet:
            log.info("scrape.recovered", target=self.target.name, after=self._failures)
        self._failures = 0
        samples = conversion.samples
        self.last = ScrapeResult(
            ok=True,
            duration=duration,
            content_type=content_type,
            samples_scraped=scraped,
            series=conversion.series,
            dropped_series=conversion.dropped_series,
            filtered=conversion.filtered,
            stored=len(samples),
            names=tuple(sorted({s.name for s in samples})),
        )
        return [*samples, *self._synthetic(ts, up=1.0, duration=duration, scraped=scraped)]

    def _parse_convert(
        self, body: bytes, content_type: str, ts: float
    ) -> tuple[list[Metric], Conversion]:
        # Runs in a worker thread; one scrape per target at a time, so the converter's state
        # is never touched by two threads at once.
        try:
            families = parse(body, content_type, self._cache)
        except ParseError as exc:
            raise ScrapeFailed("parse", str(exc)[:_DETAIL_CHARS]) from None
        return families, self._converter.convert(families, ts)

    def _failure(self, exc: Exception) -> ScrapeFailed:
        """What went wrong, as a reason of REASONS and a detail that quotes no URL."""
        if isinstance(exc, ScrapeFailed):
            return exc
        if isinstance(exc, TimeoutError):  # asyncio.timeout, and aiohttp's connect timeout
            return ScrapeFailed("timeout", f"no complete answer within {self.target.timeout:g}s")
        if isinstance(exc, aiohttp.ClientPayloadError):
            return ScrapeFailed("payload", describe(exc))
        if isinstance(exc, aiohttp.ClientError):
            return ScrapeFailed("connection", _client_detail(exc))
        return ScrapeFailed("connection", describe(exc))

    def _failed(self, failure: ScrapeFailed, ts: float, duration: float) -> list[Sample]:
        stats = self.stats
        stats.failures[failure.reason] = stats.failures.get(failure.reason, 0) + 1
        stats.up = False
        self._failures += 1
        if at_doubling(self._failures) and not self._quiet:
            # The URL is not logged (its query may hold a token): target and instance name it.
            log.warning(
                "scrape.failed",
                target=self.target.name,
                instance=self.target.instance,
                reason=failure.reason,
                error=failure.detail[:_DETAIL_CHARS],
                consecutive_failures=self._failures,
            )
        self.last = ScrapeResult(
            ok=False, duration=duration, reason=failure.reason, detail=failure.detail
        )
        return self._synthetic(ts, up=0.0, duration=duration, scraped=0)

    def _synthetic(self, ts: float, *, up: float, duration: float, scraped: int) -> list[Sample]:
        labels = self._labels
        return [
            Sample(UP, up, ts, labels),
            Sample(DURATION, duration, ts, labels),
            Sample(SAMPLES_SCRAPED, float(scraped), ts, labels),
        ]

    # -- HTTP -----------------------------------------------------------------------------------

    def _headers(self, url: URL) -> dict[str, str]:
        headers = {
            "Accept": self.target.accept,
            "Accept-Encoding": "gzip",
            "User-Agent": USER_AGENT,
            # As Prometheus sends it: an exporter may cut its own work short to answer in time.
            "X-Prometheus-Scrape-Timeout-Seconds": f"{self.target.timeout:g}",
        }
        if url.origin() == self._origin:
            # Configured headers carry credentials for the configured origin only: a redirect
            # elsewhere does not take them along (as browsers and curl drop Authorization).
            headers.update({k: v.get_secret_value() for k, v in self.target.headers.items()})
        return headers

    async def _fetch(self) -> tuple[bytes, str]:
        """GET the target (following up to MAX_REDIRECTS redirects); the body and its type."""
        session = self._session
        if session is None:
            raise RuntimeError("scrape producer used outside `async with`")
        url = URL(self.target.url)
        seen = {url}
        for _ in range(MAX_REDIRECTS + 1):
            async with session.get(url, headers=self._headers(url), allow_redirects=False) as resp:
                if resp.status in _REDIRECT_STATUSES:
                    url = self._redirect(url, resp.headers.get("Location"), resp.status)
                    if url in seen:
                        raise ScrapeFailed("redirects", "redirect loop")
                    seen.add(url)
                    continue
                if resp.status != 200:
                    raise ScrapeFailed(
                        "http_status", f"HTTP {resp.status} {resp.reason or ''}".strip()
                    )
                body = await self._read(resp)
                return body, resp.headers.get("Content-Type", "")
        raise ScrapeFailed("redirects", f"more than {MAX_REDIRECTS} redirects")

    @staticmethod
    def _redirect(url: URL, location: str | None, status: int) -> URL:
        if not location:
            raise ScrapeFailed("http_status", f"HTTP {status} without a Location")
        try:
            target = url.join(URL(location))
        except ValueError:
            raise ScrapeFailed("redirects", "redirect to an invalid URL") from None
        if target.scheme not in ("http", "https") or not target.host:
            raise ScrapeFailed("redirects", "redirect to a non-HTTP URL")
        return target

    async def _read(self, resp: aiohttp.ClientResponse) -> bytes:
        """The (decompressed) body, or ScrapeFailed once it passes max_body_bytes."""
        cap = self.target.max_body_bytes
        declared = resp.content_length
        # An unencoded body's Content-Length is its size: one over the cap is refused before
        # a byte is read. An encoded one is judged by its decompressed size, while reading.
        if declared is not None and declared > cap and resp.headers.get("Content-Encoding") is None:
            raise ScrapeFailed(
                "body_too_large", f"Content-Length {declared} > max_body_bytes {cap}"
            )
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(_CHUNK):
            size += len(chunk)
            if size > cap:
                raise ScrapeFailed("body_too_large", f"body over max_body_bytes ({cap} bytes)")
            chunks.append(chunk)
        return b"".join(chunks)


async def probe(target: ScrapeTarget) -> ScrapeResult:
    """Scrape `target` once, as `check --scrape` does, and return the outcome."""
    async with ScrapeProducer(target, quiet=True) as producer:
        await producer.collect()
    if producer.last is None:  # collect always sets it; a guard for the type checker
        raise RuntimeError("scrape produced no result")
    return producer.last
