"""Every log line is valid JSON, whatever numbers its fields carry."""

from __future__ import annotations

import io
import json

from infrawatch import logging as iw_logging


def test_non_finite_fields_render_as_valid_json() -> None:
    out = io.StringIO()
    iw_logging.configure("info", "json", out)
    try:
        iw_logging.get_logger("test").info(
            "test.values", nan=float("nan"), inf=[float("inf")], nested={"neg": float("-inf")}
        )
    finally:
        iw_logging.configure("info", "json")
    line = json.loads(out.getvalue(), parse_constant=_reject)
    assert line["nan"] == "NaN"
    assert line["inf"] == ["+Inf"]
    assert line["nested"] == {"neg": "-Inf"}
    assert line["event"] == "test.values"


def test_describe_and_at_doubling() -> None:
    assert iw_logging.describe(ValueError("bad value")) == "ValueError: bad value"
    assert iw_logging.describe(TimeoutError()) == "TimeoutError"
    assert [n for n in range(20) if iw_logging.at_doubling(n)] == [1, 2, 4, 8, 16]


def _reject(token: str) -> float:
    raise AssertionError(f"not JSON: {token}")
