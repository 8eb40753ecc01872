"""Anomaly detectors."""

from __future__ import annotations

from infrawatch.detect.art import ArtDetector
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
    novelty = NoveltyDetector(config.novelty) if config.novelty.enabled else None
    if novelty is not None:
        detectors.append(novelty)
    if config.art.enabled:
        # After novelty: ART counts only if it beats novelty's refractory peak (one period).
        detectors.append(ArtDetector(config.art, novelty))
    return detectors


__all__ = ["Detector", "build_detectors"]
