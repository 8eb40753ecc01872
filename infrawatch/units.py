"""Durations as people write them ("90s", "5m", "7d", 2.5) turned into seconds."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator, Field

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration(text: str) -> float:
    """Return the seconds in `text` ("90s", "1h30m", "7d"); raise ValueError if malformed."""
    compact = text.strip().replace(" ", "")
    if not compact:
        raise ValueError("empty duration")
    pos = 0
    total = 0.0
    for match in _DURATION.finditer(compact):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(compact):
        raise ValueError(
            f"malformed duration {text!r}: use a number of seconds or e.g. 30s, 5m, 7d"
        )
    return total


def _coerce_seconds(value: object) -> object:
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return parse_duration(value)
    return value


def is_duration(metadata: list[object]) -> bool:
    """Whether a pydantic field's metadata marks it as `Seconds`/`SecondsOrZero`."""
    return any(getattr(m, "func", None) is _coerce_seconds for m in metadata)


def format_duration(seconds: float) -> str:
    """Return a short human form of `seconds` ("7d", "90s", "1.5s")."""
    for unit in ("w", "d", "h", "m"):
        size = _UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


# A positive duration in seconds; config accepts numbers (fractions allowed) or "30s"/"5m"/"7d".
Seconds = Annotated[float, BeforeValidator(_coerce_seconds), Field(gt=0)]
# The same, where zero is meaningful ("no wait").
SecondsOrZero = Annotated[float, BeforeValidator(_coerce_seconds), Field(ge=0)]
