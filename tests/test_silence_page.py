"""The overview shows active silences with what they mute, and marks a muted alert "silenced by
<id>" (the real static page in Debian's chromium against the page tests' fake API)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, expect, sync_playwright

from tests.support_page import demo_api, serve_page
from tests.test_page import CHROMIUM, NOW

SILENCE_ID = "0f3c9a1e-5d2b-4c7a-9e8f-1234567890ab"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make test-deps`")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


def test_overview_shows_silences_and_what_they_mute(browser: Browser) -> None:
    api = demo_api(NOW)
    muted = next(a for a in api.alerts if a["alertname"] == "memory-high")
    muted.update(silenced=True, silenced_by=SILENCE_ID)
    api.silences = [
        {"id": SILENCE_ID, "origin": "db", "state": "active", "created_by": "alice",
         "comment": "deploy <b>web-1</b>", "starts_at": NOW - 600, "ends_at": NOW + 3600,
         "matchers": ['alertname="memory-high"'],
         "mutes": [{"fingerprint": muted["fingerprint"], "alertname": "memory-high",
                    "labels": muted["labels"]}]},
        {"id": "config-1", "origin": "config", "state": "active", "created_by": "config file",
         "comment": "", "starts_at": None, "ends_at": None, "matchers": ['host="lab"'],
         "mutes": []},
        {"id": "f" * 36, "origin": "db", "state": "expired", "created_by": "bob", "comment": "",
         "starts_at": NOW - 7200, "ends_at": NOW - 3600, "matchers": ['a="b"'], "mutes": []},
    ]  # fmt: skip
    errors: list[str] = []
    with serve_page(api) as server:
        context = browser.new_context(base_url=server.url)
        tab = context.new_page()
        tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        tab.on("pageerror", lambda exc: errors.append(str(exc)))
        try:
            tab.goto("/")
            alert = tab.locator(".alert", has_text="memory-high")
            expect(alert).to_contain_text(f"silenced by {SILENCE_ID[:8]}")
            panel = tab.locator("section.panel", has=tab.get_by_role("heading", name="Silences"))
            expect(panel.locator("h2 .count")).to_have_text("2")  # active ones only
            rows = panel.locator("tbody tr")
            expect(rows).to_have_count(2)
            expect(rows.nth(0)).to_contain_text('alertname="memory-high"')
            expect(rows.nth(0)).to_contain_text("alice")
            expect(rows.nth(0)).to_contain_text("deploy <b>web-1</b>")  # text, not markup
            expect(rows.nth(0)).to_contain_text("memory-high")
            expect(rows.nth(1)).to_contain_text("config-1")
            expect(rows.nth(1)).to_contain_text("no end")
            expect(rows.nth(1)).to_contain_text("nothing firing")
        finally:
            context.close()
    assert errors == []
