"""Value types every configuration section shares: durations, finite numbers, paths.

Settings take the TOML type they document (a boolean is `true`, not `1` or `"yes"`; a count is
an integer, not `5.0`; a path is a string). Durations take seconds or text with units ("30s").
Numbers are finite everywhere: `inf`, `nan` and literals that overflow (`1e400`) are rejected.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, Strict

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
# Longer than any useful setting, and short enough that timestamps computed from it (now minus a
# retention or a lookback) stay within what datetime and SQLite integers hold.
MAX_SECONDS = 100 * 365 * 86400.0


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
    if isinstance(value, bool):  # a bool is an int to Python, never a duration
        raise ValueError("expected a number of seconds or a duration such as 30s, 5m, 7d")
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return parse_duration(value)
    return value


def _at_most_max(seconds: float) -> float:
    if seconds > MAX_SECONDS:
        raise ValueError("must be at most 100 years")
    return seconds


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


def _path_text(value: object) -> object:
    if isinstance(value, str | Path):
        return value
    raise ValueError("expected a string (a file system path)")


# A positive, finite duration in seconds; config accepts numbers (fractions allowed) or
# "30s"/"5m"/"7d".
Seconds = Annotated[
    float,
    BeforeValidator(_coerce_seconds),
    Strict(),
    Field(gt=0, allow_inf_nan=False),
    AfterValidator(_at_most_max),
]
# The same, where zero is meaningful ("no wait").
SecondsOrZero = Annotated[
    float,
    BeforeValidator(_coerce_seconds),
    Strict(),
    Field(ge=0, allow_inf_nan=False),
    AfterValidator(_at_most_max),
]
# A file system path, written as a TOML string (strict mode alone would want a Path object).
FsPath = Annotated[Path, BeforeValidator(_path_text), Strict(False)]


class ConfigModel(BaseModel):
    """Base of every configuration table: unknown keys are errors, types strict, numbers finite.

    Strict means no conversions between TOML types; text from environment variables is parsed
    before it gets here (see config.py).
    """

    model_config = ConfigDict(
        extra="forbid", validate_default=True, strict=True, allow_inf_nan=False
    )
