"""The JSON API under /api/v1: status, series, samples, anomalies, alerts, silences. Read-only.

Prometheus' HTTP API envelope: `{"status": "success", "data": …}`; a bad parameter is
`{"status": "error", "errorType": "bad_data", "error": "<names the parameter>"}` with 400, an
unknown metric `not_found` with 404, a database that can't be read `unavailable` with 503.

Live state (latest values, detector states, alerts, counters) is read on the event loop through
an `ApiSource`; history is read from the database through `infrawatch.storage.read` (the same
read path as `infrawatch query`) on a read-only sqlite3 connection in a worker thread, so a
read never stalls the loop and, WAL reader, never blocks the agent's writes. Nothing runs
unless a request comes in. Responses carry no secrets (no sink URLs, the database's file name
only); security headers are the server's job.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from infrawatch.alerting import silences as sil
from infrawatch.detect.base import scores_of
from infrawatch.logging import at_doubling, describe, get_logger
from infrawatch.storage import charts, read
from infrawatch.storage.read import NotFound, QueryError
from infrawatch.web.api_alerts import alert_list, silence_list
from infrawatch.web.api_request import ApiError, Params, bad, check_glob, failure, shown, success
from infrawatch.web.api_series import SeriesQuery, bands, series_list, thresholds
from infrawatch.web.api_source import ApiSource, SilenceSource

log = get_logger("infrawatch.web.api")

PREFIX = "/api/v1"
Handler = Callable[[web.BaseRequest], Awaitable[web.Response]]

MIN_POINTS, MAX_POINTS, DEFAULT_POINTS = 10, 20_000, 1000
MAX_LIMIT = 10_000
SERIES_LIMIT = 100  # series per answer by default: each costs a sparkline read
READS_AT_ONCE = 2  # database reads in flight; more wait, so the page can't take every thread

T = TypeVar("T")


def api_routes(source: ApiSource, *, clock: Callable[[], float] = time.time) -> dict[str, Handler]:
    """Path → handler for every /api/v1 endpoint; `clock` gives epoch seconds ("now")."""
    api = _Api(source, clock)
    handlers: dict[str, Callable[[web.BaseRequest], Awaitable[Any]]] = {
        "status": api.status,
        "series": api.series,
        "samples": api.samples,
        "anomalies": api.anomalies,
        "alerts": api.alerts,
        "silences": api.silences,
    }
    return {f"{PREFIX}/{name}": _guarded(name, fn) for name, fn in handlers.items()}


def _guarded(name: str, fn: Callable[[web.BaseRequest], Awaitable[Any]]) -> Handler:
    """The handler `fn` (which returns `data`) wrapped in the envelope and its errors."""

    async def handle(request: web.BaseRequest) -> web.Response:
        try:
            return success(await fn(request))
        except ApiError as exc:
            return failure(exc)
        except NotFound as exc:
            return failure(ApiError(404, "not_found", str(exc)))
        except QueryError as exc:
            return failure(bad(str(exc)))

    handle.__name__ = f"api_{name}"
    return handle


class _Api:
    def __init__(self, source: ApiSource, clock: Callable[[], float]) -> None:
        self._source = source
        self._clock = clock
        self._reads = asyncio.Semaphore(READS_AT_ONCE)
        self._read_failures = 0

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`fn(conn)` on a fresh read-only connection in a worker thread."""
        path = self._source.database
        async with self._reads:
            try:
                return await asyncio.to_thread(_with_connection, path, fn)
            except _Unreadable as exc:
                self._read_failures += 1
                if at_doubling(self._read_failures):
                    log.warning(
                        "api.database_unreadable", error=str(exc), failures=self._read_failures
                    )
                raise ApiError(
                    503, "unavailable", f"database {path.name} can't be read now"
                ) from None

    # -- status ----------------------------------------------------------------------------

    async def status(self, request: web.BaseRequest) -> dict[str, Any]:
        Params(request, ())
        source = self._source
        stats = source.stats
        now, mono = self._clock(), time.monotonic()
        intervals = source.producer_intervals()
        health = source.producer_health()
        producers = []
        for name in sorted(set(stats.producers) | set(intervals)):
            p = stats.producers.get(name)
            tick = (
                None if p is None or p.last_tick_done is None else max(0.0, mono - p.last_tick_done)
            )
            producers.append(
                {
                    "name": name,
                    "ok": health.get(name, True),
                    "interval_seconds": intervals.get(name),
                    "seconds_since_tick": tick,
                    "consecutive_failures": p.consecutive_failures if p else 0,
                    "collected": p.collected if p else 0,
                    "errors": p.errors if p else 0,
                }
            )
        sinks = [
            {
                "name": name,
                "type": s.type,
                "sent": s.sent,
                "failed": s.failed,
                "pending": s.pending,
                "gone": s.gone,
                "rate_limited": s.rate_limited,
            }
            for name, s in sorted(stats.alert_sinks.items())
        ]
        firing = sum(1 for a in source.alert_records() if a.state == "firing")
        return {
            "host": source.host,
            "version": source.version,
            "started": source.started,
            "uptime_seconds": max(0.0, now - source.started),
            "now": now,
            "interval_seconds": min(intervals.values(), default=None),
            "producers": producers,
            "queue": {
                "depth": source.queue_depth().batches,
                "capacity": source.queue_capacity(),
                "dropped": sum(p.dropped for p in stats.producers.values()),
            },
            "stored": stats.stored,
            "dropped": stats.dropped,
            "store": {
                "open": stats.store_open,
                "path_name": source.database.name,
                "errors": stats.store_errors,
            },
            "sinks": sinks,
            "alerts": {"firing": firing},
        }

    # -- series ----------------------------------------------------------------------------

    async def series(self, request: web.BaseRequest) -> list[dict[str, Any]]:
        params = Params(request, ("match", "limit"), ("label",))
        match = params.get("match", "*") or ""
        pattern = check_glob(match)
        labels = params.labels()
        limit = params.integer("limit", SERIES_LIMIT, 1, MAX_LIMIT)
        # The series sets are copied on the loop (the pipeline adds and drops series between
        # awaits) and read in the worker thread along with the database. The Latest entries are
        # shared: a value read while the pipeline updates it is at worst one sample old.
        live = dict(self._source.latest_values())
        # Scores and flags as parallel lists, not SeriesState objects: 4 detectors x 10,000
        # series of those took ~40 ms here and set off full GC collections (bench/api.py).
        states = [(d.name, scores_of(d)) for d in self._source.detectors()]
        query = SeriesQuery(match, pattern, labels, limit, self._clock())
        return await self._read(lambda conn: series_list(conn, query, live, states))

    # -- samples ---------------------------------------------------------------------------

    async def samples(self, request: web.BaseRequest) -> dict[str, Any]:
        params = Params(request, ("metric", "since", "until", "points", "step"), ("label",))
        metric = params.get("metric")
        if not metric:
            raise bad("metric: required (a series name, e.g. system.cpu.utilization)")
        labels = params.labels()
        since, until = params.span(self._clock())
        points = params.integer("points", DEFAULT_POINTS, MIN_POINTS, MAX_POINTS)
        step_text = params.get("step")
        step = None
        if step_text is not None:
            step = read.parse_step(step_text, option="step")
            buckets = math.ceil(until / step) - math.floor(since / step)
            if buckets > points:
                raise bad(
                    f"step: {step_text} makes {buckets} points over the range, more than"
                    f" points ({points})"
                )
        found = await self._read(
            lambda conn: charts.chart(
                conn, metric, labels=labels, since=since, until=until, points=points, step=step
            )
        )
        keys = [(metric, tuple(s.series.labels.items())) for s in found.series]
        return {
            "metric": metric,
            "resolution": found.resolution,
            "step_seconds": found.step,
            "since": since,
            "until": until,
            "series": [
                {"labels": s.series.labels, "t": s.ts, "v": s.mean, "min": s.min, "max": s.max}
                for s in found.series
            ],
            "thresholds": thresholds(self._source.threshold_rules(), keys),
            "bands": bands(self._source.detectors(), keys),
        }

    # -- anomalies -------------------------------------------------------------------------

    async def anomalies(self, request: web.BaseRequest) -> list[dict[str, Any]]:
        params = Params(request, ("since", "until", "metric", "limit"), ("label",))
        since, until = params.span(self._clock())
        metric = params.get("metric") or None
        labels = params.labels()
        limit = params.integer("limit", 1000, 1, MAX_LIMIT)

        def run(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            if metric is not None:
                read.find_series(conn, metric, labels)  # 404 for an unknown metric
            return read.anomalies(
                conn, since=since, until=until, metric=metric, labels=labels, limit=limit
            )

        return await self._read(run)

    # -- alerts ----------------------------------------------------------------------------

    async def alerts(self, request: web.BaseRequest) -> list[dict[str, Any]]:
        params = Params(request, ("state", "since", "limit"))
        state = params.get("state")
        if state not in (None, "firing", "resolved"):
            raise bad(f"state: expected firing or resolved, got {shown(state or '')}")
        since, _ = params.span(self._clock())
        limit = params.integer("limit", 1000, 1, MAX_LIMIT)
        stored, silences = await self._read(
            lambda conn: (read.alerts(conn, resolved_since=since), sil.read_all(conn))
        )
        found = alert_list(
            stored,
            self._source.alert_records(),
            self._config_silences() + silences,
            self._source.silenced,
            state=state,
            since=since,
            now=self._clock(),
        )
        return found[:limit]

    # -- silences --------------------------------------------------------------------------

    def _config_silences(self) -> list[sil.SilenceRecord]:
        source = self._source
        return list(source.config_silences()) if isinstance(source, SilenceSource) else []

    async def silences(self, request: web.BaseRequest) -> list[dict[str, Any]]:
        """Silences in force or pending, and those ended in the last day, each with the firing
        alerts it mutes now; active first, then by end."""
        Params(request, ())
        now = self._clock()
        stored, firing = await self._read(
            lambda conn: (sil.read_all(conn), read.alerts(conn, state="firing"))
        )
        records = self._source.alert_records()
        return silence_list(self._config_silences() + stored, firing, records, now=now)


class _Unreadable(Exception):
    """The database could not be opened or read (missing yet, locked, damaged)."""


def _with_connection(path: Path, fn: Callable[[sqlite3.Connection], T]) -> T:
    """Run `fn` on a read-only connection to `path` (in a worker thread), then close it."""
    try:
        conn = read.open_readonly(path)
    except QueryError as exc:
        raise _Unreadable(str(exc)) from None
    try:
        return fn(conn)
    except sqlite3.Error as exc:  # locked past the busy timeout, I/O error, damaged pages
        raise _Unreadable(describe(exc)) from None
    finally:
        conn.close()
