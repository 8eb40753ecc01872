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
import heapq
import json
import math
import re
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

from aiohttp import web

from infrawatch.alerting import silences as sil
from infrawatch.detect.base import Detector, SeriesState
from infrawatch.detect.config import ThresholdRule
from infrawatch.detect.match import matches
from infrawatch.logging import at_doubling, describe, get_logger
from infrawatch.model import Labels, SeriesKey
from infrawatch.runtime.latest import Latest
from infrawatch.runtime.stats import AgentStats
from infrawatch.storage import charts, read
from infrawatch.storage.read import NotFound, QueryError

log = get_logger("infrawatch.web.api")

PREFIX = "/api/v1"
Handler = Callable[[web.BaseRequest], Awaitable[web.Response]]

MIN_POINTS, MAX_POINTS, DEFAULT_POINTS = 10, 20_000, 1000
MAX_LIMIT = 10_000
SERIES_LIMIT = 100  # series per answer by default: each costs a sparkline read
MAX_VALUE_CHARS = 1024  # a longer parameter value is refused, not echoed in an error
MAX_GLOB_CHARS = 256
SPARK_STEP, SPARK_CELLS = 120, 30  # the series list's sparklines: the last hour in 2 min cells
READS_AT_ONCE = 2  # database reads in flight; more wait, so the page can't take every thread

T = TypeVar("T")


# -- what the API reads of the agent --------------------------------------------------------


class QueueDepthView(Protocol):
    """Batches waiting in the producer → pipeline queue."""

    @property
    def batches(self) -> int:
        """Batches waiting."""
        ...


class AlertEntry(Protocol):
    """One alert the alerting engine holds (its `AlertRecord` has these fields)."""

    @property
    def fingerprint(self) -> str:
        """Stable hash of the alert's labels."""
        ...

    @property
    def labels(self) -> Mapping[str, str]:
        """`alertname`, `metric`, `severity` and the series' labels."""
        ...

    @property
    def annotations(self) -> Mapping[str, str]:
        """`summary` (the evidence in words), value, detector, score, `evidence_*`."""
        ...

    @property
    def severity(self) -> str:
        """`warning` or `critical`."""
        ...

    @property
    def state(self) -> str:
        """`firing` or `resolved`."""
        ...

    @property
    def starts_at(self) -> float:
        """Epoch seconds it started firing."""
        ...

    @property
    def ends_at(self) -> float | None:
        """Epoch seconds it resolved (None while firing)."""
        ...

    @property
    def last_notified_at(self) -> float | None:
        """Epoch seconds of the last notification about it."""
        ...

    @property
    def flapping(self) -> bool:
        """Whether flap damping holds its state changes back."""
        ...


@runtime_checkable
class Banded(Protocol):
    """A detector that can say which values it currently expects (zscore, novelty)."""

    def band(self, key: SeriesKey) -> tuple[float, float, str] | None:
        """(lower, upper, text) of the expected values of `key`, or None if it has none yet."""
        ...


class ApiSource(Protocol):
    """What /api/v1 reads of the running agent; every member only reads."""

    @property
    def host(self) -> str:
        """The host name shown in the page's header."""
        ...

    @property
    def version(self) -> str:
        """infrawatch's version."""
        ...

    @property
    def started(self) -> float:
        """When the agent started, epoch seconds."""
        ...

    @property
    def database(self) -> Path:
        """The SQLite database the agent writes (only its file name is ever shown)."""
        ...

    @property
    def stats(self) -> AgentStats:
        """The agent's counters: producers, storage, alert sinks."""
        ...

    def producer_intervals(self) -> Mapping[str, float]:
        """Seconds between ticks per producer, as running now."""
        ...

    def producer_health(self) -> Mapping[str, bool]:
        """Per producer, whether it finished a tick in time (what /healthz reports)."""
        ...

    def queue_depth(self) -> QueueDepthView:
        """What waits for the pipeline."""
        ...

    def queue_capacity(self) -> int:
        """Batches the queue holds before it drops."""
        ...

    def latest_values(self) -> Iterable[tuple[SeriesKey, Latest]]:
        """Every live series and its newest value."""
        ...

    def detectors(self) -> Sequence[Detector]:
        """The detectors running now."""
        ...

    def threshold_rules(self) -> Sequence[ThresholdRule]:
        """The threshold rules in force now."""
        ...

    def alert_records(self) -> Iterable[AlertEntry]:
        """Every alert the engine holds: firing, and resolved ones it still remembers."""
        ...

    def silenced(self, labels: Mapping[str, str]) -> bool:
        """Whether an active silence matches an alert with `labels`."""
        ...


