"""One task per `[[export]]` entry: export log → batches → receiver, at least once.

An exporter reads up to `batch_samples` rows after its cursor (cursor.py), groups them by
series in time order, sends one request, and moves the cursor past the rows once the receiver
has answered for every one of them:

- 2xx: sent (OTLP's `partial_success` count is recorded as rejected, with its message);
- 429, 5xx, 408, redirects, timeouts and connection errors: the same rows are read again and
  retried after a backoff with jitter (1 s doubling to 30 s), or after the receiver's
  `Retry-After`;
- any other 4xx: the rows are rejected and skipped, the receiver's reason logged. A 400 or 413
  splits the request in halves first (a bounded number of times), so one bad sample costs
  itself rather than the whole batch: Prometheus refuses a whole request for one sample.

Remote-write receivers refuse a sample older than the last one of its series; such samples
(late CloudWatch points, a value changed after it was sent) are counted as rejected without a
request. Samples older than `storage.retention` when they come up are counted and logged as
lost. Statistics per exporter feed /metrics (runtime/stats.py `ExporterStats`).

protobuf, opentelemetry-proto and cramjam are imported when the first exporter of their type
opens, so an agent without exporters never loads them.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from types import TracebackType
from typing import Any, Literal, Self

import aiohttp

from infrawatch import __version__
from infrawatch.export.batch import TS, Batch, Group, Points, in_time_order, split_half
from infrawatch.export.config import ExportConfig
from infrawatch.export.cursor import ExportCursor, Row
from infrawatch.export.encoder import Encoder, build_encoder
from infrawatch.logging import at_doubling, describe, get_logger
from infrawatch.retry import equal_jitter, parse_retry_after
from infrawatch.runtime.stats import ExporterStats
from infrawatch.storage.store import Store

log = get_logger("infrawatch.export")

USER_AGENT = f"infrawatch/{__version__}"
INITIAL_DELAY = 1.0  # seconds before the first retry
MAX_DELAY = 30.0  # seconds: the longest backoff step, so a receiver that is back is seen soon
MAX_RETRY_AFTER = 600.0  # seconds: a longer Retry-After is taken as this
# Seconds between looks for rows written without a notification (the store wakes exporters
# after every write; this is the safety net, so it can be long).
POLL_INTERVAL = 30.0
MEASURE_WHILE_DOWN = 5.0  # seconds between backlog/lag updates while waiting to retry
PERSIST_INTERVAL = 1.0  # seconds between cursor writes while sending (a crash re-sends ≤ this)
MEASURE_INTERVAL = 1.0  # seconds between backlog/lag measurements
SPLIT_BUDGET = 16  # extra requests one batch may spend isolating the samples a receiver refuses
SERIES_CACHE_TTL = 300.0  # seconds: series ids can be reused after retention deletes a series
MAX_ANSWER_BYTES = 64 * 1024  # of a response body read for its status or reason
_SPLITTABLE = (400, 413)  # answers that may concern part of the request only
_UNPRINTABLE = re.compile(r"[^\x20-\x7e\u00a0-\uffff]+")


@dataclass(frozen=True, slots=True)
class Reply:
    """The receiver's answer to one request: ok, retry (maybe after `retry_after` s), reject."""

    kind: Literal["ok", "retry", "reject"]
    status: int | None = None
    detail: str = ""
    retry_after: float | None = None
    rejected: int = 0  # of an ok: samples refused anyway (OTLP partial success)


_GONE = object()  # a series id with no series row any more


def backoff(failures: int, rng: random.Random) -> float:
    """Seconds before retry number `failures`: uniform in [d/2, d], d = 1 s × 2^(n-1) ≤ 30 s."""
    return equal_jitter(failures, rng, initial=INITIAL_DELAY, multiplier=2.0, cap=MAX_DELAY)


def reason(body: bytes) -> str:
    """A receiver's answer as one printable line of at most 300 characters."""
    text = _UNPRINTABLE.sub(" ", body[:2048].decode("utf-8", "replace")).strip()
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:300] + "…"


