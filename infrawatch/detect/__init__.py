"""Anomaly detectors."""

from __future__ import annotations

from infrawatch.detect import zscore
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
    # Z-score and ART share novelty's refractory period: one episode, one alert.
    novelty = NoveltyDetector(config.novelty) if config.novelty.enabled else None
    if config.zscore.enabled:
        beside = config.novelty if novelty is not None else None
        detectors.append(ZScoreDetector(config.zscore, beside, novelty))
    if novelty is not None:
        detectors.append(novelty)
    if config.art.enabled:
        detectors.append(ArtDetector(config.art, novelty))
    return detectors


def compiled() -> bool:
    """Whether the detectors run compiled by mypyc (setup.py) rather than as pure Python."""
    return not (zscore.__file__ or "").endswith(".py")


__all__ = ["Detector", "build_detectors", "compiled"]
