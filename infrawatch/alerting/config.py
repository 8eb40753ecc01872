"""`[alerting]`: alert timing, routes and sinks (filled in by the alerting issue)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class AlertingConfig(BaseModel):
    """Alerting configuration."""

    model_config = ConfigDict(extra="forbid")