class Exporter:
    """Delivers one `[[export]]` entry's share of the export log; enter with `async with`."""

    def __init__(
        self,
        cfg: ExportConfig,
        store: Store,
        stats: ExporterStats,
        *,
        retention: float,
        external_labels: Mapping[str, str],
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.stats = stats
        self.retention = retention  # seconds: rows older than this are lost
        self.external_labels = dict(external_labels)
        self.clock = clock
        self.rng = rng or random.Random()
        self.cursor = ExportCursor(store, cfg.name)
        self.encoder: Encoder | None = None
        self.delays: deque[float] = deque(maxlen=100)  # recent waits before a retry (s), for tests
        self._headers: dict[str, str] = {}
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._progress = asyncio.Condition()
        self._series: dict[int, Any] = {}  # id → prepared series, or None: not matched
        self._series_since = time.monotonic()
        # Ordered receivers: per series, the (stamp, value) they last accepted this run.
        self._last_sent: dict[int, tuple[int, float]] = {}
        self._failures = 0  # consecutive failed attempts
        self._down_since: float | None = None  # epoch s of the first failure of this streak
        self._persisted_at = 0.0  # monotonic s
        self._measured_at = 0.0  # monotonic s
        self._errors = 0  # consecutive unexpected errors (database busy …)
        self._loss_events = 0  # reads in a row that found samples past the retention
        self._log_counts: dict[str, int] = {}

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self.encoder = build_encoder(self.cfg, self.external_labels)
        self._headers = {
            **{k: v.get_secret_value() for k, v in self.cfg.headers.items()},
            **self.encoder.headers,
        }
        await self.cursor.open()
        self._session = aiohttp.ClientSession(headers={"User-Agent": USER_AGENT})
        self.store.write_events.append(self._wake)
        await self._measure(force=True)
        log.info(
            "export.started",
            exporter=self.cfg.name,
            type=self.cfg.type,
            target=self.cfg.target,
            backlog=self.stats.backlog,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
        with contextlib.suppress(ValueError):
            self.store.write_events.remove(self._wake)
        await self._persist(force=True)
        if self._session is not None:
            await self._session.close()
        await self.cursor.close()

    def start(self) -> None:
        """Run the delivery loop as a task (stopped by `stop`, `flush` or leaving the context)."""
        self._task = asyncio.create_task(self.run(), name=f"export:{self.cfg.name}")

    async def stop(self) -> None:
        """Cancel the delivery loop; a request in flight is sent again later (at least once)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def run(self) -> None:
        """Deliver until cancelled: batch after batch, then wait for new rows."""
        while True:
            self._wake.clear()  # a write during the step sets it again: nothing is missed
            try:
                progressed = await self.step()
                self._errors = 0
            except Exception as exc:
                # The database (busy, full) or a bug: keep the loop alive, slow down.
                self._errors += 1
                if at_doubling(self._errors):
                    log.error(
                        "export.error",
                        exporter=self.cfg.name,
                        error=describe(exc),
                        consecutive=self._errors,
                    )
                await asyncio.sleep(backoff(self._errors, self.rng))
                continue
            if not progressed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=POLL_INTERVAL)

    async def flush(self, budget: float) -> None:
        """Shutdown: stop the loop, then send what is stored, one attempt per batch, within
        `budget` seconds; stop at the first failure. What is left stays for the next start."""
        await self.stop()
        started = time.monotonic()
        try:
            async with asyncio.timeout(budget):
                while (batch := await self._read()) is not None:
                    if await self._deliver(batch) is not None:
                        break
                    self._resolve(batch)
        except TimeoutError:
            pass
        except Exception as exc:  # one exporter's problem must not skip the others' flush
            log.error("export.error", exporter=self.cfg.name, error=describe(exc))
        await self._persist(force=True)
        with contextlib.suppress(Exception):
            await self._measure(force=True)
        log.info(
            "export.flushed",
            exporter=self.cfg.name,
            unsent=self.stats.backlog,
            seconds=round(time.monotonic() - started, 3),
        )

    async def wait_until(self, predicate: Callable[[ExporterStats], bool]) -> None:
        """Wait until `predicate(stats)` holds; re-checked after every batch (for tests)."""
        async with self._progress:
            await self._progress.wait_for(lambda: predicate(self.stats))

    @property
    def _encoder(self) -> Encoder:
        if self.encoder is None:
            raise RuntimeError(f"exporter {self.cfg.name} is not open")
        return self.encoder

    # -- one step ----------------------------------------------------------------------------

    async def step(self) -> bool:
        """Read one batch and deliver it (or wait out a retry); False when caught up."""
        batch = await self._read()
        if batch is None:
            self.stats.backlog = 0
            self.stats.lag_seconds = 0.0
            await self._persist(force=True)
            await self._notify()
            return False
        retry = await self._deliver(batch)
        if retry is not None:
            await self._retry_later(retry)
            return True
        self._resolve(batch)
        await self._persist()
        await self._measure()
        await self._notify()
        return True

    async def _read(self) -> Batch | None:
        """The next rows after the cursor as a batch; None when there are none."""
        encoder = self._encoder
        while True:
            rows = await self.cursor.read(self.cfg.batch_samples)
            if not rows:
                return None
            rows = await self._skip_expired_head(rows)
            if rows:
                break
        # Per series, in commit order; the rows themselves, no copies (this loop is the hot path).
        by_series: dict[int, list[Row]] = {}
        for row in rows:
            group = by_series.get(row[1])
            if group is None:
                by_series[row[1]] = [row]
            else:
                group.append(row)
        await self._learn_series(by_series)
        cutoff = self.clock() - self.retention
        expired = min(map(TS, rows)) < cutoff
        batch = Batch(last_seq=rows[-1][0], groups=[])
        series = self._series
        last_sent = self._last_sent if encoder.ordered else None
        for sid, group in by_series.items():
            prep = series.get(sid, _GONE)
            if prep is None:
                continue  # not matched by this exporter's globs
            if prep is _GONE:
                batch.lost += len(group)
                continue
            if expired:
                kept = [r for r in group if r[2] >= cutoff]
                batch.lost += len(group) - len(kept)
                if not kept:
                    continue
                group = kept
            points = in_time_order(group) if len(group) > 1 else group
            if last_sent is not None:
                last = last_sent.get(sid)
                if last is not None and encoder.stamp(points[0][2]) <= last[0]:
                    points = self._after_last_sent(points, last, batch)
                    if not points:
                        continue
            batch.groups.append((sid, prep, points))
            batch.samples += len(points)
        return batch

    async def _skip_expired_head(self, rows: list[Row]) -> list[Row]:
        """Move past the leading rows older than the retention (counted lost) and return the
        rest. While a receiver is down, the backlog's head is what ages out first: skipping it
        keeps the log within the retention however long the outage."""
        cutoff = self.clock() - self.retention
        head = 0
        while head < len(rows) and rows[head][2] < cutoff:
            head += 1
        if not head:
            return rows
        expired = rows[:head]
        await self._learn_series({row[1] for row in expired})
        # Rows of series this exporter does not export were never going to be sent.
        lost = sum(1 for row in expired if self._series.get(row[1], _GONE) is not None)
        self.cursor.position = expired[-1][0]
        self._count_lost(lost)
        return rows[head:]

    def _count_lost(self, lost: int) -> None:
        if not lost:
            self._loss_events = 0
            return
        self.stats.lost += lost
        self._loss_events += 1
        # A long outage loses a little more at every retry: the 1st, 2nd, 4th … loss of a
        # streak is logged, each with the running total, so none goes unsaid.
        if at_doubling(self._loss_events):
            log.error(
                "export.samples_lost",
                exporter=self.cfg.name,
                samples=lost,
                total_lost=self.stats.lost,
                retention=self.retention,
                occurrences=self._loss_events,
            )

    async def _learn_series(self, ids: Iterable[int]) -> None:
        encoder = self._encoder
        if time.monotonic() - self._series_since > SERIES_CACHE_TTL:
            self._series = {}
            self._series_since = time.monotonic()
        missing = [sid for sid in ids if sid not in self._series]
        if not missing:
            return
        found = await self.cursor.series(missing)
        for sid in missing:
            info = found.get(sid)
            if info is None:
                continue  # gone: its rows count as lost, and the id is not cached
            name, labels = info
            matched = not self.cfg.match or any(fnmatchcase(name, g) for g in self.cfg.match)
            self._series[sid] = encoder.prepare(name, labels) if matched else None

    def _after_last_sent(self, points: Points, last: tuple[int, float], batch: Batch) -> Points:
        """Drop what an ordered receiver would refuse: samples at or before its last one."""
        stamp = self._encoder.stamp
        kept: Points = []
        for point in points:
            at = stamp(point[2])
            if at > last[0]:
                kept.append(point)
            elif (at, point[3]) != last:  # an identical re-send is a harmless duplicate
                batch.out_of_order += 1
        return kept

    async def _deliver(self, batch: Batch) -> Reply | None:
        """Send the batch (split on 400/413); None once every sample is sent or rejected, else
        the retryable reply (the batch is read and sent again later)."""
        chunks: deque[list[Group]] = deque([batch.groups] if batch.groups else [])
        budget = SPLIT_BUDGET
        while chunks:
            groups = chunks.popleft()
            count = sum(len(points) for _, _, points in groups)
            reply = await self._send(groups)
            if reply.kind == "retry":
                self.stats.failed += count
                return reply
            if reply.kind == "ok":
                batch.sent += count - reply.rejected
                batch.rejected += reply.rejected
                if reply.rejected:
                    self._log_often(
                        "export.partial_success",
                        rejected=reply.rejected,
                        samples=count,
                        message=reply.detail,
                    )
                if self._encoder.ordered:
                    stamp = self._encoder.stamp
                    for sid, _, points in groups:
                        batch.accepted_until[sid] = (stamp(points[-1][2]), points[-1][3])
                continue
            if reply.status in _SPLITTABLE and count > 1 and budget >= 2:
                budget -= 2
                left, right = split_half(groups, count)
                chunks.extendleft((right, left))
                continue
            batch.rejected += count
            self._log_often(
                "export.rejected", status=reply.status, samples=count, reason=reply.detail
            )
        return None

    def _resolve(self, batch: Batch) -> None:
        """Count a batch that needs no more attempts and move the cursor past it."""
        stats = self.stats
        stats.sent += batch.sent
        stats.rejected += batch.rejected + batch.out_of_order
        if batch.out_of_order:
            self._log_often(
                "export.out_of_order",
                samples=batch.out_of_order,
                hint="older than what the receiver has for their series (late or rewritten "
                "points): remote-write refuses them",
            )
        self._count_lost(batch.lost)
        if self.encoder is not None and self.encoder.ordered:
            self._last_sent.update(batch.accepted_until)
            if len(self._last_sent) > 4 * len(self._series) + 10_000:
                self._last_sent = {k: v for k, v in self._last_sent.items() if k in self._series}
        self.cursor.position = batch.last_seq
        if self._failures:
            down = self.clock() - (self._down_since or self.clock())
            log.info(
                "export.recovered",
                exporter=self.cfg.name,
                failed_attempts=self._failures,
                down_seconds=round(down, 3),
            )
            self._failures = 0
            self._down_since = None

    async def _retry_later(self, reply: Reply) -> None:
        self._failures += 1
        if self._down_since is None:
            self._down_since = self.clock()
        delay = reply.retry_after
        if delay is None:
            delay = backoff(self._failures, self.rng)
        self.delays.append(delay)
        await self._measure(force=True)
        if at_doubling(self._failures):
            log.warning(
                "export.retrying",
                exporter=self.cfg.name,
                status=reply.status,
                error=reply.detail,
                failed_attempts=self._failures,
                delay=round(delay, 3),
                backlog=self.stats.backlog,
            )
        # What was skipped as too old is pruned from the log even while the receiver is away.
        await self._persist()
        await self._notify()
        # The backlog and lag keep growing while the receiver is away: keep measuring them.
        until = time.monotonic() + delay
        while (left := until - time.monotonic()) > 0:
            await asyncio.sleep(min(left, MEASURE_WHILE_DOWN))
            with contextlib.suppress(Exception):
                await self._measure(force=True)

    # -- HTTP --------------------------------------------------------------------------------

    async def _send(self, groups: list[Group]) -> Reply:
        """One POST of these groups, its answer classified."""
        encoder = self._encoder
        if self._session is None:
            raise RuntimeError(f"exporter {self.cfg.name} is not open")
        body = encoder.encode([(prep, points) for _, prep, points in groups])
        self.stats.requests += 1
        try:
            async with self._session.post(
                self.cfg.endpoint,
                data=body,
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=self.cfg.timeout),
                allow_redirects=False,
            ) as resp:
                answer = await resp.content.read(MAX_ANSWER_BYTES)
                status = resp.status
                retry_after = parse_retry_after(
                    resp.headers.get("Retry-After"), now=self.clock(), cap=MAX_RETRY_AFTER
                )
        except TimeoutError:
            return Reply("retry", detail=f"no answer within {self.cfg.timeout:g}s")
        except aiohttp.ClientError as exc:
            return Reply("retry", detail=self._redact(describe(exc)))
        if 200 <= status < 300:
            try:
                rejected, message = encoder.accepted(answer)
            except ValueError as exc:
                self._log_often("export.unreadable_answer", status=status, error=str(exc))
                rejected, message = 0, ""
            count = sum(len(points) for _, _, points in groups)
            return Reply("ok", status, reason(message.encode()), rejected=min(rejected, count))
        if 400 <= status < 500 and status not in (408, 429):
            return Reply("reject", status, reason(answer))
        # 5xx, 408, 429, and a redirect (not followed: a POST body would be lost or re-sent
        # elsewhere): kept and retried, so a misconfigured URL builds a visible backlog instead
        # of discarding every sample.
        return Reply("retry", status, reason(answer), retry_after=retry_after)

    def _redact(self, text: str) -> str:
        # aiohttp names host:port only, but an invalid-URL error quotes the URL, whose query may
        # hold a token.
        return text.replace(self.cfg.endpoint, self.cfg.target)

    # -- bookkeeping -------------------------------------------------------------------------

    async def _persist(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if self.cursor.position == self.cursor.persisted:
            return  # nothing new: the interval counts from the last real write
        if not force and now - self._persisted_at < PERSIST_INTERVAL:
            return
        try:
            await self.cursor.persist()
            self._persisted_at = now
        except Exception as exc:
            # The position stays in memory; after a crash the rows since are sent again.
            self._log_often("export.cursor_not_saved", error=describe(exc))

    async def _measure(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._measured_at < MEASURE_INTERVAL:
            return
        self._measured_at = now
        backlog = await self.cursor.backlog()
        self.stats.backlog = backlog.samples
        self.stats.lag_seconds = (
            max(0.0, self.clock() - backlog.next_ts) if backlog.next_ts is not None else 0.0
        )

    async def _notify(self) -> None:
        async with self._progress:
            self._progress.notify_all()

    def _log_often(self, event: str, **fields: Any) -> None:
        """Log a recurring condition at its 1st, 2nd, 4th … occurrence (with the count)."""
        count = self._log_counts[event] = self._log_counts.get(event, 0) + 1
        if at_doubling(count):
            log.warning(event, exporter=self.cfg.name, occurrences=count, **fields)
