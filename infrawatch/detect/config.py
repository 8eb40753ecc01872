"""`[analysis]`: which detectors run and how.

Threshold rules say what the operator declared; the statistical detectors (Z-score, range
novelty) give calibrated scores. Per-metric overrides are matched by metric glob + exact labels,
first match wins.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, ConfigDict, Field, model_validator

from infrawatch.annotations import check_annotations
from infrawatch.units import ConfigModel, Seconds, SecondsOrZero

Op = Literal[">", ">=", "<", "<="]
Direction = Literal["up", "down", "both"]


class _Model(ConfigModel):
    model_config = ConfigDict(populate_by_name=True)


# `summary`, `description`, `runbook_url` or any other name → a template whose placeholders
# ({value}, {labels.NAME}, {evidence.NAME}, …: see infrawatch.annotations) the alert
# engine fills in; a summary given here replaces the detector's own.
Annotations = Annotated[dict[str, str], AfterValidator(check_annotations)]


class ThresholdRule(_Model):
    """One `[[analysis.threshold]]` entry: fire when `metric op level` holds for `for` seconds."""

    name: str = Field(min_length=1)
    metric: str = Field(min_length=1, description="glob on the metric name")
    # Exact label matches; "" matches a series without that label (as in Prometheus).
    labels: dict[str, str] = Field(default_factory=dict)
    op: Op = ">"
    warning: float | None = None
    critical: float | None = None
    for_: SecondsOrZero = Field(0.0, alias="for")
    # The level the value must cross back over to resolve (hysteresis); default: the lowest
    # firing level itself.
    resolve: float | None = None
    keep_firing_for: SecondsOrZero = 0.0
    annotations: Annotations = Field(default_factory=dict)

    @model_validator(mode="after")
    def _levels(self) -> ThresholdRule:
        if self.warning is None and self.critical is None:
            raise ValueError("set warning and/or critical")
        above = self.op in (">", ">=")
        warn, crit = self.warning, self.critical
        if warn is not None and crit is not None and ((crit < warn) if above else (crit > warn)):
            raise ValueError(f"critical must be beyond warning for op {self.op!r}")
        lowest = self.fire_level
        if self.resolve is not None and (
            (self.resolve > lowest) if above else (self.resolve < lowest)
        ):
            raise ValueError(f"resolve must not be beyond the firing level for op {self.op!r}")
        return self

    @property
    def fire_level(self) -> float:
        """The least extreme firing level (warning if set, else critical)."""
        level = self.warning if self.warning is not None else self.critical
        if level is None:  # the model validator requires one of them
            raise ValueError("set warning and/or critical")
        return level


def default_threshold_rules() -> list[ThresholdRule]:
    """Shipped host rules (utilizations are ratios 0-1) and the scrape targets' `up` rule."""
    specs: list[tuple[str, str, dict[str, str], float, float, float, float]] = [
        ("cpu_high", "system.cpu.utilization", {"cpu": ""}, 0.90, 0.97, 0.80, 300.0),
        ("memory_high", "system.memory.utilization", {}, 0.90, 0.95, 0.85, 300.0),
        ("filesystem_full", "system.filesystem.utilization", {}, 0.85, 0.95, 0.80, 600.0),
        ("swap_high", "system.paging.utilization", {}, 0.50, 0.80, 0.40, 600.0),
        ("inodes_full", "system.filesystem.inodes.utilization", {}, 0.85, 0.95, 0.80, 600.0),
    ]
    summaries = {
        "cpu_high": "CPU busy: {value} above {evidence.level} for 5 minutes",
        "memory_high": "Memory {value} used, above {evidence.level} for 5 minutes",
        "filesystem_full": "Filesystem {labels.mountpoint} is {value} full"
        " (above {evidence.level})",
        "swap_high": "Swap {value} used, above {evidence.level} for 10 minutes",
        "inodes_full": "Filesystem {labels.mountpoint} has used {value} of its inodes"
        " (above {evidence.level})",
    }
    rules = [
        ThresholdRule.model_validate(
            {
                "name": name,
                "metric": metric,
                "labels": labels,
                "op": ">",
                "warning": warning,
                "critical": critical,
                "resolve": resolve,
                "for": hold,
                "keep_firing_for": 60.0,
                "annotations": {"summary": summaries[name], "description": "{evidence.summary}"},
            }
        )
        for name, metric, labels, warning, critical, resolve, hold in specs
    ]
    # A `[[scrape]]` target whose scrapes have failed for a minute (`up` is 0 after each one).
    rules.append(
        ThresholdRule.model_validate(
            {
                "name": "target_down",
                "metric": "up",
                "op": "<",
                "critical": 1.0,
                "for": 60.0,
                "annotations": {
                    "summary": "Scrape target {labels.job} {labels.instance} is down",
                    "description": "Every scrape of it has failed for a minute or more.",
                },
            }
        )
    )
    return rules


