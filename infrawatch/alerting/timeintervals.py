"""Recurring time windows (`[[alerting.time_intervals]]`) with Alertmanager's semantics.

A named interval holds entries; it contains an instant when any entry does. An entry contains an
instant when every field it sets does (an entry that sets nothing contains every instant). The
instant is first turned into wall-clock time in the entry's `location`, then compared field by
field, exactly as Alertmanager's `timeinterval.ContainsTime`: ranges are inclusive, `times` are
[start, end) in minutes of the wall-clock day (00:00-24:00), negative days of the month count
from the month's end. Because only the wall clock is compared, a window inside an hour that a
DST change skips never matches, and one inside a repeated hour matches both times.
"""

from __future__ import annotations

import calendar
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WEEKDAYS = {
    "sunday": 0,
    "monday": 1,
    "tuesday": 2,
    "wednesday": 3,
    "thursday": 4,
    "friday": 5,
    "saturday": 6,
}
MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_name) if name}
_TIME = re.compile(r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$")
_INT = re.compile(r"^[+-]?[0-9]{1,9}$")
# How far ahead `Window.change_after` looks for the end of a window (s); the engine asks again.
HORIZON = 86400.0


def parse_time(text: str) -> int:
    """ "HH:MM" (00:00-24:00) as minutes since midnight."""
    if not _TIME.match(text):
        raise ValueError(f"{text!r} is not a time HH:MM between 00:00 and 24:00")
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def _split(text: str) -> tuple[str, str]:
    lowered = text.strip().lower()
    parts = lowered.split(":")
    if len(parts) == 1:
        return parts[0], parts[0]
    if len(parts) != 2:
        raise ValueError(f"{text!r} is not a value or a range start:end")
    return parts[0], parts[1]


def _int(text: str, what: str) -> int:
    if not _INT.match(text):
        raise ValueError(f"{text!r} is not a valid {what}")
    return int(text)


def parse_weekdays(text: str) -> tuple[int, int]:
    """ "monday" or "monday:friday" as (first, last), Sunday = 0; no wrap-around (Alertmanager)."""
    first, last = _split(text)
    try:
        begin, end = WEEKDAYS[first], WEEKDAYS[last]
    except KeyError as err:
        raise ValueError(f"{err.args[0]!r} is not a day of the week") from None
    if begin > end:
        raise ValueError(f"{text!r}: the start day is after the end day (ranges do not wrap)")
    return begin, end


def parse_days_of_month(text: str) -> tuple[int, int]:
    """ "1:5", "-1" or "1:-1" as (first, last); negative days count from the month's end."""
    first, last = _split(text)
    begin, end = _int(first, "day of the month"), _int(last, "day of the month")
    for day in (begin, end):
        if day == 0 or not -31 <= day <= 31:
            raise ValueError(f"{day} is not a day of the month (1 to 31, or -31 to -1)")
    # As Alertmanager: a range whose end comes first in any month (of 28 days) is always empty.
    if (28 + begin if begin < 0 else begin) > (28 + end if end < 0 else end):
        raise ValueError(f"{text!r}: the end day is always before the start day")
    return begin, end


def _month(text: str) -> int:
    if text in MONTHS:
        return MONTHS[text]
    number = _int(text, "month")
    if not 1 <= number <= 12:
        raise ValueError(f"{text!r} is not a month (january-december or 1-12)")
    return number


def parse_months(text: str) -> tuple[int, int]:
    """ "january:march" or "1:3" as (first, last), January = 1."""
    first, last = _split(text)
    begin, end = _month(first), _month(last)
    if begin > end:
        raise ValueError(f"{text!r}: the end month is before the start month")
    return begin, end


def parse_years(text: str) -> tuple[int, int]:
    """ "2026" or "2026:2027" as (first, last)."""
    first, last = _split(text)
    begin, end = _int(first, "year"), _int(last, "year")
    if begin > end:
        raise ValueError(f"{text!r}: the end year is before the start year")
    return begin, end


def parse_location(text: str) -> ZoneInfo:
    """An IANA time zone name ("Europe/Berlin", "UTC")."""
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{text!r} is not a known IANA time zone") from None


def _in(value: int, ranges: Sequence[tuple[int, int]]) -> bool:
    return any(begin <= value <= end for begin, end in ranges)


def _day_matches(ranges: Sequence[tuple[int, int]], t: datetime) -> bool:
    """Alertmanager's days_of_month test: negatives count from the end, clamped to the month."""
    days = calendar.monthrange(t.year, t.month)[1]
    for first, last in ranges:
        begin = days + first + 1 if first < 0 else first
        end = days + last + 1 if last < 0 else last
        if begin > days:
            continue  # e.g. "31" in a 30-day month: no day matches
        begin = max(-days, min(begin, days))
        end = max(-days, min(end, days))
        if begin <= t.day <= end:
            return True
    return False


@dataclass(frozen=True, slots=True)
class Entry:
    """One entry of a named interval; None fields are unrestricted."""

    times: tuple[tuple[int, int], ...] | None
    weekdays: tuple[tuple[int, int], ...] | None
    days_of_month: tuple[tuple[int, int], ...] | None
    months: tuple[tuple[int, int], ...] | None
    years: tuple[tuple[int, int], ...] | None
    location: ZoneInfo

    def contains(self, ts: float) -> bool:
        """Whether epoch second `ts` lies in this entry (compared on the wall clock)."""
        t = datetime.fromtimestamp(ts, self.location)
        if self.times is not None and not any(
            start <= t.hour * 60 + t.minute < end for start, end in self.times
        ):
            return False
        if self.days_of_month is not None and not _day_matches(self.days_of_month, t):
            return False
        if self.months is not None and not _in(t.month, self.months):
            return False
        # Python's weekday() is Monday = 0; Alertmanager's (Go's) is Sunday = 0.
        if self.weekdays is not None and not _in((t.weekday() + 1) % 7, self.weekdays):
            return False
        return self.years is None or _in(t.year, self.years)

    def minute_start(self, ts: float) -> float:
        """The start (epoch s) of the wall-clock minute after the one holding `ts`."""
        offset = datetime.fromtimestamp(ts, self.location).utcoffset()
        shift = offset.total_seconds() if offset is not None else 0.0
        return math.floor((ts + shift) / 60.0) * 60.0 + 60.0 - shift


@dataclass(frozen=True, slots=True)
class TimeInterval:
    """A named `[[alerting.time_intervals]]` entry: contains an instant when any entry does."""

    name: str
    entries: tuple[Entry, ...]

    def contains(self, ts: float) -> bool:
        """Whether epoch second `ts` lies in the interval."""
        return any(entry.contains(ts) for entry in self.entries)


@dataclass(frozen=True, slots=True)
class Window:
    """A route's mute and active intervals: whether it may notify at a given time."""

    mute: tuple[TimeInterval, ...] = ()
    active: tuple[TimeInterval, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.mute or self.active)

    def muted(self, ts: float) -> bool:
        """Muted at epoch second `ts`: inside a mute interval, or outside every active one."""
        if any(i.contains(ts) for i in self.mute):
            return True
        return bool(self.active) and not any(i.contains(ts) for i in self.active)

    def change_after(self, ts: float, horizon: float = HORIZON) -> float:
        """The first instant after `ts` (epoch s) where `muted` differs from its value at
        `ts`, or `ts + horizon` if there is none that soon. Intervals change only where a
        wall-clock minute starts in one of their zones, so those instants are all checked."""
        state = self.muted(ts)
        entries = [e for i in (*self.mute, *self.active) for e in i.entries]
        if not entries:
            return ts + horizon
        limit = ts + horizon
        t = ts
        while True:
            t = min(e.minute_start(t) for e in entries)
            if t >= limit:
                return limit
            if self.muted(t) != state:
                return t
