"""Alert ↔ series identity: one mapping each way, a true bijection; the restart reconcile asks
the detectors running now about the alert's own series and rule."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from infrawatch.alerting.config import AlertingConfig
from infrawatch.alerting.engine import Engine
from infrawatch.alerting.fingerprint import (
    alert_labels,
    fingerprint,
    series_alert_labels,
    series_of_alert,
)
from infrawatch.alerting.outbox import Outbox
from infrawatch.alerting.records import AlertRecord
from infrawatch.alerting.service import AlertService, detector_probe
from infrawatch.detect import build_detectors
from infrawatch.detect.base import Detector
from infrawatch.detect.config import AnalysisConfig
from infrawatch.detect.restore import restore_detectors
from infrawatch.model import Anomaly, Labels, Sample, make_labels
from infrawatch.storage.store import Store

T0 = 1_700_000_000.0
MEM = "system.memory.utilization"
FS = "system.filesystem.utilization"
# The series label that the old probe stripped: the series' own label starts with exported_.
MEM_LABELS = make_labels({"exported_job": "x", "host": "db1"})
FS_LABELS = make_labels({"mount": "/"})
RULES: list[dict[str, Any]] = [
    {"name": "mem_high", "metric": MEM, "op": ">", "warning": 0.9, "keep_firing_for": 60},
    # Two rules on one series: at shutdown both fire, by the restart only fs_warn still does.
    {"name": "fs_warn", "metric": FS, "op": ">", "warning": 0.8, "keep_firing_for": 60},
    {"name": "fs_crit", "metric": FS, "op": ">", "critical": 0.95, "keep_firing_for": 60},
]
ALERTING = AlertingConfig.model_validate(
    {"group_wait": 0, "restart_grace": 0, "sinks": [{"name": "log", "type": "log"}]}
)

# Label names that exercise the mapping's edges: reserved names, exported_ prefixes (once,
# twice, bare), and anything else.
_EDGY = st.sampled_from(
    ["alertname", "metric", "severity", "job", "exported_", "exported_job", "exported_metric",
     "exported_exported_metric", "exported_severity", ""]
)  # fmt: skip
_PREFIXED = st.builds(
    lambda a, b: f"exported_{a}{b}",
    st.sampled_from(["", "exported_", "metric"]),
    st.text(max_size=6),
)
label_names = st.one_of(_EDGY, st.text(max_size=10), _PREFIXED)
label_dicts = st.dictionaries(label_names, st.text(max_size=6), max_size=6)


def analysis(rules: Sequence[dict[str, Any]] = RULES) -> AnalysisConfig:
    return AnalysisConfig.model_validate(
        {"threshold": list(rules), "zscore": {"enabled": False}, "novelty": {"enabled": False}}
    )


def anomaly(name: str, labels: Labels, rule: str = "r") -> Anomaly:
    return Anomaly(name, labels, T0, 1.0, "threshold", rule, "warning", "firing")


# -- the mapping ------------------------------------------------------------------------------


@given(name=st.text(max_size=12), labels=label_dicts)
def test_series_to_alert_labels_and_back_is_the_identity(name: str, labels: dict[str, str]) -> None:
    key = (name, make_labels(labels))
    assert series_of_alert(series_alert_labels(*key)) == key
    # alertname and severity around them do not disturb the way back.
    assert series_of_alert(alert_labels(anomaly(*key))) == key


@given(labels=label_dicts)
def test_alert_labels_name_at_most_one_series(labels: dict[str, str]) -> None:
    # The inverse accepts exactly what the forward mapping makes, so the mapping is a bijection
    # between series and the labels their alerts carry: no two series share an alert identity.
    alert = {**labels, "metric": "m"}
    key = series_of_alert(alert)
    if key is not None:
        own = {k: v for k, v in alert.items() if k not in ("alertname", "severity")}
        assert series_alert_labels(*key) == own


def test_a_series_label_named_like_an_exported_one_keeps_its_own_identity() -> None:
    clash = series_alert_labels(FS, make_labels({"metric": "a"}))
    literal = series_alert_labels(FS, make_labels({"exported_metric": "a"}))
    assert clash == {"metric": FS, "exported_metric": "a"}
    assert literal == {"metric": FS, "exported_exported_metric": "a"}
    assert fingerprint(clash) != fingerprint(literal)
    assert series_alert_labels(MEM, MEM_LABELS) == {
        "metric": MEM,
        "exported_exported_job": "x",
        "host": "db1",
    }
    assert series_of_alert({"metric": MEM, "exported_job": "x"}) is None  # no series makes it


def test_fingerprints_of_series_without_exported_labels_are_unchanged() -> None:
    # Computed before the mapping became a bijection: alerts stored by earlier versions keep
    # their identity (only series with a label starting with exported_ get a new one).
    labels = alert_labels(anomaly(FS, make_labels({"mount": "/", "metric": "m"}), rule="fs_full"))
    assert fingerprint(labels) == "881798fd56bd84d0"


# -- the probe --------------------------------------------------------------------------------


def run(detectors: Sequence[Detector], samples: Sequence[Sample]) -> list[Anomaly]:
    return [a for s in samples for d in detectors for a in d.observe(s)]


def records(anomalies: Sequence[Anomaly]) -> dict[str, AlertRecord]:
    """What the alerter keeps for these anomalies, by alertname."""
    engine = Engine(ALERTING, ["log"])
    engine.observe(anomalies, T0)
    return {rec.labels["alertname"]: rec for rec in engine.alerts.values()}


def test_the_probe_finds_a_series_whose_own_label_starts_with_exported() -> None:
    detectors = build_detectors(analysis())
    fired = run(detectors, [Sample(MEM, 0.95, T0, MEM_LABELS)])
    probe = detector_probe(lambda: detectors)
    assert probe(records(fired)["mem_high"]) is True


def test_the_probe_answers_for_the_alerts_own_rule() -> None:
    detectors = build_detectors(analysis())
    fired = run(detectors, [Sample(FS, 0.97, T0, FS_LABELS)])
    alerts = records(fired)
    assert alerts.keys() == {"fs_warn", "fs_crit"}
    # The value drops between the two firing levels: fs_crit resolves, fs_warn fires on.
    run(detectors, [Sample(FS, 0.85, T0 + 30 * i, FS_LABELS) for i in range(1, 4)])
    probe = detector_probe(lambda: detectors)
    assert probe(alerts["fs_warn"]) is True
    assert probe(alerts["fs_crit"]) is False


def test_the_probe_consults_the_detectors_running_now() -> None:
    startup = build_detectors(analysis([RULES[1]]))  # no mem_high rule yet
    running = [startup]
    probe = detector_probe(lambda: running[-1])
    reloaded = build_detectors(analysis())
    alert = records(run(reloaded, [Sample(MEM, 0.95, T0, MEM_LABELS)]))["mem_high"]
    assert probe(alert) is None  # the start-up detectors have no such rule
    running.append(reloaded)  # what Pipeline.set_detectors does on SIGHUP
    assert probe(alert) is True


# -- the restart, with a real store ------------------------------------------------------------


def history() -> list[Sample]:
    """Memory high throughout; the filesystem above both levels, then between them."""
    out = []
    for i in range(21):
        ts = T0 + 30 * i
        out.append(Sample(MEM, 0.95, ts, MEM_LABELS))
        out.append(Sample(FS, 0.97 if i < 10 else 0.85, ts, FS_LABELS))
    return out


async def shut_down_with_alerts_firing(db: Path) -> float:
    """A first run: samples stored, every rule's firing persisted by the alerter, and then a crash
    before fs_crit's resolve reached it. Returns the time of the last sample."""
    data = history()
    fired = run(build_detectors(analysis()), data)
    assert {(a.rule, a.status) for a in fired} == {
        ("mem_high", "firing"),
        ("fs_warn", "firing"),
        ("fs_crit", "firing"),
        ("fs_crit", "resolved"),
    }
    async with Store(db) as store:
        await store.write(data, fired)
        async with AlertService(ALERTING, store, shutdown_deadline=0.5) as svc:
            await svc.observe([a for a in fired if a.status == "firing"])
            await svc.settled()
    return data[-1].ts


