"""`[analysis]`: which detectors run and how (filled in by the detection issue)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class AnalysisConfig(BaseModel):
    """Detector configuration."""

    model_config = ConfigDict(extra="forbid")
