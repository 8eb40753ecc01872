"""Run infrawatch's detectors over a NAB-style corpus and write NAB's results format.

Usage:
  python bench/nab.py --data DIR --windows FILE --results OUT [--detector NAME] [--score]

Every CSV under DIR (`timestamp,value`) is fed causally, one sample at a time, with the CSV
timestamps as sample times, through the detectors `build_detectors` makes from the *default*
`AnalysisConfig` — the agent's own code path. Each row's anomaly_score is the highest calibrated
score of the detectors (0.5 = the agent's firing point). Without --detector the whole default set
runs; `--detector zscore` (or novelty, art, threshold, gaussian) scores one detector alone, with the
others disabled (the Z-score detector's automatic threshold differs alone and beside novelty);
`gaussian` is the plain expanding-window Gaussian z-score baseline (bench/baseline_gaussian.py).
`--set zscore.threshold=5` changes one setting (for exploring; reported numbers use defaults).
Writes OUT/infrawatch/<category>/infrawatch_<file>.csv with timestamp,value,anomaly_score,label;
--score also prints bench/nab_score.py's report.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Sequence
from datetime import UTC
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import nab_score
from bench.baseline_gaussian import GaussianBaseline
from infrawatch.detect import build_detectors
from infrawatch.detect.base import Detector
from infrawatch.detect.config import AnalysisConfig
from infrawatch.model import Sample

RESULT_NAME = "infrawatch"


def make_config(settings: Sequence[str]) -> AnalysisConfig:
    """The default analysis config, with `section.key=value` changes applied (for exploring)."""
    data: dict[str, Any] = {}
    for item in settings:
        path, _, raw = item.partition("=")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = data
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return AnalysisConfig.model_validate(data)


def alone(name: str, config: AnalysisConfig) -> AnalysisConfig:
    """`config` with every other detector disabled: `name` as the agent runs it on its own."""
    return config.model_copy(
        update={
            "threshold": config.threshold if name == "threshold" else [],
            "zscore": config.zscore.model_copy(update={"enabled": name == "zscore"}),
            "novelty": config.novelty.model_copy(update={"enabled": name == "novelty"}),
            "art": config.art.model_copy(update={"enabled": name == "art"}),
        }
    )


def detectors_for(name: str | None, config: AnalysisConfig) -> list[Detector]:
    """The default detector set, or the one named as it runs when it is the only one enabled."""
    if name == "gaussian":
        return [GaussianBaseline()]
    if name is None:
        return build_detectors(config)
    detectors = build_detectors(alone(name, config))
    chosen = [d for d in detectors if d.name == name]
    if not chosen:
        raise SystemExit(f"no enabled detector named {name!r}: {[d.name for d in detectors]}")
    return chosen


def read_csv(path: Path) -> tuple[list[str], list[float]]:
    """Timestamps (as text) and values of one NAB data file."""
    stamps, values = [], []
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            stamps.append(row["timestamp"])
            values.append(float(row["value"]))
    return stamps, values


def run_series(
    detectors: Sequence[Detector], stamps: Sequence[str], values: Sequence[float], label: str
) -> list[float]:
    """Feed one file causally; return each row's combined score (the maximum)."""
    labels = (("file", label),)
    key = ("nab.value", labels)
    scores = []
    for text, value in zip(stamps, values, strict=True):
        ts = nab_score.parse_ts(text).replace(tzinfo=UTC).timestamp()
        sample = Sample("nab.value", value, ts, labels)
        best = 0.0
        for detector in detectors:
            detector.observe(sample)
            s = detector.score(key)
            if s > best:
                best = s
        scores.append(best)
    return scores


def main(argv: Sequence[str] | None = None) -> int:
    """Score every CSV under --data and write the results tree."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--windows", type=Path, required=True)
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--detector", default=None)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--score", action="store_true", help="print the NAB scores too")
    args = parser.parse_args(argv)
    config = make_config(args.set)
    windows = json.loads(args.windows.read_text())
    files = sorted(args.data.rglob("*.csv"))
    if not files:
        parser.error(f"no CSV files under {args.data}")
    scored: list[nab_score.FileScores] = []
    started = time.perf_counter()
    rows = 0
    for path in files:
        category = path.parent.relative_to(args.data).as_posix()
        name = f"{category}/{path.name}"
        stamps, values = read_csv(path)
        # A fresh detector set per file: each file is a separate series from a fresh agent.
        scores = run_series(detectors_for(args.detector, config), stamps, values, name)
        rows += len(scores)
        parsed = [nab_score.parse_ts(s) for s in stamps]
        spans = nab_score.window_indices(parsed, windows.get(name, []))
        scored.append(nab_score.FileScores(name, scores, spans))
        out = args.results / RESULT_NAME / category / f"{RESULT_NAME}_{path.name}"
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["timestamp", "value", "anomaly_score", "label"])
            for i, (stamp, value, score) in enumerate(zip(stamps, values, scores, strict=True)):
                label = int(any(lo <= i <= hi for lo, hi in spans))
                writer.writerow([stamp, repr(value), f"{score:.6f}", label])
    elapsed = time.perf_counter() - started
    print(
        f"{len(files)} files, {rows} rows in {elapsed:.1f} s; detector="
        f"{args.detector or 'default set'} {' '.join(args.set)}"
    )
    if args.score:
        for profile, entry in nab_score.report(scored).items():
            cats = "  ".join(
                f"{k}={v:.1f}"
                for k, v in entry.items()
                if k not in ("threshold", "score", "at_0.5")
            )
            print(
                f"{profile:20s} score={entry['score']:6.1f}  "
                f"threshold={entry['threshold']:.4f}  at_0.5={entry['at_0.5']:6.1f}  {cats}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
