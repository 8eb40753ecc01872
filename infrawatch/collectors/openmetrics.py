"""Prometheus text format and OpenMetrics → Samples: parsing, names and semantics, no I/O.

Parsing is prometheus-client's (`prometheus_client.parser` for the text format 0.0.4,
`prometheus_client.openmetrics.parser` for OpenMetrics 1.0); a body that does not parse is
rejected whole (`ParseError`). A `ParseCache` per source makes a repeated text-format scrape
cheap: when a body's layout (every byte but the sample values) is the one the library parsed
last time, only the values are read again.

Names (the one place they are decided; docs/scrape.md has the same table). `foo` is the family
name as the library reports it (a text-format counter `foo_total` is family `foo`):

| exposed type              | stored series                                 | value               |
|---------------------------|-----------------------------------------------|---------------------|
| gauge, untyped            | `foo` (the sample name as exposed)            | as exposed          |
| counter `foo`/`foo_total` | `foo_total.rate`                              | per second          |
| histogram                 | `foo.count.rate`                              | observations / s    |
|                           | `foo.p50`, `foo.p90`, `foo.p99`               | the unit of `le`    |
| summary                   | `foo.q<quantile>` (`foo.q0.5`, `foo.q0.99`)   | as exposed          |
|                           | `foo.count.rate`                              | observations / s    |
| gaugehistogram            | `foo.count` (`_gcount`), `foo.p50/.p90/.p99`  | as exposed, le unit |
| info                      | `foo_info` (the sample name)                  | 1                   |
| stateset                  | `foo{foo="<state>"}` (the sample name)        | 0 or 1              |

Dropped: `_sum` samples, `_created` samples (and the text format's `foo_created` gauge families
beside a counter, histogram or summary `foo`), exemplars, native-histogram samples.

Semantics:
- Counter rates follow Prometheus' `rate()`: a decrease is a reset and the new value counts from
  zero (rate = new value / interval), never a negative rate; the first reading of a series gives
  no rate. Histogram quantiles are `histogram_quantile` over the increase of the buckets in the
  interval (linear interpolation inside the bucket where the rank falls; a rank in the +Inf
  bucket gives the largest finite bound). A decrease in any bucket or the count is a reset of
  the whole histogram, and the interval's quantiles come from the new values (what the buckets
  counted since the restart). No observations in the interval: no quantile sample.
- NaN and ±Inf values are skipped (the store keeps finite values only); a series keeps its place
  under the cap while its value is not finite.
- Labels: the source's labels (`job`, `instance`, configured ones) are added to every series; a
  scraped label of the same name is kept as `exported_<name>` (Prometheus, honor_labels=false).
  A label with an empty value is no label (Prometheus).
- keep/drop: fnmatch globs on the family name, with or without its `_total` (counter) or
  `_info` (info) suffix; keep first (empty keeps all), then drop.
- The cap counts stored series (a histogram is 4, a summary 1 + its quantiles). Series are
  admitted in order of appearance and stay admitted while they are exposed; once one does not
  fit, every new series after it in that scrape is dropped and counted. A series missing from a
  good scrape gives its place up (and its rate starts over if it comes back).
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import translate
from typing import Any

from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import parser as om_parser
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample as PromSample

from infrawatch.collectors.rates import RateTracker
from infrawatch.logging import describe
from infrawatch.model import Labels, Sample

# prometheus-client's OpenMetrics parser is untyped; this is its signature.
_parse_openmetrics: Callable[[str], Iterable[Metric]] = om_parser.text_string_to_metric_families

OPENMETRICS_TYPE = "application/openmetrics-text"
# The name mapping in one line, as `check` states it (the table above; docs/scrape.md "Names").
NAME_MAPPING = (
    "gauge/untyped foo → foo (as exposed); counter foo or foo_total → foo_total.rate "
    "(per second); histogram foo → foo.count.rate, foo.p50, foo.p90, foo.p99; "
    "summary foo → foo.q<quantile> (foo.q0.99), foo.count.rate; info foo → foo_info (1); "
    "stateset foo → foo{foo=<state>} (0/1); gaugehistogram foo → foo.count, foo.p50, foo.p90, "
    "foo.p99"
)
# (quantile, name suffix) of the histogram estimates.
QUANTILES = ((0.5, "p50"), (0.9, "p90"), (0.99, "p99"))
HISTOGRAM_SERIES = 1 + len(QUANTILES)  # count.rate and the quantiles: its weight under the cap
_DETAIL_CHARS = 200  # a parse error may quote a whole line of the body
_WITH_CREATED = frozenset({"counter", "histogram", "summary"})
_GAUGE_LIKE = frozenset({"gauge", "unknown", "info", "stateset"})
_INF = math.inf

# A text-format sample line in its plain form: a name (or a quoted `{"name"}`) first, one space,
# the value last, no timestamp. `split` interleaves [text between, head, value, text between …]:
# what the parse cache re-reads is every third part; the rest must be byte-identical.
_SAMPLE_LINE = re.compile(r"^([A-Za-z_:{][^\n]*) ([-+.0-9A-Za-z]+)$", re.MULTILINE)


class ParseError(Exception):
    """An exposition body that is not valid text format / OpenMetrics (rejected whole)."""


def parse(
    body: bytes | str, content_type: str = "", cache: ParseCache | None = None
) -> list[Metric]:
    """The metric families of an exposition body; `content_type` picks the parser.

    OpenMetrics when it is application/openmetrics-text, else the text format, which must end
    with a line break (a body cut short anywhere else is caught). `cache`, one per source,
    makes repeated text-format bodies cheap. Raises ParseError for any malformed body.
    """
    if isinstance(body, bytes):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ParseError(f"not UTF-8: {exc.reason} at byte {exc.start}") from None
    else:
        text = body
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == OPENMETRICS_TYPE:
        return _parse_with(_parse_openmetrics, text)
    if text and not text.endswith("\n"):
        raise ParseError("truncated: the last line has no line break")
    if cache is not None:
        families = cache.lookup(text)
        if families is not None:
            return families
    families = _parse_with(text_string_to_metric_families, text)
    if cache is not None:
        cache.remember(text, families)
    return families


def _parse_with(parser: Callable[[str], Iterable[Metric]], text: str) -> list[Metric]:
    try:
        # The parsers are generators: a malformed line at the end must reject the whole body.
        return list(parser(text))
    except Exception as exc:  # the library raises ValueError, and others on odd input
        raise ParseError(describe(exc)[:_DETAIL_CHARS]) from None


class ParseCache:
    """The layout of the last text-format body one source sent, to re-read only its values.

    A body whose skeleton (the body with each plain sample line's value blanked) is the last
    one's has the same families, names and labels: only the values are parsed again, as
    prometheus-client parses them. Any other body goes through the library and becomes the new
    layout, if every sample of it sits on a plain line (no timestamps, no exemplars).
    """

    __slots__ = ("_between", "_families", "_heads")

    def __init__(self) -> None:
        self._between: list[str] | None = None  # None: no layout kept
        self._heads: list[str] = []
        self._families: list[Metric] = []

    def lookup(self, text: str) -> list[Metric] | None:
        """The families of `text` if its layout is the cached one, else None; raises
        ParseError for a value the library would reject."""
        if self._between is None:
            return None
        parts = _SAMPLE_LINE.split(text)
        if parts[0::3] != self._between or parts[1::3] != self._heads:
            return None
        values = parts[2::3]
        out: list[Metric] = []
        at = 0
        try:
            for family in self._families:
                # A shallow copy (copy.copy costs several times this, once per family).
                fresh = object.__new__(Metric)
                fresh.__dict__.update(family.__dict__)
                samples = family.samples
                fresh.samples = [
                    _sample(s.name, s.labels, float(v))
                    for s, v in zip(samples, values[at : at + len(samples)], strict=True)
                ]
                at += len(samples)
                out.append(fresh)
        except ValueError as exc:
            raise ParseError(describe(exc)[:_DETAIL_CHARS]) from None
        return out

    def remember(self, text: str, families: list[Metric]) -> None:
        """Keep the layout of `text`, which the library parsed into `families`."""
        self._between = None
        parts = _SAMPLE_LINE.split(text)
        values = parts[2::3]
        samples = [s for family in families for s in family.samples]
        # Every matched line is a sample line to the library, one sample each, in order: equal
        # counts mean every sample line matched, so the n-th value is the n-th sample's.
        if len(values) != len(samples):
            return
        for token, sample in zip(values, samples, strict=True):
            if sample.timestamp is not None or sample.exemplar is not None:
                return
            if sample.native_histogram is not None:
                return
            try:
                value = float(token)
            except ValueError:
                return
            if value != sample.value and not (value != value and sample.value != sample.value):
                return
        self._between = parts[0::3]
        self._heads = parts[1::3]
        self._families = families


def _sample(name: str, labels: dict[str, str], value: float) -> PromSample:
    # The namedtuple's own constructor costs twice this, and the cache makes one per sample.
    sample: PromSample = tuple.__new__(PromSample, (name, labels, value, None, None, None))
    return sample


@dataclass(frozen=True, slots=True)
class Conversion:
    """One scrape's samples, and its series counts (stored series: a histogram counts 4)."""

    samples: list[Sample]
    series: int  # series in this scrape after keep/drop, before the cap
    dropped_series: int  # of those, beyond max_series (dropped)
    filtered: int  # series removed by keep/drop


def bucket_quantile(q: float, bounds: Sequence[float], counts: Sequence[float]) -> float | None:
    """Prometheus' histogram_quantile: the q-quantile (0 < q < 1) of cumulative `counts` per
    upper bound in `bounds` (ascending, the last +Inf), in the unit of the bounds; None with no
    observations or no +Inf bucket."""
    n = len(bounds)
    if n < 2 or bounds[-1] != _INF:
        return None
    # Like Prometheus: counts that decrease along the buckets (float noise, a torn read) are
    # raised to stay monotonic.
    cumulative: list[float] = []
    highest = 0.0
    for c in counts:
        highest = max(highest, c)
        cumulative.append(highest)
    observations = cumulative[-1]
    if not observations > 0:
        return None
    rank = q * observations
    b = bisect.bisect_left(cumulative, rank, 0, n - 1)
    if b == n - 1:
        return bounds[n - 2]  # the rank falls in the +Inf bucket
    if b == 0 and bounds[0] <= 0:
        return bounds[0]
    start, end, count = 0.0, bounds[b], cumulative[b]
    if b > 0:
        start = bounds[b - 1]
        count -= cumulative[b - 1]
        rank -= cumulative[b - 1]
    return start + (end - start) * (rank / count)


def quantile_name(name: str, quantile: str) -> str | None:
    """The stored name of a summary quantile (`foo`, "0.50" → `foo.q0.5`), None if not a number."""
    try:
        q = float(quantile)
    except ValueError:
        return None
    if not math.isfinite(q):
        return None
    text = repr(q)
    return f"{name}.q{text[:-2] if text.endswith('.0') else text}"


def _globs(patterns: Sequence[str]) -> re.Pattern[str] | None:
    return re.compile("|".join(f"(?:{translate(p)})" for p in patterns)) if patterns else None


def _time(sample: PromSample, ts: float) -> float:
    return ts if sample.timestamp is None else float(sample.timestamp)


def _finite(value: Any) -> float | None:
    try:
        v = float(value)
    except OverflowError:  # an integer beyond float range
        return None
    return v if v - v == 0 else None  # NaN and ±Inf give NaN


def _bound(le: str | None) -> float | None:
    if le is None:
        return None
    try:
        return float(le)
    except ValueError:
        return None  # not a bound: the text format's parser does not check


def _all_finite(values: list[Any]) -> list[float] | None:
    out: list[float] = []
    for value in values:
        v = _finite(value)
        if v is None:
            return None
        out.append(v)
    return out


_Memo = tuple[dict[str, str], str, Labels, list[int]]


class _Group:
    """The samples of one histogram or summary series (its labels less `le` / `quantile`)."""

    __slots__ = ("buckets", "count", "labels", "quantiles", "ts")

    def __init__(self, labels: Labels, ts: float) -> None:
        self.labels = labels
        self.ts = ts
        self.buckets: list[tuple[float, Any]] = []
        self.quantiles: list[tuple[str, Any]] = []
        self.count: Any = None


class Converter:
    """Per source: turns parsed families into Samples, keeping the counter and histogram state.

    `labels` are added to every series (job, instance, a target's own labels). State is kept
    only for admitted series, so it never exceeds `max_series` entries. Not thread-safe: one
    conversion at a time.
    """

    def __init__(
        self,
        *,
        labels: Mapping[str, str],
        keep: Sequence[str] = (),
        drop: Sequence[str] = (),
        max_series: int = 10_000,
    ) -> None:
        self._base: Labels = tuple(sorted(labels.items()))
        self._reserved = frozenset(labels)
        self._keep = _globs(keep)
        self._drop = _globs(drop)
        self.max_series = max_series
        self._rates = RateTracker(resets="from_zero")
        # series key → [weight, generation last seen]; the admitted series in admission order.
        self._admitted: dict[tuple[str, Labels], list[int]] = {}
        self._used = 0  # total weight admitted
        self._generation = 0
        # id(scraped labels dict) → (that dict, name, labels, admitted entry) of the scalar series
        # admitted last scrape. A cached parse hands out the same dicts again, so an unchanged
        # series skips the label merge and sort; the reference keeps the id from being reused.
        self._memo: dict[int, _Memo] = {}
        self._memo_next: dict[int, _Memo] = {}
        # Per conversion:
        self._full = False
        self._filtering = False
        self._series = 0
        self._dropped = 0
        self._filtered = 0

    @property
    def state_entries(self) -> int:
        """How many series the converter holds state for (admitted, and counter readings)."""
        return max(len(self._admitted), len(self._rates), len(self._memo))

    def forget(self) -> None:
        """Drop all state: the source is gone (not after a failed scrape: rates go on)."""
        self._rates.forget()
        self._admitted.clear()
        self._memo.clear()
        self._used = 0

    def convert(self, families: Iterable[Metric], ts: float) -> Conversion:
        """The samples of one scrape taken at `ts` (epoch seconds; a sample's own exposed
        timestamp wins)."""
        families = families if isinstance(families, list) else list(families)
        created = {f.name + "_created" for f in families if f.type in _WITH_CREATED}
        self._generation += 1
        self._full = False
        self._series = self._dropped = self._filtered = 0
        out: list[Sample] = []
        for family in families:
            typ = family.type
            if typ in _GAUGE_LIKE:
                if family.name in created:
                    continue
                self._filtering = not self._wanted(family.name, typ)
                self._gauges(family, ts, out)
            else:
                self._filtering = not self._wanted(family.name, typ)
                if typ == "counter":
                    self._counters(family, ts, out)
                elif typ == "histogram":
                    self._histograms(family, ts, out, gauge=False)
                elif typ == "gaugehistogram":
                    self._histograms(family, ts, out, gauge=True)
                elif typ == "summary":
                    self._summaries(family, ts, out)
        self._filtering = False
        self._sweep()
        return Conversion(out, self._series, self._dropped, self._filtered)

    # -- admission ------------------------------------------------------------------------------

    def _wanted(self, name: str, typ: str) -> bool:
        if self._keep is None and self._drop is None:
            return True
        names = [name]
        if typ == "counter":
            names.append(name + "_total")
        elif typ == "info":
            names.append(name + "_info")
        if self._keep is not None and not any(self._keep.fullmatch(n) for n in names):
            return False
        return self._drop is None or not any(self._drop.fullmatch(n) for n in names)

    def _admit(self, key: tuple[str, Labels], weight: int) -> bool:
        """Whether the series `key` (worth `weight` stored series) is converted this scrape."""
        if self._filtering:
            self._filtered += weight
            return False
        entry = self._admitted.get(key)
        if entry is not None:
            if entry[1] == self._generation:
                return False  # the same series twice in one body: the first one counts
            entry[1] = self._generation
            self._series += entry[0]
            return True
        self._series += weight
        if self._full or self._used + weight > self.max_series:
            self._full = True
            self._dropped += weight
            return False
        self._admitted[key] = [weight, self._generation]
        self._used += weight
        return True

    def _sweep(self) -> None:
        generation = self._generation
        gone = [key for key, entry in self._admitted.items() if entry[1] != generation]
        for key in gone:
            self._used -= self._admitted.pop(key)[0]
        self._rates.forget_unseen()
        self._memo, self._memo_next = self._memo_next, {}

    def _scalar(self, name: str, scraped: dict[str, str]) -> Labels | None:
        """The labels of the one-sample series `name`, or None if it is not converted in this
        scrape (filtered, beyond the cap, a repeat)."""
        if self._filtering:
            self._filtered += 1
            return None
        memo = self._memo.get(id(scraped))
        if memo is not None and memo[0] is scraped and memo[1] == name:
            entry = memo[3]
            if entry[1] == self._generation:
                return None
            entry[1] = self._generation
            self._series += entry[0]
            self._memo_next[id(scraped)] = memo
            return memo[2]
        labels = self._labels(scraped)
        key = (name, labels)
        if not self._admit(key, 1):
            return None
        self._memo_next[id(scraped)] = (scraped, name, labels, self._admitted[key])
        return labels

    def _labels(self, scraped: Mapping[str, str]) -> Labels:
        if not scraped:
            return self._base
        if self._reserved.isdisjoint(scraped) and "" not in scraped.values():
            return tuple(sorted([*scraped.items(), *self._base]))
        merged = dict(self._base)
        for name, value in scraped.items():
            if not value:
                continue
            if name in self._reserved:
                # As Prometheus does: prefix until the name is free.
                name = "exported_" + name
                while name in scraped or name in self._reserved:
                    name = "exported_" + name
            merged[name] = value
        return tuple(sorted(merged.items()))

    # -- families -------------------------------------------------------------------------------

    def _gauges(self, family: Metric, ts: float, out: list[Sample]) -> None:
        for s in family.samples:
            labels = self._scalar(s.name, s.labels)
            if labels is None:
                continue
            value = _finite(s.value)
            if value is not None:
                out.append(Sample(s.name, value, _time(s, ts), labels))

    def _counters(self, family: Metric, ts: float, out: list[Sample]) -> None:
        total = family.name + "_total"
        name = total + ".rate"
        for s in family.samples:
            if s.name != total:
                continue  # `_created`
            labels = self._scalar(name, s.labels)
            if labels is None:
                continue
            value = _finite(s.value)
            if value is None or value < 0:
                continue  # not a counter reading; the series' state is dropped at the sweep
            t = _time(s, ts)
            rate = self._rates.rate((name, labels), value, t)
            if rate is not None:
                out.append(Sample(name, rate, t, labels))

    def _groups(self, family: Metric, ts: float, strip: str) -> dict[Labels, _Group]:
        """The samples of a histogram or summary family by series, in order of appearance."""
        groups: dict[Labels, _Group] = {}
        base = family.name
        bucket, count, gcount = base + "_bucket", base + "_count", base + "_gcount"
        last_raw: dict[str, str] | None = None
        group: _Group | None = None
        for s in family.samples:
            name = s.name
            if name not in (bucket, count, gcount, base):
                continue  # _sum, _gsum, _created
            raw = s.labels
            if strip in raw:
                raw = {k: v for k, v in raw.items() if k != strip}
            # A series' samples are adjacent in practice: skip the label work for each bucket.
            if group is None or raw != last_raw:
                labels = self._labels(raw)
                group = groups.get(labels)
                if group is None:
                    group = groups[labels] = _Group(labels, _time(s, ts))
                last_raw = raw
            if name == bucket:
                bound = _bound(s.labels.get("le"))
                if bound is not None:
                    group.buckets.append((bound, s.value))
            elif name == base:
                quantile = s.labels.get("quantile")
                if quantile is not None:
                    group.quantiles.append((quantile, s.value))
            else:
                group.count = s.value
        return groups

    def _histograms(self, family: Metric, ts: float, out: list[Sample], *, gauge: bool) -> None:
        base = family.name
        count_name = base + (".count" if gauge else ".count.rate")
        for group in self._groups(family, ts, "le").values():
            key = (count_name, group.labels)
            if not self._admit(key, HISTOGRAM_SERIES) or not group.buckets:
                continue
            group.buckets.sort(key=lambda b: b[0])
            bounds = tuple(b for b, _ in group.buckets)
            counts = _all_finite([v for _, v in group.buckets])
            if counts is None:
                continue
            count = counts[-1] if group.count is None else _finite(group.count)
            if count is None:
                continue
            t = group.ts
            if gauge:
                out.append(Sample(count_name, count, t, group.labels))
            else:
                increase = self._rates.increases((key, bounds), [*counts, count], t)
                if increase is None:
                    continue
                deltas, elapsed = increase
                out.append(Sample(count_name, deltas[-1] / elapsed, t, group.labels))
                counts = deltas[:-1]
            for q, suffix in QUANTILES:
                value = bucket_quantile(q, bounds, counts)
                if value is None:
                    break  # no observations (or no +Inf bucket): no estimate, not NaN
                out.append(Sample(f"{base}.{suffix}", value, t, group.labels))

    def _summaries(self, family: Metric, ts: float, out: list[Sample]) -> None:
        base = family.name
        count_name = base + ".count.rate"
        for group in self._groups(family, ts, "quantile").values():
            key = (count_name, group.labels)
            if not self._admit(key, 1 + len(group.quantiles)):
                continue
            t = group.ts
            for quantile, raw in group.quantiles:
                name = quantile_name(base, quantile)
                value = _finite(raw)
                if name is not None and value is not None:
                    out.append(Sample(name, value, t, group.labels))
            count = _finite(group.count) if group.count is not None else None
            if count is None or count < 0:
                continue
            rate = self._rates.rate(key, count, t)
            if rate is not None:
                out.append(Sample(count_name, rate, t, group.labels))
