"""The textfile producer (collectors/textfile.py) on a real directory, side by side with Debian's
node_exporter reading the same directory with its own textfile collector."""

from __future__ import annotations

import os
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, write_to_textfile
from prometheus_client.parser import text_string_to_metric_families

from infrawatch.collectors.scrape_config import TextfileConfig
from infrawatch.collectors.textfile import MTIME, SCRAPE_ERROR, TextfileProducer
from infrawatch.model import Sample
from infrawatch.runtime.producer import Producer
from tests.support_alert_logs import captured_logs
from tests.support_scrape import NodeExporter

GOOD = """# HELP backup_last_success_seconds last good backup
# TYPE backup_last_success_seconds gauge
backup_last_success_seconds{db="main"} 1.7e+09
# TYPE backup_rows_total counter
backup_rows_total{db="main"} 1200
"""


def producer(directory: Path, **kw: int) -> TextfileProducer:
    return TextfileProducer(TextfileConfig(directory=directory, interval=30, **kw))


def write_atomically(path: Path, text: str) -> None:
    """What a well-behaved writer does: a temporary file renamed over the .prom file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.rename(path)


def named(samples: list[Sample], name: str) -> list[Sample]:
    return [s for s in samples if s.name == name]


def messy_directory(root: Path) -> Path:
    directory = root / "textfiles"
    directory.mkdir()
    write_atomically(directory / "backup.prom", GOOD)
    (directory / "garbage.prom").write_bytes(b"\x00\x01 this is not an exposition\n")
    (directory / "half.prom").write_text('# TYPE cron_runs counter\ncron_runs{job="nightl')
    (directory / "notes.txt").write_text("not_a_prom_file 1\n")  # only *.prom is read
    (directory / "nested").mkdir()  # not recursive
    (directory / "nested" / "deep.prom").write_text("deep_metric 1\n")
    return directory


async def test_good_files_are_read_bad_ones_skipped_whole_and_counted(tmp_path: Path) -> None:
    directory = messy_directory(tmp_path)
    with captured_logs() as logs:
        async with producer(directory) as textfile:
            assert isinstance(textfile, Producer)
            first = await textfile.collect()
            write_atomically(directory / "backup.prom", GOOD.replace("1200", "1500"))
            reads = [first] + [await textfile.collect() for _ in range(3)]
    names = {s.name for read in reads for s in read}
    assert names == {"backup_last_success_seconds", "backup_rows_total.rate", MTIME, SCRAPE_ERROR}
    (gauge,) = named(first, "backup_last_success_seconds")
    assert (gauge.value, gauge.labels) == (1.7e9, (("db", "main"),))
    # The counter's rate between the first two reads: 300 rows over the time between them.
    (rate,) = named(reads[1], "backup_rows_total.rate")
    assert rate.value == pytest.approx(300 / (rate.ts - gauge.ts))
    assert [s.value for s in named(first, SCRAPE_ERROR)] == [1.0]
    (mtime,) = named(first, MTIME)
    assert mtime.labels == (("file", str(directory / "backup.prom")),)
    assert mtime.value == pytest.approx((directory / "backup.prom").stat().st_mtime)

    assert textfile.errors == 8  # two bad files, four reads
    assert textfile.failing == {"garbage.prom": 4, "half.prom": 4}
    skipped = logs.named("textfile.file_skipped")
    # Logged at doubling counts per file: the 1st, 2nd and 4th failure of each.
    assert sorted((e["file"], e["consecutive_failures"]) for e in skipped) == [
        ("garbage.prom", 1), ("garbage.prom", 2), ("garbage.prom", 4),
        ("half.prom", 1), ("half.prom", 2), ("half.prom", 4),
    ]  # fmt: skip
    assert all(e["error"].startswith("does not parse") for e in skipped)


async def test_a_file_that_recovers_or_goes_away_is_no_longer_failing(tmp_path: Path) -> None:
    directory = messy_directory(tmp_path)
    with captured_logs() as logs:
        async with producer(directory) as textfile:
            await textfile.collect()
            write_atomically(directory / "half.prom", "# TYPE cron_runs counter\ncron_runs 3\n")
            (directory / "garbage.prom").unlink()
            samples = await textfile.collect()
    assert textfile.failing == {}
    assert [s.value for s in named(samples, SCRAPE_ERROR)] == [0.0]
    assert [e["file"] for e in logs.named("textfile.file_recovered")] == ["half.prom"]


async def test_files_node_exporter_refuses_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "stamped.prom").write_text("with_timestamp 1 1700000000000\n")
    (tmp_path / "big.prom").write_text("big 1\n" * 100)
    os.mkfifo(tmp_path / "fifo.prom")  # opening a FIFO must not block the read
    (tmp_path / "ok.prom").write_text("ok 1\n")
    async with producer(tmp_path, max_file_bytes=200) as textfile:
        samples = await textfile.collect()
    assert {s.name for s in samples} == {"ok", MTIME, SCRAPE_ERROR}
    assert set(textfile.failing) == {"stamped.prom", "big.prom", "fifo.prom"}


async def test_missing_directory_is_a_scrape_error_not_a_crash(tmp_path: Path) -> None:
    directory = tmp_path / "later"
    with captured_logs() as logs:
        async with producer(directory) as textfile:
            (only,) = await textfile.collect()
            assert (only.name, only.value) == (SCRAPE_ERROR, 1.0)
            directory.mkdir()
            (directory / "a.prom").write_text("a 1\n")
            samples = await textfile.collect()
    assert {(s.name, s.value) for s in samples if s.name != MTIME} == {
        ("a", 1.0),
        (SCRAPE_ERROR, 0.0),
    }
    assert len(logs.named("textfile.directory_unreadable")) == 1


async def test_cap_holds_across_files(tmp_path: Path) -> None:
    for i in range(3):
        (tmp_path / f"f{i}.prom").write_text("".join(f'm{{i="{i}-{j}"}} 1\n' for j in range(10)))
    async with producer(tmp_path, max_series=25) as textfile:
        samples = await textfile.collect()
    assert len(named(samples, "m")) == 25
    assert textfile.series_dropped == 5


async def test_same_view_as_node_exporter(tmp_path: Path) -> None:
    """node_exporter's textfile collector and ours, on one directory prometheus-client wrote."""
    directory = messy_directory(tmp_path)
    registry = CollectorRegistry()
    Gauge("queue_depth", "items", ["queue"], registry=registry).labels("mail").set(42)
    Counter("batches", "runs", registry=registry).inc(3)
    write_to_textfile(str(directory / "app.prom"), registry)
    async with producer(directory) as textfile:
        ours = await textfile.collect()
    exporter = NodeExporter("textfile")
    exporter.args.append(f"--collector.textfile.directory={directory}")
    with exporter:
        async with aiohttp.ClientSession() as session, session.get(exporter.url) as resp:
            body = await resp.text()
    theirs = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }
    # Gauges: the same values and labels.
    for sample in ours:
        if sample.name in ("queue_depth", "backup_last_success_seconds"):
            assert theirs[(sample.name, sample.labels)] == sample.value
    # The same verdict on the bad files, the same mtimes for the good ones.
    assert [s.value for s in named(ours, SCRAPE_ERROR)] == [
        theirs[("node_textfile_scrape_error", ())]
    ]
    our_mtimes = {s.labels: s.value for s in named(ours, MTIME)}
    their_mtimes = {
        labels: value
        for (name, labels), value in theirs.items()
        if name == "node_textfile_mtime_seconds"
    }
    assert our_mtimes.keys() == their_mtimes.keys()
    for labels, value in our_mtimes.items():
        assert value == pytest.approx(their_mtimes[labels], abs=1)  # node_exporter: whole seconds
    # Nothing of the bad files, from either of us.
    assert not any(name.startswith("cron_runs") for name, _ in theirs)
    assert not any(s.name.startswith("cron_runs") for s in ours)
