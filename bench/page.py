"""Status page benchmark: page weight and time to first chart in headless Chromium.

    .venv/bin/python bench/page.py [--runs 7] [--screenshots docs/img]

The page's real static routes are served next to the fake API of tests/support_page.py, which
holds 24 h of 1 s data (86,400 samples) for one series and answers `samples` downsampled to
1,000 points with min and max, as the API contract says. The server runs in a child process
(as the agent would), so the browser driver and the server don't share one interpreter.
Prints:

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
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aiohttp import web
from playwright.sync_api import Browser, Page, Response, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support_page import HOUR, FakeApi, FakeSeries, demo_api, serve_page

CHROMIUM = "/usr/bin/chromium"
CHART = "/#/chart?metric=bench.requests&range=24h"
WEIGHT_TARGET_KB = 150
FIRST_CHART_TARGET_MS = 300
# A function, not an expression: Playwright polls expressions with eval(), which the CSP refuses.
FIRST_CHART = "() => performance.getEntriesByName('first-chart').length > 0"
# The mark's time once it exists: a promise the DevTools protocol awaits (no polling in the page).
AWAIT_FIRST_CHART = """new Promise((resolve) => {
  const mark = () => performance.getEntriesByName("first-chart")[0];
  if (mark()) return resolve(mark().startTime);
  new PerformanceObserver((_, observer) => {
    if (mark()) { observer.disconnect(); resolve(mark().startTime); }
  }).observe({ type: "mark" });
})"""
CPU_SPIKE_EVIDENCE = "value 0.97 is 15.2σ above the 1d mean 0.22 (σ 0.049)"


def bench_api(now: float) -> tuple[FakeApi, float]:
    """The demo host (plus a CPU spike's anomaly) and `bench.requests`: 24 h of 1 s samples;
    also the seconds the fake took to downsample the chart's query (done once, up front)."""
    api = demo_api(now)
    cpu = next(s for s in api.series if s.metric == "system.cpu.utilization")
    api.add_anomaly(cpu, now - 2 * HOUR, CPU_SPIKE_EVIDENCE, score=0.97)
    t = [now - 86_400 + i + 1 for i in range(86_400)]
    v: list[float | None] = [
        120 + 40 * ((i // 600) % 6) + (i * 7919 % 97) / 4 for i in range(86_400)
    ]
    v[86_400 - 3 * 3600] = 910.0  # a one-sample spike the min/max envelope must keep
    bench = api.add_series(FakeSeries("bench.requests", {"service": "api"}, t, v))
    # Answered from memory during the runs, so they time the page, not the fake.
    return api, api.precompute(bench, now - 86_400, now, 1000)


# The floor the machine sets right now: a page whose one module marks "first-chart" at once,
# from the same server to the same browser.
FLOOR_HTML = b'<!doctype html><title>floor</title><script type="module" src="floor.js"></script>'
FLOOR_JS = b'performance.mark("first-chart");'


async def _floor_html(request: web.Request) -> web.Response:
    return web.Response(body=FLOOR_HTML, content_type="text/html")


async def _floor_js(request: web.Request) -> web.Response:
    return web.Response(body=FLOOR_JS, content_type="text/javascript")


def serve(now: float) -> None:
    """The child process: serve until stdin closes; the first stdout line is the port."""
    api, took = bench_api(now)
    api.extra_routes = {"/floor/": _floor_html, "/floor/floor.js": _floor_js}
    with serve_page(api) as server:
        print(server.port, round(took * 1000), flush=True)
        sys.stdin.read()


@contextmanager
def child_server() -> Iterator[str]:
    """The page server in a child process; yields its base URL."""
    now = float(int(time.time()))
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(now)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    stdin, stdout = child.stdin, child.stdout
    if stdin is None or stdout is None:  # never: both are pipes; narrows the types
        raise RuntimeError("no pipes to the page server")
    try:
        port, took = stdout.readline().split()
        print(f"fake API: 86,400 samples -> 1,000 points in {took} ms (once, before the runs)")
        yield f"http://127.0.0.1:{port}/"
    finally:
        stdin.close()
        child.wait(timeout=10)


def new_page(browser: Browser, url: str, *, dark: bool = False) -> Page:
    context = browser.new_context(
        viewport={"width": 1280, "height": 860},
        base_url=url,
        color_scheme="dark" if dark else "light",
        device_scale_factor=1,
    )
    return context.new_page()


def page_weight(browser: Browser, url: str) -> None:
    page = new_page(browser, url)
    loaded: list[tuple[str, int, int]] = []  # path, served bytes, raw bytes
    api_bytes = 0

    def on_response(response: Response) -> None:
        nonlocal api_bytes
        path = response.url.removeprefix(url.rstrip("/"))
        raw = len(response.body())
        if "/api/v1/" in path:
            api_bytes += raw
            return
        # The body bytes on the wire: gzip when the server compressed it.
        served = response.request.sizes()["responseBodySize"]
        path = path.partition("?")[0]
        if all(path != seen for seen, _, _ in loaded):  # the tab icon is fetched twice
            loaded.append((path, served, raw))

    page.on("response", on_response)
    page.goto(CHART)
    page.wait_for_function(FIRST_CHART)
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


def time_to_mark(browser: Browser, url: str, path: str, runs: int) -> list[float]:
    """Milliseconds from navigation start to the "first-chart" mark, each run a cold context.

    The wait goes through the DevTools protocol, not `wait_for_function`: Playwright's injected
    script (15-30 ms of main-thread work) would otherwise run in the page before the mark.
    """
    times = []
    for _ in range(runs):
        page = new_page(browser, url)
        devtools = page.context.new_cdp_session(page)
        page.goto(path)
        answer = devtools.send(
            "Runtime.evaluate",
            {"expression": AWAIT_FIRST_CHART, "awaitPromise": True, "returnByValue": True},
        )
        times.append(float(answer["result"]["value"]))
        page.context.close()
    return times


def first_chart(browser: Browser, url: str, runs: int) -> None:
    times = time_to_mark(browser, url, CHART, runs)
    floor = time_to_mark(browser, url, "/floor/", runs)
    median = statistics.median(times)
    verdict = "ok" if median <= FIRST_CHART_TARGET_MS else "OVER TARGET"
    print(
        f"time to first chart, 24 h of 1 s data (86,400 samples -> 1,000 points), {runs} cold "
        f"runs: median {median:.0f} ms, min {min(times):.0f}, max {max(times):.0f}; "
        f"target <= {FIRST_CHART_TARGET_MS} ms: {verdict}"
    )
    print(
        f"  floor (a one-module page from the same server): median "
        f"{statistics.median(floor):.0f} ms, min {min(floor):.0f}; load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )


def screenshots(browser: Browser, url: str, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    page = new_page(browser, url)
    page.goto("/")
    page.locator(".alert").first.wait_for()
    page.locator("section[aria-labelledby='s-sinks'] tbody tr").first.wait_for()
    page.screenshot(path=str(out / "overview.png"), full_page=True)
    page.goto("/#/chart?metric=system.cpu.utilization&range=6h")
    page.locator(".marker").first.wait_for()
    page.locator(".marker").first.hover()
    page.locator(".tip").first.wait_for()
    page.screenshot(path=str(out / "chart.png"), full_page=True)
    page.context.close()
    print(f"screenshots: {out / 'overview.png'}, {out / 'chart.png'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--screenshots", type=Path, help="save overview.png and chart.png here")
    parser.add_argument("--serve", type=float, metavar="NOW", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve)
        return
    with child_server() as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page_weight(browser, url)
            first_chart(browser, url, args.runs)
            if args.screenshots:
                screenshots(browser, url, args.screenshots)
        finally:
            browser.close()


if __name__ == "__main__":
    main()