class ZScoreOverride(_Model):
    """`[[analysis.zscore.overrides]]`: different Z-score settings for matching series."""

    metric: str = Field(min_length=1)
    labels: dict[str, str] = Field(default_factory=dict)
    enabled: bool | None = None
    threshold: float | None = Field(None, gt=0)
    window: Seconds | None = None
    min_samples: int | None = Field(None, ge=2)
    direction: Direction | None = None
    min_std: float | None = Field(None, ge=0)
    seasonal: bool | None = None
    season: Seconds | None = None
    season_slots: int | None = Field(None, ge=2, le=10_000)
    suppress: Seconds | None = None
    resolve_ratio: float | None = Field(None, gt=0, le=1)
    confidence_samples: int | None = Field(None, ge=0)
    confidence: SecondsOrZero | None = None


class ZScoreConfig(_Model):
    """`[analysis.zscore]`: streaming EWMA z-score of the level and of the day-over-day change."""

    enabled: bool = True
    # |z| at which a detection fires (score 0.5). None = automatic, per series: 15 where range
    # novelty also runs (Z is then a backstop for extreme jumps: below z 15 it only added false
    # positives to the set on NAB), 5 where it runs alone (its best threshold alone).
    threshold: float | None = Field(None, gt=0)
    # Time constant of the exponentially weighted baseline (mean and spread), seconds.
    window: Seconds = 86400.0
    # Samples a series needs before it may fire.
    min_samples: int = Field(72, ge=2)
    direction: Direction = "both"
    # Absolute floor on the spread (in the metric's unit); 0 = only the automatic floors.
    min_std: float = Field(0.0, ge=0)
    # Also score the change against the same time a season ago (day-over-day).
    seasonal: bool = True
    season: Seconds = 86400.0
    # Slots of the seasonal ring per series (its time resolution is season / season_slots).
    season_slots: int = Field(288, ge=2, le=10_000)
    # A detection counts only if its score beats every score of the last `suppress` seconds.
    suppress: Seconds = 86400.0
    # An anomaly resolves once |z| falls below threshold × resolve_ratio.
    resolve_ratio: float = Field(0.5, gt=0, le=1)
    # Confidence by history, as for novelty: z is scaled by min(1, n / confidence_samples,
    # age / confidence), 0 = that part off. Z's windows are in time, so by default its
    # confidence is too (3 windows). The restore replays `confidence` (+1 h) of raw history, so
    # a restart does not make a series young again.
    confidence_samples: int = Field(0, ge=0)
    confidence: SecondsOrZero = 3 * 86400.0
    overrides: list[ZScoreOverride] = Field(default_factory=list)
    # Templates for every z-score alert (as a threshold rule's); {evidence.z}, {evidence.mean} …
    annotations: Annotations = Field(
        default_factory=lambda: {"summary": "{metric} is unusual: {evidence.summary}"}
    )


class NoveltyOverride(_Model):
    """`[[analysis.novelty.overrides]]`: different novelty settings for matching series."""

    metric: str = Field(min_length=1)
    labels: dict[str, str] = Field(default_factory=dict)
    enabled: bool | None = None
    threshold: float | None = Field(None, gt=0)
    history: SecondsOrZero | None = None
    history_samples: int | None = Field(None, ge=1)
    min_history: int | None = Field(None, ge=1)
    min_age: SecondsOrZero | None = None
    median_samples: int | None = Field(None, ge=1, le=1000)
    median_weight: float | None = Field(None, ge=0)
    seasonal: bool | None = None
    seasonal_weight: float | None = Field(None, ge=0)
    refractory: SecondsOrZero | None = None
    refractory_samples: int | None = Field(None, ge=1)
    confidence_samples: int | None = Field(None, ge=0)
    confidence: SecondsOrZero | None = None


