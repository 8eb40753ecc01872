"""/api/v1 over a real loopback aiohttp server, a real database and real detectors."""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from infrawatch.alerting.outbox import Outbox
from infrawatch.alerting.records import AlertRecord
from infrawatch.config import StorageConfig
from infrawatch.detect.base import Detector
from infrawatch.detect.config import NoveltyConfig, ThresholdRule, ZScoreConfig
from infrawatch.detect.novelty import NoveltyDetector
from infrawatch.detect.threshold import ThresholdDetector
from infrawatch.detect.zscore import ZScoreDetector
from infrawatch.model import Anomaly, Sample, SeriesKey
from infrawatch.runtime.latest import Latest
from infrawatch.runtime.stats import AgentStats, ProducerStats, SinkStats
from infrawatch.storage.retention import maintain
from infrawatch.storage.store import Store
from infrawatch.web.api import api_routes
from infrawatch.web.api_source import AlertEntry
from tests.support_history import EVIL, key

NOW = 1_800_000_000.0  # an hour boundary
HOUR = 3600.0
CPU = "system.cpu.utilization"
MEM = "system.memory.utilization"
CPU0 = key(CPU, cpu="0")
CPU1 = key(CPU, cpu="1")
MEMK = key(MEM)
FLAT = key("app.flat", note=EVIL)
SPIKY = key("app.spiky")
NEW = key("app.new", pid="42")
SPIKE_TS = NOW - 5 * HOUR + 30  # one 10 s sample of CPU0 at 0.99 in a day around 0.3
RULE = ThresholdRule.model_validate(
    {"name": "cpu_high", "metric": "system.cpu.*", "warning": 0.9, "critical": 0.97}
)
OTHER_RULE = ThresholdRule.model_validate({"name": "mem_high", "metric": MEM, "warning": 0.8})


def _cpu0(i: int) -> float:
    return 0.3 + 0.05 * math.sin(i / 50)


def _history() -> dict[SeriesKey, list[tuple[float, float]]]:
    points: dict[SeriesKey, list[tuple[float, float]]] = {}
    start = NOW - 26 * HOUR
    points[CPU0] = [(start + 10 * i, _cpu0(i)) for i in range(26 * 360)]
    points[CPU0] = [(t, 0.99 if t == SPIKE_TS else v) for t, v in points[CPU0]]
    assert (SPIKE_TS, 0.99) in points[CPU0]
    points[CPU1] = [(start + 10 * i + 5, 0.1 + (i % 7) / 100) for i in range(26 * 360)]
    points[MEMK] = [(start + 60 * i, 0.5) for i in range(26 * 60)]
    points[FLAT] = [(NOW - 2 * HOUR + 60 * i, 1.0) for i in range(120)]
    spiky = [(NOW - 2 * HOUR + 10 * i, 1.0) for i in range(720)]
    points[SPIKY] = [
        (t, 9.0 if t == NOW - 1000 else -5.0 if t == NOW - 2000 else v) for t, v in spiky
    ]
    for n in range(25):
        points[key("svc.requests", svc=f"{n:02d}")] = [
            (NOW - 2 * HOUR + 300 * i, float(n)) for i in range(24)
        ]
    return points


ANOMALIES = [
    Anomaly(CPU, CPU0[1], SPIKE_TS, 0.99, "zscore", "zscore", "warning", "firing", 0.7,
            {"z": 12.5, "mean": 0.3, "std": 0.05}, "value 0.99 is 12.5σ above the 1d mean 0.3"),
    Anomaly(CPU, CPU0[1], SPIKE_TS + 60, 0.3, "zscore", "zscore", "warning", "resolved", 0.0,
            {"z": 0.1}, "back to normal"),
    Anomaly(MEM, (), NOW - 2 * HOUR, 0.5, "novelty", "novelty", "warning", "firing", 0.6,
            {"exceedance": 0.1}, "highest in 17 days"),
    Anomaly(MEM, (), NOW - 3 * 86400, 0.5, "novelty", "novelty", "warning", "firing", 0.6,
            {"exceedance": 0.1}, "three days ago"),
]  # fmt: skip


