"""Anomaly detectors."""

from __future__ import annotations

from infrawatch.detect.base import Detector
from infrawatch.detect.config import AnalysisConfig
from infrawatch.detect.novelty import NoveltyDetector
from infrawatch.detect.threshold import ThresholdDetector
from infrawatch.detect.zscore import ZScoreDetector


def build_detectors(config: AnalysisConfig) -> list[Detector]:
    """The detectors the configuration enables, in evaluation order."""
    detectors: list[Detector] = []
    if config.threshold:
        detectors.append(ThresholdDetector(config.threshold))
    if config.zscore.enabled:
        beside = config.novelty if config.novelty.enabled else None
        detectors.append(ZScoreDetector(config.zscore, beside))
    if config.novelty.enabled:
        detectors.append(NoveltyDetector(config.novelty))
    return detectors


__all__ = ["Detector", "build_detectors"]
