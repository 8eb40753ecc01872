"""`[[export]]` entries: push every stored sample to an OTLP/HTTP collector or a Prometheus
remote-write endpoint.

Header values are secrets (bearer tokens, basic auth): SecretStr, masked by `check`, never
logged. The URL is shown and logged without its query string, and must not carry credentials.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, SecretStr, field_validator
from yarl import URL

from infrawatch.units import ConfigModel, Seconds
from infrawatch.validators import receiver_url, request_headers

ExportType = Literal["otlp", "remote_write"]
OTLP_METRICS_PATH = "/v1/metrics"
# Set by the exporter itself: the protocol's framing and encoding depend on them.
_RESERVED_HEADERS = frozenset(
    {
        "content-type",
        "content-encoding",
        "content-length",
        "host",
        "transfer-encoding",
        "connection",
        "x-prometheus-remote-write-version",
    }
)


class ExportConfig(ConfigModel):
    """One `[[export]]` entry: a receiver every stored sample is pushed to, at least once."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$", description="unique")
    type: ExportType
    url: str = Field(description="http:// or https:// URL of the receiver")
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    batch_samples: int = Field(2000, gt=0, le=100_000)
    timeout: Seconds = 10.0
    match: list[str] = Field(default_factory=list, description="globs on metric names")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return receiver_url(value)

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        request_headers(value, reserved=_RESERVED_HEADERS, setter="exporter")
        return value

    @field_validator("match")
    @classmethod
    def _globs(cls, value: list[str]) -> list[str]:
        if any(not pattern for pattern in value):
            raise ValueError("empty glob")
        return value

    @property
    def endpoint(self) -> str:
        """Where requests go: OTLP's `<url>/v1/metrics` (unless given so), else the URL."""
        url = URL(self.url)
        path = url.path.rstrip("/")
        if self.type == "otlp" and not path.endswith(OTLP_METRICS_PATH):
            return str(url.with_path(path + OTLP_METRICS_PATH, keep_query=True))
        return self.url

    @property
    def target(self) -> str:
        """The endpoint without query or fragment: safe to log and print."""
        return str(URL(self.endpoint).with_query(None).with_fragment(None))


def _unique_names(entries: list[ExportConfig]) -> list[ExportConfig]:
    names = [e.name for e in entries]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        # Each name keys a cursor in the database: two entries would share one position.
        raise ValueError(f"duplicate export names: {', '.join(dupes)}")
    return entries


# `[[export]]` as a whole: names are unique (each owns one cursor in the database).
ExportTargets = Annotated[list[ExportConfig], AfterValidator(_unique_names)]


def check_lines(entries: Sequence[ExportConfig]) -> list[str]:
    """What `infrawatch check` says about the exporters: one line each, header values masked."""
    if not entries:
        return ["export: none (samples stay in this agent's database)"]
    lines = []
    for e in entries:
        headers = ", ".join(f"{k}: **********" for k in sorted(e.headers)) or "none"
        only = ", ".join(e.match) or "every metric"
        lines.append(
            f"export {e.name}: {e.type} → {e.target} (headers: {headers}; "
            f"{e.batch_samples} samples per request; timeout {e.timeout:g}s; {only})"
        )
    return lines