def _alert(fp: str, name: str, state: str, starts: float, ends: float | None) -> AlertRecord:
    labels = {"alertname": name, "metric": CPU, "cpu": "0", "severity": "warning"}
    return AlertRecord(
        fingerprint=fp,
        labels=labels,
        annotations={"summary": f"{name} summary", "evidence_z": "12.5"},
        severity="warning",
        state=state,  # type: ignore[arg-type]
        starts_at=starts,
        ends_at=ends,
        updated_at=ends or starts,
        flapping=fp == "fp-flap",
    )


STORED_ALERTS = [
    _alert("fp-firing", "cpu_high", "firing", NOW - 600, None),
    _alert("fp-resolved", "disk_full", "resolved", NOW - 3 * HOUR, NOW - 2 * HOUR),
    _alert("fp-old", "old_one", "resolved", NOW - 4 * 86400, NOW - 3 * 86400),
    _alert("fp-flap", "flappy", "firing", NOW - 1200, None),
]


async def _build(path: Path) -> dict[SeriesKey, list[tuple[float, float]]]:
    points = _history()
    samples = sorted(
        (Sample(k[0], v, t, k[1]) for k, pts in points.items() for t, v in pts),
        key=lambda s: s.ts,
    )
    cut = NOW - 150.0  # the recent tail stays raw: reads must merge rollups with raw rows
    older = [s for s in samples if s.ts < cut]
    async with Store(path) as store:
        for i in range(0, len(older), 5000):
            await store.write(older[i : i + 5000])
        await maintain(store, StorageConfig(path=path), now=NOW)
        await store.write([s for s in samples if s.ts >= cut], ANOMALIES)
        await Outbox(store).save(STORED_ALERTS, [])
    return points


@dataclass
class Depth:
    batches: int


@dataclass
class Source:
    """An ApiSource from plain parts: what the agent's view would hand over."""

    database: Path
    host: str = "test-host"
    version: str = "9.9.9"
    started: float = NOW - HOUR
    stats: AgentStats = field(default_factory=AgentStats)
    latest: list[tuple[SeriesKey, Latest]] = field(default_factory=list)
    running: list[Detector] = field(default_factory=list)
    rules: list[ThresholdRule] = field(default_factory=list)
    records: list[AlertEntry] = field(default_factory=list)

    def producer_intervals(self) -> Mapping[str, float]:
        return {"host": 10.0, "cloud": 60.0}

    def producer_health(self) -> Mapping[str, bool]:
        return {"host": True, "cloud": False}

    def queue_depth(self) -> Depth:
        return Depth(3)

    def queue_capacity(self) -> int:
        return 1000

    def latest_values(self) -> Iterable[tuple[SeriesKey, Latest]]:
        return list(self.latest)

    def detectors(self) -> Sequence[Detector]:
        return self.running

    def threshold_rules(self) -> Sequence[ThresholdRule]:
        return self.rules

    def alert_records(self) -> Iterable[AlertEntry]:
        return self.records

    def silenced(self, labels: Mapping[str, str]) -> bool:
        return labels.get("alertname") == "disk_full"


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[SeriesKey, Any]]:
    path = tmp_path_factory.mktemp("api") / "api.db"
    return path, asyncio.run(_build(path))


def _detectors(points: dict[SeriesKey, list[tuple[float, float]]]) -> list[Detector]:
    zscore = ZScoreDetector(ZScoreConfig())
    novelty = NoveltyDetector(NoveltyConfig())
    threshold = ThresholdDetector([RULE, OTHER_RULE])
    for series in (CPU0, CPU1):
        # 25 h of 10 s samples: past novelty's first day, when it starts to judge (and band).
        for t, v in points[series][-9000:]:
            sample = Sample(series[0], v, t, series[1])
            for d in (zscore, novelty, threshold):
                d.observe(sample)
    # The live value of CPU0 (not yet stored) crosses the rule's warning level.
    live = Sample(CPU, 0.95, NOW - 1, CPU0[1])
    for d in (zscore, novelty, threshold):
        d.observe(live)
    return [threshold, zscore, novelty]


