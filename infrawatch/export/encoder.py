"""The wire format of an exporter: the Protocol OTLP and remote-write encoders implement, and
the choice between them.

protobuf, opentelemetry-proto and cramjam are imported when the first encoder of their type is
built, so an agent without exporters never loads them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from infrawatch.errors import StartupError
from infrawatch.export.config import ExportConfig
from infrawatch.export.cursor import Row
from infrawatch.model import Labels


class Encoder(Protocol):
    """A wire format: how a batch of series and points becomes one request body."""

    type: str
    ordered: bool  # the receiver refuses a sample older than its series' last one
    headers: Mapping[str, str]  # content type and encoding of the body

    def stamp(self, ts: float) -> int:
        """A stored timestamp (epoch s) in the protocol's time unit."""
        ...

    def prepare(self, name: str, labels: Labels) -> Any:
        """The per-series part of the request, built once per series."""
        ...

    def encode(self, groups: Sequence[tuple[Any, Sequence[Row]]]) -> bytes:
        """The (compressed) body for these (series, rows in time order) groups."""
        ...

    def accepted(self, body: bytes) -> tuple[int, str]:
        """From a 2xx answer: samples rejected anyway and the receiver's message."""
        ...


def build_encoder(cfg: ExportConfig, external_labels: Mapping[str, str]) -> Encoder:
    """The encoder of `cfg.type`; imports its libraries now (StartupError if missing)."""
    try:
        if cfg.type == "otlp":
            from infrawatch.export.otlp import OtlpEncoder

            return OtlpEncoder(external_labels)
        from infrawatch.export.remote_write import RemoteWriteEncoder

        return RemoteWriteEncoder(external_labels)
    except ImportError as exc:
        raise StartupError(
            f"export {cfg.name}: {cfg.type} needs {exc.name or 'a library'}; "
            "install infrawatch[export]"
        ) from None