def alert_states(db: Path) -> dict[str, str]:
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT alertname, state FROM alerts").fetchall())


async def test_restart_reconcile_resolves_only_the_rule_that_ended(tmp_path: Path) -> None:
    db = tmp_path / "agent.db"
    end = await shut_down_with_alerts_firing(db)
    assert alert_states(db) == {"mem_high": "firing", "fs_warn": "firing", "fs_crit": "firing"}
    async with Store(db) as store:
        detectors = build_detectors(analysis())
        firing = await Outbox(store).firing_rules()
        await restore_detectors(store, detectors, firing=firing, now=end)
        probe = detector_probe(lambda: detectors)
        async with AlertService(ALERTING, store, still_anomalous=probe) as svc:
            await svc.settled()  # restart_grace = 0: the first step reconciles
    # mem_high's series has a label starting with exported_ and is still anomalous: it stays.
    # fs_crit ended while the agent was down; fs_warn, on the same series, did not.
    assert alert_states(db) == {"mem_high": "firing", "fs_warn": "firing", "fs_crit": "resolved"}


async def test_reconcile_after_a_detector_swap_asks_the_new_detectors(tmp_path: Path) -> None:
    db = tmp_path / "agent.db"
    end = await shut_down_with_alerts_firing(db)
    clock = [end + 10.0]
    cfg = ALERTING.model_copy(update={"restart_grace": 60.0})
    async with Store(db) as store:
        firing = await Outbox(store).firing_rules()
        startup = build_detectors(analysis([RULES[1]]))  # started with only fs_warn
        await restore_detectors(store, startup, firing=firing, now=end)
        running = [startup]
        probe = detector_probe(lambda: running[-1])
        async with AlertService(cfg, store, still_anomalous=probe, clock=lambda: clock[0]) as svc:
            # SIGHUP within the grace period: every rule is back, restored like at start-up.
            reloaded = build_detectors(analysis())
            await restore_detectors(store, reloaded, firing=firing, now=end)
            running.append(reloaded)
            clock[0] += 60.0
            await svc.observe([])  # wake the engine: the grace period is over
            await svc.settled()
    assert alert_states(db) == {"mem_high": "firing", "fs_warn": "firing", "fs_crit": "resolved"}