@runtime_checkable
class SilenceSource(Protocol):
    """A source that knows the config file's silences (the database's are read from it)."""

    def config_silences(self) -> Sequence[sil.SilenceRecord]:
        """`[[alerting.silences]]` in force now, ids `config-N`."""
        ...


# -- errors, parameters, JSON ----------------------------------------------------------------


class ApiError(Exception):
    """An answer other than success: HTTP status, Prometheus errorType, one line."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


def _bad(message: str) -> ApiError:
    return ApiError(400, "bad_data", message)


def _shown(text: str) -> str:
    """User input quoted in an error, cut short (it is echoed back)."""
    return repr(text if len(text) <= 64 else text[:64] + "…")


class _Params:
    """A request's query parameters, checked against the names an endpoint takes."""

    def __init__(
        self, request: web.BaseRequest, single: Iterable[str], repeated: Iterable[str] = ()
    ):
        self._query = request.query
        self._single = set(single)
        self._repeated = set(repeated)
        for name in self._query:
            if name not in self._single and name not in self._repeated:
                raise _bad(f"unknown parameter {_shown(name)}")
        for name, value in self._query.items():
            if len(value) > MAX_VALUE_CHARS:
                raise _bad(f"{name}: longer than {MAX_VALUE_CHARS} characters")

    def get(self, name: str, default: str | None = None) -> str | None:
        """The value of a single-valued parameter (`default` if absent)."""
        values = self._query.getall(name, [])
        if len(values) > 1:
            raise _bad(f"{name}: given {len(values)} times, expected once")
        return values[0] if values else default

    def all(self, name: str) -> list[str]:
        """Every value of a repeatable parameter."""
        return list(self._query.getall(name, []))

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        """An integer parameter within [low, high]."""
        text = self.get(name)
        if text is None:
            return default
        try:
            value = int(text)
        except ValueError:
            raise _bad(f"{name}: expected an integer, got {_shown(text)}") from None
        if not low <= value <= high:
            raise _bad(f"{name}: {value} is outside [{low}, {high}]")
        return value

    def labels(self) -> dict[str, str]:
        """`label=k=v` filters (repeatable; all must match)."""
        try:
            return read.parse_labels(self.all("label"), option="label")
        except QueryError as exc:
            raise _bad(str(exc)) from None

    def span(self, now: float, default_since: str = "24h") -> tuple[float, float]:
        """[since, until) in epoch seconds (`until` defaults to now)."""
        since = self.get("since") or default_since
        try:
            return read.time_range(since, self.get("until"), now=now, options=("since", "until"))
        except QueryError as exc:
            raise _bad(str(exc)) from None


def check_glob(text: str) -> re.Pattern[str]:
    """`text` compiled if it is a usable SQLite GLOB (`*`, `?`, `[…]`, `[^…]`), else a 400
    naming `match`."""
    if not text:
        raise _bad("match: empty glob (use * for every series)")
    if len(text) > MAX_GLOB_CHARS:
        raise _bad(f"match: longer than {MAX_GLOB_CHARS} characters")
    if any(ord(c) < 0x20 or c == "\x7f" for c in text):
        raise _bad(f"match: control character in glob {_shown(text)}")
    try:
        return read.compile_glob(text)
    except QueryError as exc:
        raise _bad(f"match: {exc}") from None


def finite(value: Any) -> Any:
    """`value` with every NaN/±inf float, however deeply nested, replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def _response(status: int, body: dict[str, Any]) -> web.Response:
    # JSON has no NaN/Infinity: refused by allow_nan=False, then mapped to null (the walk is
    # slow in Python, and values are finite nearly always).
    try:
        text = json.dumps(body, allow_nan=False, separators=(",", ":"))
    except ValueError:
        text = json.dumps(finite(body), allow_nan=False, separators=(",", ":"))
    response = web.Response(status=status, text=text, content_type="application/json")
    response.enable_compression()  # only if the client asks (Accept-Encoding)
    return response


def success(data: Any) -> web.Response:
    """200 with `data` in the envelope."""
    return _response(200, {"status": "success", "data": data})


def failure(error: ApiError) -> web.Response:
    """The error envelope with the error's status."""
    body = {"status": "error", "errorType": error.kind, "error": str(error)}
    return _response(error.status, body)


