"""Series selectors shared by the detectors: a metric-name glob plus exact label matches."""

from __future__ import annotations

from collections.abc import Mapping
from fnmatch import fnmatchcase

from infrawatch.model import SeriesKey


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
