"""Prometheus remote-write 1.0 encoding: a snappy-compressed protobuf `WriteRequest`.

The schema is Prometheus' `prompb` (remote.proto, types.proto), the few messages 1.0 needs,
built once at import with protobuf's descriptor API in a private pool: no generated file to keep
in step with the protobuf runtime, the same C encoder as OTLP. Snappy is the block format
(cramjam `compress_raw`), not the framed one.

Series carry the names /metrics shows (`infrawatch.names`), their labels, and the external
labels where the series has no label of that name (Prometheus' rule). Labels are sorted with
`__name__` first; labels with empty values are left out (Prometheus reads them as absent).
Samples are in time order per series with millisecond timestamps, the protocol's unit.

Importing this module loads protobuf and cramjam: the exporter does it only when a
`remote_write` exporter is configured.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import cramjam
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from infrawatch.model import Labels
from infrawatch.names import label_name, metric_name

_F = descriptor_pb2.FieldDescriptorProto


def _schema() -> descriptor_pb2.FileDescriptorProto:
    """prompb's WriteRequest / TimeSeries / Label / Sample (field numbers as in Prometheus)."""
    file = descriptor_pb2.FileDescriptorProto(
        name="infrawatch/prometheus_remote_write.proto", package="prometheus", syntax="proto3"
    )

    def message(name: str, *fields: tuple[str, int, int, str | None, bool]) -> None:
        msg = file.message_type.add(name=name)
        for field_name, number, kind, type_name, repeated in fields:
            msg.field.add(
                name=field_name,
                number=number,
                type=kind,
                label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL,
                **({"type_name": type_name} if type_name else {}),
            )

    message("Sample", ("value", 1, _F.TYPE_DOUBLE, None, False),
            ("timestamp", 2, _F.TYPE_INT64, None, False))  # fmt: skip
    message("Label", ("name", 1, _F.TYPE_STRING, None, False),
            ("value", 2, _F.TYPE_STRING, None, False))  # fmt: skip
    message("TimeSeries", ("labels", 1, _F.TYPE_MESSAGE, ".prometheus.Label", True),
            ("samples", 2, _F.TYPE_MESSAGE, ".prometheus.Sample", True))  # fmt: skip
    # Field 2 is reserved in remote.proto; 3 (metadata) is optional and not sent.
    message("WriteRequest", ("timeseries", 1, _F.TYPE_MESSAGE, ".prometheus.TimeSeries", True))
    return file


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_schema())
# Message classes built at run time have no static attributes: typed Any, exercised by tests.
WriteRequest: Any = message_factory.GetMessageClass(
    _POOL.FindMessageTypeByName("prometheus.WriteRequest")
)
TimeSeries: Any = message_factory.GetMessageClass(
    _POOL.FindMessageTypeByName("prometheus.TimeSeries")
)
Label: Any = message_factory.GetMessageClass(_POOL.FindMessageTypeByName("prometheus.Label"))
Sample: Any = message_factory.GetMessageClass(_POOL.FindMessageTypeByName("prometheus.Sample"))


def series_labels(name: str, labels: Labels, external: Mapping[str, str]) -> list[tuple[str, str]]:
    """A series' remote-write labels: `__name__` first, then sorted; external ones added."""
    own: dict[str, str] = {}
    for key, value in labels:
        if value:
            own[label_name(key)] = value
    for key, value in external.items():
        own.setdefault(label_name(key), value)
    return [("__name__", metric_name(name)), *sorted(own.items())]


class RemoteWriteEncoder:
    """Builds snappy-compressed remote-write 1.0 request bodies."""

    type = "remote_write"
    ordered = True  # a sample older than its series' last one is refused (400)
    headers: Mapping[str, str] = {
        "Content-Type": "application/x-protobuf",
        "Content-Encoding": "snappy",
        "X-Prometheus-Remote-Write-Version": "0.1.0",
    }

    def __init__(self, external_labels: Mapping[str, str]) -> None:
        self.external = {k: v for k, v in external_labels.items() if v}

    @staticmethod
    def stamp(ts: float) -> int:
        """Milliseconds since the epoch (remote-write's resolution)."""
        return round(ts * 1000)

    def prepare(self, name: str, labels: Labels) -> Any:
        """The series' TimeSeries with its labels, serialized once (cached by the exporter)."""
        pairs = series_labels(name, labels, self.external)
        return TimeSeries(labels=[Label(name=k, value=v) for k, v in pairs]).SerializeToString()

    def encode(
        self, groups: Sequence[tuple[Any, Sequence[tuple[int, int, float, float]]]]
    ) -> bytes:
        """One request body: each (labels, [(seq, series, ts, value)]) as a TimeSeries with
        millisecond timestamps, snappy'd."""
        request = WriteRequest()
        for labels, points in groups:
            series = request.timeseries.add()
            series.MergeFromString(labels)  # parsing the labels in C beats building them
            samples = series.samples
            for _, _, ts, value in points:
                samples.add(value=value, timestamp=round(ts * 1000))
        return bytes(cramjam.snappy.compress_raw(request.SerializeToString()))

    @staticmethod
    def accepted(body: bytes) -> tuple[int, str]:
        """Remote-write 1.0 has no partial success: a 2xx took everything."""
        return 0, ""


def decode(body: bytes) -> Any:
    """A request body back into a WriteRequest (for tests and the benchmark's receiver)."""
    request = WriteRequest()
    request.ParseFromString(bytes(cramjam.snappy.decompress_raw(body)))
    return request