class NoveltyConfig(_Model):
    """`[analysis.novelty]`: how far a series goes beyond the range it covered over a long history.

    History and refractory windows are "the longer of N samples and T seconds".
    """

    enabled: bool = True
    # Weighted exceedance (fraction of the historical range's width) at which it fires (score 0.5).
    threshold: float = Field(0.015, gt=0)
    history: SecondsOrZero = 14 * 86400.0
    history_samples: int = Field(5000, ge=1)
    # Blocks the history is kept in (memory per feature: 3 floats per block).
    blocks: int = Field(20, ge=2, le=1000)
    # Samples a feature needs before it is scored, and the age (seconds since the series' first
    # sample) it needs: one season, since a range younger than a whole day has not yet seen the
    # day's own peak. Both must pass.
    min_history: int = Field(300, ge=1)
    min_age: SecondsOrZero = 86400.0
    median_samples: int = Field(24, ge=1, le=1000)
    median_weight: float = Field(1.0, ge=0)
    seasonal: bool = True
    seasonal_weight: float = Field(0.25, ge=0)
    season: Seconds = 86400.0
    season_slots: int = Field(288, ge=2, le=10_000)
    refractory: SecondsOrZero = 6 * 3600.0
    refractory_samples: int = Field(72, ge=1)
    # Confidence by history: the evidence is scaled by min(1, n / confidence_samples,
    # age / confidence), so a young series does not announce its own ordinary peaks. 0 = off.
    confidence_samples: int = Field(2000, ge=0)
    confidence: SecondsOrZero = 7 * 86400.0
    overrides: list[NoveltyOverride] = Field(default_factory=list)
    # Templates for every novelty alert; {evidence.min}, {evidence.max}, {evidence.exceedance} …
    annotations: Annotations = Field(
        default_factory=lambda: {"summary": "{metric} left its usual range: {evidence.summary}"}
    )


class ArtOverride(_Model):
    """`[[analysis.art.overrides]]`: different adaptive-resonance settings for matching series."""

    metric: str = Field(min_length=1)
    labels: dict[str, str] = Field(default_factory=dict)
    enabled: bool | None = None
    threshold: float | None = Field(None, gt=0)
    step_samples: int | None = Field(None, ge=1)
    step: SecondsOrZero | None = None
    learning_steps: int | None = Field(None, ge=16, le=10_000)
    range_margin: float | None = Field(None, ge=0)
    max_categories: int | None = Field(None, ge=2, le=10_000)
    refractory: SecondsOrZero | None = None
    refractory_samples: int | None = Field(None, ge=1)


class ArtConfig(_Model):
    """`[analysis.art]`: adaptive resonance over the shape of the last 8 steps (new shapes)."""

    enabled: bool = True
    # Event strength (0-1: how far below vigilance the best match was) at which it fires.
    threshold: float = Field(0.85, gt=0)
    # A step: the longer of `step_samples` samples and `step` seconds.
    step_samples: int = Field(7, ge=1)
    step: SecondsOrZero = 1800.0
    learning_steps: int = Field(107, ge=16, le=10_000)
    range_margin: float = Field(0.75, ge=0)
    max_categories: int = Field(64, ge=2, le=10_000)
    # Used only when range novelty is off (otherwise ART shares novelty's refractory period).
    refractory: SecondsOrZero = 6 * 3600.0
    refractory_samples: int = Field(72, ge=1)
    overrides: list[ArtOverride] = Field(default_factory=list)
    # Templates for every ART alert (as a threshold rule's).
    annotations: Annotations = Field(
        default_factory=lambda: {"summary": "{metric} behaves unusually: {evidence.summary}"}
    )


class AnalysisConfig(_Model):
    """Detector configuration."""

    threshold: list[ThresholdRule] = Field(default_factory=default_threshold_rules)
    zscore: ZScoreConfig = ZScoreConfig()
    novelty: NoveltyConfig = NoveltyConfig()
    art: ArtConfig = ArtConfig()