def _source(path: Path, points: dict[SeriesKey, list[tuple[float, float]]]) -> Source:
    stats = AgentStats()
    stats.producers["host"] = ProducerStats(collected=100, errors=2, dropped=5)
    stats.producers["host"].last_tick_done = 0.0
    stats.store_open = True
    stats.store_errors = 1
    stats.alert_sinks["team"] = SinkStats(type="discord", sent=4, failed=1, rate_limited=2)
    live_resolved = _alert("fp-firing", "cpu_high", "resolved", NOW - 600, NOW - 30)
    return Source(
        database=path,
        stats=stats,
        latest=[
            (CPU0, Latest(0.95, NOW - 1, "host", 0.0)),
            (CPU1, Latest(0.12, NOW - 5, "host", 0.0)),
            (NEW, Latest(7.0, NOW - 2, "host", 0.0)),  # its first batch is not stored yet
        ],
        running=_detectors(points),
        rules=[RULE, OTHER_RULE],
        records=[live_resolved, STORED_ALERTS[3]],
    )


def _strict(text: str) -> Any:
    def reject(name: str) -> Any:
        raise AssertionError(f"not JSON: {name}")

    return json.loads(text, parse_constant=reject)


class Client:
    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    async def get(self, path: str, params: Any = None, status: int = 200) -> Any:
        async with self.session.get(f"{self.base}{path}", params=params) as resp:
            text = await resp.text()
            assert resp.status == status, text
            assert resp.content_type == "application/json"
            return _strict(text)


