"""Exposition → samples (collectors/openmetrics.py), checked against the truth: bodies come from
prometheus-client's own registries and exposition (text format and OpenMetrics), with values
set by the test, and the expected rates and quantiles are computed here independently."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Sequence

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram, Info, Summary
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from infrawatch.collectors.openmetrics import (
    Conversion,
    Converter,
    ParseCache,
    ParseError,
    bucket_quantile,
    parse,
    quantile_name,
)
from infrawatch.collectors.rates import RateTracker
from infrawatch.model import Labels, Sample
from tests.support_scrape import NodeExporter

TEXT = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
Render = Callable[[CollectorRegistry], bytes]
FORMATS: list[tuple[str, Render]] = [(TEXT, generate_latest), (OPENMETRICS, generate_openmetrics)]
TARGET = {"job": "app", "instance": "127.0.0.1:8000"}
BOUNDS = (0.1, 0.25, 0.5, 1.0, 2.5)


def labels(**extra: str) -> Labels:
    return tuple(sorted({**TARGET, **extra}.items()))


def by_name(conversion: Conversion) -> dict[str, list[Sample]]:
    out: dict[str, list[Sample]] = {}
    for s in conversion.samples:
        out.setdefault(s.name, []).append(s)
    return out


def one(conversion: Conversion, name: str) -> Sample:
    found = by_name(conversion).get(name, [])
    assert len(found) == 1, (name, found)
    return found[0]


def expected_quantile(q: float, bounds: Sequence[float], observations: Sequence[float]) -> float:
    """histogram_quantile by hand: find the bucket holding rank q·n, interpolate inside it."""
    rank = q * len(observations)
    lower, below = 0.0, 0
    for bound in bounds:
        inside = sum(1 for o in observations if lower < o <= bound)
        if below + inside >= rank:
            return lower + (bound - lower) * (rank - below) / inside
        below += inside
        lower = bound
    return bounds[-1]  # the rank is in the +Inf bucket: Prometheus answers the last finite bound


def scrape(render: Render, registry: CollectorRegistry, content_type: str) -> list[Metric]:
    return parse(render(registry), content_type)


# -- gauges and counters ---------------------------------------------------------------------


@pytest.mark.parametrize(("content_type", "render"), FORMATS)
def test_gauge_as_exposed_and_counter_rate_with_reset(content_type: str, render: Render) -> None:
    registry = CollectorRegistry()
    requests = Counter("http_requests", "requests", ["code"], registry=registry)
    queue = Gauge("queue_depth", "items", registry=registry)
    requests.labels("200").inc(10)
    queue.set(7.5)
    conv = Converter(labels=TARGET)

    first = conv.convert(scrape(render, registry, content_type), 1000.0)
    assert one(first, "queue_depth") == Sample("queue_depth", 7.5, 1000.0, labels())
    assert "http_requests_total.rate" not in by_name(first)  # no rate from one reading

    requests.labels("200").inc(30)
    second = conv.convert(scrape(render, registry, content_type), 1015.0)
    rate = one(second, "http_requests_total.rate")
    assert rate == Sample("http_requests_total.rate", 2.0, 1015.0, labels(code="200"))

    # The app restarts: its counter starts again from zero and has counted 6 since.
    restarted = CollectorRegistry()
    Counter("http_requests", "requests", ["code"], registry=restarted).labels("200").inc(6)
    third = conv.convert(scrape(render, restarted, content_type), 1030.0)
    assert one(third, "http_requests_total.rate").value == pytest.approx(6 / 15)


@pytest.mark.parametrize(("content_type", "render"), FORMATS)
def test_created_samples_are_not_stored(content_type: str, render: Render) -> None:
    registry = CollectorRegistry()
    Counter("jobs", "jobs", registry=registry).inc()
    Histogram("lat", "lat", registry=registry).observe(1)
    Summary("size", "size", registry=registry).observe(1)
    Gauge("kube_pod_created", "a gauge that is named like one", registry=registry).set(5)
    body = render(registry)
    assert b"_created" in body
    conv = Converter(labels=TARGET)
    names = {s.name for s in conv.convert(parse(body, content_type), 1.0).samples}
    names |= {s.name for s in conv.convert(parse(render(registry), content_type), 2.0).samples}
    assert names == {"kube_pod_created", "jobs_total.rate", "lat.count.rate", "size.count.rate"}


# -- histograms ------------------------------------------------------------------------------


@pytest.mark.parametrize(("content_type", "render"), FORMATS)
def test_histogram_quantiles_match_histogram_quantile(content_type: str, render: Render) -> None:
    rng = random.Random(13)
    registry = CollectorRegistry()
    hist = Histogram("rpc_seconds", "latency", ["method"], buckets=BOUNDS, registry=registry)
    for _ in range(500):  # before the first scrape: must not count in the interval
        hist.labels("get").observe(rng.uniform(0, 0.1))
    conv = Converter(labels=TARGET)
    first = conv.convert(scrape(render, registry, content_type), 100.0)
    assert not first.samples  # increases need two readings

    # 97 % within the finite buckets, 3 % beyond the last: p99 falls in the +Inf bucket.
    during = [rng.uniform(0, 2.5) for _ in range(970)] + [rng.uniform(3, 9) for _ in range(30)]
    for value in during:
        hist.labels("get").observe(value)
    second = conv.convert(scrape(render, registry, content_type), 110.0)

    series = labels(method="get")
    assert one(second, "rpc_seconds.count.rate") == Sample(
        "rpc_seconds.count.rate", 100.0, 110.0, series
    )
    for q, name in ((0.5, "rpc_seconds.p50"), (0.9, "rpc_seconds.p90"), (0.99, "rpc_seconds.p99")):
        got = one(second, name)
        assert got.labels == series
        assert got.value == pytest.approx(expected_quantile(q, BOUNDS, during), rel=1e-9), name
    assert one(second, "rpc_seconds.p99").value == 2.5

    # No observations in the next interval: a zero rate and no quantile (not NaN).
    third = conv.convert(scrape(render, registry, content_type), 120.0)
    assert one(third, "rpc_seconds.count.rate").value == 0.0
    assert {s.name for s in third.samples} == {"rpc_seconds.count.rate"}


@pytest.mark.parametrize(("content_type", "render"), FORMATS)
def test_histogram_reset_counts_from_zero(content_type: str, render: Render) -> None:
    registry = CollectorRegistry()
    hist = Histogram("rpc_seconds", "latency", buckets=BOUNDS, registry=registry)
    for value in [0.05] * 50 + [2.0] * 50:
        hist.observe(value)
    conv = Converter(labels=TARGET)
    conv.convert(scrape(render, registry, content_type), 0.0)

    # Restarted, with fewer observations than before (the +Inf bucket went down): the interval's
    # increase is what the new process counted, as rate() would take it.
    restarted = CollectorRegistry()
    hist = Histogram("rpc_seconds", "latency", buckets=BOUNDS, registry=restarted)
    observed = [0.3, 0.3, 0.4, 0.7, 0.9, 2.0]
    for value in observed:
        hist.observe(value)
    after = conv.convert(scrape(render, restarted, content_type), 20.0)
    assert one(after, "rpc_seconds.count.rate").value == pytest.approx(len(observed) / 20)
    assert one(after, "rpc_seconds.p50").value == pytest.approx(
        expected_quantile(0.5, BOUNDS, observed)
    )
    assert all(s.value >= 0 for s in after.samples)


def test_bucket_quantile_edges() -> None:
    inf = math.inf
    # 10 observations ≤ 1, 10 more ≤ 2: the median is the top of the first bucket.
    assert bucket_quantile(0.5, (1.0, 2.0, inf), (10, 20, 20)) == 1.0
    assert bucket_quantile(0.75, (1.0, 2.0, inf), (10, 20, 20)) == 1.5
    assert bucket_quantile(0.99, (1.0, 2.0, inf), (10, 20, 40)) == 2.0  # in +Inf
    assert bucket_quantile(0.5, (1.0, 2.0, inf), (0, 0, 0)) is None  # no observations
    assert bucket_quantile(0.5, (1.0, 2.0), (1, 2)) is None  # no +Inf bucket
    assert bucket_quantile(0.5, (-1.0, 2.0, inf), (5, 6, 6)) == -1.0  # first bound ≤ 0
    # A bucket lower than the one below it is raised (Prometheus' monotonicity fix).
    assert bucket_quantile(0.5, (1.0, 2.0, inf), (10, 8, 20)) == 1.0


# -- summaries, info, stateset ---------------------------------------------------------------


class GoSummary(Collector):
    """A summary with quantiles, as Go and Java clients expose them."""

    def __init__(self) -> None:
        self.count = 0.0
        self.quantiles = {"0.5": 0.02, "0.9": 0.05, "0.99": math.nan}

    def collect(self) -> Iterator[Metric]:
        family = Metric("gc_seconds", "gc pauses", "summary")
        for q, v in self.quantiles.items():
            family.add_sample("gc_seconds", {"quantile": q, "gen": "young"}, v)
        family.add_sample("gc_seconds_count", {"gen": "young"}, self.count)
        family.add_sample("gc_seconds_sum", {"gen": "young"}, self.count * 0.03)
        yield family


@pytest.mark.parametrize(("content_type", "render"), FORMATS)
def test_summary_info_and_stateset(content_type: str, render: Render) -> None:
    registry = CollectorRegistry()
    summary = GoSummary()
    registry.register(summary)
    Info("build", "version", registry=registry).info({"version": "1.2.3"})
    Enum("phase", "phase", states=["starting", "ready"], registry=registry).state("ready")
    conv = Converter(labels=TARGET)
    summary.count = 100
    first = conv.convert(scrape(render, registry, content_type), 0.0)
    young = labels(gen="young")
    assert one(first, "gc_seconds.q0.5") == Sample("gc_seconds.q0.5", 0.02, 0.0, young)
    assert one(first, "gc_seconds.q0.9").value == 0.05
    assert "gc_seconds.q0.99" not in by_name(first)  # NaN: no observations in its window
    assert one(first, "build_info") == Sample("build_info", 1.0, 0.0, labels(version="1.2.3"))
    phases = {s.labels: s.value for s in by_name(first)["phase"]}
    assert phases == {labels(phase="starting"): 0.0, labels(phase="ready"): 1.0}
    summary.count = 160
    second = conv.convert(scrape(render, registry, content_type), 30.0)
    assert one(second, "gc_seconds.count.rate").value == 2.0


def test_gauge_histogram_quantiles_of_the_current_buckets() -> None:
    body = """# TYPE queue_wait gaugehistogram
