"""Threshold rules: `for`, hysteresis, keep_firing_for, escalation, label matchers and globs."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from infrawatch.detect.config import AnalysisConfig, ThresholdRule
from infrawatch.detect.threshold import ThresholdDetector
from infrawatch.model import Sample
from tests.support_detect import feed, statuses


def rule(**kw: object) -> ThresholdRule:
    """A rule on metric "m" with the given fields."""
    data: dict[str, object] = {"name": "r", "metric": "m", "op": ">", "warning": 0.9}
    data.update(kw)
    return ThresholdRule.model_validate(data)


def test_for_requires_the_condition_to_hold_continuously() -> None:
    det = ThresholdDetector([rule(**{"for": 600})])
    # 300 s steps: above at 0, 1, dip at 2, above from 3 on → pending restarts at 3, fires at 5.
    changes = feed(det, [0.95, 0.95, 0.5, 0.95, 0.95, 0.95, 0.95], step=300)
    assert statuses(changes) == [(5, "firing", "warning")]
    assert changes[0][1].rule == "r"
    assert changes[0][1].evidence["level"] == 0.9


def test_hysteresis_fires_once_and_resolves_once_without_flapping() -> None:
    det = ThresholdDetector([rule(resolve=0.8)])
    # Hovering around the firing level: 0.91, 0.89, 0.91 ... must not flap.
    values = [0.5, 0.91, 0.89, 0.91, 0.85, 0.9, 0.81, 0.79, 0.85, 0.91]
    changes = feed(det, values)
    assert statuses(changes) == [
        (1, "firing", "warning"),
        (7, "resolved", "warning"),
        (9, "firing", "warning"),
    ]
    assert det.score(("m", ())) == 1.0


def test_without_hysteresis_it_resolves_at_the_firing_level() -> None:
    det = ThresholdDetector([rule()])
    assert statuses(feed(det, [0.95, 0.9, 0.95])) == [
        (0, "firing", "warning"),
        (1, "resolved", "warning"),
        (2, "firing", "warning"),
    ]


def test_keep_firing_for_holds_the_alert_through_short_dips() -> None:
    det = ThresholdDetector([rule(keep_firing_for=900)])
    # 300 s steps: dips of two samples (600 s) don't resolve; three below (900 s) do.
    values = [0.95, 0.5, 0.5, 0.95, 0.5, 0.5, 0.5, 0.5]
    assert statuses(feed(det, values)) == [(0, "firing", "warning"), (7, "resolved", "warning")]


def test_escalates_to_critical_and_resolves_once() -> None:
    det = ThresholdDetector([rule(critical=0.97, resolve=0.8)])
    changes = feed(det, [0.92, 0.98, 0.93, 0.99, 0.7])
    assert statuses(changes) == [
        (0, "firing", "warning"),
        (1, "firing", "critical"),
        (4, "resolved", "critical"),
    ]
    assert "98.0 %" not in changes[0][1].summary  # metric "m" is not a utilization
    assert changes[1][1].summary == "m 0.98 > 0.97 (critical)"


def test_below_operator_with_resolve_above() -> None:
    det = ThresholdDetector([rule(op="<", warning=10, critical=5, resolve=20)])
    changes = feed(det, [50, 9, 4, 15, 21])
    assert statuses(changes) == [
        (1, "firing", "warning"),
        (2, "firing", "critical"),
        (4, "resolved", "critical"),
    ]


def test_label_matchers_and_globs_select_series() -> None:
    det = ThresholdDetector(
        [rule(metric="system.*.utilization", labels={"mountpoint": "/", "cpu": ""}, warning=0.5)]
    )
    hit = Sample("system.filesystem.utilization", 0.9, 1.0, (("mountpoint", "/"),))
    other_mount = Sample("system.filesystem.utilization", 0.9, 1.0, (("mountpoint", "/boot"),))
    per_cpu = Sample("system.cpu.utilization", 0.9, 1.0, (("cpu", "0"), ("mountpoint", "/")))
    other_name = Sample("system.memory.usage", 0.9, 1.0, (("mountpoint", "/"),))
    assert [a.status for a in det.observe(hit)] == ["firing"]
    assert det.observe(other_mount) == []
    assert det.observe(per_cpu) == []
    assert det.observe(other_name) == []
    assert set(det.states()) == {hit.key}


def test_default_rules_cover_host_utilizations_and_fire_in_percent() -> None:
    config = AnalysisConfig()
    metrics = {r.metric for r in config.threshold}
    # The host's utilizations, and `up` of the scrape targets (docs/scrape.md).
    assert metrics == {
        "system.cpu.utilization",
        "system.memory.utilization",
        "system.filesystem.utilization",
        "system.paging.utilization",
        "system.filesystem.inodes.utilization",
        "up",
    }
    det = ThresholdDetector(config.threshold)
    changes = feed(det, [0.96] * 3, name="system.memory.utilization", step=300)
    assert statuses(changes) == [(1, "firing", "critical")]
    assert changes[0][1].summary == "system.memory.utilization 96.0 % > 95.0 % (critical) for 5m"
    # The per-core CPU series are not matched by the default CPU rule (cpu="" = no such label).
    per_core = feed(det, [1.0] * 5, name="system.cpu.utilization", labels=(("cpu", "3"),))
    assert per_core == []


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"warning": None}, "set warning and/or critical"),
        ({"critical": 0.5}, "critical must be beyond warning"),
        ({"resolve": 0.95}, "resolve must not be beyond"),
        ({"op": "=="}, "Input should be"),
    ],
)
def test_invalid_rules_are_rejected(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        rule(**fields)


def test_critical_must_also_hold_for_the_for_duration() -> None:
    # Like two Prometheus rules with the same `for`: a one-sample blip above critical neither
    # fires as critical nor escalates a firing warning; critical held for `for` does.
    det = ThresholdDetector([rule(critical=0.97, resolve=0.8, **{"for": 600})])
    values = [0.92, 0.92, 0.99, 0.92, 0.99, 0.99, 0.99, 0.5]
    assert statuses(feed(det, values, step=300)) == [
        (2, "firing", "warning"),
        (6, "firing", "critical"),
        (7, "resolved", "critical"),
    ]
