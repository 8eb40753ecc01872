"""Restoring detector state from the store gives the same decisions as an uninterrupted run."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

from infrawatch.alerting.fingerprint import alert_labels, fingerprint
from infrawatch.alerting.outbox import Outbox
from infrawatch.alerting.records import annotations_for
from infrawatch.detect import build_detectors
from infrawatch.detect.base import Detector
from infrawatch.detect.config import AnalysisConfig
from infrawatch.detect.novelty import NoveltyDetector
from infrawatch.detect.restore import restore_detectors
from infrawatch.model import Anomaly, Sample
from infrawatch.storage import rollup
from infrawatch.storage.store import Store
from tests.support_detect import noisy

START = 1_700_000_000.0
STEP = 300.0


def samples() -> list[Sample]:
    """Two series over 4 days (5-minute steps): a daily wave and a memory ratio, with incidents."""
    day = 288
    wave = [50 + 20 * math.sin(2 * math.pi * i / day) + n for i, n in enumerate(noisy(1200))]
    wave[1000] = 140.0
    mem = [0.5 + 0.01 * n for n in noisy(1200, 0, 1, seed=3)]
    for i in range(1050, 1100):
        mem[i] = 0.97
    out = []
    for i in range(1200):
        ts = START + i * STEP
        out.append(Sample("app.requests", wave[i], ts, (("host", "a"),)))
        out.append(Sample("system.memory.utilization", mem[i], ts))
    return out


Decision = tuple[str, float, str, str, float]


def decisions(detectors: Sequence[Detector], batch: list[Sample]) -> list[Decision]:
    """Every change, plus every score, the detectors produce on `batch`."""
    out: list[Decision] = []
    for s in batch:
        for d in detectors:
            found: list[Anomaly] = d.observe(s)
            out.extend((d.name, s.ts, a.status, a.rule, a.score) for a in found)
            out.append((d.name, s.ts, "score", s.name, d.score(s.key)))
    return out


async def test_restored_detectors_decide_like_an_uninterrupted_run(tmp_path: Path) -> None:
    config = AnalysisConfig()
    data = samples()
    split = 2 * 800  # the restart happens after 800 steps (2.8 days, inside the replay span)
    uninterrupted = build_detectors(config)
    decisions(uninterrupted, data[:split])
    expected = decisions(uninterrupted, data[split:])
    assert any(k[2] == "firing" and k[0] == "zscore" for k in expected)
    assert any(k[2] == "firing" and k[0] == "threshold" for k in expected)

    async with Store(tmp_path / "a.db") as store:
        await store.write(data[:split])
    async with Store(tmp_path / "a.db") as store:
        restarted = build_detectors(config)
        # Raw replay only: the exact path (the rollup-seeded one is tested below).
        result = await restore_detectors(
            store, restarted, now=data[split - 1].ts, use_rollups=False
        )
        assert result.samples == split
        assert result.series == 2
        assert decisions(restarted, data[split:]) == expected


async def test_without_restore_a_restart_would_decide_differently(tmp_path: Path) -> None:
    # The control for the test above: a fresh detector does not reproduce the decisions.
    config = AnalysisConfig()
    data = samples()
    split = 2 * 800
    uninterrupted = build_detectors(config)
    decisions(uninterrupted, data[:split])
    expected = decisions(uninterrupted, data[split:])
    assert decisions(build_detectors(config), data[split:]) != expected


async def test_restore_reads_only_the_needed_history_and_anomalies_are_stored(
    tmp_path: Path,
) -> None:
    config = AnalysisConfig()
    data = samples()
    detectors = build_detectors(config)
    found: list[Anomaly] = []
    for s in data:
        for d in detectors:
            found.extend(d.observe(s))
    async with Store(tmp_path / "b.db") as store:
        await store.write(data, found)
        result = await restore_detectors(
            store, build_detectors(config), now=data[-1].ts, max_history=86400
        )
        assert result.history_seconds == 86400
        assert result.samples == 2 * 289  # one day of 5-minute samples, both ends included
        async with store.db.execute(
            "SELECT detector, rule, status, evidence, summary FROM anomalies ORDER BY ts"
        ) as cur:
            rows = await cur.fetchall()
    assert {(r[0], r[2]) for r in rows} >= {("zscore", "firing"), ("threshold", "firing")}
    for detector, _rule, status, evidence, summary in rows:
        assert summary
        parsed = json.loads(evidence)
        needed = {"zscore": "z", "threshold": "level", "novelty": "exceedance"}[detector]
        assert needed in parsed
        assert status in ("firing", "resolved")


async def test_restore_from_rollups_keeps_the_ranges_and_decisions(tmp_path: Path) -> None:
    # The agent's path: novelty's far past comes from rollups, only its last 12 h (two
    # refractory periods) and the other detectors' histories from raw samples.
    config = AnalysisConfig()
    data = samples()
    split = 2 * 800
    uninterrupted = build_detectors(config)
    decisions(uninterrupted, data[:split])
    expected = decisions(uninterrupted, data[split:])
    now = data[split - 1].ts
    async with Store(tmp_path / "c.db") as store:
        await store.write(data[:split])
        await rollup.catch_up(store, now=now, raw_retention=1e9, rollup_1m_retention=1e9)
        restarted = build_detectors(config)
        result = await restore_detectors(store, restarted, now=now)
    assert result.seeded == 2
    before_restart = build_detectors(config)
    decisions(before_restart, data[:split])
    novelty = next(d for d in before_restart if isinstance(d, NoveltyDetector))
    seeded = next(d for d in restarted if isinstance(d, NoveltyDetector))
    for s in data[:2]:
        (value, *others), (value2, *others2) = novelty.bounds(s.key), seeded.bounds(s.key)
        assert value2 == value  # the value's range is exact: rollup min/max
        for (lo, hi), (lo2, hi2) in zip(others, others2, strict=True):
            assert lo2 <= lo
            assert hi2 >= hi
    # Threshold and Z-score replay raw history: identical decisions and scores. Novelty's wider
    # seeded ranges give scores no higher than a replay's; on this data the same changes fire.
    got = decisions(restarted, data[split:])
    assert [k for k in got if k[0] != "novelty"] == [k for k in expected if k[0] != "novelty"]
    changes = [k[:3] for k in expected if k[0] == "novelty" and k[2] != "score"]
    assert any(k[2] == "firing" for k in changes)
    assert [k[:3] for k in got if k[0] == "novelty" and k[2] != "score"] == changes
    novelty_scores = [(k, e) for k, e in zip(got, expected, strict=True) if k[0] == "novelty"]
    assert all(k[4] <= e[4] + 1e-12 for k, e in novelty_scores)


async def test_threshold_firing_in_the_hysteresis_band_survives_a_restart(tmp_path: Path) -> None:
    # Fires above 0.9, resolves only below 0.8; the value then sits at 0.85 for two hours,
    # far longer than the rule's replay window (for + keep_firing_for = 60 s).
    rule = {"name": "mem_high", "metric": "system.memory.utilization", "op": ">",
            "warning": 0.9, "resolve": 0.8, "keep_firing_for": 60}  # fmt: skip
    config = AnalysisConfig.model_validate(
        {"threshold": [rule], "zscore": {"enabled": False}, "novelty": {"enabled": False}}
    )
    history = [Sample("system.memory.utilization", 0.95, START)]
    history += [Sample("system.memory.utilization", 0.85, START + 60 * i) for i in range(1, 121)]
    end = history[-1].ts

    uninterrupted = build_detectors(config)[0]
    fired = [a for s in history for a in uninterrupted.observe(s)]
    assert [a.status for a in fired] == ["firing"]

    async with Store(tmp_path / "r.db") as store:
        await store.write(history, fired)
        # What the alerter persisted for it (alert_labels/annotations_for are its own functions).
        labels, annotations = alert_labels(fired[0]), annotations_for(fired[0])
        await store.db.execute(
            "INSERT INTO alerts (fingerprint, alertname, state, severity, labels, annotations,"
            " starts_at, updated_at) VALUES (?, ?, 'firing', ?, ?, ?, ?, ?)",
            (fingerprint(labels), "mem_high", "warning", json.dumps(labels),
             json.dumps(annotations), START, end),
        )  # fmt: skip
        restored = build_detectors(config)[0]
        # The agent hands restore what the alert store says was firing.
        firing = await Outbox(store).firing_rules()
        assert [(f.detector, f.key, f.rule, f.severity) for f in firing] == [
            ("threshold", ("system.memory.utilization", ()), "mem_high", "warning")
        ]
        await restore_detectors(store, [restored], firing=firing, now=end)

    key = ("system.memory.utilization", ())
    assert uninterrupted.states()[key].anomalous
    assert restored.states()[key].anomalous  # still firing, like the uninterrupted run
    # And both resolve on the same sample once the value really drops.
    drop = Sample("system.memory.utilization", 0.7, end + 60)
    later = Sample("system.memory.utilization", 0.7, end + 130)
    for detector in (uninterrupted, restored):
        assert detector.observe(drop) == []
        assert [a.status for a in detector.observe(later)] == ["resolved"]


async def test_a_rule_added_over_history_that_already_meets_it_fires_on_the_first_live_sample(
    tmp_path: Path,
) -> None:
    # The history was written without this rule; no alert was ever persisted for it.
    history = [Sample("system.memory.utilization", 0.95, START + 60 * i) for i in range(20)]
    rule = {"name": "mem_high", "metric": "system.memory.utilization", "op": ">",
            "warning": 0.9, "for": 300}  # fmt: skip
    config = AnalysisConfig.model_validate(
        {"threshold": [rule], "zscore": {"enabled": False}, "novelty": {"enabled": False}}
    )
    async with Store(tmp_path / "r.db") as store:
        await store.write(history)
        detector = build_detectors(config)[0]
        await restore_detectors(store, [detector], now=history[-1].ts)
    # The condition has held for longer than `for` in the history: the first live sample fires.
    live = detector.observe(Sample("system.memory.utilization", 0.95, history[-1].ts + 60))
    assert [(a.rule, a.status) for a in live] == [("mem_high", "firing")]
