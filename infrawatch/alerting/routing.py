"""Routes (which sinks an alert goes to, with which timers) and silences, built from config."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from infrawatch.alerting.config import AlertingConfig
from infrawatch.alerting.matchers import Matcher, matches_all, parse_matcher
from infrawatch.alerting.timeintervals import Window

DEFAULT_ROUTE = "default"


@dataclass(frozen=True, slots=True)
class Route:
    """A resolved route: matchers, target sinks and the timers (seconds) of its groups."""

    name: str
    matchers: tuple[Matcher, ...]
    sinks: tuple[str, ...]
    group_by: tuple[str, ...]
    group_wait: float
    group_interval: float
    repeat_interval: float
    send_resolved: bool
    continue_: bool = False
    # mute_time_intervals / active_time_intervals: when the route may send at all.
    window: Window = field(default_factory=Window)

    def group_labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        """The labels that name this alert's group ("..." groups by every label)."""
        if "..." in self.group_by:
            return dict(sorted(labels.items()))
        return {k: labels.get(k, "") for k in self.group_by}

    def group_key(self, labels: Mapping[str, str]) -> str:
        """A stable string naming the group (route name plus grouping labels)."""
        inner = ",".join(f"{k}={v!r}" for k, v in self.group_labels(labels).items())
        return f"{self.name}:{{{inner}}}"


@dataclass(frozen=True, slots=True)
class Silence:
    """Alerts matching every matcher are not notified between starts_at and ends_at (epoch s)."""

    matchers: tuple[Matcher, ...]
    starts_at: float | None
    ends_at: float | None
    comment: str

    def active(self, labels: Mapping[str, str], now: float) -> bool:
        """Whether this silence mutes `labels` at `now`."""
        if self.starts_at is not None and now < self.starts_at:
            return False
        if self.ends_at is not None and now >= self.ends_at:
            return False
        return matches_all(self.matchers, labels)


def build_routes(cfg: AlertingConfig, sink_names: Sequence[str]) -> list[Route]:
    """Routes from config; with none configured, one default route to every sink."""
    if not cfg.routes:
        return [
            Route(
                DEFAULT_ROUTE,
                (),
                tuple(sink_names),
                tuple(cfg.group_by),
                cfg.group_wait,
                cfg.group_interval,
                cfg.repeat_interval,
                cfg.send_resolved,
            )
        ]
    intervals = {t.name: t.compile() for t in cfg.time_intervals}
    routes = []
    for i, r in enumerate(cfg.routes):
        routes.append(
            Route(
                r.name or f"route{i}",
                tuple(parse_matcher(m) for m in r.matchers),
                tuple(r.sinks),
                tuple(r.group_by if r.group_by is not None else cfg.group_by),
                r.group_wait if r.group_wait is not None else cfg.group_wait,
                r.group_interval if r.group_interval is not None else cfg.group_interval,
                r.repeat_interval if r.repeat_interval is not None else cfg.repeat_interval,
                r.send_resolved if r.send_resolved is not None else cfg.send_resolved,
                r.continue_,
                Window(
                    tuple(intervals[n] for n in r.mute_time_intervals),
                    tuple(intervals[n] for n in r.active_time_intervals),
                ),
            )
        )
    return routes


def build_silences(cfg: AlertingConfig) -> list[Silence]:
    """Silences from config, times as epoch seconds."""
    return [
        Silence(
            tuple(parse_matcher(m) for m in s.matchers),
            s.starts_at.timestamp() if s.starts_at else None,
            s.ends_at.timestamp() if s.ends_at else None,
            s.comment,
        )
        for s in cfg.silences
    ]


def match_routes(routes: Sequence[Route], labels: Mapping[str, str]) -> list[Route]:
    """The routes an alert takes: the first match, and later ones while `continue` is set."""
    out = []
    for route in routes:
        if matches_all(route.matchers, labels):
            out.append(route)
            if not route.continue_:
                break
    return out
