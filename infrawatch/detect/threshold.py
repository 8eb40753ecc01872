"""Threshold rules: what the operator declared, with `for`, hysteresis and `keep_firing_for`.

Per (series, rule):
- pending: the firing condition (`value op level`) holds; it must keep holding for `for` seconds
  (measured on sample times, like Prometheus) before the rule fires;
- firing: reported once; a rise from warning to critical is reported again as a firing change
  once critical has held for `for` seconds too (each level keeps its own hold timer);
- the rule resolves when `value op resolve` no longer holds (default resolve: the lowest firing
  level),
  and has stayed there for `keep_firing_for` seconds — so a value hovering at the edge never flaps.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence

from infrawatch.detect.base import (
    UNTRACKED,
    Scores,
    SeriesState,
    StateRow,
    StateRows,
    Untracked,
)
from infrawatch.detect.config import ThresholdRule
from infrawatch.detect.match import matches
from infrawatch.model import Anomaly, AnomalyStatus, Sample, SeriesKey, Severity
from infrawatch.units import format_duration

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


class _RuleState:
    __slots__ = ("clear_since", "firing", "held_since", "rule")

    def __init__(self, rule: _Rule) -> None:
        self.rule = rule
        # Per level (most severe first): since when its condition has held without a break.
        self.held_since: list[float | None] = [None] * len(rule.levels)
        self.firing: Severity | None = None
        self.clear_since: float | None = None


class _Rule:
    """A compiled ThresholdRule."""

    __slots__ = ("config", "fire", "levels", "resolve_level")

    def __init__(self, config: ThresholdRule) -> None:
        self.config = config
        self.fire = _OPS[config.op]
        levels: list[tuple[Severity, float]] = []
        if config.critical is not None:
            levels.append(("critical", config.critical))
        if config.warning is not None:
            levels.append(("warning", config.warning))
        self.levels = levels  # most severe first
        self.resolve_level = config.resolve if config.resolve is not None else config.fire_level

    def due(self, st: _RuleState, ts: float, value: float) -> tuple[Severity, float] | None:
        """Advance each level's hold timer; the most severe level held for `for` seconds.

        Each level needs `for` on its own (like one Prometheus rule per severity): a short blip
        above critical neither fires as critical nor escalates a firing warning.
        """
        due: tuple[Severity, float] | None = None
        held = st.held_since
        for i, (severity, level) in enumerate(self.levels):
            if not self.fire(value, level):
                held[i] = None
                continue
            since = held[i]
            if since is None:
                since = held[i] = ts
            if due is None and ts - since >= self.config.for_:
                due = severity, level
        return due


_FIRING: StateRow = (1.0, True, None)
_QUIET: StateRow = (0.0, False, None)


class ThresholdDetector:
    """Evaluates every threshold rule that matches a series."""

    name = "threshold"

    def __init__(self, rules: Sequence[ThresholdRule]) -> None:
        self._rules = [_Rule(r) for r in rules]
        self._series: dict[SeriesKey, list[_RuleState]] = {}
        # (series, rule) marked firing at start-up from persisted alerts; see finish_restore.
        self._announced: set[tuple[SeriesKey, str]] = set()

    def history_seconds(self) -> float:
        """Rule state is rebuilt from the last `for` + `keep_firing_for` of history."""
        spans = [r.config.for_ + r.config.keep_firing_for for r in self._rules]
        return max(spans, default=0.0)

    def score(self, key: SeriesKey) -> float:
        """1.0 while any rule fires on the series, else 0.0."""
        states = self._series.get(key)
        return 1.0 if states and any(s.firing for s in states) else 0.0

    def states(self) -> Mapping[SeriesKey, SeriesState]:
        """Series with at least one matching rule."""
        out = {}
        for key, states in self._series.items():
            if states:
                firing = any(s.firing for s in states)
                out[key] = SeriesState(1.0 if firing else 0.0, firing, None)
        return out

    def state_rows(self) -> StateRows:
        """`states()` as tuples (two shared ones: nothing to allocate per series)."""
        out: StateRows = {}
        for key, states in self._series.items():
            if states:
                out[key] = _FIRING if any(s.firing for s in states) else _QUIET
        return out

    def scores(self) -> Scores:
        """`states()` as parallel lists (score 1.0 while any rule fires, else 0.0)."""
        keys: list[SeriesKey] = []
        scores: list[float] = []
        anomalous: list[bool] = []
        for key, states in self._series.items():
            if states:
                firing = any(s.firing for s in states)
                keys.append(key)
                scores.append(1.0 if firing else 0.0)
                anomalous.append(firing)
        return Scores(keys, scores, anomalous)

    def state_of(self, key: SeriesKey, rule: str) -> SeriesState | None:
        """Whether `rule` fires on `key` (score 1.0 firing, else 0.0); None if the series is not
        tracked or the rule does not apply to it (any more)."""
        for st in self._series.get(key, ()):
            if st.rule.config.name == rule:
                firing = st.firing is not None
                return SeriesState(1.0 if firing else 0.0, firing, None)
        return None

    def forget(self, key: SeriesKey) -> None:
        """Drop a series' rule states."""
        self._series.pop(key, None)

    def _states(self, key: SeriesKey) -> list[_RuleState]:
        states = self._series.get(key)
        if states is None:
            states = [
                _RuleState(r) for r in self._rules if matches(key, r.config.metric, r.config.labels)
            ]
            self._series[key] = states
        return states

    def seed_firing(self, key: SeriesKey, rule: str, severity: Severity) -> bool:
        """Start-up: `rule` was firing on `key` when the agent stopped; return False if no such
        rule applies to the series any more.

        The replay of the last `for` + `keep_firing_for` then resolves it only if the value
        really went back past `resolve` for long enough: a value that sat in the hysteresis band
        (below the firing level, above `resolve`) keeps it firing, as it would have without the
        restart.
        """
        for st in self._states(key):
            if st.rule.config.name == rule:
                st.firing = severity
                self._announced.add((key, rule))
                return True
        return False

    def finish_restore(self) -> int:
        """After the start-up replay: un-fire every rule no persisted alert says was firing.

        The replay's reports are discarded as "reported before the restart", which is only true
        for rules that were announced (`seed_firing`). A rule added to the config, or one whose
        alert never got out, would otherwise sit silently "firing" over a condition that holds;
        un-fired (its hold timers kept), it fires on the first live sample. Returns how many.
        """
        unfired = 0
        for key, states in self._series.items():
            for st in states:
                if st.firing is not None and (key, st.rule.config.name) not in self._announced:
                    st.firing = None
                    st.clear_since = None
                    unfired += 1
        self._announced.clear()
        return unfired

    def observe(self, sample: Sample) -> list[Anomaly]:
        """Advance every matching rule; return firing/resolved changes."""
        key = (sample.name, sample.labels)
        # Most series match no rule: one dict lookup and out (the method call only on a miss).
        states = self._series.get(key)
        if states is None:
            states = self._states(key)
        if not states:
            return []
        return self.step(states, sample)

    def handle(self, key: SeriesKey) -> list[_RuleState] | Untracked | None:
        """The rule states of `key` that `step` takes (None: no rule matches; UNTRACKED: not
        seen yet)."""
        states = self._series.get(key)
        if states is None:
            return UNTRACKED
        return states or None

    def step(self, states: list[_RuleState], sample: Sample) -> list[Anomaly]:
        """`observe` for a series already seen: `states` are its rules' states (`handle`)."""
        value = sample.value
        if value != value:  # NaN says nothing about a threshold
            return []
        out: list[Anomaly] = []
        for st in states:
            change = self._step(st, sample)
            if change is not None:
                out.append(change)
        return out

    def _step(self, st: _RuleState, sample: Sample) -> Anomaly | None:
        rule = st.rule
        cfg = rule.config
        ts, value = sample.ts, sample.value
        hit = rule.due(st, ts, value)
        if st.firing is None:
            if hit is None:
                return None
            st.firing = hit[0]
            st.clear_since = None
            return self._anomaly(sample, rule, hit[0], hit[1], "firing")
        # Firing: escalate, hold, or resolve after the value has crossed back long enough.
        if hit is not None and hit[0] == "critical" and st.firing == "warning":
            st.firing = "critical"
            st.clear_since = None
            return self._anomaly(sample, rule, "critical", hit[1], "firing")
        # Resolved = the condition no longer holds against the resolve level.
        if not rule.fire(value, rule.resolve_level):
            if st.clear_since is None:
                st.clear_since = ts
            if ts - st.clear_since >= cfg.keep_firing_for:
                severity = st.firing
                st.firing = None
                st.clear_since = None
                return self._anomaly(sample, rule, severity, rule.resolve_level, "resolved")
        else:
            st.clear_since = None
        return None

    def _anomaly(
        self, sample: Sample, rule: _Rule, severity: Severity, level: float, status: AnomalyStatus
    ) -> Anomaly:
        cfg = rule.config
        evidence: dict[str, float | str] = {
            "op": cfg.op,
            "level": level,
            "resolve": rule.resolve_level,
            "for_s": cfg.for_,
        }
        if cfg.warning is not None:
            evidence["warning"] = cfg.warning
        if cfg.critical is not None:
            evidence["critical"] = cfg.critical
        held = f" for {format_duration(cfg.for_)}" if cfg.for_ else ""
        name = sample.name
        if status == "firing":
            summary = (
                f"{name} {_fmt(name, sample.value)} {cfg.op} {_fmt(name, level)} ({severity}){held}"
            )
        else:
            back = {">": "<=", ">=": "<", "<": ">=", "<=": ">"}[cfg.op]
            summary = f"{name} {_fmt(name, sample.value)} back {back} {_fmt(name, level)}"
        return Anomaly.of(
            sample,
            detector=self.name,
            rule=cfg.name,
            severity=severity,
            status=status,
            score=1.0 if status == "firing" else 0.0,
            evidence=evidence,
            summary=summary,
            annotations=cfg.annotations,
        )


def _fmt(name: str, value: float) -> str:
    """Utilizations (ratios 0-1) read best as percent; anything else as a short number."""
    if name.endswith("utilization"):
        return f"{value * 100:.1f} %"
    return f"{value:.4g}"