@pytest.fixture
async def serve(history: tuple[Path, dict[SeriesKey, Any]]) -> AsyncIterator[Any]:
    """Start a loopback server around the routes of a source: `await serve(source)`."""
    runners: list[web.ServerRunner] = []
    sessions: list[aiohttp.ClientSession] = []

    async def start(source: Source | None = None) -> Client:
        source = source or _source(*history)
        routes = api_routes(source, clock=lambda: NOW)

        async def handle(request: web.BaseRequest) -> web.StreamResponse:
            route = routes.get(request.path)
            if route is None:
                return web.Response(status=404)
            return await route(request)

        runner = web.ServerRunner(web.Server(handle), handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        session = aiohttp.ClientSession()
        sessions.append(session)
        return Client(session, f"http://127.0.0.1:{port}/api/v1/")

    yield start
    for session in sessions:
        await session.close()
    for runner in runners:
        await runner.cleanup()


# -- status -----------------------------------------------------------------------------------


async def test_status_reports_health_counters_and_no_secrets(serve, history) -> None:
    client = await serve()
    async with client.session.get(f"{client.base}status") as resp:
        text = await resp.text()
    body = _strict(text)
    assert body["status"] == "success"
    data = body["data"]
    assert data["host"] == "test-host"
    assert data["version"] == "9.9.9"
    assert data["uptime_seconds"] == HOUR
    assert data["now"] == NOW
    assert data["interval_seconds"] == 10.0
    host, cloud = sorted(data["producers"], key=lambda p: p["name"], reverse=True)
    assert host["name"] == "host"
    assert (host["ok"], host["collected"], host["errors"], host["interval_seconds"]) == (
        True, 100, 2, 10.0,
    )  # fmt: skip
    assert host["seconds_since_tick"] > 0
    assert (cloud["name"], cloud["ok"], cloud["seconds_since_tick"]) == ("cloud", False, None)
    assert data["queue"] == {"depth": 3, "capacity": 1000, "dropped": 5}
    assert data["store"] == {"open": True, "path_name": "api.db", "errors": 1}
    assert data["sinks"] == [
        {"name": "team", "type": "discord", "sent": 4, "failed": 1, "pending": 0, "gone": False,
         "rate_limited": 2},
    ]  # fmt: skip
    assert data["alerts"] == {"firing": 1}
    assert str(history[0].parent) not in text


async def test_head_answers_without_a_body(serve) -> None:
    client = await serve()
    async with client.session.head(f"{client.base}status") as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        assert await resp.read() == b""


# -- series -----------------------------------------------------------------------------------


async def test_series_ranks_anomalous_first_with_live_last_values(serve, history) -> None:
    client = await serve()
    data = (await client.get("series", {"limit": "500"}))["data"]
    assert len(data) == 31
    first = data[0]
    assert (first["metric"], first["labels"]) == (CPU, {"cpu": "0"})
    assert first["anomalous"] is True
    assert first["last"] == {"ts": NOW - 1, "value": 0.95}  # live, not the stored 0.3…
    assert first["detectors"]["threshold"] == {"anomalous": True, "score": 1.0}
    assert set(first["detectors"]) == {"threshold", "zscore", "novelty"}
    assert first["score"] == 1.0
    # Then by score: CPU1 has detector states; the new series none (score null).
    assert (data[1]["metric"], data[1]["labels"]) == (CPU, {"cpu": "1"})
    assert data[1]["anomalous"] is False
    assert data[1]["score"] is not None
    assert data[1]["last"] == {"ts": NOW - 5, "value": 0.12}
    new = data[2]
    assert (new["metric"], new["labels"], new["score"]) == ("app.new", {"pid": "42"}, None)
    assert new["last"] == {"ts": NOW - 2, "value": 7.0}
    assert new["spark"] == [None] * 30  # nothing stored yet
    # Then the stored series that no longer report, by name and labels, last value from the
    # database.
    gone = data[3:]
    assert all(r["score"] is None and r["detectors"] == {} for r in gone)
    assert [(r["metric"], r["labels"]) for r in gone][:3] == [
        ("app.flat", {"note": EVIL}),
        ("app.spiky", {}),
        ("svc.requests", {"svc": "00"}),
    ]
    assert gone[-1]["metric"] == MEM
    flat_last = history[1][FLAT][-1]
    assert gone[0]["last"] == {"ts": flat_last[0], "value": flat_last[1]}
    assert len(gone[0]["spark"]) == 30


async def test_series_default_limit_is_100_and_ranking_survives_a_limit(serve) -> None:
    client = await serve()
    data = (await client.get("series", {"limit": "2"}))["data"]
    assert [r["labels"] for r in data] == [{"cpu": "0"}, {"cpu": "1"}]
    data = (await client.get("series", {"match": "app.*", "limit": "2"}))["data"]
    assert [r["metric"] for r in data] == ["app.new", "app.flat"]


async def test_series_glob_labels_and_limit(serve) -> None:
    client = await serve()
    data = (await client.get("series", {"match": "svc.*", "label": "svc=07"}))["data"]
    assert [(r["metric"], r["labels"]) for r in data] == [("svc.requests", {"svc": "07"})]
    data = (await client.get("series", {"match": "system.[cm]*"}))["data"]
    assert {r["metric"] for r in data} == {CPU, MEM}
    data = (await client.get("series", [("match", "svc.*"), ("limit", "4")]))["data"]
    assert [r["labels"]["svc"] for r in data] == ["00", "01", "02", "03"]
    data = (await client.get("series", [("label", "cpu=1"), ("label", "nope=x")]))["data"]
    assert data == []


async def test_sparkline_keeps_a_one_sample_spike_and_dip(serve) -> None:
    client = await serve()
    [spiky] = (await client.get("series", {"match": "app.spiky"}))["data"]
    spark = spiky["spark"]
    assert len(spark) == 30
    assert 9.0 in spark  # a 2-minute mean would show ~1.7
    assert -5.0 in spark
    assert all(v in (1.0, 9.0, -5.0) for v in spark)
    [mem] = (await client.get("series", {"match": MEM}))["data"]
    assert mem["spark"] == [0.5] * 30


# -- samples ----------------------------------------------------------------------------------


def _brute(points: list[tuple[float, float]], step: float) -> dict[float, list[float]]:
    groups: dict[float, list[float]] = {}
    for t, v in points:
        groups.setdefault(math.floor(t / step) * step, []).append(v)
    return groups


async def test_samples_24h_reads_rollups_and_keeps_the_spike(serve, history) -> None:
    client = await serve()
    data = (await client.get("samples", {"metric": CPU, "label": "cpu=0", "since": "24h"}))["data"]
    assert data["resolution"] == "1m"
    assert data["step_seconds"] == 120
    assert (data["since"], data["until"]) == (NOW - 24 * HOUR, NOW)
    [series] = data["series"]
    assert series["labels"] == {"cpu": "0"}
    t, v, lo, hi = series["t"], series["v"], series["min"], series["max"]
    assert len(t) == len(v) == len(lo) == len(hi) <= 1000
    assert t == sorted(t)
    want = _brute([p for p in history[1][CPU0] if NOW - 24 * HOUR <= p[0] < NOW], 120)
    assert t == sorted(want)
    assert hi == [max(want[b]) for b in t]
    assert lo == [min(want[b]) for b in t]
    assert v == pytest.approx([math.fsum(want[b]) / len(want[b]) for b in t], rel=1e-9)
    spike = t.index(math.floor(SPIKE_TS / 120) * 120)
    assert hi[spike] == 0.99
    assert v[spike] < 0.5


async def test_samples_short_range_is_raw_bucketed_or_as_is(serve, history) -> None:
    client = await serve()
    data = (await client.get("samples", {"metric": CPU, "since": "6h", "points": "500"}))["data"]
    assert data["resolution"] == "raw"
    step = data["step_seconds"]
    assert step == 44  # 6 h / 500 = 43.2 s, whole seconds
    assert [s["labels"] for s in data["series"]] == [{"cpu": "0"}, {"cpu": "1"}]
    for s in data["series"]:
        assert len(s["t"]) <= 500
    raw = history[1][CPU0]
    want = _brute(
        [p for p in raw if math.floor((NOW - 6 * HOUR) / step) * step <= p[0] < NOW], step
    )
    assert data["series"][0]["max"] == [max(want[b]) for b in sorted(want)]
    # 2 h of minutely points fit in 1,000: the stored points themselves.
    data = (await client.get("samples", {"metric": "app.flat", "since": "3h"}))["data"]
    assert (data["resolution"], data["step_seconds"]) == ("raw", None)
    [s] = data["series"]
    assert list(zip(s["t"], s["v"], strict=True)) == history[1][FLAT]
    assert s["min"] == s["max"] == s["v"]


async def test_samples_explicit_step_and_hour_rollups(serve, history) -> None:
    client = await serve()
    params = {"metric": MEM, "since": "2027-01-14T07:00:00Z", "until": "1800000000", "step": "1h"}
    data = (await client.get("samples", params))["data"]
    assert (data["resolution"], data["step_seconds"]) == ("1h", 3600)
    [s] = data["series"]
    assert len(s["t"]) == 25
    assert s["v"] == pytest.approx([0.5] * 25)


async def test_samples_carry_threshold_levels_and_expected_bands(serve) -> None:
    client = await serve()
    data = (await client.get("samples", {"metric": CPU, "label": "cpu=0", "since": "1h"}))["data"]
    assert data["thresholds"] == [
        {"rule": "cpu_high", "severity": "warning", "level": 0.9, "op": ">"},
        {"rule": "cpu_high", "severity": "critical", "level": 0.97, "op": ">"},
    ]
    bands = {b["detector"]: b for b in data["bands"]}
    assert set(bands) == {"zscore", "novelty"}
    for band in bands.values():
        assert band["labels"] == {"cpu": "0"}
        assert band["lower"] < 0.3 < band["upper"]
        assert band["text"]
    assert "σ" in bands["zscore"]["text"]
    mem = (await client.get("samples", {"metric": MEM, "since": "1h"}))["data"]
    assert [t["rule"] for t in mem["thresholds"]] == ["mem_high"]
    assert mem["bands"] == []  # no detector has seen it


async def test_non_finite_values_are_null_and_the_json_is_valid(serve, tmp_path: Path) -> None:
    path = tmp_path / "inf.db"
    async with Store(path) as store:
        await store.write([Sample("m", 1.0, NOW - 100)])
    with sqlite3.connect(path) as conn:  # written around the store, which refuses these
        conn.executemany(
            "INSERT INTO samples VALUES (1, ?, ?)", [(NOW - 99, math.inf), (NOW - 98, -math.inf)]
        )
        conn.execute(
            "INSERT INTO anomalies (series_id, ts, detector, rule, severity, status, value,"
            " score, evidence, summary) VALUES (1, ?, 't', 'r', 'warning', 'firing', ?, 1,"
            " '{\"x\": 1}', 's')",
            (NOW - 10, math.inf),
        )
    conn.close()
    client = await serve(Source(database=path))
    data = (await client.get("samples", {"metric": "m", "since": "1h"}))["data"]
    assert data["series"][0]["v"] == [1.0, None, None]
    data = (await client.get("samples", {"metric": "m", "since": "1h", "step": "1h"}))["data"]
    assert data["series"][0]["v"] == [None]  # the mean of +inf and -inf
    [row] = (await client.get("anomalies", {"since": "1h"}))["data"]
    assert row["value"] is None
    [series] = (await client.get("series"))["data"]
    assert series["last"] == {"ts": NOW - 98, "value": None}


# -- anomalies and alerts ---------------------------------------------------------------------


async def test_anomalies_filter_and_carry_evidence(serve) -> None:
    client = await serve()
    data = (await client.get("anomalies"))["data"]
    assert [(a["metric"], a["status"]) for a in data] == [
        (CPU, "firing"),
        (CPU, "resolved"),
        (MEM, "firing"),
    ]
    first = data[0]
    assert first["labels"] == {"cpu": "0"}
    assert first["evidence"] == {"z": 12.5, "mean": 0.3, "std": 0.05}
    assert first["summary"].startswith("value 0.99 is 12.5σ")
    assert (first["detector"], first["rule"], first["ts"]) == ("zscore", "zscore", SPIKE_TS)
    data = (await client.get("anomalies", {"metric": MEM, "since": "7d"}))["data"]
    assert [a["summary"] for a in data] == ["three days ago", "highest in 17 days"]
    data = (await client.get("anomalies", {"metric": CPU, "label": "cpu=1"}))["data"]
    assert data == []
    data = (await client.get("anomalies", {"since": "7d", "limit": "2"}))["data"]
    assert [a["ts"] for a in data] == [SPIKE_TS + 60, NOW - 2 * HOUR]  # the newest two


async def test_alerts_merge_live_state_with_history(serve) -> None:
    client = await serve()
    data = (await client.get("alerts"))["data"]
    # fp-firing resolved live 30 s ago (the table still says firing): the engine wins.
    assert [(a["fingerprint"], a["state"]) for a in data] == [
        ("fp-flap", "firing"),
        ("fp-firing", "resolved"),
        ("fp-resolved", "resolved"),
    ]
    flap, live, resolved = data
    assert flap["flapping"] is True
    assert flap["summary"] == "flappy summary"
    assert flap["metric"] == CPU
    assert flap["annotations"]["evidence_z"] == "12.5"
    assert live["ends_at"] == NOW - 30
    assert (resolved["silenced"], live["silenced"]) == (True, False)
    assert resolved["alertname"] == "disk_full"
    firing = (await client.get("alerts", {"state": "firing"}))["data"]
    assert [a["fingerprint"] for a in firing] == ["fp-flap"]
    week = (await client.get("alerts", {"state": "resolved", "since": "7d"}))["data"]
    assert [a["fingerprint"] for a in week] == ["fp-firing", "fp-resolved", "fp-old"]


# -- bad requests -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params", "message"),
    [
        ("series", {"match": "system.[cpu"}, "match: unclosed '['"),
        ("series", {"match": ""}, "match: empty glob"),
        ("series", {"match": "a\nb"}, "match: control character"),
        ("series", {"limit": "0"}, "limit: 0 is outside [1, 10000]"),
        ("series", {"label": "novalue"}, "label: expected KEY=VALUE"),
        ("series", {"lable": "cpu=0"}, "unknown parameter 'lable'"),
        ("samples", {"since": "1h"}, "metric: required"),
        ("samples", {"metric": CPU, "since": "yesterday"}, "since: malformed time 'yesterday'"),
        ("samples", {"metric": CPU, "since": "1h", "until": "2h"}, "until (2h) is not after since"),
        ("samples", {"metric": CPU, "points": "5"}, "points: 5 is outside [10, 20000]"),
        ("samples", {"metric": CPU, "points": "1e9"}, "points: expected an integer"),
        ("samples", {"metric": CPU, "points": "100000"}, "points: 100000 is outside"),
        ("samples", {"metric": CPU, "step": "0.5"}, "step: '0.5' must be a whole number"),
        ("samples", {"metric": CPU, "step": "1s", "since": "30d"}, "step: 1s makes 2592000 points"),
        ("samples", [("metric", CPU), ("since", "1h"), ("since", "2h")], "since: given 2 times"),
        ("samples", {"metric": CPU, "since": "x" * 2000}, "since: longer than 1024 characters"),
        ("anomalies", {"until": "soon"}, "until: malformed time 'soon'"),
        ("alerts", {"state": "pending"}, "state: expected firing or resolved, got 'pending'"),
    ],
)
async def test_bad_parameters_are_400_naming_the_problem(
    serve, path: str, params: Any, message: str
) -> None:
    client = await serve()
    body = await client.get(path, params, status=400)
    assert body["status"] == "error"
    assert body["errorType"] == "bad_data"
    assert message in body["error"]
    assert "\n" not in body["error"]


