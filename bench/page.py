"""Status page benchmark: page weight and time to first chart in headless Chromium.

    .venv/bin/python bench/page.py [--runs 7] [--screenshots docs/img]

The page's real static routes are served next to the fake API of tests/support_page.py, which
holds 24 h of 1 s data (86,400 samples) for one series and answers `samples` downsampled to
1,000 points with min and max, as the API contract says. Prints:

- page weight: every file the chart view loads, as served (gzip) and raw; target <= 150 KB
  compressed, uPlot included. The API's JSON is reported apart (it is data, not page).
- time to first chart: navigation start to `performance.mark("first-chart")` (plot.js sets it
  when the first chart has drawn with data), each run in a fresh browser context (cold cache);
  target <= 300 ms. The fake API's answer is computed once before the runs, so the number is
  the page's own cost plus loopback HTTP.

With --screenshots DIR it also saves DIR/overview.png and DIR/chart.png (the README's).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from playwright.sync_api import Browser, Page, Response, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support_page import (  # noqa: E402
    HOUR,
    FakeApi,
    FakeSeries,
    PageServer,
    demo_api,
    serve_page,
)

CHROMIUM = "/usr/bin/chromium"
CHART = "/#/chart?metric=bench.requests&range=24h"
WEIGHT_TARGET_KB = 150
FIRST_CHART_TARGET_MS = 300
CPU_SPIKE_EVIDENCE = "value 0.97 is 15.2σ above the 1d mean 0.22 (σ 0.049)"


def bench_api(now: float) -> FakeApi:
    """The demo host plus `bench.requests`: 24 h of 1 s samples."""
    api = demo_api(now)
    t = [now - 86_400 + i + 1 for i in range(86_400)]
    v: list[float | None] = [
        120 + 40 * ((i // 600) % 6) + (i * 7919 % 97) / 4 for i in range(86_400)
    ]
    v[86_400 - 3 * 3600] = 910.0  # a one-sample spike the min/max envelope must keep
    api.add_series(FakeSeries("bench.requests", {"service": "api"}, t, v))
    return api


def new_page(browser: Browser, server: PageServer, *, dark: bool = False) -> Page:
    context = browser.new_context(
        viewport={"width": 1280, "height": 860},
        base_url=server.url,
        color_scheme="dark" if dark else "light",
        device_scale_factor=1,
    )
    return context.new_page()


def page_weight(browser: Browser, server: PageServer) -> None:
    page = new_page(browser, server)
    loaded: list[tuple[str, int, int]] = []  # path, served bytes, raw bytes
    api_bytes = 0

    def on_response(response: Response) -> None:
        nonlocal api_bytes
        path = response.url.removeprefix(server.url.rstrip("/"))
        raw = len(response.body())
        if "/api/v1/" in path:
            api_bytes += raw
            return
        # The body bytes on the wire: gzip when the server compressed it.
        served = response.request.sizes()["responseBodySize"]
        loaded.append((path.partition("?")[0], served, raw))

    page.on("response", on_response)
    page.goto(CHART)
    page.wait_for_function("performance.getEntriesByName('first-chart').length > 0")
    page.wait_for_load_state("networkidle")
    page.context.close()
    print("page weight (chart view, cold cache):")
    for path, served, raw in sorted(loaded, key=lambda x: -x[1]):
        print(f"  {path:36} {served / 1024:7.1f} KB gzip {raw / 1024:8.1f} KB raw")
    total = sum(s for _, s, _ in loaded)
    raw_total = sum(r for _, _, r in loaded)
    verdict = "ok" if total / 1024 <= WEIGHT_TARGET_KB else "OVER TARGET"
    print(
        f"  total: {total / 1024:.1f} KB compressed ({raw_total / 1024:.1f} KB raw) in "
        f"{len(loaded)} files; target <= {WEIGHT_TARGET_KB} KB: {verdict}"
    )
    print(f"  API JSON for the view (uncompressed): {api_bytes / 1024:.1f} KB")


def first_chart(browser: Browser, server: PageServer, runs: int) -> None:
    times = []
    for _ in range(runs):
        page = new_page(browser, server)
        page.goto(CHART)
        page.wait_for_function("performance.getEntriesByName('first-chart').length > 0")
        times.append(page.evaluate("performance.getEntriesByName('first-chart')[0].startTime"))
        page.context.close()
    median = statistics.median(times)
    verdict = "ok" if median <= FIRST_CHART_TARGET_MS else "OVER TARGET"
    print(
        f"time to first chart, 24 h of 1 s data (86,400 samples -> 1,000 points), {runs} cold "
        f"runs: median {median:.0f} ms, min {min(times):.0f}, max {max(times):.0f}; "
        f"target <= {FIRST_CHART_TARGET_MS} ms: {verdict}"
    )


def screenshots(browser: Browser, server: PageServer, api: FakeApi, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    cpu = next(s for s in api.series if s.metric == "system.cpu.utilization")
    anomaly = api.add_anomaly(cpu, api.now - 2 * HOUR, CPU_SPIKE_EVIDENCE, score=0.97)
    try:
        page = new_page(browser, server)
        page.goto("/")
        page.locator(".alert").first.wait_for()
        page.locator("section[aria-labelledby='s-sinks'] tbody tr").first.wait_for()
        page.screenshot(path=str(out / "overview.png"), full_page=True)
        page.goto("/#/chart?metric=system.cpu.utilization&range=6h")
        page.locator(".marker").first.wait_for()
        page.locator(".marker").first.hover()
        page.locator(".tip").wait_for()
        page.screenshot(path=str(out / "chart.png"), full_page=True)
        page.context.close()
    finally:
        api.anomalies.remove(anomaly)
    print(f"screenshots: {out / 'overview.png'}, {out / 'chart.png'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--screenshots", type=Path, help="save overview.png and chart.png here")
    args = parser.parse_args()
    api = bench_api(float(int(time.time())))
    bench = next(s for s in api.series if s.metric == "bench.requests")
    # Answered from memory during the runs, so they time the page, not the fake.
    took = api.precompute(bench, api.now - 86_400, api.now, 1000)
    print(f"fake API: 86,400 samples -> 1,000 points in {took * 1e3:.0f} ms (once, before the runs)")
    with serve_page(api) as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page_weight(browser, server)
            first_chart(browser, server, args.runs)
            if args.screenshots:
                screenshots(browser, server, api, args.screenshots)
        finally:
            browser.close()


if __name__ == "__main__":
    main()
