"""JSON text that every receiver can parse: NaN and ±Infinity (not JSON) are written as null.

Python's `json.dumps` writes `NaN` and `Infinity` by default, which strict parsers (Go's
encoding/json in Alertmanager, JavaScript's JSON.parse, jq, SQLite's json functions) reject, so
one odd evidence value would make a whole notification undeliverable. Everything the agent
sends or stores as JSON goes through `dumps`.
"""

from __future__ import annotations

import json
import math
from typing import Any


def finite(value: Any) -> Any:
    """`value` with every non-finite float, in any nested dict, list or tuple, replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def dumps(value: Any, **kw: Any) -> str:
    """`json.dumps(value, **kw)`, with NaN and ±Infinity written as null: always valid JSON."""
    try:
        # The common case has nothing to replace: no copy of the document is made for it.
        return json.dumps(value, allow_nan=False, **kw)
    except ValueError:
        return json.dumps(finite(value), allow_nan=False, **kw)
