"""A fake agent API and a page server for the status-page tests and bench/page.py.

`FakeApi` answers /api/v1/{status,series,samples,anomalies,alerts} from fixture data in the
shapes of the issue-12 API contract the real API implements. It is a stand-in for the
page's tests only: the real API has its own tests, and the page's test against the real agent
replaces this once the server serves both. `PageServer` runs the real static routes
(infrawatch.web.static_files) plus the fake API in a real aiohttp server on 127.0.0.1:0, on its
own thread and event loop, so synchronous Playwright can drive a browser against it.
"""

from __future__ import annotations

import asyncio
import bisect
import fnmatch
import math
import random
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from infrawatch.storage.read import NotFound, QueryError, parse_labels, parse_time
from infrawatch.web.security import secure
from infrawatch.web.static_files import static_routes

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
HOUR = 3600.0
DAY = 86400.0


@dataclass
class FakeSeries:
    """One series' history and what the detectors currently say about it."""

    metric: str
    labels: dict[str, str]
    t: list[float]
    v: list[float | None]
    scores: dict[str, float] = field(default_factory=dict)  # detector → score (0.5 = firing)

    @property
    def score(self) -> float | None:
        return max(self.scores.values()) if self.scores else None

    @property
    def anomalous(self) -> bool:
        return any(s >= 0.5 for s in self.scores.values())


def _matches(want: dict[str, str], have: dict[str, str]) -> bool:
    return all(have.get(k) == v for k, v in want.items())


def downsample(
    t: list[float], v: list[float | None], since: float, until: float, points: int
) -> tuple[str, float | None, dict[str, list[Any]]]:
    """(resolution, step, columns) of [since, until]: raw when it fits in `points`, else
    buckets keeping the mean, min and max of each (the contract's spike-keeping rule)."""
    lo = bisect.bisect_left(t, since)
    hi = bisect.bisect_right(t, until)
    if hi - lo <= points:
        raw = v[lo:hi]
        return "raw", None, {"t": t[lo:hi], "v": raw, "min": raw, "max": raw}
    # The real API reads 1 m rollups up to a week and 1 h rollups beyond; the fake buckets its
    # samples the same width, so the page sees the same shapes.
    resolution, step = ("1m", 60.0) if until - since <= 7 * DAY else ("1h", 3600.0)
    width = max((until - since) / points, step)
    out: dict[str, list[Any]] = {"t": [], "v": [], "min": [], "max": []}
    bucket_end = since + width
    acc: list[float] = []
    start = t[lo]

    def flush() -> None:
        if acc:
            out["t"].append(start)
            out["v"].append(sum(acc) / len(acc))
            out["min"].append(min(acc))
            out["max"].append(max(acc))

    for i in range(lo, hi):
        ts = t[i]
        if ts >= bucket_end:
            flush()
            acc = []
            while ts >= bucket_end:
                bucket_end += width
            start = bucket_end - width
        value = v[i]
        if value is not None:
            acc.append(value)
    flush()
    return resolution, width, out


