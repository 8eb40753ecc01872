"""bench/nab_score.py on tiny hand-made corpora with known answers."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from bench import nab_score
from bench.nab_score import FileScores, report, sigma, sweep

N = 1000  # rows per file: probation = 150
WINDOWS = [(300, 349), (700, 749)]


def corpus(*detections: tuple[int, ...]) -> list[FileScores]:
    """Two files with two windows each; each file scores 1.0 at its given rows."""
    files = []
    for k, rows in enumerate(detections):
        scores = [0.0] * N
        for r in rows:
            scores[r] = 1.0
        files.append(FileScores(f"cat/f{k}.csv", scores, list(WINDOWS)))
    return files


def test_sigma_matches_the_nab_definition() -> None:
    assert sigma(0.0) == 0.0
    assert sigma(3.5) == -1.0
    assert sigma(-1.0) == pytest.approx(0.98661, abs=1e-5)


@pytest.mark.parametrize("profile", list(nab_score.PROFILES))
def test_perfect_detector_scores_100_and_null_scores_0(profile: str) -> None:
    perfect = corpus((300, 700), (300, 700))
    assert sweep(perfect, profile)[2] == pytest.approx(100.0)
    null = corpus((), ())
    threshold, _, score = sweep(null, profile)
    assert score == 0.0
    assert threshold == float("inf")


def test_early_detection_beats_late_and_late_beats_none() -> None:
    early = sweep(corpus((300,), ()), "standard")[2]
    late = sweep(corpus((345,), ()), "standard")[2]
    assert 0 < late < early
    # One of four windows at the left edge: (1 + 1 - 3 − (−4)) / 8 · 100 = 25.
    assert early == pytest.approx(25.0)


def test_false_positives_cost_and_the_sweep_picks_the_best_threshold() -> None:
    files = corpus((300, 700), (300, 700))
    files[0].scores[500] = 0.9  # 150 rows after a 50-row window: σ(3.06) = −1 → −A_FP
    files[0].scores[200] = 0.95  # before any window: full cost
    threshold, total, score = sweep(files, "standard")
    assert threshold == 1.0  # the FPs score below the TPs, so the best threshold excludes them
    assert score == pytest.approx(100.0)
    files[0].scores[300] = 0.5  # now that TP needs a threshold that also admits both FPs
    threshold, total, _ = sweep(files, "standard")
    # At 0.5: four TPs − two FPs (4 − 0.22) beats three TPs and one miss (3 − 1) at 1.0.
    assert threshold == 0.5
    assert total == pytest.approx(4 - 0.22)
    assert sweep(files, "reward_low_FP_rate")[1] == pytest.approx(4 - 0.44)


def test_a_detection_just_after_a_window_costs_almost_nothing() -> None:
    files = corpus((300, 700), (300, 700))
    files[0].scores[350] = 1.0  # one row past the first window
    _, total, _ = sweep(files, "standard")
    assert 4.0 - 0.11 < total < 4.0


def test_probation_rows_are_ignored() -> None:
    files = corpus((300, 700), (300, 700))
    files[0].scores[10] = 1.0
    assert sweep(files, "standard")[2] == pytest.approx(100.0)


def test_report_gives_per_category_scores(tmp_path: Path) -> None:
    files = corpus((300, 700), ())
    out = report(files)
    assert out["standard"]["score"] == pytest.approx(50.0)
    assert out["standard"]["cat"] == pytest.approx(50.0)
    assert out["reward_low_FN_rate"]["score"] == pytest.approx(50.0)


def test_reads_a_results_tree(tmp_path: Path) -> None:
    stamps = [f"2020-01-01 {h:02d}:{m:02d}:00" for h in range(24) for m in range(0, 60, 5)]
    folder = tmp_path / "res" / "infrawatch" / "cat"
    folder.mkdir(parents=True)
    with (folder / "infrawatch_f.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["timestamp", "value", "anomaly_score", "label"])
        for i, ts in enumerate(stamps):
            writer.writerow([ts, 1.0, 1.0 if i == 100 else 0.0, 0])
    windows = tmp_path / "w.json"
    windows.write_text(
        json.dumps({"cat/f.csv": [["2020-01-01 08:20:00.000000", "2020-01-01 09:00:00.000000"]]})
    )
    files = nab_score.load_results(tmp_path / "res", windows, "infrawatch")
    assert [(f.name, f.windows) for f in files] == [("cat/f.csv", [(100, 108)])]
    assert report(files)["standard"]["score"] == pytest.approx(100.0)


def test_a_window_inside_probation_is_not_scored() -> None:
    # NAB's scorer: probation rows are ignored entirely, so a window that lies wholly in them
    # is neither a miss nor part of the normalisation; one that straddles it keeps its width.
    files = [FileScores("cat/f.csv", [0.0] * N, [(10, 60), (140, 189), (300, 349)])]
    files[0].scores[150] = 1.0  # the straddling window, 11 rows in of 50
    files[0].scores[300] = 1.0
    threshold, total, score = sweep(files, "standard")
    assert threshold == 1.0
    assert total == pytest.approx(sigma(-40 / 50) / sigma(-1.0) + 1.0)
    assert score == pytest.approx(100 * (total + 2) / 4)
    assert report(files)["standard"]["cat"] == pytest.approx(score)


def test_fp_cost_is_relative_to_the_previous_window_by_hand() -> None:
    files = corpus((300, 700), (300, 700))
    files[0].scores[359] = 1.0  # 10 rows past a 50-row window: y = 10 / 49
    files[1].scores[320] = 0.8  # lower score, earlier in a window already detected at 300
    _, total, _ = sweep(files, "standard")
    assert total == pytest.approx(4.0 + 0.11 * (2 / (1 + math.exp(5 * 10 / 49)) - 1))