# -- the endpoints ---------------------------------------------------------------------------


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
            return failure(_bad(str(exc)))

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
        _Params(request, ())
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
        params = _Params(request, ("match", "limit"), ("label",))
        match = params.get("match", "*") or ""
        pattern = check_glob(match)
        labels = params.labels()
        limit = params.integer("limit", SERIES_LIMIT, 1, MAX_LIMIT)
        # The series sets are copied on the loop (the pipeline adds and drops series between
        # awaits) and read in the worker thread along with the database. The Latest entries are
        # shared: a value read while the pipeline updates it is at worst one sample old.
        live = dict(self._source.latest_values())
        states = [(d.name, d.states()) for d in self._source.detectors()]
        query = _SeriesQuery(match, pattern, labels, limit, self._clock())
        return await self._read(lambda conn: _series_list(conn, query, live, states))

    # -- samples ---------------------------------------------------------------------------

    async def samples(self, request: web.BaseRequest) -> dict[str, Any]:
        params = _Params(request, ("metric", "since", "until", "points", "step"), ("label",))
        metric = params.get("metric")
        if not metric:
            raise _bad("metric: required (a series name, e.g. system.cpu.utilization)")
        labels = params.labels()
        since, until = params.span(self._clock())
        points = params.integer("points", DEFAULT_POINTS, MIN_POINTS, MAX_POINTS)
        step_text = params.get("step")
        step = None
        if step_text is not None:
            step = read.parse_step(step_text, option="step")
            buckets = math.ceil(until / step) - math.floor(since / step)
            if buckets > points:
                raise _bad(
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
            "thresholds": _thresholds(self._source.threshold_rules(), keys),
            "bands": _bands(self._source.detectors(), keys),
        }

    # -- anomalies -------------------------------------------------------------------------

    async def anomalies(self, request: web.BaseRequest) -> list[dict[str, Any]]:
        params = _Params(request, ("since", "until", "metric", "limit"), ("label",))
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
        params = _Params(request, ("state", "since", "limit"))
        state = params.get("state")
        if state not in (None, "firing", "resolved"):
            raise _bad(f"state: expected firing or resolved, got {_shown(state or '')}")
        since, _ = params.span(self._clock())
        limit = params.integer("limit", 1000, 1, MAX_LIMIT)
        stored, silences = await self._read(
            lambda conn: (read.alerts(conn, resolved_since=since), sil.read_all(conn))
        )
        silences = self._config_silences() + silences
        now = self._clock()
        # The engine's records are newer than the table (it persists after each step).
        by_fp = {row["fingerprint"]: row for row in stored}
        for rec in self._source.alert_records():
            if rec.state == "resolved" and (rec.ends_at is None or rec.ends_at < since):
                continue
            by_fp[rec.fingerprint] = {
                "fingerprint": rec.fingerprint,
                "alertname": rec.labels.get("alertname", ""),
                "state": rec.state,
                "severity": rec.severity,
                "labels": dict(rec.labels),
                "annotations": dict(rec.annotations),
                "starts_at": rec.starts_at,
                "ends_at": rec.ends_at,
                "last_notified_at": rec.last_notified_at,
                "flapping": rec.flapping,
            }
        out = []
        for row in by_fp.values():
            if state is not None and row["state"] != state:
                continue
            labels = row["labels"]
            out.append(
                {
                    "fingerprint": row["fingerprint"],
                    "alertname": row["alertname"],
                    "state": row["state"],
                    "severity": row["severity"],
                    "metric": labels.get("metric"),
                    "labels": labels,
                    "annotations": row["annotations"],
                    "starts_at": row["starts_at"],
                    "ends_at": row["ends_at"],
                    "last_notified_at": row["last_notified_at"],
                    "summary": row["annotations"].get("summary", ""),
                    "silenced": self._source.silenced(labels),
                    "silenced_by": sil.silenced_by(silences, labels, now),
                    "flapping": row["flapping"],
                }
            )
        # Firing first; newest first within each (by start while firing, by end once resolved).
        out.sort(
            key=lambda a: (
                a["state"] != "firing",
                -(a["starts_at"] if a["state"] == "firing" else a["ends_at"] or a["starts_at"]),
            )
        )
        return out[:limit]

    # -- silences --------------------------------------------------------------------------

    def _config_silences(self) -> list[sil.SilenceRecord]:
        source = self._source
        return list(source.config_silences()) if isinstance(source, SilenceSource) else []

    async def silences(self, request: web.BaseRequest) -> list[dict[str, Any]]:
        """Silences in force or pending, and those ended in the last day, each with the firing
        alerts it mutes now; active first, then by end."""
        _Params(request, ())
        now = self._clock()
        stored, firing = await self._read(
            lambda conn: (sil.read_all(conn), read.alerts(conn, state="firing"))
        )
        alerts = {row["fingerprint"]: row for row in firing}
        for rec in self._source.alert_records():
            if rec.state == "firing":
                alerts[rec.fingerprint] = {
                    "fingerprint": rec.fingerprint,
                    "alertname": rec.labels.get("alertname", ""),
                    "labels": dict(rec.labels),
                }
            else:
                alerts.pop(rec.fingerprint, None)  # resolved since it was stored
        out = []
        for record in self._config_silences() + stored:
            state = record.state(now)
            if state == "expired" and (record.ends_at or 0.0) < now - sil.RECENT:
                continue
            row = record.as_row(now)
            row["mutes"] = (
                [
                    {
                        "fingerprint": a["fingerprint"],
                        "alertname": a["alertname"],
                        "labels": a["labels"],
                    }
                    for a in alerts.values()
                    if record.mutes(a["labels"], now)
                ]
                if state == "active"
                else []
            )
            out.append(row)
        order = {"active": 0, "pending": 1, "expired": 2}
        out.sort(key=lambda r: (order[r["state"]], -(r["ends_at"] or math.inf), r["id"]))
        return out


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


