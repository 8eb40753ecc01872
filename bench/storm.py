"""Fresh-install alert storm: a first day from empty state, on data with no anomaly.

Usage: python bench/storm.py [--nab DIR] [--series 48] [--interval 10] [--seed 1] [--days 1]
       [--db PATH]

Replays, through detectors built from a fresh `AnalysisConfig` (no restored state), the first day
(or `--days` days of the quiet host) of
  - NAB's artificialNoAnomaly files (DIR/data/artificialNoAnomaly/*.csv, if present): the first
    day of each file, at its own 5-minute sampling;
  - a synthetic quiet host (seeded): `--series` series shaped like a host's CPU, per-core CPU,
    memory, filesystem, disk and network I/O, load, process count and scrape latency, each with
    a daily rhythm, noise and (for the counters) bursts, sampled every `--interval` seconds,
    starting at a random time of day;
  - with `--db`, a recorded host: the first day (or `--days` days) of every series in an agent's
    database (`make run` on a quiet machine records one at ~/.local/state/infrawatch/);
and counts the firing changes (what would page someone) per 100 series per day, for:
  - before: the first version's default set (threshold + zscore + novelty, no confidence by
    history, novelty scoring from `min_history` samples on);
  - young settings off: today's default set with confidence by history and novelty's `min_age` off;
  - default: today's default set.
"""

from __future__ import annotations

import argparse
import csv
import math
import random
import sqlite3
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import nab_score
from infrawatch.detect import build_detectors
from infrawatch.detect.config import AnalysisConfig
from infrawatch.model import Sample
from infrawatch.storage.store import labels_from_json

DAY = 86400.0
Series = tuple[str, tuple[tuple[str, str], ...], list[tuple[float, float]]]


def variants() -> dict[str, AnalysisConfig]:
    """The configurations compared: before, default without confidence, default."""
    off = {"confidence_samples": 0, "confidence": 0}
    novelty_off = {**off, "min_age": 0}
    return {
        "before (no ART, no confidence)": AnalysisConfig.model_validate(
            {"zscore": off, "novelty": novelty_off, "art": {"enabled": False}}
        ),
        "default, young settings off": AnalysisConfig.model_validate(
            {"zscore": off, "novelty": novelty_off}
        ),
        "default": AnalysisConfig(),
    }


def nab_series(root: Path) -> list[Series]:
    """The first day of each artificialNoAnomaly file (empty if the folder is absent)."""
    out: list[Series] = []
    for path in sorted((root / "data" / "artificialNoAnomaly").glob("*.csv")):
        rows: list[tuple[float, float]] = []
        with path.open(newline="") as fh:
            for row in csv.DictReader(fh):
                ts = nab_score.parse_ts(row["timestamp"]).replace(tzinfo=UTC).timestamp()
                if rows and ts - rows[0][0] >= DAY:
                    break
                rows.append((ts, float(row["value"])))
        out.append(("nab.value", (("file", path.name),), rows))
    return out


def quiet_host(n: int, interval: float, seed: int, days: float = 1.0) -> list[Series]:
    """`n` host-like series over `days` days: daily rhythm + noise, no anomaly."""
    rng = random.Random(seed)
    start = 1_767_225_600.0 + rng.uniform(0.0, DAY)  # a fresh install starts at any hour
    steps = int(days * DAY / interval)
    kinds = ["cpu", "core", "memory", "filesystem", "disk", "network", "load", "procs", "latency"]
    out: list[Series] = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        host = f"h{i // len(kinds)}"
        phase = rng.uniform(0.0, 2.0 * math.pi)
        labels: tuple[tuple[str, str], ...] = (("host", host),)
        rows = list(_walk(kind, steps, start, interval, phase, rng))
        name = {
            "cpu": "system.cpu.utilization",
            "core": "system.cpu.utilization",
            "memory": "system.memory.utilization",
            "filesystem": "system.filesystem.utilization",
            "disk": "system.disk.io",
            "network": "system.network.io",
            "load": "system.cpu.load_average.1m",
            "procs": "system.processes.count",
            "latency": "scrape.duration",
        }[kind]
        if kind == "cpu":
            labels = (("cpu", ""), ("host", host))
        elif kind == "core":
            labels = (("cpu", str(i % 4)), ("host", host))
        out.append((name, labels, rows))
    return out


