"""`[cloud.aws]`: CloudWatch and EC2 discovery (filled in by the cloud issue)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class AwsConfig(BaseModel):
    """AWS producer configuration."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False


class CloudConfig(BaseModel):
    """Cloud producers."""

    model_config = ConfigDict(extra="forbid")

    aws: AwsConfig = AwsConfig()
