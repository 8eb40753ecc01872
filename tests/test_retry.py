"""Retry pacing shared by alert sinks and exporters (infrawatch/retry.py)."""

from __future__ import annotations

import math
import random
import time
from email.utils import formatdate

from infrawatch.alerting.sinks.base import HttpReply, classify
from infrawatch.retry import equal_jitter, parse_retry_after


def test_a_sink_ignores_a_nan_retry_after() -> None:
    # A NaN hint used to come back as NaN: a 429 then had no pacing at all.
    for reply in (
        HttpReply(503, {"Retry-After": "nan"}, "busy"),
        HttpReply(429, {"Retry-After": "NaN"}, "slow down"),
        HttpReply(429, {}, '{"retry_after": NaN}', {"retry_after": math.nan}),
    ):
        assert classify(reply).retry_after is None, reply


def test_a_sink_honours_an_http_date_retry_after() -> None:
    when = formatdate(time.time() + 120, usegmt=True)
    after = classify(HttpReply(503, {"Retry-After": when}, "maintenance")).retry_after
    assert after is not None
    assert 100.0 <= after <= 121.0


def test_retry_after_forms_are_clamped() -> None:
    assert parse_retry_after("7", now=0.0, cap=600.0) == 7.0
    assert parse_retry_after("-3", now=0.0, cap=600.0) == 0.0
    assert parse_retry_after("inf", now=0.0, cap=600.0) == 600.0
    assert parse_retry_after("soon", now=0.0, cap=600.0) is None
    assert parse_retry_after("", now=0.0, cap=600.0) is None
    assert parse_retry_after(None, now=0.0, cap=600.0) is None


def test_equal_jitter_stays_in_the_upper_half_and_never_overflows() -> None:
    rng = random.Random(7)
    for failures, ceiling in ((1, 1.0), (2, 2.0), (5, 16.0), (6, 30.0), (10_000, 30.0)):
        delay = equal_jitter(failures, rng, initial=1.0, multiplier=2.0, cap=30.0)
        assert ceiling / 2 <= delay <= ceiling
