"""The status page at `/` in a real browser: Debian's Chromium driven by Playwright.

The page is served by its real static routes (infrawatch.web.static_files) next to a fake of
the issue-12 JSON API (tests/support_page.py) on 127.0.0.1, with the CSP the agent sends. One
browser serves the whole module; each test gets a fresh context (no shared cache or storage).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gzip
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from playwright.sync_api import Browser, Page, Request, expect, sync_playwright

from infrawatch.web.security import CONTENT_SECURITY_POLICY
from infrawatch.web.static_files import STATIC_DIR as STATIC
from infrawatch.web.static_files import servable, static_routes
from scripts import vendor_uplot
from tests.support_page import HOUR, FakeApi, PageServer, demo_api, page_app, serve_page

CHROMIUM = Path("/usr/bin/chromium")
NOW = float(int(time.time()))
CPU_SPIKE_EVIDENCE = "value 0.97 is 15.2σ above the 1d mean 0.22 (σ 0.049)"

# Predicates are functions, never bare expressions: Playwright polls an expression with eval(),
# which the page's CSP (rightly) refuses.
FIRST_CHART = "() => performance.getEntriesByName('first-chart').length > 0"

# Runs before the page's own scripts (CDP injection, so the CSP doesn't apply to it): records
# every securitypolicyviolation event the document sees.
CSP_LISTENER = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`);
});
"""

# Runs before the page's own scripts: records every use of Intl and of the locale-aware methods
# that load ICU's data (the first one in a tab costs 40-120 ms of main-thread time).
INTL_RECORDER = """
window.__intl = [];
for (const name of Object.getOwnPropertyNames(Intl)) {
  const Real = Intl[name];
  if (typeof Real !== "function") continue;
  Intl[name] = new Proxy(Real, {
    construct(target, args, newTarget) {
      window.__intl.push(`new Intl.${name}`);
      return Reflect.construct(target, args, newTarget);
    },
    apply(target, self, args) {
      window.__intl.push(`Intl.${name}()`);
      return Reflect.apply(target, self, args);
    },
  });
}
for (const [owner, proto, method] of [
  ["Number", Number.prototype, "toLocaleString"],
  ["Date", Date.prototype, "toLocaleString"],
  ["Date", Date.prototype, "toLocaleDateString"],
  ["Date", Date.prototype, "toLocaleTimeString"],
  ["String", String.prototype, "localeCompare"],
]) {
  const real = proto[method];
  proto[method] = function (...args) {
    window.__intl.push(`${owner}.${method}`);
    return real.apply(this, args);
  };
}
"""

# What a browser does when the tab goes to the background (or comes back).
SET_VISIBILITY = """(state) => {
  Object.defineProperty(document, "visibilityState", {configurable: true, get: () => state});
  document.dispatchEvent(new Event("visibilitychange"));
}"""


@dataclass
class Watch:
    """What went wrong in one page: console errors, uncaught errors, failed requests."""

    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        assert self.console == []
        assert self.errors == []
        assert self.failed == []

    def csp_messages(self) -> list[str]:
        return [m for m in self.console if "Content Security Policy" in m]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the page tests drive Debian's chromium. "
            "Run `make test-deps` (scripts/install-test-deps.sh) or `apt-get install chromium`."
        )
    with sync_playwright() as playwright:
        # Playwright's own browser download can't work here; --no-sandbox because tests run
        # as root, where Chromium refuses its sandbox.
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def api() -> FakeApi:
    return demo_api(NOW)


@pytest.fixture(scope="module")
def server(api: FakeApi) -> Iterator[PageServer]:
    with serve_page(api) as running:
        yield running


@pytest.fixture
def page(browser: Browser, server: PageServer) -> Iterator[tuple[Page, Watch]]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=server.url)
    tab = context.new_page()
    watch = Watch()
    tab.on(
        "console",
        lambda m: watch.console.append(f"{m.type}: {m.text}") if m.type == "error" else None,
    )
    tab.on("pageerror", lambda exc: watch.errors.append(str(exc)))
    tab.on("requestfailed", lambda r: watch.failed.append(f"{r.url}: {r.failure}"))
    tab.on(
        "response",
        lambda r: watch.failed.append(f"{r.url}: {r.status}") if r.status >= 400 else None,
    )
    tab.add_init_script(CSP_LISTENER)
    try:
        yield tab, watch
    finally:
        context.close()


def csp_violations(tab: Page) -> list[str]:
    return list(tab.evaluate("() => window.__csp"))


