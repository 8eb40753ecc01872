"""Annotation templates: `summary = "Disk {labels.mountpoint} is {value} full"`.

A deliberately tiny language (no expressions, no attribute access, no code): `{name}` is
replaced by a value, `{{` and `}}` are literal braces. The names are

    {value}  {metric}  {severity}  {rule}  {detector}  {score}
    {labels.NAME}       a label of the alert's series ("" when the series has no such label)
    {evidence.NAME}     a number or word behind the decision (threshold rules: level, warning,
                        critical, resolve, op, for_s; zscore: z, mean, std, threshold, ...;
                        novelty: exceedance, min, max, ...; "" when the detector gave none)
    {evidence.summary}  the detector's own one-line explanation

Values of utilization metrics (ratios 0-1) and the levels compared with them read as percent
("93.2 %"); other numbers keep four significant digits. Templates are checked when the config is
loaded: an unknown name or a stray brace is a config error naming the field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
PLAIN = ("value", "metric", "severity", "rule", "detector", "score")
# Evidence that is in the metric's own unit (formatted like the value).
_SAME_UNIT = frozenset(
    {"level", "warning", "critical", "resolve", "mean", "min", "max", "feature_value"}
)


def check_template(template: str) -> str:
    """`template` unchanged if every placeholder is known; else ValueError saying which."""
    for match in _TOKEN.finditer(template):
        token = match.group(0)
        if token in ("{{", "}}"):
            continue
        if token in ("{", "}"):
            raise ValueError(
                f"unmatched {token!r} at character {match.start() + 1} (write {token * 2}"
                " for a literal brace)"
            )
        name = match.group(1).strip()
        if name in PLAIN:
            continue
        root, _, rest = name.partition(".")
        if root in ("labels", "evidence") and _NAME.match(rest):
            continue
        known = ", ".join(f"{{{n}}}" for n in PLAIN)
        raise ValueError(
            f"unknown placeholder {{{name}}} (known: {known}, {{labels.NAME}}, {{evidence.NAME}})"
        )
    return template


def check_annotations(value: Mapping[str, str]) -> Mapping[str, str]:
    """Validate every template of an `annotations` table (a pydantic field validator)."""
    for key, template in value.items():
        if not _NAME.match(key):
            raise ValueError(f"annotation name {key!r} must be letters, digits and _")
        try:
            check_template(template)
        except ValueError as err:
            raise ValueError(f"annotations.{key}: {err}") from None
    return value


def format_number(metric: str, value: float) -> str:
    """A number as people read it: utilization ratios as percent, others to 4 digits."""
    if metric.endswith("utilization"):
        return f"{value * 100:.1f} %"
    return f"{value:.4g}"


def render(
    template: str,
    *,
    value: float,
    metric: str,
    labels: Mapping[str, str],
    evidence: Mapping[str, float | str],
    summary: str,
    severity: str,
    rule: str,
    detector: str,
    score: float,
) -> str:
    """`template` with its placeholders filled in (unknown labels and evidence render "")."""
    plain = {
        "value": format_number(metric, value),
        "metric": metric,
        "severity": severity,
        "rule": rule,
        "detector": detector,
        "score": f"{score:.3f}",
    }

    def evidence_text(key: str) -> str:
        if key == "summary":
            return summary
        item = evidence.get(key)
        if item is None:
            return ""
        if isinstance(item, float | int) and not isinstance(item, bool):
            if key in _SAME_UNIT:
                return format_number(metric, float(item))
            return f"{item:.4g}"
        return str(item)

    def substitute(match: re.Match[str]) -> str:
        part = match.group(0)
        if part in ("{{", "}}"):
            return part[0]
        name = (match.group(1) or "").strip()
        if name in plain:
            return plain[name]
        root, _, rest = name.partition(".")
        if root == "labels":
            return labels.get(rest, "")
        if root == "evidence":
            return evidence_text(rest)
        return part  # unreachable for a checked template; left as written otherwise

    return _TOKEN.sub(substitute, template)
