"""Alert identity: the labels an anomaly becomes, and their stable fingerprint."""

from __future__ import annotations

from collections.abc import Mapping

from infrawatch.model import Anomaly, Labels, SeriesKey, make_labels

# Labels the alert itself sets. A series label with one of these names, or one already starting
# with exported_, gets one more exported_ prefix (Prometheus renames a scraped label that collides
# with a target label the same way); the way back removes exactly one. So `metric="a"` and
# `exported_metric="a"` stay two series, and the mapping is a bijection between series and the
# labels their alerts carry.
RESERVED = ("alertname", "metric", "severity")
EXPORTED = "exported_"

_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_SEP = 0xFF  # never valid in UTF-8, so "a"+"bc" and "ab"+"c" hash differently


def series_alert_labels(name: str, labels: Labels) -> dict[str, str]:
    """The labels that identify a series in its alerts: metric (= series name), series labels."""
    out = {"metric": name}
    for key, value in labels:
        out[EXPORTED + key if key in RESERVED or key.startswith(EXPORTED) else key] = value
    return out


def series_of_alert(labels: Mapping[str, str]) -> SeriesKey | None:
    """The series an alert's labels name: the inverse of `series_alert_labels`.

    None when the labels have no `metric`, or carry a label no series maps to (an `exported_x`
    where x is neither reserved nor itself exported_-prefixed: alerts stored before the mapping
    was a bijection, for a series whose own label started with exported_)."""
    name = labels.get("metric")
    if name is None:
        return None
    series = {}
    for key, value in labels.items():
        if key in RESERVED:
            continue
        original = key.removeprefix(EXPORTED)
        if original != key and original not in RESERVED and not original.startswith(EXPORTED):
            return None
        series[original] = value
    return name, make_labels(series)


def alert_labels(anomaly: Anomaly) -> dict[str, str]:
    """The alert's labels: alertname (= rule), metric (= series name), series labels, severity."""
    return {
        "alertname": anomaly.rule,
        **series_alert_labels(anomaly.name, anomaly.labels),
        "severity": anomaly.severity,
    }


def fingerprint(labels: dict[str, str] | Labels) -> str:
    """16 hex digits: FNV-1a 64 over the sorted labels, severity excluded.

    Same hash and layout as Alertmanager's fingerprint, but `severity` is left out so that a rule
    escalating from warning to critical stays one alert (its severity is updated in place).
    """
    items = sorted(labels.items() if isinstance(labels, dict) else labels)
    h = _FNV_OFFSET
    for key, value in items:
        if key == "severity":
            continue
        for part in (key, value):
            for byte in part.encode("utf-8", "surrogatepass"):
                h = ((h ^ byte) * _FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
            h = ((h ^ _SEP) * _FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"
