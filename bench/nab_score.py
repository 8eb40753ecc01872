"""NAB scoring, implemented from the rules in ../shared/nab/README.md.

Usage: python bench/nab_score.py --results OUT --windows combined_windows.json [--detector NAME]

Reads OUT/<detector>/<category>/<detector>_<file>.csv (columns timestamp,value,anomaly_score,
label) and prints, per profile, the normalised corpus score at the best global threshold (a
threshold sweep over every distinct score), the threshold itself and the per-category scores.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

PROFILES: dict[str, tuple[float, float, float]] = {
    # name: (A_TP, A_FP, A_FN)
    "standard": (1.0, 0.11, 1.0),
    "reward_low_FP_rate": (1.0, 0.22, 1.0),
    "reward_low_FN_rate": (1.0, 0.11, 2.0),
}
PROBATION_FRACTION = 0.15
PROBATION_MAX = 750


def sigma(y: float) -> float:
    """NAB's scaled sigmoid: 2 / (1 + e^(5y)) − 1, and −1 beyond y = 3."""
    if y > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


@dataclass
class FileScores:
    """One scored file: its per-row scores and its windows as inclusive row-index ranges."""

    name: str  # "<category>/<file>.csv"
    scores: list[float]
    windows: list[tuple[int, int]] = field(default_factory=list)

    @property
    def category(self) -> str:
        """The folder the file sits in."""
        return self.name.split("/", 1)[0]

    @property
    def scored_windows(self) -> int:
        """Windows with a row past probation: one wholly inside it is not scored (NAB's scorer
        drops probation rows before counting windows, for the detector, null and perfect)."""
        start = probation(len(self.scores))
        return sum(1 for _, right in self.windows if right >= start)


@dataclass
class _Row:
    score: float
    window: int  # global window id, or -1 for a row outside every window
    weight: float  # σ-based factor: TP reward (before A_TP) or FP cost (before A_FP)
    index: int


def probation(n: int) -> int:
    """Rows at the start of a file that are not scored."""
    return min(math.floor(PROBATION_FRACTION * n), PROBATION_MAX)


def _rows(files: Sequence[FileScores]) -> tuple[list[_Row], int]:
    """Every scored row with its window id and σ factor; returns (rows, number of windows)."""
    rows: list[_Row] = []
    window_id = 0  # ids only key the windows; probation windows get ids but never rows
    scored = 0
    tp_norm = sigma(-1.0)
    for f in files:
        n = len(f.scores)
        start = probation(n)
        windows = sorted(f.windows)
        w = 0
        prev: tuple[int, int] | None = None
        for i in range(n):
            while w < len(windows) and windows[w][1] < i:
                prev = windows[w]
                w += 1
            inside = w < len(windows) and windows[w][0] <= i <= windows[w][1]
            if i < start:
                continue
            if inside:
                left, right = windows[w]
                width = right - left + 1
                y = -(right - i + 1) / width
                rows.append(_Row(f.scores[i], window_id + w, sigma(y) / tp_norm, i))
            elif prev is None:
                rows.append(_Row(f.scores[i], -1, -1.0, i))
            else:
                prev_width = prev[1] - prev[0] + 1
                y = abs(prev[1] - i) / max(prev_width - 1, 1)
                rows.append(_Row(f.scores[i], -1, sigma(y), i))
        window_id += len(windows)
        scored += f.scored_windows
    return rows, scored


def sweep(files: Sequence[FileScores], profile: str) -> tuple[float, float, float]:
    """Best (threshold, raw score, normalised score) over every distinct score value."""
    a_tp, a_fp, a_fn = PROFILES[profile]
    rows, n_windows = _rows(files)
    rows.sort(key=lambda r: (-r.score, r.window, r.index))
    null = -a_fn * n_windows
    perfect = a_tp * n_windows
    total = null
    best_total, best_threshold = null, math.inf
    earliest: dict[int, _Row] = {}
    i = 0
    while i < len(rows):
        threshold = rows[i].score
        while i < len(rows) and rows[i].score == threshold:
            row = rows[i]
            if row.window < 0:
                total += a_fp * row.weight
            else:
                first = earliest.get(row.window)
                if first is None:
                    total += a_fn + a_tp * row.weight
                    earliest[row.window] = row
                elif row.index < first.index:
                    total += a_tp * (row.weight - first.weight)
                    earliest[row.window] = row
            i += 1
        if total > best_total:
            best_total, best_threshold = total, threshold
    return best_threshold, best_total, normalise(best_total, null, perfect)


