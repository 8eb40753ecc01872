"""The `infrawatch check` report for `[[scrape]]`: each target, the name mapping, and with
`--scrape` one scrape of each (reachable, parses, how many series). Header values are secrets:
only their names are printed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

from infrawatch.collectors.scrape import DURATION, SAMPLES_SCRAPED, UP, ScrapeResult, probe
from infrawatch.collectors.scrape_config import ScrapeTarget
from infrawatch.units import format_duration

# The stored names of scraped series (collectors/openmetrics.py decides them; docs/scrape.md).
NAMES = (
    "gauge/untyped foo → foo; counter foo_total → foo_total.rate (per second); "
    "histogram foo → foo.count.rate, foo.p50, foo.p90, foo.p99; "
    "summary foo → foo.q<quantile> (foo.q0.99), foo.count.rate; "
    f"per target: {UP} (1/0), {DURATION}, {SAMPLES_SCRAPED}"
)
SEMANTICS = (
    "gauges as exposed; counters as per-second rates between scrapes (a drop is a reset, never "
    "a negative rate; none from the first scrape); histograms' p50/p90/p99 of each interval's "
    "observations (histogram_quantile over the bucket increases); summaries' quantiles as exposed"
)
SHOWN_NAMES = 5  # metric names shown per target after a test scrape


def describe_target(target: ScrapeTarget) -> str:
    """One line: where, how often, the labels every series gets, the limits (no secrets)."""
    labels = " ".join(f"{k}={json.dumps(v)}" for k, v in sorted(target.target_labels.items()))
    parts = [
        f"{target.url} every {format_duration(target.interval)}, "
        f"timeout {format_duration(target.timeout)}",
        labels,
        f"max_series {target.max_series}, max_body_bytes {target.max_body_bytes}",
    ]
    if target.keep:
        parts.append(f"keep {json.dumps(target.keep)}")
    if target.drop:
        parts.append(f"drop {json.dumps(target.drop)}")
    if target.headers:
        parts.append(f"headers {', '.join(sorted(target.headers))} (values masked)")
    return "; ".join(parts)


def describe_result(result: ScrapeResult) -> str:
    """One line for a test scrape: reachable, parsed, N series; or why not."""
    if not result.ok:
        return f"FAILED ({result.reason}): {result.detail}"
    fmt = "OpenMetrics" if "openmetrics" in result.content_type.lower() else "text format"
    line = (
        f"ok in {result.duration:.2f}s: {result.samples_scraped} samples ({fmt}), "
        f"{result.series} series, {result.dropped_series} over max_series, "
        f"{result.filtered} filtered by keep/drop"
    )
    if result.names:
        shown = ", ".join(result.names[:SHOWN_NAMES])
        more = len(result.names) - SHOWN_NAMES
        line += f"; stored now: {shown}{f' (+{more} more)' if more > 0 else ''}"
    if result.stored < result.series:
        line += " (rates and quantiles start with the second scrape)"
    return line


async def _probe_all(targets: Sequence[ScrapeTarget]) -> list[ScrapeResult]:
    # Concurrently: each is bounded by its own timeout, so `check` takes the slowest one's.
    return list(await asyncio.gather(*(probe(t) for t in targets)))


def report(targets: Sequence[ScrapeTarget], *, try_each: bool) -> bool:
    """Print the targets (and with `try_each` one scrape of each); False if a scrape failed."""
    if not targets:
        if try_each:
            print("scrape targets: none configured ([[scrape]])")
        return True
    print(f"scrape targets: {len(targets)} (docs/scrape.md)")
    for target in targets:
        print(f"  {target.name}: {describe_target(target)}")
    print(f"  names: {NAMES}")
    print(f"  values: {SEMANTICS}")
    if not try_each:
        print("  (infrawatch check --scrape scrapes each target once)")
        return True
    ok = True
    for target, result in zip(targets, asyncio.run(_probe_all(targets)), strict=True):
        print(f"  scrape {target.name}: {describe_result(result)}")
        ok &= result.ok
    return ok