@dataclass(frozen=True, slots=True)
class _SeriesQuery:
    match: str  # the glob, for SQL
    pattern: re.Pattern[str]  # the same glob, for names in memory
    labels: dict[str, str]
    limit: int
    now: float  # epoch seconds: the sparklines end here


def _series_list(
    conn: sqlite3.Connection,
    query: _SeriesQuery,
    live: dict[SeriesKey, Latest],
    states: list[tuple[str, Mapping[SeriesKey, SeriesState]]],
) -> list[dict[str, Any]]:
    """Live series ranked anomalous first, then by score, then by name and labels; then, if
    there is room, stored series that no longer report, by name and labels. With last values
    and sparklines.

    Ranking runs over the live series in memory (no per-series SQL, no 10,000 rows to parse);
    the database gives the ids of the few series shown, their sparklines, and the series that
    are gone (detectors forget those, so they would rank last anyway).
    """
    maps = [by_key for _, by_key in states]
    wanted = tuple(query.labels.items())
    fullmatch = query.pattern.fullmatch

    def ranked() -> Iterator[tuple[bool, float, str, Labels]]:
        # Plain loops and tuples: this runs once per live series (10,000 and more).
        for key in live:
            name, pairs = key
            if fullmatch(name) is None or (wanted and not all(w in pairs for w in wanted)):
                continue
            calm = True
            top = -math.inf
            for by_key in maps:
                state = by_key.get(key)
                if state is not None:
                    if state.anomalous:
                        calm = False
                    if state.score > top:
                        top = state.score
            yield calm, -top, name, pairs

    keys: list[SeriesKey] = [(n, p) for _, _, n, p in heapq.nsmallest(query.limit, ranked())]
    ids = read.series_ids(conn, keys)
    if len(keys) < query.limit:
        for ref in read.iter_series(conn, match=query.match, labels=query.labels):
            key = (ref.name, tuple(ref.labels.items()))  # stored labels are sorted already
            if key not in live:
                keys.append(key)
                ids[key] = ref.id
                if len(keys) >= query.limit:
                    break
    shown = list(ids.values())
    sparks = charts.sparklines(conn, shown, until=query.now, step=SPARK_STEP, cells=SPARK_CELLS)
    stored = charts.last_stored(conn, [ids[k] for k in keys if k in ids and k not in live])
    out = []
    for key in keys:
        per = {}
        for name, by_key in states:
            state = by_key.get(key)
            if state is not None:
                per[name] = {"anomalous": state.anomalous, "score": state.score}
        entry = live.get(key)
        sid = ids.get(key)
        last = (entry.ts, entry.value) if entry is not None else stored.get(sid or -1)
        out.append(
            {
                "metric": key[0],
                "labels": dict(key[1]),
                "last": None if last is None else {"ts": last[0], "value": last[1]},
                "anomalous": any(s["anomalous"] for s in per.values()),
                "score": max((s["score"] for s in per.values()), default=None),
                "detectors": per,
                # A live series not stored yet (its first batch is on its way) has no history.
                "spark": sparks[sid] if sid is not None else [None] * SPARK_CELLS,
            }
        )
    return out


def _thresholds(rules: Sequence[ThresholdRule], keys: Sequence[SeriesKey]) -> list[dict[str, Any]]:
    """The levels of every rule that applies to at least one of `keys`."""
    out = []
    for rule in rules:
        if not any(matches(key, rule.metric, rule.labels) for key in keys):
            continue
        for severity, level in (("warning", rule.warning), ("critical", rule.critical)):
            if level is not None:
                out.append({"rule": rule.name, "severity": severity, "level": level, "op": rule.op})
    return out


def _bands(detectors: Sequence[Detector], keys: Sequence[SeriesKey]) -> list[dict[str, Any]]:
    """The expected range of each series per detector that has one now."""
    out = []
    for key in keys:
        for detector in detectors:
            if not isinstance(detector, Banded):
                continue
            band = detector.band(key)
            if band is not None:
                lower, upper, text = band
                out.append(
                    {
                        "labels": dict(key[1]),
                        "detector": detector.name,
                        "lower": lower,
                        "upper": upper,
                        "text": text,
                    }
                )
    return out