class FakeApi:
    """The /api/v1 endpoints over in-memory fixture data; `requests` logs what the page asked."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.series: list[FakeSeries] = []
        self.anomalies: list[dict[str, Any]] = []
        self.alerts: list[dict[str, Any]] = []
        self.silences: list[dict[str, Any]] = []  # /api/v1/silences rows (issue 16)
        self.thresholds: dict[str, list[dict[str, Any]]] = {}  # metric → rules
        self.bands: dict[str, list[dict[str, Any]]] = {}  # metric → bands
        self.interval_seconds = 10.0
        self.requests: list[str] = []  # "path?query" of every API request, in order
        self.extra_routes: dict[str, Handler] = {}  # served beside the API (bench/page.py's)
        self._cache: dict[tuple[int, float, float, int], Any] = {}

    # -- fixture building ------------------------------------------------------------------------

    def add_series(self, series: FakeSeries) -> FakeSeries:
        self.series.append(series)
        return series

    def add_anomaly(
        self,
        series: FakeSeries,
        ts: float,
        summary: str,
        *,
        detector: str = "zscore",
        rule: str = "zscore",
        severity: str = "warning",
        status: str = "firing",
        score: float = 0.8,
    ) -> dict[str, Any]:
        """An anomaly at `ts` on `series`, valued at the series' sample nearest `ts`."""
        i = min(bisect.bisect_left(series.t, ts), len(series.t) - 1)
        anomaly = {
            "ts": ts,
            "metric": series.metric,
            "labels": dict(series.labels),
            "detector": detector,
            "rule": rule,
            "severity": severity,
            "status": status,
            "value": series.v[i],
            "score": score,
            "summary": summary,
            "evidence": {"value": series.v[i]},
        }
        self.anomalies.append(anomaly)
        return anomaly

    def add_alert(
        self,
        series: FakeSeries,
        alertname: str,
        summary: str,
        *,
        starts_at: float,
        ends_at: float | None = None,
        severity: str = "warning",
    ) -> dict[str, Any]:
        """An alert on `series` in the engine's label shape (alertname, metric, severity, …)."""
        state = "firing" if ends_at is None else "resolved"
        alert = {
            "fingerprint": f"{len(self.alerts):016x}",
            "alertname": alertname,
            "state": state,
            "severity": severity,
            "metric": series.metric,
            "labels": {
                "alertname": alertname,
                "metric": series.metric,
                **series.labels,
                "severity": severity,
            },
            "annotations": {"summary": summary},
            "starts_at": starts_at,
            "ends_at": ends_at,
            "last_notified_at": starts_at,
            "summary": summary,
            "silenced": False,
            "flapping": False,
        }
        self.alerts.append(alert)
        return alert

    def precompute(self, series: FakeSeries, since: float, until: float, points: int) -> float:
        """Answer `samples` for this query from memory from now on; seconds the answer took."""
        started = time.perf_counter()
        self._cache[(id(series), since, until, points)] = downsample(
            series.t, series.v, since, until, points
        )
        return time.perf_counter() - started

    # -- the API ---------------------------------------------------------------------------------

    def routes(self) -> dict[str, Handler]:
        return {
            "/api/v1/status": self._status,
            "/api/v1/series": self._series,
            "/api/v1/samples": self._samples,
            "/api/v1/anomalies": self._anomalies,
            "/api/v1/alerts": self._alerts,
            "/api/v1/silences": self._silences,
            **self.extra_routes,
        }

    def status(self) -> dict[str, Any]:
        firing = sum(1 for a in self.alerts if a["state"] == "firing")
        return {
            "host": "web-01",
            "version": "0.1.0",
            "started": self.now - 3 * DAY - 5 * HOUR,
            "uptime_seconds": 3 * DAY + 5 * HOUR,
            "now": self.now,
            "interval_seconds": self.interval_seconds,
            "producers": [
                {
                    "name": "host",
                    "ok": True,
                    "interval_seconds": 10.0,
                    "seconds_since_tick": 3.2,
                    "consecutive_failures": 0,
                    "collected": 1_843_220,
                    "errors": 0,
                },
                {
                    "name": "cloudwatch",
                    "ok": False,
                    "interval_seconds": 60.0,
                    "seconds_since_tick": 412.0,
                    "consecutive_failures": 4,
                    "collected": 52_410,
                    "errors": 17,
                },
            ],
            "queue": {"depth": 0, "capacity": 1000, "dropped": 0},
            "stored": 1_895_630,
            "dropped": 0,
            "store": {"open": True, "path_name": "infrawatch.db", "errors": 0},
            "sinks": [
                {
                    "name": "ops-discord",
                    "type": "discord",
                    "sent": 14,
                    "failed": 0,
                    "pending": 0,
                    "gone": False,
                    "rate_limited": 1,
                },
                {
                    "name": "alertmanager",
                    "type": "alertmanager",
                    "sent": 58,
                    "failed": 0,
                    "pending": 1,
                    "gone": False,
                    "rate_limited": 0,
                },
            ],
            "alerts": {"firing": firing},
        }

    async def _status(self, request: web.Request) -> web.Response:
        return self._ok(request, self.status())

    async def _series(self, request: web.Request) -> web.Response:
        q = request.query
        try:
            labels = parse_labels(q.getall("label", []), option="label")
            limit = self._int(q.get("limit", "500"), "limit", 1, 100_000)
        except QueryError as exc:
            return self._error(request, 400, "bad_data", str(exc))
        match = q.get("match") or "*"
        found = [
            s
            for s in self.series
            if fnmatch.fnmatchcase(s.metric, match) and _matches(labels, s.labels)
        ]
        found.sort(
            key=lambda s: (not s.anomalous, -(s.score or 0.0), s.metric, sorted(s.labels.items()))
        )
        data = []
        for s in found[:limit]:
            _, _, cols = downsample(s.t, s.v, self.now - HOUR, self.now, 32)
            last = len(s.t) - 1
            data.append(
                {
                    "metric": s.metric,
                    "labels": s.labels,
                    "last": {"ts": s.t[last], "value": s.v[last]} if s.t else None,
                    "anomalous": s.anomalous,
                    "score": s.score,
                    "detectors": {
                        name: {"anomalous": score >= 0.5, "score": score}
                        for name, score in s.scores.items()
                    },
                    "spark": cols["v"][-32:],
                }
            )
        return self._ok(request, data)

    async def _samples(self, request: web.Request) -> web.Response:
        q = request.query
        try:
            metric = q.get("metric")
            if not metric:
                raise QueryError("metric: required")
            labels = parse_labels(q.getall("label", []), option="label")
            since = parse_time(q.get("since", "24h"), now=self.now, option="since")
            until = (
                parse_time(q["until"], now=self.now, option="until") if q.get("until") else self.now
            )
            if until < since:
                raise QueryError("until: before since")
            points = self._int(q.get("points", "1000"), "points", 10, 20_000)
            found = [s for s in self.series if s.metric == metric]
            if not found:
                raise NotFound(f"metric: unknown metric {metric!r}")
        except NotFound as exc:
            return self._error(request, 404, "not_found", str(exc))
        except QueryError as exc:
            return self._error(request, 400, "bad_data", str(exc))
        out = []
        resolution, step = "raw", None
        for s in found:
            if not _matches(labels, s.labels):
                continue
            key = (id(s), since, until, points)
            if key not in self._cache:
                self._cache[key] = downsample(s.t, s.v, since, until, points)
            resolution, step, cols = self._cache[key]
            out.append({"labels": s.labels, **cols})
        bands = [
            b
            for b in self.bands.get(metric, [])
            if any(_matches(labels, s["labels"]) and s["labels"] == b["labels"] for s in out)
        ]
        data = {
            "metric": metric,
            "resolution": resolution,
            "step_seconds": step,
            "since": since,
            "until": until,
            "series": out,
            "thresholds": self.thresholds.get(metric, []),
            "bands": bands,
        }
        return self._ok(request, data)

    async def _anomalies(self, request: web.Request) -> web.Response:
        q = request.query
        try:
            labels = parse_labels(q.getall("label", []), option="label")
            since = parse_time(q.get("since", "24h"), now=self.now, option="since")
            limit = self._int(q.get("limit", "1000"), "limit", 1, 100_000)
        except QueryError as exc:
            return self._error(request, 400, "bad_data", str(exc))
        metric = q.get("metric")
        found = [
            a
            for a in self.anomalies
            if a["ts"] >= since
            and (not metric or a["metric"] == metric)
            and _matches(labels, a["labels"])
        ]
        found.sort(key=lambda a: -a["ts"])
        return self._ok(request, found[:limit])

    async def _alerts(self, request: web.Request) -> web.Response:
        state = request.query.get("state")
        if state not in (None, "firing", "resolved"):
            return self._error(request, 400, "bad_data", "state: expected firing or resolved")
        found = [a for a in self.alerts if state is None or a["state"] == state]
        found.sort(key=lambda a: (a["state"] != "firing", -a["starts_at"]))
        return self._ok(request, found)

    async def _silences(self, request: web.Request) -> web.Response:
        return self._ok(request, self.silences)

    def _ok(self, request: web.Request, data: Any) -> web.Response:
        self.requests.append(request.path_qs)
        return web.json_response({"status": "success", "data": data})

    def _error(self, request: web.Request, status: int, kind: str, text: str) -> web.Response:
        self.requests.append(request.path_qs)
        body = {"status": "error", "errorType": kind, "error": text}
        return web.json_response(body, status=status)

    @staticmethod
    def _int(text: str, name: str, lo: int, hi: int) -> int:
        try:
            value = int(text)
        except ValueError:
            raise QueryError(f"{name}: not an integer: {text!r}") from None
        if not lo <= value <= hi:
            raise QueryError(f"{name}: {value} outside [{lo}, {hi}]")
        return value


