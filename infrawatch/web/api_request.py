"""/api/v1's request and response: checked query parameters in, Prometheus' envelope out.

A bad parameter is `{"status": "error", "errorType": "bad_data", "error": "<names the
parameter>"}` with 400; user input is echoed in an error only cut short.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from infrawatch import jsontext
from infrawatch.storage import read
from infrawatch.storage.read import QueryError

MAX_VALUE_CHARS = 1024  # a longer parameter value is refused, not echoed in an error
MAX_GLOB_CHARS = 256


class ApiError(Exception):
    """An answer other than success: HTTP status, Prometheus errorType, one line."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


def bad(message: str) -> ApiError:
    return ApiError(400, "bad_data", message)


def shown(text: str) -> str:
    """User input quoted in an error, cut short (it is echoed back)."""
    return repr(text if len(text) <= 64 else text[:64] + "…")


class Params:
    """A request's query parameters, checked against the names an endpoint takes."""

    def __init__(
        self, request: web.BaseRequest, single: Iterable[str], repeated: Iterable[str] = ()
    ):
        self._query = request.query
        self._single = set(single)
        self._repeated = set(repeated)
        for name in self._query:
            if name not in self._single and name not in self._repeated:
                raise bad(f"unknown parameter {shown(name)}")
        for name, value in self._query.items():
            if len(value) > MAX_VALUE_CHARS:
                raise bad(f"{name}: longer than {MAX_VALUE_CHARS} characters")

    def get(self, name: str, default: str | None = None) -> str | None:
        """The value of a single-valued parameter (`default` if absent)."""
        values = self._query.getall(name, [])
        if len(values) > 1:
            raise bad(f"{name}: given {len(values)} times, expected once")
        return values[0] if values else default

    def all(self, name: str) -> list[str]:
        """Every value of a repeatable parameter."""
        return list(self._query.getall(name, []))

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        """An integer parameter within [low, high]."""
        text = self.get(name)
        if text is None:
            return default
        try:
            value = int(text)
        except ValueError:
            raise bad(f"{name}: expected an integer, got {shown(text)}") from None
        if not low <= value <= high:
            raise bad(f"{name}: {value} is outside [{low}, {high}]")
        return value

    def labels(self) -> dict[str, str]:
        """`label=k=v` filters (repeatable; all must match)."""
        try:
            return read.parse_labels(self.all("label"), option="label")
        except QueryError as exc:
            raise bad(str(exc)) from None

    def span(self, now: float, default_since: str = "24h") -> tuple[float, float]:
        """[since, until) in epoch seconds (`until` defaults to now)."""
        since = self.get("since") or default_since
        try:
            return read.time_range(since, self.get("until"), now=now, options=("since", "until"))
        except QueryError as exc:
            raise bad(str(exc)) from None


def check_glob(text: str) -> re.Pattern[str]:
    """`text` compiled if it is a usable SQLite GLOB (`*`, `?`, `[…]`, `[^…]`), else a 400
    naming `match`."""
    if not text:
        raise bad("match: empty glob (use * for every series)")
    if len(text) > MAX_GLOB_CHARS:
        raise bad(f"match: longer than {MAX_GLOB_CHARS} characters")
    if any(ord(c) < 0x20 or c == "\x7f" for c in text):
        raise bad(f"match: control character in glob {shown(text)}")
    try:
        return read.compile_glob(text)
    except QueryError as exc:
        raise bad(f"match: {exc}") from None


def _response(status: int, body: dict[str, Any]) -> web.Response:
    # JSON has no NaN/Infinity: jsontext writes them as null.
    text = jsontext.dumps(body, separators=(",", ":"))
    response = web.Response(status=status, text=text, content_type="application/json")
    response.enable_compression()  # only if the client asks (Accept-Encoding)
    return response


def success(data: Any) -> web.Response:
    """200 with `data` in the envelope."""
    return _response(200, {"status": "success", "data": data})


def failure(error: ApiError) -> web.Response:
    """The error envelope with the error's status."""
    body = {"status": "error", "errorType": error.kind, "error": str(error)}
    return _response(error.status, body)
