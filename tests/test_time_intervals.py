"""Recurring mute windows: Alertmanager's time_intervals semantics, DST, config errors, engine."""

from __future__ import annotations

import calendar
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from infrawatch.alerting.config import AlertingConfig, TimeIntervalConfig
from infrawatch.alerting.engine import Engine
from infrawatch.alerting.timeintervals import TimeInterval, Window
from infrawatch.model import Anomaly, make_labels

ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Asia/Kolkata",  # +05:30
    "Asia/Kathmandu",  # +05:45
    "Australia/Lord_Howe",  # a 30-minute DST shift
]
DAY_NAMES = ["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"]
MONTH_NAMES = [m.lower() for m in calendar.month_name if m]


def interval(*entries: dict[str, Any], name: str = "w") -> TimeInterval:
    return TimeIntervalConfig.model_validate(
        {"name": name, "time_intervals": list(entries)}
    ).compile()


def epoch(zone: str, *parts: int, fold: int = 0) -> float:
    year, month, day, hour, minute, second = (*parts, 0, 0, 0)[:6]
    when = datetime(year, month, day, hour, minute, second, tzinfo=ZoneInfo(zone), fold=fold)
    return when.timestamp()


def minutes_matching(iv: TimeInterval, start: float, hours: int = 24) -> int:
    return sum(iv.contains(start + 60 * m) for m in range(hours * 60))


# -- a straightforward reference: expand every range into the set of values it allows ---------


def _pair(text: str) -> tuple[str, str]:
    first, _, last = text.lower().partition(":")
    return first, last or first


def _ref_contains(entry: dict[str, Any], ts: float) -> bool:
    t = datetime.fromtimestamp(ts, UTC).astimezone(ZoneInfo(entry.get("location", "UTC")))
    if "times" in entry:
        allowed: set[int] = set()
        for r in entry["times"]:
            sh, sm = map(int, r["start_time"].split(":"))
            eh, em = map(int, r["end_time"].split(":"))
            allowed |= set(range(sh * 60 + sm, eh * 60 + em))
        if t.hour * 60 + t.minute not in allowed:
            return False
    if "weekdays" in entry:
        days: set[str] = set()
        for text in entry["weekdays"]:
            a, b = _pair(text)
            days |= set(DAY_NAMES[DAY_NAMES.index(a) : DAY_NAMES.index(b) + 1])
        if calendar.day_name[t.weekday()].lower() not in days:
            return False
    if "days_of_month" in entry:
        length = calendar.monthrange(t.year, t.month)[1]
        dom: set[int] = set()
        for text in entry["days_of_month"]:
            lo_day, hi_day = (int(x) for x in _pair(text))
            first = lo_day if lo_day > 0 else length + lo_day + 1
            last = hi_day if hi_day > 0 else length + hi_day + 1
            if first <= length:
                dom |= set(range(first, min(last, length) + 1))
        if t.day not in dom:
            return False
    if "months" in entry:
        months: set[int] = set()
        for text in entry["months"]:
            a, b = _pair(text)
            lo = int(a) if a.isdigit() else MONTH_NAMES.index(a) + 1
            hi = int(b) if b.isdigit() else MONTH_NAMES.index(b) + 1
            months |= set(range(lo, hi + 1))
        if t.month not in months:
            return False
    if "years" in entry:
        years: set[int] = set()
        for text in entry["years"]:
            lo_year, hi_year = (int(x) for x in _pair(text))
            years |= set(range(lo_year, hi_year + 1))
        if t.year not in years:
            return False
    return True


@st.composite
def time_ranges(draw: st.DrawFn) -> dict[str, str]:
    start = draw(st.integers(0, 1439))
    end = draw(st.integers(start + 1, 1440))
    return {
        "start_time": f"{start // 60:02d}:{start % 60:02d}",
        "end_time": f"{end // 60:02d}:{end % 60:02d}",
    }


@st.composite
def ordered(draw: st.DrawFn, names: list[str], numeric: bool = False) -> str:
    a = draw(st.integers(0, len(names) - 1))
    b = draw(st.integers(a, len(names) - 1))
    first, last = (str(a + 1), str(b + 1)) if numeric else (names[a], names[b])
    return first if a == b and draw(st.booleans()) else f"{first}:{last}"


@st.composite
def day_ranges(draw: st.DrawFn) -> str:
    # Positive, negative or mixed, never "always empty" (what Alertmanager rejects).
    days = [d for d in range(-31, 32) if d != 0]
    while True:
        a, b = draw(st.sampled_from(days)), draw(st.sampled_from(days))
        if (28 + a if a < 0 else a) <= (28 + b if b < 0 else b):
            return f"{a}" if a == b else f"{a}:{b}"