def _walk(
    kind: str, steps: int, start: float, interval: float, phase: float, rng: random.Random
) -> Iterator[tuple[float, float]]:
    """One series' samples: level × daily rhythm, noise, and bursts for the I/O counters."""
    level = 0.0
    ar = 0.0
    for k in range(steps):
        ts = start + k * interval
        day = math.sin(2.0 * math.pi * ts / DAY + phase)
        ar = 0.95 * ar + rng.gauss(0.0, 1.0)  # autocorrelated noise, like real load
        if kind in ("cpu", "core"):
            v = min(0.85, max(0.0, 0.25 + 0.12 * day + 0.02 * ar + abs(rng.gauss(0.0, 0.03))))
        elif kind == "memory":
            v = 0.55 + 0.05 * day + 0.002 * ar
        elif kind == "filesystem":
            level += 1e-7 * interval  # slow growth, logs rotated away at midnight
            v = round(0.40 + level + 0.001 * day, 4)
        elif kind in ("disk", "network"):
            base = 2e5 * (1.5 + day)
            burst = rng.expovariate(1.0) if rng.random() < 0.05 else 0.0
            v = max(0.0, base * (1.0 + 0.2 * rng.gauss(0.0, 1.0) + 2.0 * burst))
        elif kind == "load":
            v = max(0.0, 1.0 + 0.6 * day + 0.1 * ar)
        elif kind == "procs":
            v = float(round(180 + 10 * day + rng.gauss(0.0, 2.0)))
        else:
            v = max(0.001, 0.05 + 0.01 * day + 0.01 * rng.lognormvariate(0.0, 0.5))
        yield ts, v


def recorded(path: Path, days: float) -> list[Series]:
    """The first `days` days of every series in an agent's database (read-only)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        first = db.execute("SELECT min(ts) FROM samples").fetchone()[0]
        if first is None:
            return []
        rows: dict[int, list[tuple[float, float]]] = {}
        query = "SELECT series_id, ts, value FROM samples WHERE ts < ? ORDER BY series_id, ts"
        for series_id, ts, value in db.execute(query, (first + days * DAY,)):
            rows.setdefault(series_id, []).append((ts, value))
        names = {i: (n, labels_from_json(t)) for i, n, t in db.execute("SELECT * FROM series")}
    finally:
        db.close()
    return [(*names[i], r) for i, r in rows.items()]


def replay(config: AnalysisConfig, series: Sequence[Series]) -> Counter[str]:
    """Feed every series (interleaved in time) through fresh detectors; firing counts per
    detector."""
    detectors = build_detectors(config)
    samples = [(ts, name, labels, value) for name, labels, rows in series for ts, value in rows]
    samples.sort(key=lambda s: s[0])
    fired: Counter[str] = Counter()
    for ts, name, labels, value in samples:
        sample = Sample(name, value, ts, labels)
        for d in detectors:
            for change in d.observe(sample):
                if change.status == "firing":
                    fired[d.name] += 1
    return fired


def covered_days(series: Sequence[Series]) -> float:
    """Days from each series' first sample to its last, averaged over the series."""
    return sum((rows[-1][0] - rows[0][0]) / DAY for _, _, rows in series if rows) / len(series)


def main(argv: Sequence[str] | None = None) -> int:
    """Print alerts per 100 series per day for each source and configuration."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nab", type=Path, default=Path("../shared/nab"))
    parser.add_argument("--series", type=int, default=48)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--days", type=float, default=1.0, help="days of the quiet host")
    parser.add_argument("--db", type=Path, help="an agent's database: a recorded host")
    args = parser.parse_args(argv)
    sources = {
        "NAB artificialNoAnomaly (first day)": nab_series(args.nab),
        f"quiet host ({args.series} series, {args.interval:g} s, seed {args.seed}, "
        f"{args.days:g} d)": quiet_host(args.series, args.interval, args.seed, args.days),
    }
    if args.db is not None:
        sources[f"recorded host ({args.db.name}, first {args.days:g} d)"] = recorded(
            args.db, args.days
        )
    for source, series in sources.items():
        if not series:
            print(f"{source}: no data")
            continue
        # The base of the rates: a short recording makes one alert a large rate.
        days = covered_days(series)
        print(f"{source}: {len(series)} series, {24 * days:.1f} h each on average")
        for label, config in variants().items():
            fired = replay(config, series)
            total = sum(fired.values())
            rate = 100.0 * total / len(series) / max(days, 1e-9)
            detail = ", ".join(f"{k} {v}" for k, v in sorted(fired.items())) or "none"
            print(f"{source:45s} {label:32s} {rate:6.1f} alerts/100 series/day  ({detail})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