# -- fixture data -------------------------------------------------------------------------------


def _history(
    now: float, span: float, step: float, shape: Callable[[float], float | None]
) -> tuple[list[float], list[float | None]]:
    """`shape` every `step` s over the last week, every 15 `step`s before that up to `span`
    (the 1 m / 1 h rollup tiers' shapes at a fraction of the points to generate)."""
    recent = min(span, 7 * DAY)
    old = int((span - recent) // (15 * step))
    t = [now - recent - (old - i) * 15 * step for i in range(old)]
    t += [now - recent + (i + 1) * step for i in range(int(recent // step))]
    return t, [shape(ts) for ts in t]


def demo_api(now: float, *, seed: int = 7) -> FakeApi:
    """A month of a small host's metrics (1-minute steps): a CPU spike two hours ago (a Z-score
    anomaly), memory above its warning threshold for 40 minutes (a firing alert), a disk write
    burst five hours ago (a novelty anomaly, its alert since resolved)."""
    rng = random.Random(seed)
    api = FakeApi(now)
    step = 60.0
    span = 30 * DAY
    spike = now - 2 * HOUR

    def daily(ts: float) -> float:
        return math.sin((ts % DAY) / DAY * 2 * math.pi)

    def cpu(ts: float) -> float:
        if abs(ts - spike) < step / 2:
            return 0.97
        return max(0.0, 0.22 + 0.06 * daily(ts) + rng.gauss(0, 0.02))

    cpu_s = api.add_series(
        FakeSeries("system.cpu.utilization", {}, *_history(now, span, step, cpu))
    )
    cpu_s.scores = {"zscore": 0.12, "novelty": 0.05}

    def memory(ts: float) -> float:
        base = 0.61 + 0.02 * daily(ts) + rng.gauss(0, 0.004)
        ramp = now - 3 * HOUR
        if ts > ramp:
            base += 0.25 * min(1.0, (ts - ramp) / (2.2 * HOUR))
        return base

    mem = api.add_series(
        FakeSeries("system.memory.utilization", {}, *_history(now, span, step, memory))
    )
    mem.scores = {"zscore": 0.81, "novelty": 0.74}
    api.thresholds["system.memory.utilization"] = [
        {"rule": "memory-high", "severity": "warning", "level": 0.8, "op": ">"},
        {"rule": "memory-critical", "severity": "critical", "level": 0.95, "op": ">"},
    ]
    fired = now - 40 * 60
    api.add_alert(
        mem,
        "memory-high",
        "value 0.86 is above the warning threshold 0.8 (memory-high) for 40 min",
        starts_at=fired,
    )
    crossed = api.add_anomaly(mem, fired, "", detector="threshold", rule="memory-high", score=0.62)
    crossed["summary"] = (
        f"value {crossed['value']:.2f} is above the warning threshold 0.8 (memory-high)"
    )
    api.bands["system.memory.utilization"] = [
        {
            "labels": {},
            "detector": "zscore",
            "lower": 0.57,
            "upper": 0.65,
            "text": "mean 0.61 ± 4σ (σ 0.01) over 1 d",
        }
    ]

    burst = now - 5 * HOUR

    def disk(direction: str) -> Callable[[float], float]:
        def shape(ts: float) -> float:
            base = (18e6 if direction == "read" else 9e6) * (1.2 + daily(ts))
            value = max(0.0, base + rng.gauss(0, 3e6))
            if direction == "write" and 0 <= ts - burst < 10 * 60:
                value = 412e6
            return value

        return shape

    disks = {}
    for direction in ("read", "write"):
        labels = {"device": "sda", "direction": direction}
        disks[direction] = api.add_series(
            FakeSeries("system.disk.io", labels, *_history(now, span, step, disk(direction)))
        )
    disks["write"].scores = {"zscore": 0.2, "novelty": 0.31}
    # A rule that watches one series of the metric. `labels` (the rule's matchers) goes beyond
    # the contract's per-metric thresholds: the page draws such a level only where it applies.
    api.thresholds["system.disk.io"] = [
        {
            "rule": "disk-write-high",
            "severity": "warning",
            "level": 300e6,
            "op": ">",
            "labels": {"direction": "write"},
        }
    ]
    api.bands["system.disk.io"] = [
        {
            "labels": {"device": "sda", "direction": "write"},
            "detector": "novelty",
            "lower": 0.0,
            "upper": 180e6,
            "text": "30 d range 0 – 180M",
        }
    ]
    api.add_anomaly(
        disks["write"],
        burst,
        "highest in 17 days: 412M is above the 30 d maximum 180M",
        detector="novelty",
        rule="novelty",
        status="resolved",
        score=0.93,
    )
    api.add_alert(
        disks["write"],
        "novelty",
        "highest in 17 days: 412M is above the 30 d maximum 180M",
        starts_at=burst,
        ends_at=burst + 10 * 60,
    )

    def network(ts: float) -> float:
        return max(0.0, 2.4e6 + 1.1e6 * daily(ts) + rng.gauss(0, 2e5))

    net = api.add_series(
        FakeSeries(
            "system.network.io",
            {"device": "eth0", "direction": "receive"},
            *_history(now, span, step, network),
        )
    )
    net.scores = {"zscore": 0.63, "novelty": 0.2}

    def load(ts: float) -> float:
        return max(0.0, 0.8 + 0.5 * daily(ts) + rng.gauss(0, 0.1))

    api.add_series(
        FakeSeries("system.cpu.load_average.1m", {}, *_history(now, span, step, load))
    ).scores = {"zscore": 0.08}
    return api


# -- the server ---------------------------------------------------------------------------------


@web.middleware
async def _security_headers(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """The real server's headers on every answer (CSP, nosniff, no-store unless a route caches)."""
    response = await handler(request)
    secure(response.headers)
    return response


def page_app(api: FakeApi) -> web.Application:
    """The static page routes plus `api`'s endpoints, GET and HEAD only."""
    app = web.Application(middlewares=[_security_headers])
    for path, handler in {**static_routes(), **api.routes()}.items():
        app.router.add_get(path, handler)
    return app


class PageServer:
    """`page_app(api)` served on 127.0.0.1:0 from a thread with its own event loop."""

    def __init__(self, api: FakeApi) -> None:
        self.api = api
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="page-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to the test thread by start()
            self._error = exc
            self._ready.set()
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        runner = web.AppRunner(page_app(self.api), access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.port = int(runner.addresses[0][1])
            self._ready.set()
            await self._stop.wait()
        finally:
            await runner.cleanup()

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(timeout=10)
        if self._error is not None:
            raise RuntimeError(f"page server failed to start: {self._error!r}")
        if not self.port:
            raise RuntimeError("page server did not start within 10 s")

    def stop(self) -> None:
        stop = self._stop
        if stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(stop.set)
        self._thread.join(timeout=10)


@contextmanager
def serve_page(api: FakeApi) -> Iterator[PageServer]:
    """A started PageServer for `api`, stopped on exit."""
    server = PageServer(api)
    server.start()
    try:
        yield server
    finally:
        server.stop()