def normalise(total: float, null: float, perfect: float) -> float:
    """100 · (S − S_null) / (S_perfect − S_null); 0 when the corpus has no windows."""
    if perfect == null:
        return 0.0
    return 100.0 * (total - null) / (perfect - null)


def score_at(files: Sequence[FileScores], profile: str, threshold: float) -> float:
    """Raw NAB score of `files` with detections at score >= threshold."""
    a_tp, a_fp, a_fn = PROFILES[profile]
    rows, n_windows = _rows(files)
    total = 0.0
    earliest: dict[int, _Row] = {}
    for row in rows:
        if row.score < threshold:
            continue
        if row.window < 0:
            total += a_fp * row.weight
        elif row.window not in earliest or row.index < earliest[row.window].index:
            earliest[row.window] = row
    total += sum(a_tp * r.weight for r in earliest.values())
    total -= a_fn * (n_windows - len(earliest))
    return total


def report(files: Sequence[FileScores]) -> dict[str, dict[str, float]]:
    """Per profile: best threshold, its normalised score, the score at the agent's firing point
    (0.5) and the per-category normalised scores at the best threshold."""
    out: dict[str, dict[str, float]] = {}
    by_cat: dict[str, list[FileScores]] = defaultdict(list)
    for f in files:
        by_cat[f.category].append(f)
    for profile, (a_tp, _a_fp, a_fn) in PROFILES.items():
        threshold, _total, norm = sweep(files, profile)
        nw_all = sum(f.scored_windows for f in files)
        at_half = normalise(score_at(files, profile, 0.5), -a_fn * nw_all, a_tp * nw_all)
        entry = {"threshold": threshold, "score": norm, "at_0.5": at_half}
        for cat, members in sorted(by_cat.items()):
            nw = sum(m.scored_windows for m in members)
            raw = score_at(members, profile, threshold)
            entry[cat] = normalise(raw, -a_fn * nw, a_tp * nw) if nw else raw
        out[profile] = entry
    return out


def parse_ts(text: str) -> datetime:
    """NAB timestamps: 'YYYY-MM-DD HH:MM:SS' with optional microseconds."""
    return datetime.fromisoformat(text.strip())


def window_indices(
    timestamps: Sequence[datetime], windows: Iterable[Sequence[str]]
) -> list[tuple[int, int]]:
    """Inclusive row ranges of each (start, end) window, by timestamp."""
    out = []
    for start_text, end_text in windows:
        start, end = parse_ts(start_text), parse_ts(end_text)
        idx = [i for i, t in enumerate(timestamps) if start <= t <= end]
        if idx:
            out.append((idx[0], idx[-1]))
    return out


def load_results(results: Path, windows_file: Path, detector: str) -> list[FileScores]:
    """Read a NAB results tree for `detector` and attach the windows to each file."""
    windows = json.loads(windows_file.read_text())
    base = results / detector
    files = []
    for path in sorted(base.rglob(f"{detector}_*.csv")):
        category = path.parent.relative_to(base).as_posix()
        name = f"{category}/{path.name.removeprefix(detector + '_')}"
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            stamps, scores = [], []
            for row in reader:
                stamps.append(parse_ts(row["timestamp"]))
                scores.append(float(row["anomaly_score"]))
        files.append(FileScores(name, scores, window_indices(stamps, windows.get(name, []))))
    return files


def main(argv: Sequence[str] | None = None) -> int:
    """Print the NAB scores of a results tree."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--windows", type=Path, required=True)
    parser.add_argument("--detector", default="infrawatch")
    args = parser.parse_args(argv)
    files = load_results(args.results, args.windows, args.detector)
    if not files:
        parser.error(f"no {args.detector}_*.csv files under {args.results / args.detector}")
    windows = sum(f.scored_windows for f in files)
    print(f"{len(files)} files, {windows} windows")
    for profile, entry in report(files).items():
        cats = "  ".join(
            f"{k}={v:.1f}" for k, v in entry.items() if k not in ("threshold", "score", "at_0.5")
        )
        print(
            f"{profile:20s} score={entry['score']:6.1f}  threshold={entry['threshold']:.4f}  "
            f"at_0.5={entry['at_0.5']:6.1f}  {cats}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
