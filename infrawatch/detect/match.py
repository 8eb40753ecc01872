"""Series selectors shared by the detectors: a metric-name glob plus exact label matches."""

from __future__ import annotations

from collections.abc import Mapping
from fnmatch import fnmatchcase
from typing import Any, Protocol

from infrawatch.model import SeriesKey


class _Overridable(Protocol):
    """A detector section: its settings plus `overrides` (each with metric, labels)."""

    @property
    def overrides(self) -> list[Any]: ...

    def model_dump(self, *, exclude: set[str]) -> dict[str, Any]: ...


def matches(key: SeriesKey, metric: str, labels: Mapping[str, str]) -> bool:
    """True if the series' name matches the glob and every label matches exactly.

    A matcher value of "" matches a series that lacks the label, as in Prometheus.
    """
    name, series_labels = key
    if not fnmatchcase(name, metric):
        return False
    if labels:
        have = dict(series_labels)
        for label, want in labels.items():
            if have.get(label, "") != want:
                return False
    return True


def effective_settings(config: _Overridable, key: SeriesKey) -> dict[str, Any]:
    """A detector section's settings for `key`: the first matching override's set fields win."""
    merged = config.model_dump(exclude={"overrides"})
    for override in config.overrides:
        if matches(key, override.metric, override.labels):
            for field, value in override.model_dump(exclude={"metric", "labels"}).items():
                if value is not None:
                    merged[field] = value
            break
    return merged