queue_wait_bucket{le="1.0"} 2
queue_wait_bucket{le="5.0"} 6
queue_wait_bucket{le="+Inf"} 8
queue_wait_gcount 8
queue_wait_gsum 20
# EOF
"""
    result = Converter(labels=TARGET).convert(parse(body, OPENMETRICS), 0.0)
    got = {s.name: s.value for s in result.samples}
    # Rank 4 of 8 lies in (1, 5], which holds 4: halfway, 3.0; ranks 7.2 and 7.92 are in +Inf.
    assert got == {"queue_wait.count": 8, "queue_wait.p50": 3.0, "queue_wait.p90": 5.0,
                   "queue_wait.p99": 5.0}  # fmt: skip


def test_quantile_names_are_normalised() -> None:
    assert quantile_name("x", "0.50") == "x.q0.5"
    assert quantile_name("x", "0.999") == "x.q0.999"
    assert quantile_name("x", "1") == "x.q1"
    assert quantile_name("x", "median") is None


def test_names_do_not_depend_on_the_format() -> None:
    registry = CollectorRegistry()
    Counter("a", "a", ["k"], registry=registry).labels("v").inc()
    Counter("b_total", "b", registry=registry).inc()
    Gauge("c", "c", registry=registry).set(1)
    Histogram("d_seconds", "d", registry=registry).observe(0.2)
    Summary("e", "e", registry=registry).observe(1)
    Info("f", "f", registry=registry).info({"x": "y"})
    Enum("g", "g", states=["s"], registry=registry)
    registry.register(GoSummary())
    names = {}
    for content_type, render in FORMATS:
        conv = Converter(labels=TARGET)
        conv.convert(scrape(render, registry, content_type), 0.0)  # rates need a second reading
        result = conv.convert(scrape(render, registry, content_type), 10.0)
        names[content_type] = sorted({(s.name, s.labels) for s in result.samples})
    assert names[TEXT] == names[OPENMETRICS]
    assert {n for n, _ in names[TEXT]} == {
        "a_total.rate", "b_total.rate", "c", "d_seconds.count.rate", "e.count.rate",
        "f_info", "g", "gc_seconds.count.rate", "gc_seconds.q0.5", "gc_seconds.q0.9",
    }  # fmt: skip


# -- labels, keep/drop, timestamps, odd values -----------------------------------------------


def test_colliding_labels_are_exported_and_empty_ones_dropped() -> None:
    registry = CollectorRegistry()
    gauge = Gauge("g", "g", ["job", "instance", "exported_job", "zone"], registry=registry)
    gauge.labels("inner", "pod-1", "kept", "").set(1)
    conv = Converter(labels={**TARGET, "team": "a"})
    got = one(conv.convert(scrape(generate_latest, registry, TEXT), 0.0), "g")
    assert dict(got.labels) == {
        "job": "app",
        "instance": "127.0.0.1:8000",
        "team": "a",
        "exported_instance": "pod-1",
        "exported_job": "kept",
        "exported_exported_job": "inner",
    }


def test_keep_then_drop_on_family_names() -> None:
    registry = CollectorRegistry()
    Counter("http_requests", "r", registry=registry).inc()
    Gauge("http_inflight", "i", registry=registry).set(1)
    Gauge("http_debug_bytes", "d", registry=registry).set(1)
    Gauge("go_goroutines", "g", registry=registry).set(1)
    conv = Converter(labels=TARGET, keep=["http_*"], drop=["*_bytes"])
    result = conv.convert(scrape(generate_latest, registry, TEXT), 0.0)
    assert {s.name for s in result.samples} == {"http_inflight"}
    assert (result.series, result.filtered) == (2, 2)  # the counter counts, without a rate yet
    # A counter's pattern may name it with or without `_total`.
    only = Converter(labels=TARGET, keep=["http_requests_total"])
    only.convert(scrape(generate_latest, registry, TEXT), 0.0)
    again = only.convert(scrape(generate_latest, registry, TEXT), 5.0)
    assert {s.name for s in again.samples} == {"http_requests_total.rate"}


def test_exposed_timestamps_are_used() -> None:
    conv = Converter(labels=TARGET)
    conv.convert(parse("# TYPE c counter\nc 10 1700000000000\nt 1 1700000000500\n", TEXT), 5.0)
    result = conv.convert(parse("# TYPE c counter\nc 40 1700000010000\n", TEXT), 6.0)
    assert one(result, "c_total.rate") == Sample("c_total.rate", 3.0, 1700000010.0, labels())


def test_non_finite_values_are_skipped_and_repeats_ignored() -> None:
    body = "a NaN\nb +Inf\nc -Inf\nd 1\nd 2\n# TYPE n counter\nn NaN\n"
    conv = Converter(labels=TARGET)
    result = conv.convert(parse(body, TEXT), 0.0)
    assert [(s.name, s.value) for s in result.samples] == [("d", 1.0)]
    assert result.series == 5  # a, b, c, d, n: non-finite series still hold their place


# -- the series cap --------------------------------------------------------------------------


def gauges(*names: str) -> list[Metric]:
    families: list[Metric] = []
    for name in names:
        family = GaugeMetricFamily(name, name)
        family.add_metric([], 1.0)
        families.append(family)
    return families


def test_cap_admits_in_order_and_keeps_what_it_admitted() -> None:
    conv = Converter(labels=TARGET, max_series=3)
    result = conv.convert(gauges("a", "b", "c", "d"), 0.0)
    assert [s.name for s in result.samples] == ["a", "b", "c"]
    assert (result.series, result.dropped_series) == (4, 1)
    # A new series ahead of the admitted ones does not push them out.
    result = conv.convert(gauges("z", "a", "b", "c"), 1.0)
    assert [s.name for s in result.samples] == ["a", "b", "c"]
    # b goes away: its place is free from the next scrape on, first come first served.
    conv.convert(gauges("z", "a", "c", "d"), 2.0)
    result = conv.convert(gauges("z", "a", "c", "d"), 3.0)
    assert [s.name for s in result.samples] == ["z", "a", "c"]
    assert result.dropped_series == 1


def test_cap_counts_a_histogram_as_its_stored_series() -> None:
    registry = CollectorRegistry()
    Gauge("first", "f", registry=registry).set(1)
    Histogram("h", "h", registry=registry).observe(1)
    Gauge("last", "l", registry=registry).set(1)
    conv = Converter(labels=TARGET, max_series=5)
    result = conv.convert(scrape(generate_latest, registry, TEXT), 0.0)
    assert (result.series, result.dropped_series) == (6, 1)
    assert [s.name for s in result.samples] == ["first"]  # h admitted (4), no rate yet


def counters(start: int, stop: int, value: float) -> list[Metric]:
    family = CounterMetricFamily("requests", "r", labels=["path"])
    for i in range(start, stop):
        family.add_metric([f"/p{i}"], value)
    return [family]


def test_cap_bounds_state_with_100k_series() -> None:
    cap = 1_000
    conv = Converter(labels=TARGET, max_series=cap)

    def state() -> list[int]:
        return [len(conv._admitted), len(conv._rates), len(conv._memo), conv.state_entries]

    first = conv.convert(counters(0, 100_000, 1.0), 0.0)
    assert (first.series, first.dropped_series) == (100_000, 100_000 - cap)
    assert max(state()) <= cap
    # The exposition shifts: half of the admitted series are gone, 100,000 others are new.
    second = conv.convert(counters(cap // 2, 100_000 + cap // 2, 11.0), 10.0)
    assert len(second.samples) == cap // 2  # the series still there give their rate
    assert {s.value for s in second.samples} == {1.0}
    assert max(state()) <= cap
    third = conv.convert(counters(cap // 2, 100_000 + cap // 2, 21.0), 20.0)
    assert len(third.samples) == cap // 2  # freed places taken: first readings, no rate yet
    assert third.dropped_series == 100_000 - cap
    assert max(state()) <= cap
    conv.forget()
    assert max(state()) == 0


# -- parsing ---------------------------------------------------------------------------------


def full_body() -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("c", "c", ["k"], registry=registry).labels("v").inc(3)
    Histogram("h", "h", registry=registry).observe(0.4)
    Gauge("g", "g", registry=registry).set(2)
    return registry


GARBAGE = [
    b"garbage\n",
    b"<html><body>502 Bad Gateway</body></html>\n",
    b'{"status": "ok"}\n',
    b"\x00\x01\x02\xff\xfe binary\n",
    b"g 1 2 3 4\nnot a line at all\n",
    b'g{a="unterminated} 1\n',
]


@pytest.mark.parametrize("content_type", [TEXT, OPENMETRICS])
@pytest.mark.parametrize("body", GARBAGE)
def test_garbage_bodies_raise(body: bytes, content_type: str) -> None:
    with pytest.raises(ParseError):
        parse(body, content_type)


@pytest.mark.parametrize(("content_type", "render"), FORMATS)
def test_truncated_bodies_raise(content_type: str, render: Render) -> None:
    body = render(full_body())
    cuts = [i for i in range(1, len(body) - 1) if body[i - 1 : i] != b"\n"]
    for cut in cuts[:: max(1, len(cuts) // 40)]:
        with pytest.raises(ParseError):
            parse(body[:cut], content_type)
    assert parse(body, content_type)  # whole, it parses


def families_equal(a: list[Metric], b: list[Metric]) -> bool:
    """Metric equality, NaN equal to NaN (a value the exposition may well carry)."""
    if [(f.name, f.type, f.documentation, f.unit) for f in a] != [
        (f.name, f.type, f.documentation, f.unit) for f in b
    ]:
        return False
    for fa, fb in zip(a, b, strict=True):
        if len(fa.samples) != len(fb.samples):
            return False
        for sa, sb in zip(fa.samples, fb.samples, strict=True):
            same_value = sa.value == sb.value or (math.isnan(sa.value) and math.isnan(sb.value))
            if (sa.name, sa.labels, sa.timestamp) != (sb.name, sb.labels, sb.timestamp):
                return False
            if not same_value:
                return False
    return True


LAYOUT = """# HELP rpc_seconds latency
# TYPE rpc_seconds histogram
rpc_seconds_bucket{le="0.1",path="/a b"} $0
rpc_seconds_bucket{le="+Inf",path="/a b"} $1
rpc_seconds_count{path="/a b"} $2
rpc_seconds_sum{path="/a b"} $3
# TYPE up_total counter
up_total{q="x \\\\ \\" y"} $4
plain $5

{"utf8.name", k="v"} $6
"""


def render_layout(values: Sequence[float]) -> str:
    body = LAYOUT
    for i, value in enumerate(values):
        body = body.replace(f"${i}", floatToGoString(value))
    return body


values7 = st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=7, max_size=7)


@settings(max_examples=150, deadline=None)
@given(first=values7, second=values7)
def test_parse_cache_matches_the_library(first: list[float], second: list[float]) -> None:
    cache = ParseCache()
    parse(render_layout(first), TEXT, cache)
    body = render_layout(second)
    cached = cache.lookup(body)
    assert cached is not None  # same layout, new values: served from the cache
    assert families_equal(cached, list(text_string_to_metric_families(body)))


def test_parse_cache_sees_layout_changes_and_bad_values() -> None:
    cache = ParseCache()
    base = render_layout([1, 2, 3, 4, 5, 6, 7])
    assert "plain 6.0\n" in base
    parse(base, TEXT, cache)
    changed = [
        base.replace("counter", "gauge"),
        base.replace('path="/a b"', 'path="/a c"', 1),
        base + "extra 1\n",
        base.replace("plain 6.0", "plain 6.0 1700000000000"),
        base.replace("plain 6.0", "plain  6.0"),
        base.replace("plain 6.0", "plain\t6.0"),
    ]
    for body in changed:
        assert cache.lookup(body) is None
        assert families_equal(parse(body, TEXT, cache), list(text_string_to_metric_families(body)))
        parse(base, TEXT, cache)
    for bad in ("abc", "0x10", "--1", "Infinit"):
        body = base.replace("plain 6.0", f"plain {bad}")
        with pytest.raises(ValueError, match="could not convert"):  # the library rejects it …
            list(text_string_to_metric_families(body))
        with pytest.raises(ParseError):  # … and so does the cache
            parse(body, TEXT, cache)


def test_parse_cache_skips_bodies_with_timestamps() -> None:
    cache = ParseCache()
    # Value and timestamp alike: the last token is the timestamp, not the value.
    parse("a 5 5\n", TEXT, cache)
    assert cache.lookup("a 5 7\n") is None
    (family,) = parse("a 5 7\n", TEXT, cache)
    assert (family.samples[0].value, family.samples[0].timestamp) == (5, 0.007)


async def test_parse_cache_on_real_node_exporter_output() -> None:
    """Two scrapes of Debian's node_exporter: its values move, its layout does not."""
    bodies = []
    with NodeExporter() as exporter:
        async with aiohttp.ClientSession() as session:
            for _ in range(3):
                async with session.get(exporter.url) as resp:
                    assert resp.status == 200
                    bodies.append(await resp.text())
    cache = ParseCache()
    parse(bodies[0], TEXT, cache)
    hits = 0
    for body in bodies[1:]:
        hits += cache.lookup(body) is not None
        assert families_equal(parse(body, TEXT, cache), list(text_string_to_metric_families(body)))
    assert hits  # node_exporter's layout is stable from one scrape to the next


# -- rates -----------------------------------------------------------------------------------

readings = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=1e15, allow_nan=False),
        st.floats(min_value=1e-3, max_value=1e4, allow_nan=False),
    ),
    min_size=2,
    max_size=30,
)


@given(readings)
def test_counter_rates_are_never_negative_and_follow_rate(seq: list[tuple[float, float]]) -> None:
    rates = RateTracker(resets="from_zero")
    now, last = 0.0, None
    for value, step in seq:
        now += step
        got = rates.rate("c", value, now)
        if last is None:
            assert got is None
        else:
            assert got is not None
            assert got >= 0
            increase = value - last if value >= last else value
            assert got == pytest.approx(increase / step)
        last = value


@given(st.lists(st.lists(st.integers(0, 10**6), min_size=3, max_size=3), min_size=2))
def test_histogram_increases_are_never_negative(groups: list[list[int]]) -> None:
    rates = RateTracker(resets="from_zero")
    for i, values in enumerate(groups):
        got = rates.increases("h", values, float(i))
        if got is not None:
            assert all(d >= 0 for d in got[0])


def test_host_counters_still_skip_resets() -> None:
    rates = RateTracker()
    rates.rate("eth0", 100, 1.0)
    assert rates.rate("eth0", 50, 2.0) is None
    assert rates.increases("h", [1, 2], 1.0) is None
    assert rates.increases("h", [0, 2], 2.0) is None