@st.composite
def entries(draw: st.DrawFn) -> dict[str, Any]:
    entry: dict[str, Any] = {"location": draw(st.sampled_from(ZONES))}
    if draw(st.booleans()):
        entry["times"] = draw(st.lists(time_ranges(), min_size=1, max_size=3))
    if draw(st.booleans()):
        entry["weekdays"] = draw(st.lists(ordered(DAY_NAMES), min_size=1, max_size=2))
    if draw(st.booleans()):
        entry["days_of_month"] = draw(st.lists(day_ranges(), min_size=1, max_size=2))
    if draw(st.booleans()):
        numeric = draw(st.booleans())
        entry["months"] = draw(st.lists(ordered(MONTH_NAMES, numeric), min_size=1, max_size=2))
    if draw(st.booleans()):
        a = draw(st.integers(2024, 2030))
        entry["years"] = [f"{a}:{draw(st.integers(a, 2031))}"]
    return entry


TIMES = st.floats(epoch("UTC", 2024, 1, 1), epoch("UTC", 2031, 1, 1))


@settings(max_examples=200, deadline=None)
@given(st.lists(entries(), min_size=1, max_size=3), st.lists(TIMES, min_size=1, max_size=20))
def test_contains_matches_the_reference(specs: list[dict[str, Any]], times: list[float]) -> None:
    iv = interval(*specs)
    for ts in times:
        assert iv.contains(ts) == any(_ref_contains(e, ts) for e in specs), (specs, ts)


