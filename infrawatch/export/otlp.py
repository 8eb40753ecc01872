"""OTLP/HTTP encoding: stored samples as an `ExportMetricsServiceRequest` (protobuf, gzip).

Every series becomes gauge data points of the metric with its stored (OpenTelemetry) name, the
unit the agent knows for that name, its labels as attributes, and the sample's own timestamp
(`time_unix_nano`, the stored seconds to the microsecond). One resource per request:
`service.name = "infrawatch"`, `service.version`, `host.name` and the alerting external labels.

Importing this module loads protobuf and opentelemetry-proto: the exporter does it only when an
`otlp` exporter is configured.
"""

from __future__ import annotations

import socket
import zlib
from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import NumberDataPoint
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from infrawatch import __version__
from infrawatch.model import Labels, utf8_text

SERVICE_NAME = "infrawatch"
# gzip level 1: about 5x smaller than raw protobuf at a few percent of the encoding's CPU.
GZIP_LEVEL = 1
# Units (UCUM, as the OpenTelemetry semantic conventions write them) of the names the agent
# produces; the first matching glob wins. Names not listed (CloudWatch, scraped) have none.
UNITS: tuple[tuple[str, str], ...] = (
    ("*.utilization", "1"),
    ("system.cpu.load_average.*", "{thread}"),
    ("system.disk.io", "By/s"),
    ("system.network.io", "By/s"),
    ("system.disk.operations", "{operation}/s"),
    ("system.network.packets", "{packet}/s"),
    ("system.network.errors", "{error}/s"),
    ("system.network.dropped", "{packet}/s"),
    ("system.processes.count", "{process}"),
    ("container.cpu.limit", "{cpu}"),
    ("system.memory.*", "By"),
    ("system.paging.usage", "By"),
    ("system.filesystem.usage", "By"),
    ("process.memory.usage", "By"),
    ("container.memory.*", "By"),
)


def unit_of(name: str) -> str:
    """The UCUM unit of a stored metric name ("" when the agent does not know it)."""
    for pattern, unit in UNITS:
        if fnmatchcase(name, pattern):
            return unit
    return ""


def _attribute(key: str, value: str) -> KeyValue:
    return KeyValue(key=utf8_text(key), value=AnyValue(string_value=utf8_text(value)))


class _Series:
    """What every data point of one series shares: its metric and its attributes."""

    __slots__ = ("name", "template", "unit")

    def __init__(self, name: str, labels: Labels) -> None:
        self.name = utf8_text(name)
        self.unit = unit_of(name)
        self.template = NumberDataPoint(attributes=[_attribute(k, v) for k, v in labels])


class OtlpEncoder:
    """Builds gzip-compressed OTLP/HTTP protobuf request bodies."""

    type = "otlp"
    ordered = False  # OTLP receivers take samples in any order
    headers: Mapping[str, str] = {
        "Content-Type": "application/x-protobuf",
        "Content-Encoding": "gzip",
    }

    def __init__(self, external_labels: Mapping[str, str]) -> None:
        attributes = {
            **external_labels,
            "host.name": socket.gethostname(),
            "service.name": SERVICE_NAME,
            "service.version": __version__,
        }
        self.resource = Resource(attributes=[_attribute(k, v) for k, v in attributes.items()])

    @staticmethod
    def stamp(ts: float) -> int:
        """Nanoseconds since the epoch; the stored float holds microseconds faithfully, so that
        is the precision sent."""
        return round(ts * 1_000_000) * 1000

    def prepare(self, name: str, labels: Labels) -> Any:
        """The per-series part of every data point (cached by the exporter)."""
        return _Series(name, labels)

    def encode(
        self, groups: Sequence[tuple[Any, Sequence[tuple[int, int, float, float]]]]
    ) -> bytes:
        """One request body: each (series, [(seq, series, ts, value)]) as gauge points with
        nanosecond timestamps, gzip'd."""
        request = ExportMetricsServiceRequest()
        resource_metrics = request.resource_metrics.add()
        resource_metrics.resource.CopyFrom(self.resource)
        scope = resource_metrics.scope_metrics.add()
        scope.scope.name = SERVICE_NAME
        scope.scope.version = __version__
        metrics: dict[tuple[str, str], Any] = {}
        for series, points in groups:
            key = (series.name, series.unit)
            metric = metrics.get(key)
            if metric is None:
                metric = metrics[key] = scope.metrics.add(name=series.name, unit=series.unit)
            data_points = metric.gauge.data_points
            template = series.template
            for _, _, ts, value in points:
                point = data_points.add()
                point.CopyFrom(template)  # the attributes, copied in C
                point.time_unix_nano = round(ts * 1_000_000) * 1000
                point.as_double = value
        compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # 31: gzip framing
        return compressor.compress(request.SerializeToString()) + compressor.flush()

    @staticmethod
    def accepted(body: bytes) -> tuple[int, str]:
        """From a 2xx answer: data points the receiver rejected anyway, and its message."""
        if not body:
            return 0, ""
        response = ExportMetricsServiceResponse()
        try:
            response.ParseFromString(body)
        except DecodeError:
            # 2xx is the receiver's word that the request was taken; the body is a courtesy.
            raise ValueError("2xx answer is not an ExportMetricsServiceResponse") from None
        partial = response.partial_success
        return int(partial.rejected_data_points), str(partial.error_message)
