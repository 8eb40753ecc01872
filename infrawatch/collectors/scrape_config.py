"""`[[scrape]]` targets (Prometheus/OpenMetrics endpoints) and the `[textfile]` directory.

A target's `name` is its identity (the producer, its stats, SIGHUP add/remove) and its `job`
label; `instance` is the URL's host:port unless `labels` sets it. Header values are secrets:
they carry bearer tokens, so they are SecretStr, masked by `config show` and never logged.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, SecretStr, field_validator, model_validator
from yarl import URL

from infrawatch.units import ConfigModel, FsPath, Seconds
from infrawatch.validators import receiver_url, request_headers

# Prometheus' label name syntax; names starting with "__" are reserved there and here.
_LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Set by the scraper itself: overriding them would break negotiation, bounds or framing.
_RESERVED_HEADERS = frozenset(
    {"accept-encoding", "connection", "content-length", "host", "transfer-encoding", "te"}
)
DEFAULT_TIMEOUT = 10.0
MIB = 1024 * 1024

# Prometheus' `scrape_protocols` names, and the media type each asks for in `Accept`.
Protocol = Literal["PrometheusText0.0.4", "OpenMetricsText1.0.0", "OpenMetricsText0.0.1"]
MEDIA_TYPES: dict[str, str] = {
    "PrometheusText0.0.4": "text/plain;version=0.0.4",
    "OpenMetricsText1.0.0": "application/openmetrics-text;version=1.0.0",
    "OpenMetricsText0.0.1": "application/openmetrics-text;version=0.0.1",
}
# The text format only, by default: prometheus-client's OpenMetrics parser costs 7-8x the text
# parser's CPU (docs/benchmarks.md), nothing OpenMetrics adds (exemplars, _created) is stored
# here, and client libraries answer OpenMetrics whenever it is offered at all, whatever its q.
# A target that speaks only OpenMetrics still answers through `*/*`, parsed by its Content-Type.
DEFAULT_PROTOCOLS: tuple[Protocol, ...] = ("PrometheusText0.0.4",)


def accept_header(protocols: list[Protocol]) -> str:
    """`Accept` for `protocols` in order of preference, as Prometheus builds it (q 1, 0.5, …)."""
    parts = []
    for i, protocol in enumerate(protocols):
        q = round(1.0 - i * 0.1, 1) if i else None
        media = MEDIA_TYPES[protocol]
        parts.append(media if q is None else f"{media};q={q:g}")
    parts.append("*/*;q=0.1")
    return ",".join(parts)


def instance_of(url: str) -> str:
    """The `instance` label of a URL: host:port, the default port filled in, IPv6 bracketed."""
    parsed = URL(url)
    host = parsed.host or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{parsed.port}"


def _unique_names(targets: list[ScrapeTarget]) -> list[ScrapeTarget]:
    names = [t.name for t in targets]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"duplicate scrape target names: {', '.join(dupes)}")
    return targets


class ScrapeTarget(ConfigModel):
    """One `[[scrape]]` entry: a Prometheus/OpenMetrics endpoint scraped on its own schedule."""

    name: str = Field(
        min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$", description="the job label; unique"
    )
    url: str = Field(description="http:// or https:// URL of the metrics endpoint")
    interval: Seconds = 15.0
    # Default 10 s, or 0.8 × interval when that is shorter (a scrape must end before the next).
    timeout: Seconds = DEFAULT_TIMEOUT
    labels: dict[str, str] = Field(default_factory=dict)
    keep: list[str] = Field(default_factory=list, description="globs on metric names")
    drop: list[str] = Field(default_factory=list, description="globs on metric names")
    max_series: int = Field(10_000, gt=0)
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    max_body_bytes: int = Field(8 * MIB, gt=0)
    # Offered in this order in `Accept` (Prometheus' setting of the same name).
    scrape_protocols: list[Protocol] = Field(
        default_factory=lambda: list(DEFAULT_PROTOCOLS), min_length=1
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return receiver_url(value)

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not _LABEL_NAME.match(key) or key.startswith("__"):
                raise ValueError(f"invalid label name {key!r} (letters, digits, _; no __ prefix)")
            if key == "job":
                raise ValueError("the job label is the target's name: set name instead")
        return value

    @field_validator("keep", "drop")
    @classmethod
    def _globs(cls, value: list[str]) -> list[str]:
        for pattern in value:
            if not pattern:
                raise ValueError("empty glob")
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        request_headers(value, reserved=_RESERVED_HEADERS, setter="scraper")
        return value

    @model_validator(mode="after")
    def _timeout(self) -> ScrapeTarget:
        if "timeout" not in self.model_fields_set and self.timeout >= self.interval:
            self.timeout = round(0.8 * self.interval, 6)
        if self.timeout >= self.interval:
            raise ValueError("timeout must be shorter than interval")
        return self

    @property
    def accept(self) -> str:
        """The `Accept` header this target is scraped with."""
        return accept_header(self.scrape_protocols)

    @property
    def instance(self) -> str:
        """The `instance` label: `labels.instance` if set, else the URL's host:port."""
        return self.labels.get("instance") or instance_of(self.url)

    @property
    def target_labels(self) -> dict[str, str]:
        """Labels on every series of this target: job, instance and the configured ones."""
        return {**self.labels, "job": self.name, "instance": self.instance}


# `[[scrape]]` as a whole: target names are unique (each is one producer and one `job`).
ScrapeTargets = Annotated[list[ScrapeTarget], AfterValidator(_unique_names)]


class TextfileConfig(ConfigModel):
    """`[textfile]`: node_exporter's textfile convention, every `*.prom` file of a directory."""

    # Unset: the textfile producer does not run.
    directory: FsPath | None = None
    interval: Seconds = 30.0
    max_file_bytes: int = Field(8 * MIB, gt=0)
    max_series: int = Field(10_000, gt=0)
