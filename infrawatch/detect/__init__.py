"""Anomaly detectors."""

from __future__ import annotations

from infrawatch.detect.base import Detector
from infrawatch.detect.config import AnalysisConfig


def build_detectors(config: AnalysisConfig) -> list[Detector]:
    """The detectors the configuration enables, in evaluation order."""
    return []


__all__ = ["Detector", "build_detectors"]