@settings(max_examples=60, deadline=None)
@given(entries(), entries(), TIMES)
def test_change_after_finds_the_first_minute_the_state_flips(
    mute: dict[str, Any], active: dict[str, Any], ts: float
) -> None:
    window = Window((interval(mute),), (interval(active),))
    horizon = 6 * 3600.0
    change = window.change_after(ts, horizon)
    state = window.muted(ts)
    assert ts < change <= ts + horizon
    # Every zone used has whole-minute offsets: states can only flip at UTC minute starts.
    minute = (ts // 60 + 1) * 60
    while minute < change:
        assert window.muted(minute) == state, (mute, active, ts, minute)
        minute += 60
    if change < ts + horizon:
        assert change % 60 == 0
        assert window.muted(change) != state


def test_empty_entry_and_named_interval_or_semantics() -> None:
    ts = epoch("UTC", 2026, 6, 3, 12, 0)  # a Wednesday
    assert interval({}).contains(ts)
    weekend = {"weekdays": ["saturday", "sunday"]}
    noon = {"times": [{"start_time": "12:00", "end_time": "12:01"}]}
    assert not interval(weekend).contains(ts)
    assert interval(weekend, noon).contains(ts)  # any entry
    assert not interval({**weekend, **noon}).contains(ts)  # every field of one entry


def test_end_time_is_exclusive_and_24_00_ends_the_day() -> None:
    iv = interval({"times": [{"start_time": "22:00", "end_time": "24:00"}]})
    assert iv.contains(epoch("UTC", 2026, 1, 5, 22, 0))
    assert iv.contains(epoch("UTC", 2026, 1, 5, 23, 59, 59))
    assert not iv.contains(epoch("UTC", 2026, 1, 6, 0, 0))
    assert not iv.contains(epoch("UTC", 2026, 1, 5, 21, 59, 59))


def test_negative_days_count_from_the_end_of_each_month() -> None:
    last = interval({"days_of_month": ["-1"]})
    assert last.contains(epoch("UTC", 2026, 2, 28, 12))
    assert not last.contains(epoch("UTC", 2026, 2, 27, 12))
    assert last.contains(epoch("UTC", 2028, 2, 29, 12))  # leap year
    assert last.contains(epoch("UTC", 2026, 4, 30, 12))
    # A day beyond the month's length matches nothing (Alertmanager skips the range).
    assert minutes_matching(interval({"days_of_month": ["31"]}), epoch("UTC", 2026, 4, 30)) == 0


# -- DST: only the wall clock of the location counts ------------------------------------------


def test_berlin_spring_forward_skips_the_window_and_fall_back_doubles_it() -> None:
    two = {"times": [{"start_time": "02:00", "end_time": "03:00"}], "location": "Europe/Berlin"}
    iv = interval(two)
    # 2026-03-29: 02:00 CET jumps to 03:00 CEST, the window never exists that day.
    assert minutes_matching(iv, epoch("Europe/Berlin", 2026, 3, 29)) == 0
    assert minutes_matching(iv, epoch("Europe/Berlin", 2026, 3, 28)) == 60
    # 2026-10-25: 03:00 CEST goes back to 02:00 CET, the hour (and the window) happens twice.
    assert minutes_matching(iv, epoch("Europe/Berlin", 2026, 10, 25)) == 120
    assert iv.contains(epoch("Europe/Berlin", 2026, 10, 25, 2, 30, fold=0))
    assert iv.contains(epoch("Europe/Berlin", 2026, 10, 25, 2, 30, fold=1))


def test_new_york_days_are_23_and_25_hours_long() -> None:
    day = "America/New_York"
    whole = {"days_of_month": ["8"], "months": ["march"], "location": day}
    assert minutes_matching(interval(whole), epoch(day, 2026, 3, 7, 12), 48) == 23 * 60
    nov = {"days_of_month": ["1"], "months": ["11"], "location": day}
    assert minutes_matching(interval(nov), epoch(day, 2026, 10, 31, 12), 48) == 25 * 60
    one = {"times": [{"start_time": "01:00", "end_time": "02:00"}], "location": day}
    assert minutes_matching(interval(one), epoch(day, 2026, 11, 1)) == 120
    two = {"times": [{"start_time": "02:00", "end_time": "03:00"}], "location": day}
    assert minutes_matching(interval(two), epoch(day, 2026, 3, 8)) == 0


def test_window_end_across_the_repeated_hour() -> None:
    day = "America/New_York"
    window = Window(
        (interval({"times": [{"start_time": "01:00", "end_time": "02:00"}], "location": day}),)
    )
    inside = epoch(day, 2026, 11, 1, 1, 30)  # the first 01:30 (EDT, 05:30 UTC)
    assert window.muted(inside)
    # It ends at 02:00 EST (07:00 UTC), after both 01:xx hours, not at 06:00 UTC.
    assert window.change_after(inside) == epoch("UTC", 2026, 11, 1, 7, 0)
    # Where the clock jumps over the window's start, it starts nowhere that day.
    spring = Window(
        (interval({"times": [{"start_time": "02:00", "end_time": "02:30"}], "location": day}),)
    )
    before = epoch(day, 2026, 3, 8, 1, 0)
    assert spring.change_after(before, 2 * 86400.0) == epoch(day, 2026, 3, 9, 2, 0)


# -- config errors ---------------------------------------------------------------------------


def _alerting(intervals: list[dict[str, Any]], **route: Any) -> dict[str, Any]:
    return {
        "time_intervals": intervals,
        "sinks": [{"name": "log", "type": "log"}],
        "routes": [{"sinks": ["log"], **route}],
    }


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"location": "Mars/Olympus_Mons"}, "not a known IANA time zone"),
        ({"times": [{"start_time": "25:00", "end_time": "26:00"}]}, "not a time HH:MM"),
        ({"times": [{"start_time": "9:00", "end_time": "10:00"}]}, "not a time HH:MM"),
        ({"times": [{"start_time": "10:00", "end_time": "10:00"}]}, "start_time must be before"),
        ({"weekdays": ["friday:monday"]}, "ranges do not wrap"),
        ({"weekdays": ["funday"]}, "not a day of the week"),
        ({"days_of_month": ["0"]}, "not a day of the month"),
        ({"days_of_month": ["-1:-3"]}, "always before the start day"),
        ({"months": ["13"]}, "not a month"),
        ({"months": ["march:january"]}, "before the start month"),
        ({"years": ["2027:2026"]}, "before the start year"),
        ({"years": ["twenty"]}, "not a valid year"),
    ],
)
def test_malformed_intervals_are_config_errors(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        AlertingConfig.model_validate(_alerting([{"name": "w", "time_intervals": [entry]}]))


def test_alertmanager_accepts_what_it_accepts() -> None:
    AlertingConfig.model_validate(
        _alerting(
            [
                {
                    "name": "w",
                    "time_intervals": [
                        {
                            "days_of_month": ["1:-1", "-3:-1", "31"],
                            "months": ["1:3", "December"],
                            "weekdays": ["Monday:FRIDAY", "sunday"],
                            "times": [{"start_time": "00:00", "end_time": "24:00"}],
                            "location": "Australia/Lord_Howe",
                        }
                    ],
                }
            ],
            mute_time_intervals=["w"],
        )
    )


@pytest.mark.parametrize("field", ["mute_time_intervals", "active_time_intervals"])
def test_unknown_interval_names_are_config_errors(field: str) -> None:
    with pytest.raises(ValidationError, match=rf"routes\[0\]\.{field} names unknown .*: nope"):
        AlertingConfig.model_validate(_alerting([{"name": "w"}], **{field: ["nope"]}))
    with pytest.raises(ValidationError, match="duplicate time_intervals names: w"):
        AlertingConfig.model_validate(_alerting([{"name": "w"}, {"name": "w"}]))


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        (
            'location = "Europe/Nowhere"',
            "alerting.time_intervals[0].time_intervals[0].location: 'Europe/Nowhere'"
            " is not a known IANA time zone",
        ),
        (
            'weekdays = ["friday:monday"]',
            "alerting.time_intervals[0].time_intervals[0].weekdays: 'friday:monday':"
            " the start day is after the end day (ranges do not wrap)",
        ),
    ],
)
def test_cli_check_reports_one_line_and_exits_2(tmp_path: Path, toml: str, expected: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[[alerting.time_intervals]]\nname = "w"\n'
        f"[[alerting.time_intervals.time_intervals]]\n{toml}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "infrawatch", "check", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == expected


def test_cli_check_names_the_route_field_of_an_unknown_interval(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[[alerting.sinks]]\nname = "l"\ntype = "log"\n'
        '[[alerting.routes]]\nsinks = ["l"]\nactive_time_intervals = ["office"]\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "infrawatch", "check", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "routes[0].active_time_intervals names unknown time_intervals: office" in line


# -- the engine: a muted route sends nothing, and everything that holds when the window ends --


def _anomaly(host: str, status: str, ts: float, rule: str = "cpu_high") -> Anomaly:
    return Anomaly(
        name="system.cpu.utilization",
        labels=make_labels({"host": host}),
        ts=ts,
        value=0.97,
        detector="threshold",
        rule=rule,
        severity="critical",
        status=status,  # type: ignore[arg-type]
    )


def _engine(window: dict[str, Any], field: str = "mute_time_intervals") -> Engine:
    cfg = AlertingConfig.model_validate(
        {
            "group_wait": 0,
            "group_interval": 60,
            "repeat_interval": 86400,
            "external_labels": {"host": ""},
            "time_intervals": [{"name": "w", "time_intervals": [window]}],
            "sinks": [{"name": "log", "type": "log"}],
            "routes": [{"sinks": ["log"], field: ["w"]}],
        }
    )
    return Engine(cfg, ["log"])


def test_engine_holds_notifications_until_the_window_ends() -> None:
    zone = "Europe/Berlin"
    engine = _engine({"times": [{"start_time": "12:00", "end_time": "12:30"}], "location": zone})
    before = epoch(zone, 2026, 7, 1, 11, 59)
    engine.observe([_anomaly("a", "firing", before)], before)
    [first] = engine.flush(before)
    assert [a["labels"]["host"] for a in first.alerts] == ["a"]
    start, end = epoch(zone, 2026, 7, 1, 12, 0), epoch(zone, 2026, 7, 1, 12, 30)
    engine.observe([_anomaly("b", "firing", start)], start)
    engine.observe([_anomaly("a", "resolved", start + 60)], start + 60)
    engine.observe([_anomaly("c", "firing", start + 120)], start + 120)
    engine.observe([_anomaly("c", "resolved", start + 180)], start + 180)
    for now in (start, start + 60, start + 600, end - 1):
        assert engine.flush(now) == []
    # The flush is due at the window's end, not at the next group_interval or repeat.
    assert engine.next_due() == end
    [after] = engine.flush(end)
    shown = {a["labels"]["host"]: a["status"] for a in after.alerts}
    # b still fires, a's resolve is owed (receivers saw it fire), c came and went unseen.
    assert shown == {"a": "resolved", "b": "firing"}
    assert after.created_at == end


def test_active_intervals_mute_everything_outside_them() -> None:
    zone = "America/New_York"
    engine = _engine(
        {
            "weekdays": ["monday:friday"],
            "times": [{"start_time": "09:00", "end_time": "17:00"}],
            "location": zone,
        },
        "active_time_intervals",
    )
    saturday = epoch(zone, 2026, 7, 4, 10, 0)
    engine.observe([_anomaly("a", "firing", saturday)], saturday)
    assert engine.flush(saturday) == []
    monday_nine = epoch(zone, 2026, 7, 6, 9, 0)
    # Beyond the one-day look-ahead: the engine asks again a day later.
    assert engine.next_due() == saturday + 86400
    assert engine.flush(saturday + 86400) == []
    assert engine.next_due() == monday_nine
    [note] = engine.flush(monday_nine)
    assert note.status == "firing"