def api_call(path: str, **params: str) -> Any:
    """A predicate for page.expect_request: a GET of api/v1/<path> with these query values."""

    def matches(request: Request) -> bool:
        if f"/api/v1/{path}?" not in request.url and not request.url.endswith(f"/api/v1/{path}"):
            return False
        query = request.url.partition("?")[2]
        return all(f"{k}={v}" in query.split("&") for k, v in params.items())

    return matches


def wait_for_chart(tab: Page, count: int = 1) -> None:
    expect(tab.locator("figure.chart canvas")).to_have_count(count)
    tab.wait_for_function(FIRST_CHART)


# -- serving ------------------------------------------------------------------------------------


async def _raw_get(port: int, target: str, headers: str = "") -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request with `target` sent byte for byte (no client-side normalising)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        request = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}Connection: close\r\n\r\n"
        writer.write(request.encode())
        await writer.drain()
        raw = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    fields = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        fields[key.strip().lower()] = value.strip()
    return status, fields, body


async def test_static_files_are_served_with_types_validators_and_compression() -> None:
    runner = web.AppRunner(page_app(FakeApi(NOW)), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = int(runner.addresses[0][1])
    try:
        status, headers, body = await _raw_get(port, "/")
        assert status == 200
        assert headers["content-type"] == "text/html; charset=utf-8"
        assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert "default-src 'self'" in CONTENT_SECURITY_POLICY
        assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY
        assert "unsafe" not in CONTENT_SECURITY_POLICY
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["cache-control"] == "no-cache"
        assert b'<script type="module" src="static/app.js">' in body
        # Nothing the CSP would block: no inline script, no style attribute.
        assert b"<script>" not in body
        assert b"style=" not in body

        for path, kind in [
            ("/static/app.js", "text/javascript; charset=utf-8"),
            ("/static/style.css", "text/css; charset=utf-8"),
            ("/static/vendor/uPlot.esm.js", "text/javascript; charset=utf-8"),
            ("/static/vendor/uPlot.min.css", "text/css; charset=utf-8"),
            ("/static/vendor/LICENSE", "text/plain; charset=utf-8"),
            ("/static/favicon.svg", "image/svg+xml"),
        ]:
            status, headers, _ = await _raw_get(port, path)
            assert (status, headers["content-type"]) == (200, kind), path

        # gzip when asked, the same bytes once unpacked; an unchanged copy revalidates to a 304.
        _, plain, plain_body = await _raw_get(port, "/static/vendor/uPlot.esm.js")
        _, packed, packed_body = await _raw_get(
            port, "/static/vendor/uPlot.esm.js", "Accept-Encoding: gzip, br\r\n"
        )
        assert packed["content-encoding"] == "gzip"
        assert gzip.decompress(packed_body) == plain_body
        assert len(packed_body) < len(plain_body) / 2
        assert packed["etag"] != plain["etag"]
        status, _, body = await _raw_get(
            port, "/static/vendor/uPlot.esm.js", f"If-None-Match: {plain['etag']}\r\n"
        )
        assert (status, body) == (304, b"")
        _, refused, _ = await _raw_get(port, "/static/app.js", "Accept-Encoding: gzip;q=0\r\n")
        assert "content-encoding" not in refused

        # Only the package's page files are routes: nothing else, however the path is spelled.
        for target in [
            "/static/",
            "/static",
            "/static/../static_files.py",
            "/static/%2e%2e/static_files.py",
            "/static/..%2fstatic_files.py",
            "/static/vendor/../../server.py",
            "/static/%2fetc%2fpasswd",
            "//etc/passwd",
            "/static_files.py",
            "/index.html",
        ]:
            status, _, body = await _raw_get(port, target)
            assert status == 404, target
            assert b"import" not in body, target
    finally:
        await runner.cleanup()


def test_only_page_files_inside_the_directory_are_servable(tmp_path: Path) -> None:
    root = tmp_path / "static"
    (root / "vendor").mkdir(parents=True)
    (root / "__pycache__").mkdir()
    (root / "index.html").write_text("<!doctype html>")
    (root / "app.js").write_text("export {};")
    (root / "vendor" / "LICENSE").write_text("MIT")
    (root / "secret.py").write_text("TOKEN = 1")
    (root / ".env").write_text("TOKEN=1")
    (root / "__pycache__" / "x.js").write_text("")
    (tmp_path / "outside.js").write_text("export const leaked = 1;")
    (root / "link.js").symlink_to(tmp_path / "outside.js")

    assert sorted(servable(root)) == [
        "/",
        "/static/app.js",
        "/static/index.html",
        "/static/vendor/LICENSE",
    ]
    assert sorted(static_routes(root)) == sorted(servable(root))
    # The shipped directory: the page, its modules, uPlot with its licence and version.
    shipped = servable(Path(__file__).parents[1] / "infrawatch" / "web" / "static")
    for url in ["/", "/static/app.js", "/static/vendor/uPlot.esm.js", "/static/vendor/VERSION"]:
        assert url in shipped


# -- in the browser -----------------------------------------------------------------------------


def test_page_loads_with_no_console_errors_and_no_failed_requests(page: tuple[Page, Watch]) -> None:
    tab, watch = page
    response = tab.goto("/")
    assert response is not None
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    expect(tab.locator("#status")).to_contain_text("web-01")
    expect(tab.locator(".alert")).to_have_count(1)
    expect(tab.get_by_role("heading", name=re.compile("^Anomalous now"))).to_be_visible()
    expect(tab.locator("section[aria-labelledby='s-producers'] tbody tr")).to_have_count(2)
    expect(tab.locator("section[aria-labelledby='s-sinks'] tbody tr")).to_have_count(2)

    tab.get_by_role("link", name="Series", exact=True).click()
    expect(tab.locator("table.series-table tbody tr")).to_have_count(6)
    expect(tab.locator("table.series-table svg.spark polyline").first).to_be_attached()
    tab.get_by_role("link", name="system.disk.io").first.click()
    wait_for_chart(tab)

    watch.assert_clean()
    assert csp_violations(tab) == []


def test_csp_holds_and_is_enforced(page: tuple[Page, Watch], api: FakeApi) -> None:
    tab, watch = page
    tab.goto("/#/chart?metric=system.memory.utilization&range=1h")
    wait_for_chart(tab)
    expect(tab.locator(".marker")).to_have_count(1)
    tab.locator(".marker").hover()  # the tooltip is placed through CSSOM, which the CSP allows
    expect(tab.locator(".tip")).to_be_visible()
    assert csp_violations(tab) == []
    assert watch.csp_messages() == []

    # The control: an inline style *is* refused, so the silence above means something.
    tab.evaluate("() => document.body.setAttribute('style', 'color: red')")
    tab.wait_for_function("() => window.__csp.length > 0")
    assert csp_violations(tab)[0].startswith("style-src")


def test_the_page_never_loads_intl(page: tuple[Page, Watch]) -> None:
    """Overview, series list, a chart with its live legend and tooltip: no Intl anywhere, so
    no tab pays for ICU's locale data (uPlot's import-time Intl objects are patched lazy)."""
    tab, watch = page
    tab.add_init_script(INTL_RECORDER)
    tab.goto("/")
    expect(tab.locator(".alert")).to_have_count(1)
    tab.get_by_role("link", name="Series", exact=True).click()
    expect(tab.locator("table.series-table tbody tr")).to_have_count(6)
    tab.goto("/#/chart?metric=system.memory.utilization&range=1h")
    wait_for_chart(tab)
    tab.locator(".marker").hover()
    expect(tab.locator(".tip")).to_be_visible()
    plot = tab.locator(".u-over").bounding_box()
    assert plot is not None
    tab.mouse.move(plot["x"] + plot["width"] / 2, plot["y"] + plot["height"] / 2)
    expect(tab.locator(".u-legend .u-value").first).not_to_have_text("--")  # the cursor's time

    assert tab.evaluate("() => typeof Intl.NumberFormat === 'function'")  # the recorder is in
    assert tab.evaluate("() => window.__intl") == []
    watch.assert_clean()


def test_vendored_uplot_is_upstream_plus_the_lazy_intl_patch() -> None:
    vendored = (STATIC / "vendor" / "uPlot.esm.js").read_text(encoding="utf-8")
    assert vendor_uplot.sha256(vendor_uplot.revert(vendored)) == vendor_uplot.UPSTREAM_SHA256
    assert vendor_uplot.apply(vendor_uplot.revert(vendored)) == vendored
    version = (STATIC / "vendor" / "VERSION").read_text(encoding="utf-8").strip()
    assert version == vendor_uplot.UPSTREAM_VERSION


def test_injected_anomaly_shows_a_marker_at_its_time_with_the_evidence(
    page: tuple[Page, Watch], api: FakeApi
) -> None:
    tab, watch = page
    cpu = next(s for s in api.series if s.metric == "system.cpu.utilization")
    spike = NOW - 2 * HOUR
    anomaly = api.add_anomaly(cpu, spike, CPU_SPIKE_EVIDENCE, score=0.97)
    try:
        tab.goto("/#/chart?metric=system.cpu.utilization&range=6h")
        wait_for_chart(tab)
        marker = tab.locator(".marker")
        expect(marker).to_have_count(1)
        expect(marker).to_have_attribute("data-ts", str(int(spike)))

        # At its time: the marker's centre sits where the x axis puts `spike` in [now-6h, now].
        plot = tab.locator(".u-over").bounding_box()
        box = marker.bounding_box()
        assert plot is not None
        assert box is not None
        expected_x = plot["x"] + (spike - (NOW - 6 * HOUR)) / (6 * HOUR) * plot["width"]
        assert abs(box["x"] + box["width"] / 2 - expected_x) <= 1.5

        tip = tab.locator(".tip")
        expect(tip).to_be_hidden()
        marker.hover()
        expect(tip).to_be_visible()
        expect(tip).to_contain_text(CPU_SPIKE_EVIDENCE)
        expect(tip).to_contain_text("zscore")
        tab.mouse.move(5, 5)
        expect(tip).to_be_hidden()
        marker.focus()  # keyboard users get the same tooltip
        expect(tip).to_be_visible()
        expect(marker).to_have_attribute("aria-describedby", re.compile("^tip-"))
        expect(tab.locator("section[aria-labelledby='s-anomalies-in-this-range']")).to_contain_text(
            CPU_SPIKE_EVIDENCE
        )
    finally:
        api.anomalies.remove(anomaly)
    watch.assert_clean()


def test_firing_alert_is_in_the_overview_and_its_link_opens_its_chart(
    page: tuple[Page, Watch],
) -> None:
    tab, watch = page
    tab.goto("/")
    alert = tab.locator(".alert", has_text="memory-high")
    expect(alert).to_contain_text("value 0.86 is above the warning threshold 0.8")
    expect(alert).to_contain_text("system.memory.utilization")
    with tab.expect_request(api_call("samples", metric="system.memory.utilization", since="1h")):
        alert.get_by_role("link", name="Open chart").click()
    assert "#/chart?metric=system.memory.utilization&range=1h" in tab.url
    wait_for_chart(tab)
    expect(tab.get_by_role("heading", level=1)).to_have_text("system.memory.utilization")
    caption = tab.locator("figure.chart figcaption")
    expect(caption).to_contain_text("memory-high (warning) > 0.8")
    expect(caption).to_contain_text("1 firing")
    expect(caption).to_contain_text("expected (zscore)")
    watch.assert_clean()


def test_range_buttons_fetch_the_new_range(page: tuple[Page, Watch]) -> None:
    tab, watch = page
    tab.goto("/#/chart?metric=system.cpu.load_average.1m&range=24h")
    wait_for_chart(tab)
    expect(tab.get_by_role("button", name="24h")).to_have_attribute("aria-pressed", "true")
    for range_ in ("7d", "1h", "30d"):
        with (
            tab.expect_request(api_call("samples", since=range_)),
            tab.expect_request(api_call("anomalies", since=range_)),
        ):
            tab.get_by_role("button", name=range_).click()
        expect(tab.get_by_role("button", name=range_)).to_have_attribute("aria-pressed", "true")
        assert tab.url.endswith(f"range={range_}")
    expect(tab.get_by_role("button", name="24h")).to_have_attribute("aria-pressed", "false")
    expect(tab.locator("p.meta")).to_contain_text("1h data, 1 h steps")
    watch.assert_clean()


def test_deep_links_restore_the_view(page: tuple[Page, Watch]) -> None:
    tab, watch = page
    with tab.expect_request(
        api_call("samples", metric="system.disk.io", label="direction%3Dwrite", since="6h")
    ):
        tab.goto("/#/chart?metric=system.disk.io&label=direction%3Dwrite&range=6h")
    wait_for_chart(tab)
    expect(tab.locator("figure.chart")).to_have_attribute(
        "data-series", 'device="sda", direction="write"'
    )
    expect(tab.get_by_role("button", name="6h")).to_have_attribute("aria-pressed", "true")
    tab.reload()
    wait_for_chart(tab)
    expect(tab.get_by_role("button", name="6h")).to_have_attribute("aria-pressed", "true")

    # Without the label, both series of the metric, their cursors synced.
    tab.goto("/#/chart?metric=system.disk.io&range=24h")
    wait_for_chart(tab, 2)
    # A threshold that names its rule's label matchers is drawn only where the rule applies.
    captions = tab.locator("figure.chart figcaption")
    expect(captions.nth(1)).to_contain_text("disk-write-high (warning) > 300M")
    expect(captions.nth(0)).not_to_contain_text("disk-write-high")
    box = tab.locator(".u-over").first.bounding_box()
    assert box is not None
    tab.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    expect(tab.locator(".u-cursor-x").nth(1)).not_to_have_class(re.compile("u-off"))

    tab.goto("/#/series?match=system.disk.*")
    expect(tab.locator("#f-match")).to_have_value("system.disk.*")
    expect(tab.locator("table.series-table tbody tr")).to_have_count(2)
    tab.locator("#f-labels").fill("direction=read")
    tab.locator("#f-labels").press("Enter")
    expect(tab.locator("table.series-table tbody tr")).to_have_count(1)
    assert tab.url.endswith("#/series?match=system.disk.*&label=direction%3Dread")
    tab.reload()
    expect(tab.locator("#f-labels")).to_have_value("direction=read")
    expect(tab.locator("table.series-table tbody tr")).to_have_count(1)
    watch.assert_clean()


def test_refresh_runs_at_the_interval_and_pauses_while_hidden(
    page: tuple[Page, Watch], api: FakeApi
) -> None:
    tab, watch = page
    api.interval_seconds = 1.0
    try:
        tab.goto("/#/chart?metric=system.cpu.utilization&range=1h")
        wait_for_chart(tab)
        expect(tab.locator("html")).to_have_attribute("data-refresh", "running")
        with tab.expect_request(api_call("samples", metric="system.cpu.utilization")):
            pass  # the next tick, one interval later

        tab.evaluate(SET_VISIBILITY, "hidden")
        expect(tab.locator("html")).to_have_attribute("data-refresh", "paused")
        with tab.expect_request(api_call("status")):
            tab.evaluate(SET_VISIBILITY, "visible")
        expect(tab.locator("html")).to_have_attribute("data-refresh", "running")
    finally:
        api.interval_seconds = 10.0
    watch.assert_clean()


# -- against the real agent ---------------------------------------------------------------------


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[str]:
    """`infrawatch run` sampling this host every second; yields the page's URL."""
    config = tmp_path / "infrawatch.toml"
    config.write_text(
        f'[storage]\npath = "{tmp_path / "agent.db"}"\n'
        '[http]\nlisten = "127.0.0.1:0"\n'
        "[host]\ninterval = 1\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFRAWATCH_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "infrawatch",
            "run",
            "--config",
            str(config),
            "--log-format",
            "json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    port = None
    lines: list[str] = []
    for line in proc.stdout:  # the agent logs where it listens; pytest-timeout bounds the wait
        lines.append(line)
        with contextlib.suppress(json.JSONDecodeError):
            event = json.loads(line)
            if event.get("event") == "http.listening":
                port = event["port"]
                break
    if port is None:
        pytest.fail("the agent exited before listening:\n" + "".join(lines[-20:]))
    # Keep reading its log, or a full pipe would stall the agent.
    drain = threading.Thread(target=lambda: collections.deque(proc.stdout or [], maxlen=0))
    drain.start()
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=20)
        drain.join(timeout=5)
        proc.stdout.close()
        assert code == 0


def test_page_works_against_the_real_agent(browser: Browser, agent: str) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=agent)
    tab = context.new_page()
    watch = Watch()
    tab.on("console", lambda m: watch.console.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda exc: watch.errors.append(str(exc)))
    tab.on("requestfailed", lambda r: watch.failed.append(f"{r.url}: {r.failure}"))
    tab.on(
        "response",
        lambda r: watch.failed.append(f"{r.url}: {r.status}") if r.status >= 400 else None,
    )
    tab.add_init_script(CSP_LISTENER)
    try:
        response = tab.goto("/")
        assert response is not None
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        expect(tab.locator("#status")).to_contain_text("Uptime")
        expect(tab.locator("section[aria-labelledby='s-producers'] tbody tr")).to_have_count(1)

        tab.goto("/#/series?match=system.memory.utilization")
        link = tab.get_by_role("link", name="system.memory.utilization")
        link.wait_for(timeout=20_000)  # the first host tick is stored within ~2 intervals
        link.click()
        wait_for_chart(tab)
        with tab.expect_request(api_call("samples", since="7d")):
            tab.get_by_role("button", name="7d").click()
        watch.assert_clean()
        assert csp_violations(tab) == []
    finally:
        context.close()