@pytest.mark.parametrize(
    ("path", "params", "message"),
    [
        ("samples", {"metric": "no.such.metric"}, "unknown metric 'no.such.metric'"),
        ("samples", {"metric": CPU, "label": "cpu=9"}, "no series of 'system.cpu.utilization'"),
        ("anomalies", {"metric": "no.such.metric"}, "unknown metric 'no.such.metric'"),
    ],
)
async def test_unknown_metric_is_404(serve, path: str, params: Any, message: str) -> None:
    client = await serve()
    body = await client.get(path, params, status=404)
    assert (body["status"], body["errorType"]) == ("error", "not_found")
    assert message in body["error"]


async def test_missing_database_is_503_without_its_path(serve, tmp_path: Path) -> None:
    missing = tmp_path / "secret-dir" / "gone.db"
    client = await serve(Source(database=missing))
    for path in ("series", "samples?metric=m", "anomalies", "alerts"):
        async with client.session.get(f"{client.base}{path}") as resp:
            text = await resp.text()
            assert resp.status == 503, text
        body = _strict(text)
        assert body["errorType"] == "unavailable"
        assert "gone.db" in body["error"]
        assert "secret-dir" not in text
    status = await client.get("status")
    assert status["data"]["store"]["path_name"] == "gone.db"


