"""The values that flow through the agent: samples, anomalies and alerts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

# A label set is a sorted tuple of (key, value) pairs: hashable, immutable and ordered, so the
# same labels always make the same series key and the same stored JSON.
Labels = tuple[tuple[str, str], ...]
SeriesKey = tuple[str, Labels]

Severity = Literal["info", "warning", "critical"]
AnomalyStatus = Literal["firing", "resolved"]


def utf8_text(value: str) -> str:
    """`value` as encodable UTF-8: undecodable bytes kept as surrogates become U+FFFD."""
    if value.isascii():
        return value
    try:
        value.encode()
    except UnicodeEncodeError:
        # psutil and os decode non-UTF-8 names (a process any user can start, a mountpoint)
        # with surrogateescape; such a string can't be stored in SQLite or sent in JSON.
        try:
            return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        except UnicodeEncodeError:
            return value.encode("utf-8", "replace").decode()
    return value


def make_labels(labels: Mapping[str, object] | Iterable[tuple[str, object]] = ()) -> Labels:
    """Return the canonical (sorted, string-valued, valid UTF-8) form of a label mapping."""
    items = labels.items() if isinstance(labels, Mapping) else labels
    return tuple(sorted((utf8_text(str(k)), utf8_text(str(v))) for k, v in items))


@dataclass(frozen=True, slots=True)
class Sample:
    """One observation of one series: `ts` is UTC epoch seconds."""

    name: str
    value: float
    ts: float
    labels: Labels = ()

    @property
    def key(self) -> SeriesKey:
        """The series this sample belongs to."""
        return (self.name, self.labels)


@dataclass(frozen=True, slots=True)
class Anomaly:
    """A detector's state change for one series and rule: it started firing or it resolved.

    `score` is the detector's calibrated score in [0, 1] (0.5 is its firing point; threshold rules
    report 1.0 while firing), `evidence` holds the numbers behind the decision (threshold, or
    mean/std/z, or range bounds) and `summary` is the same thing in words for people.
    """

    name: str
    labels: Labels
    ts: float
    value: float
    detector: str
    rule: str
    severity: Severity
    status: AnomalyStatus
    score: float = 1.0
    evidence: Mapping[str, float | str] = field(default_factory=dict)
    summary: str = ""
    # The rule's annotation templates (`annotations` in its config); the alert engine fills in
    # their placeholders (infrawatch.annotations).
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def key(self) -> SeriesKey:
        """The series this anomaly is about."""
        return (self.name, self.labels)

    @classmethod
    def of(
        cls,
        sample: Sample,
        *,
        detector: str,
        rule: str,
        severity: Severity,
        status: AnomalyStatus,
        score: float,
        evidence: Mapping[str, float | str],
        summary: str,
        annotations: Mapping[str, str] | None = None,
    ) -> Anomaly:
        """The state change a detector reports about `sample`'s series, at `sample`."""
        return cls(
            sample.name, sample.labels, sample.ts, sample.value, detector, rule, severity,
            status, score, evidence, summary, annotations or {},
        )  # fmt: skip
