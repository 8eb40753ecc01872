"""The textfile producer: node_exporter's textfile collector convention.

Every `*.prom` file directly in `[textfile] directory` (not recursive) is read each interval and
parsed as the Prometheus text format; the samples follow the scrape semantics and names of
`collectors/openmetrics.py` (counters become rates between reads). Writers are expected to
write a temporary file and rename it over the `.prom` file. A file that does not parse
(half-written, garbage, over `max_file_bytes`, or with client-side timestamps, which
node_exporter refuses too) is skipped whole and counted; the other files are still read.

As node_exporter does, the producer adds `textfile.mtime_seconds{file=<path>}` for each file read,
and `textfile.scrape_error` (1 when any file or the directory could not be read, else 0); series
from the files get no `file` label. Reads run on the producer's own daemon thread: a directory
on a hung network mount stalls only this producer and never the agent's exit.
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from prometheus_client.metrics_core import Metric

from infrawatch.collectors.openmetrics import Converter, ParseError, parse
from infrawatch.collectors.scrape_config import TextfileConfig
from infrawatch.collectors.worker import DaemonWorker
from infrawatch.logging import at_doubling, describe, get_logger
from infrawatch.model import Sample, make_labels
from infrawatch.runtime.producer import BaseProducer

log = get_logger("infrawatch.collectors.textfile")

SUFFIX = ".prom"
MTIME = "textfile.mtime_seconds"
SCRAPE_ERROR = "textfile.scrape_error"
_DETAIL_CHARS = 200


class FileError(Exception):
    """A `.prom` file that was skipped whole; the message says why."""


@dataclass(frozen=True, slots=True)
class _Read:
    families: list[Metric]
    mtime: float  # epoch seconds


def read_file(path: Path, max_bytes: int) -> _Read:
    """Parse one textfile (at most `max_bytes` bytes); raises FileError if it must be skipped."""
    try:
        # O_NONBLOCK: a FIFO named *.prom must not block the read forever.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise FileError(describe(exc)) from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FileError("not a regular file")
        try:
            body = f.read(max_bytes + 1)
        except OSError as exc:
            raise FileError(describe(exc)) from None
    if len(body) > max_bytes:
        raise FileError(f"larger than max_file_bytes ({max_bytes} bytes)")
    try:
        families = parse(body, "text/plain")
    except ParseError as exc:
        raise FileError(f"does not parse: {exc}") from None
    for family in families:
        for sample in family.samples:
            if sample.timestamp is not None:
                raise FileError(f"client-side timestamp on {sample.name} (not supported)")
    return _Read(families, st.st_mtime)


class TextfileProducer(BaseProducer):
    """Reads every `*.prom` file of one directory every `interval` seconds."""

    name = "textfile"

    def __init__(self, config: TextfileConfig) -> None:
        if config.directory is None:
            raise ValueError("the textfile producer needs [textfile] directory")
        self.directory = Path(config.directory)
        self.interval = config.interval
        self.max_file_bytes = config.max_file_bytes
        self.max_series = config.max_series
        self.errors = 0  # files skipped (and unreadable directory reads) since start
        self.failing: dict[str, int] = {}  # file name → consecutive skipped reads
        self.series_dropped = 0  # series beyond max_series, summed over reads
        self._dir_failures = 0
        self._capped_logged = False
        self._converter = Converter(labels={}, max_series=config.max_series)
        self._worker: DaemonWorker | None = None

    async def __aenter__(self) -> Self:
        self._worker = DaemonWorker("infrawatch-textfile")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._worker is not None:
            self._worker.close()
            self._worker = None

    async def collect(self) -> list[Sample]:
        """One read of the directory; file problems are logged and counted, never raised."""
        if self._worker is None:
            raise RuntimeError("TextfileProducer.collect outside `async with`")
        return await self._worker.run(self.collect_sync)

    def collect_sync(self) -> list[Sample]:
        """The blocking body of `collect`; runs on the worker thread."""
        ts = time.time()
        try:
            names = sorted(
                entry.name for entry in os.scandir(self.directory) if entry.name.endswith(SUFFIX)
            )
        except OSError as exc:
            self.errors += 1
            self._dir_failures += 1
            if at_doubling(self._dir_failures):
                log.warning(
                    "textfile.directory_unreadable",
                    directory=str(self.directory),
                    error=describe(exc),
                    consecutive_failures=self._dir_failures,
                )
            # No conversion: the counters' last readings are kept, as after a failed scrape.
            return [Sample(SCRAPE_ERROR, 1.0, ts)]
        if self._dir_failures:
            log.info("textfile.directory_readable", directory=str(self.directory))
            self._dir_failures = 0
        families: list[Metric] = []
        out: list[Sample] = []
        failed = False
        for name in names:
            try:
                read = read_file(self.directory / name, self.max_file_bytes)
            except FileError as exc:
                failed = True
                self._file_failed(name, str(exc))
                continue
            if self.failing.pop(name, 0):
                log.info("textfile.file_recovered", file=name)
            families.extend(read.families)
            # node_exporter (1.5) labels the mtime with the file's path, not its name.
            path = str(self.directory / name)
            out.append(Sample(MTIME, read.mtime, ts, make_labels({"file": path})))
        for gone in self.failing.keys() - set(names):
            del self.failing[gone]  # a removed file is no longer failing
        conversion = self._converter.convert(families, ts)
        self.series_dropped += conversion.dropped_series
        if conversion.dropped_series and not self._capped_logged:
            self._capped_logged = True  # once: raising max_series is a configuration change
            log.warning(
                "textfile.series_capped",
                directory=str(self.directory),
                max_series=self.max_series,
                series=conversion.series,
                dropped=conversion.dropped_series,
            )
        out.append(Sample(SCRAPE_ERROR, 1.0 if failed else 0.0, ts))
        return [*conversion.samples, *out]

    def _file_failed(self, name: str, error: str) -> None:
        self.errors += 1
        streak = self.failing[name] = self.failing.get(name, 0) + 1
        if at_doubling(streak):
            log.warning(
                "textfile.file_skipped",
                file=name,
                directory=str(self.directory),
                error=error[:_DETAIL_CHARS],
                consecutive_failures=streak,
            )