async def test_a_writer_holding_the_database_does_not_block_reads(serve, history) -> None:
    """WAL: the API's read-only connection reads while another connection has a write open."""
    writer = sqlite3.connect(history[0], isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("DELETE FROM samples WHERE series_id = (SELECT min(id) FROM series)")
        client = await serve()
        data = (await client.get("samples", {"metric": CPU, "label": "cpu=0"}))["data"]
        assert len(data["series"][0]["t"]) == 720  # the committed rows, not the pending delete
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_glob_in_memory_matches_sqlite_glob() -> None:
    """The series list filters live names in memory with SQLite's GLOB semantics (the stored
    ones with SQLite itself): the two must agree, ranges and odd brackets included."""
    import random

    from infrawatch.storage.read import QueryError, compile_glob

    rng = random.Random(20261128)
    names = ["".join(rng.choice("ab-]^[c.*?") for _ in range(rng.randint(0, 5))) for _ in range(80)]
    names += [CPU, "system.cpu.utilization.x", "System.cpu"]
    patterns = [
        "".join(rng.choice("ab-]^[*?c") for _ in range(rng.randint(1, 6))) for _ in range(600)
    ]
    patterns += [
        "system.[c]pu.*",
        "system.[^m]*",
        "[a-c]*",
        "[]]*",
        "[^]]*",
        "[z-a]",
        "*.utilization",
    ]
    conn = sqlite3.connect(":memory:")
    compared = 0
    try:
        for pattern in patterns:
            try:
                rx = compile_glob(pattern)
            except QueryError:
                # SQLite matches nothing with an unclosed "["; the API says why instead.
                assert not any(
                    conn.execute("SELECT ? GLOB ?", (n, pattern)).fetchone()[0] for n in names
                )
                continue
            for name in names:
                want = bool(conn.execute("SELECT ? GLOB ?", (name, pattern)).fetchone()[0])
                assert (rx.fullmatch(name) is not None) == want, (pattern, name)
                compared += 1
    finally:
        conn.close()
    assert compared > 20_000
