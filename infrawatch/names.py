"""Prometheus names for dotted series names and label keys: one mapping, shared by /metrics
(web/exposition.py) and remote-write (export/remote_write.py).

A dotted name becomes a Prometheus name by turning every character Prometheus does not allow
into `_`, as OpenTelemetry's Prometheus exporter does (`system.cpu.utilization` →
`system_cpu_utilization`); label keys are sanitised the same way.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

from infrawatch.model import Labels, utf8_text

_INVALID_METRIC_CHARS = re.compile(r"[^a-zA-Z0-9_:]")
_INVALID_LABEL_CHARS = re.compile(r"[^a-zA-Z0-9_]")
_CAMEL_HUMP = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
# Suffixes Prometheus/OpenMetrics reserve for counters, histograms and summaries; a gauge that
# ends in one (`system.processes.count`, a CloudWatch `.sum` statistic) fails `promtool check
# metrics` and confuses PromQL, so it gets `_value` appended.
RESERVED_SUFFIXES = ("_count", "_sum", "_bucket", "_total", "_created")


def _snake(name: str) -> str:
    # CloudWatch-style CamelCase (InstanceId) becomes snake_case (instance_id), as promtool wants.
    return _CAMEL_HUMP.sub("_", name).lower() if any(c.isupper() for c in name) else name


@functools.lru_cache(maxsize=4096)
def metric_name(dotted: str) -> str:
    """A series name as a Prometheus name: `system.cpu.utilization` → `system_cpu_utilization`."""
    name = _snake(_INVALID_METRIC_CHARS.sub("_", dotted))
    if not name or name[0].isdigit():
        name = f"_{name}"
    return f"{name}_value" if name.endswith(RESERVED_SUFFIXES) else name


@functools.lru_cache(maxsize=4096)
def label_name(key: str) -> str:
    """A label key as a valid Prometheus label name (`__` prefixes are reserved, so renamed)."""
    name = _snake(_INVALID_LABEL_CHARS.sub("_", key))
    if not name or name[0].isdigit():
        name = f"_{name}"
    return f"exported{name}" if name.startswith("__") else name


def prom_labels(labels: Labels, reserved: Iterable[str] = ()) -> dict[str, str]:
    """Series labels as a Prometheus label dict; a key clashing with `reserved` gets `exported_`."""
    out: dict[str, str] = {}
    for key, value in labels:
        name = label_name(key)
        if name in reserved:
            name = f"exported_{name}"
        out[name] = utf8_text(value)
    return out
