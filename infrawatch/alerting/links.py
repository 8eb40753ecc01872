"""Links from notifications to the status page: the chart of an alert's series around its time.

`alerting.external_url` is the address people reach the agent's page at (like Alertmanager's
`--web.external-url`); without it no link is made. The deep link uses the page's hash routing:

    <external_url>#/chart?metric=<name>&label=<k>%3D<v>&…&range=<1h…30d>&until=<epoch s>

The range is the smallest of the page's ranges that holds the alert with a tenth of the window
free on each side, and `until` ends the window that tenth after the alert's end (a firing
alert's end is the notification time), so the start of the alert, the time before it and the
time after its end (or right after the message) are all in view.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from urllib.parse import quote

from infrawatch.alerting.fingerprint import series_of_alert

# The page's chart ranges, smallest first: (name in the URL, seconds).
RANGES: tuple[tuple[str, float], ...] = (
    ("1h", 3600.0),
    ("6h", 6 * 3600.0),
    ("24h", 86400.0),
    ("7d", 7 * 86400.0),
    ("30d", 30 * 86400.0),
)
MARGIN = 0.1  # of the window, kept free before the alert's start and after its end


def page_url(external_url: str) -> str:
    """The page's address: `external_url` with exactly one trailing slash."""
    return external_url.rstrip("/") + "/"


def chart_window(starts_at: float, ends_at: float) -> tuple[str, int]:
    """(range name, until in epoch seconds) of the chart that shows `starts_at`..`ends_at`."""
    span = max(0.0, ends_at - starts_at)
    name, seconds = RANGES[-1]  # an alert longer than the largest range shows its latest part
    for candidate, width in RANGES:
        if span <= (1.0 - 2 * MARGIN) * width:
            name, seconds = candidate, width
            break
    return name, math.ceil(ends_at + MARGIN * seconds)


def chart_url(
    external_url: str,
    metric: str,
    labels: Mapping[str, str] | Iterable[tuple[str, str]],
    starts_at: float,
    ends_at: float | None,
    now: float,
) -> str:
    """The page's deep link to the chart of one series around an alert (times: epoch seconds).

    `ends_at` is the resolve time of a resolved alert, None for one still firing (then `now`,
    the notification time, ends it)."""
    pairs = labels.items() if isinstance(labels, Mapping) else labels
    end = ends_at if ends_at is not None else max(now, starts_at)
    range_name, until = chart_window(starts_at, end)
    # quote(safe=""): "&", "=", "#", "+" and "|" inside names and values stay data (the page
    # reads the fragment with URLSearchParams, which would take a bare "+" for a space).
    params = [f"metric={quote(metric, safe='')}"]
    params += [f"label={quote(f'{k}={v}', safe='')}" for k, v in sorted(pairs)]
    params += [f"range={range_name}", f"until={until}"]
    return f"{page_url(external_url)}#/chart?{'&'.join(params)}"


def alert_chart_url(
    external_url: str | None,
    alert_labels: Mapping[str, str],
    starts_at: float,
    ends_at: float | None,
    now: float,
) -> str:
    """`chart_url` for the series an alert's labels name; "" without an external URL or when
    the labels name no series (the alert then carries no link)."""
    if not external_url:
        return ""
    series = series_of_alert(alert_labels)
    if series is None:
        return ""
    metric, labels = series
    return chart_url(external_url, metric, labels, starts_at, ends_at, now)
