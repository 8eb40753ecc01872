"""The alert engine with a controllable clock: dedup, group_wait, group_interval, repeat_interval
(cooldown), send_resolved, flap damping, routes, silences, escalation, restore and reconcile."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from infrawatch.alerting.config import AlertingConfig
from infrawatch.alerting.engine import Engine
from infrawatch.alerting.fingerprint import alert_labels, fingerprint
from infrawatch.alerting.matchers import parse_matcher
from infrawatch.alerting.records import Notification
from infrawatch.config import ConfigError, load
from infrawatch.model import Anomaly, Severity, make_labels

T0 = 1_800_000_000.0


def anomaly(
    status: str = "firing",
    *,
    rule: str = "cpu_high",
    name: str = "system.cpu.utilization",
    severity: Severity = "warning",
    ts: float = T0,
    **labels: str,
) -> Anomaly:
    return Anomaly(
        name=name,
        labels=make_labels(labels or {"host": "web1"}),
        ts=ts,
        value=0.97,
        detector="threshold",
        rule=rule,
        severity=severity,
        status=status,  # type: ignore[arg-type]
        summary=f"{name} above 90%",
    )


def engine(sinks: tuple[str, ...] = ("hook",), **cfg: Any) -> Engine:
    base: dict[str, Any] = {
        "group_wait": 30,
        "group_interval": 300,
        "repeat_interval": 3600,
        "flap": {"max_flips": 4, "window": 600, "settle": 600},
    }
    base.update(cfg)
    base["sinks"] = [{"name": name, "type": "log"} for name in sinks]
    return Engine(AlertingConfig(**base), list(sinks))


def statuses(notes: list[Notification]) -> list[list[tuple[str, str, bool]]]:
    return [
        [(a["labels"]["alertname"], a["status"], a["flapping"]) for a in n.alerts] for n in notes
    ]


def test_fingerprint_is_stable_order_free_and_ignores_severity() -> None:
    a = alert_labels(anomaly(host="web1", mount="/"))
    b = dict(reversed(list(a.items())))
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(a) == fingerprint(
        alert_labels(anomaly(severity="critical", host="web1", mount="/"))
    )
    assert fingerprint(a) != fingerprint(alert_labels(anomaly(host="web2", mount="/")))
    assert len(fingerprint(a)) == 16
    # A series label named like an alert label is kept, renamed, instead of overwriting it.
    clash = alert_labels(anomaly(alertname="x", host="h"))
    assert clash["alertname"] == "cpu_high"
    assert clash["exported_alertname"] == "x"


def test_group_wait_batches_and_duplicates_are_dropped() -> None:
    e = engine()
    e.observe([anomaly(host="web1")], T0)
    e.observe([anomaly(host="web1"), anomaly(host="web2")], T0 + 10)  # web1 again: a duplicate
    assert e.flush(T0 + 29) == []
    assert e.next_due() == T0 + 30
    notes = e.flush(T0 + 30)
    assert len(notes) == 1
    assert notes[0].status == "firing"
    assert sorted(a["labels"]["host"] for a in notes[0].alerts) == ["web1", "web2"]
    assert notes[0].sinks == ("hook",)
    assert e.flush(T0 + 31) == []


def test_group_interval_and_repeat_interval_cooldown() -> None:
    e = engine()
    e.observe([anomaly(host="web1")], T0)
    assert len(e.flush(T0 + 30)) == 1
    # A new alert in the same group waits for the group's next tick (group_interval).
    e.observe([anomaly(host="web2")], T0 + 40)
    assert e.flush(T0 + 100) == []
    notes = e.flush(T0 + 330)
    assert [len(n.alerts) for n in notes] == [2]
    # Still firing, nothing new: silent at every tick until repeat_interval passed.
    t = T0 + 330
    sent_at = []
    while t < T0 + 330 + 2 * 3600:
        t += 300
        if e.flush(t):
            sent_at.append(t - (T0 + 330))
    assert sent_at == [3600, 7200]


def test_resolve_is_sent_once_and_only_if_firing_was_told() -> None:
    e = engine()
    e.observe([anomaly()], T0)
    e.flush(T0 + 30)
    e.observe([anomaly("resolved", ts=T0 + 50)], T0 + 50)
    e.observe([anomaly("resolved", ts=T0 + 60)], T0 + 60)  # a duplicate resolve
    notes = e.flush(T0 + 330)
    assert statuses(notes) == [[("cpu_high", "resolved", False)]]
    assert notes[0].status == "resolved"
    assert notes[0].alerts[0]["endsAt"].startswith("2027-01-15T08:00:50")
    assert e.flush(T0 + 630) == []
    assert e.groups == {}
    # Fired and resolved inside group_wait: receivers never heard of it, so nothing is sent.
    e.observe([anomaly(rule="blip")], T0 + 1000)
    e.observe([anomaly("resolved", rule="blip")], T0 + 1010)
    assert e.flush(T0 + 1030) == []


def test_send_resolved_false_stays_quiet() -> None:
    e = engine(send_resolved=False)
    e.observe([anomaly()], T0)
    assert len(e.flush(T0 + 30)) == 1
    e.observe([anomaly("resolved")], T0 + 40)
    assert e.flush(T0 + 330) == []
    assert e.alerts == {} or all(r.state == "resolved" for r in e.alerts.values())


def test_flapping_is_announced_once_then_held_until_it_settles() -> None:
    e = engine(group_wait=0, group_interval=60)
    t = T0
    sent: list[list[tuple[str, str, bool]]] = []
    e.observe([anomaly()], t)
    sent += statuses(e.flush(t))
    # Flip every 61 s: each flip reaches the receiver until the 5th (> max_flips = 4) marks it
    # flapping.
    for i in range(12):
        t += 61
        e.observe([anomaly("resolved" if i % 2 == 0 else "firing", ts=t)], t)
        sent += statuses(e.flush(t))
    assert sent == [
        [("cpu_high", "firing", False)],
        [("cpu_high", "resolved", False)],
        [("cpu_high", "firing", False)],
        [("cpu_high", "resolved", False)],
        [("cpu_high", "firing", False)],
        [("cpu_high", "firing", True)],  # one notification says it is flapping
    ]
    assert len(sent) == 6  # the next 7 flips were held back
    rec = next(iter(e.alerts.values()))
    assert rec.flapping
    assert "flapping" in rec.annotations
    # Once quiet for `settle` seconds, its real (last observed) state is notified.
    final_state = rec.state
    assert final_state == "firing"
    t_settle = rec.flips[-1] + 600
    due = e.next_due()
    assert due is not None
    assert due <= t_settle
    assert e.flush(t_settle - 1) == []
    # Settled at t_settle; the change goes out with the group's next tick (group_interval 60).
    notes = e.flush(t_settle) + e.flush(t_settle + 30) + e.flush(t_settle + 60)
    assert statuses(notes) == [[("cpu_high", final_state, False)]]


def test_routes_send_by_severity_and_default_goes_everywhere() -> None:
    routed = engine(
        ("discord", "slack", "am"),
        group_wait=0,
        routes=[
            {"matchers": ['severity="critical"'], "sinks": ["discord", "am"], "name": "crit"},
            {"matchers": ['severity=~"warn.*"'], "sinks": ["slack"], "name": "warn"},
        ],
    )
    routed.observe([anomaly(severity="critical", rule="disk_full"), anomaly(rule="cpu_high")], T0)
    notes = {n.route: n for n in routed.flush(T0)}
    assert notes["crit"].sinks == ("discord", "am")
    assert [a["labels"]["alertname"] for a in notes["crit"].alerts] == ["disk_full"]
    assert notes["warn"].sinks == ("slack",)
    unrouted = engine(("a", "b"), group_wait=0, routes=[{"matchers": ['x="y"'], "sinks": ["a"]}])
    unrouted.observe([anomaly()], T0)
    assert unrouted.flush(T0) == []
    default = engine(("a", "b"), group_wait=0)
    default.observe([anomaly()], T0)
    assert [n.sinks for n in default.flush(T0)] == [("a", "b")]
    cont = engine(
        ("a", "b"),
        group_wait=0,
        routes=[
            {"matchers": [], "sinks": ["a"], "continue": True},
            {"matchers": [], "sinks": ["b"]},
        ],
    )
    cont.observe([anomaly()], T0)
    assert sorted(n.sinks for n in cont.flush(T0)) == [("a",), ("b",)]


def test_silence_mutes_until_it_ends() -> None:
    e = engine(
        group_wait=0,
        group_interval=60,
        silences=[
            {
                "matchers": ['host="web1"'],
                "starts_at": "2027-01-15T07:00:00Z",
                "ends_at": "2027-01-15T08:10:00Z",  # T0 + 600
            }
        ],
    )
    e.observe([anomaly(host="web1"), anomaly(host="web2")], T0)
    first = e.flush(T0)
    assert [a["labels"]["host"] for n in first for a in n.alerts] == ["web2"]
    t = T0
    later: list[Notification] = []
    while t < T0 + 700:
        t += 60
        later += e.flush(t)
    assert len(later) == 1  # web1 announced once the silence ended, with web2 still firing
    assert sorted(a["labels"]["host"] for a in later[0].alerts) == ["web1", "web2"]


def test_escalation_renotifies_with_new_severity() -> None:
    e = engine(group_wait=0, group_interval=60)
    e.observe([anomaly(severity="warning")], T0)
    assert len(e.flush(T0)) == 1
    e.observe([anomaly(severity="warning")], T0 + 10)  # same: dedup
    assert e.flush(T0 + 60) == []
    e.observe([anomaly(severity="critical")], T0 + 70)
    notes = e.flush(T0 + 120)
    assert [a["labels"]["severity"] for a in notes[0].alerts] == ["critical"]


def test_restore_does_not_reannounce_and_reconcile_resolves() -> None:
    first = engine(group_wait=0)
    first.observe([anomaly(host="web1"), anomaly(host="web2")], T0)
    assert len(first.flush(T0)) == 1
    persisted = first.take_dirty()
    assert {r.notified["default"] for r in persisted} == {"firing"}

    second = engine(group_wait=0)
    second.restore(persisted, T0 + 100)
    assert second.flush(T0 + 100) == []  # announced 100 s ago: no duplicate firing
    # web1 is confirmed by a detector's firing (dedup), web2 is not anomalous any more.
    second.observe([anomaly(host="web1")], T0 + 110)
    resolved = second.reconcile(T0 + 120, lambda rec: False)
    assert resolved == 1
    notes = second.flush(T0 + 400)
    assert statuses(notes) == [[("cpu_high", "firing", False), ("cpu_high", "resolved", False)]]
    assert "resolved_note" in notes[0].alerts[1]["annotations"]


def test_matchers_and_config_errors(tmp_path: Path) -> None:
    m = parse_matcher('instance=~"web[0-9]+"')
    assert m.matches({"instance": "web12"})
    assert not m.matches({"instance": "xweb1"})
    assert parse_matcher("severity!=info").matches({"severity": "critical"})
    assert parse_matcher('a!~"x.*"').matches({})
    with pytest.raises(ValueError, match="invalid matcher"):
        parse_matcher("no operator")
    path = tmp_path / "c.toml"
    path.write_text(
        '[[alerting.sinks]]\nname = "d"\ntype = "discord"\n'
        '[[alerting.sinks]]\nname = "w"\ntype = "webhook"\nurl = "ftp://x/secret-token"\n'
        '[[alerting.routes]]\nmatchers = ["bad"]\nsinks = ["d"]\n'
    )
    with pytest.raises(ConfigError) as info:
        load(path)
    assert info.value.problems == [
        "alerting.routes[0].matchers: invalid matcher 'bad':"
        ' expected name="value" (or !=, =~, !~)',
        "alerting.sinks[0]: a discord sink needs url",
        "alerting.sinks[1]: url must start with http:// or https://",
    ]
    with pytest.raises(ValidationError, match="unknown sinks: nope"):
        AlertingConfig.model_validate(
            {"routes": [{"sinks": ["nope"]}], "sinks": [{"name": "a", "type": "log"}]}
        )
    am = AlertingConfig.model_validate(
        {"sinks": [{"name": "am", "type": "alertmanager", "url": "http://x:9093"}]}
    )
    assert [u.get_secret_value() for u in am.sinks[0].urls] == ["http://x:9093"]


def test_refiring_with_another_severity_is_routed_by_the_new_severity() -> None:
    # A warning that resolved and comes back as critical must reach the critical route (and
    # show "critical"), not keep the severity it had last time.
    e = engine(
        ("slack", "discord"),
        group_wait=0,
        group_interval=60,
        routes=[
            {"matchers": ['severity="critical"'], "sinks": ["discord"]},
            {"matchers": ['severity="warning"'], "sinks": ["slack"]},
        ],
    )
    e.observe([anomaly(severity="warning")], T0)
    assert [n.sinks for n in e.flush(T0)] == [("slack",)]
    e.observe([anomaly("resolved", severity="warning", ts=T0 + 10)], T0 + 10)
    assert [n.status for n in e.flush(T0 + 60)] == ["resolved"]
    e.observe([anomaly(severity="critical", ts=T0 + 100)], T0 + 100)
    notes = e.flush(T0 + 120)
    assert [n.sinks for n in notes] == [("discord",)]
    assert [a["labels"]["severity"] for a in notes[0].alerts] == ["critical"]


def test_bad_whsec_secret_or_url_is_a_config_error_not_a_crash(tmp_path: Path) -> None:
    # Both used to pass validation, then raise at start-up or at every delivery attempt.
    path = tmp_path / "c.toml"
    path.write_text(
        '[[alerting.sinks]]\nname = "w"\ntype = "webhook"\nurl = "https://x/h"\n'
        'secret = "whsec_not-base64!S3CRET"\n'
        '[[alerting.sinks]]\nname = "d"\ntype = "discord"\n'
        'url = "https://discord.com:99999/api/webhooks/1/TOKEN"\n'
    )
    with pytest.raises(ConfigError) as info:
        load(path)
    assert info.value.problems == [
        "alerting.sinks[0]: secret: the part after whsec_ must be base64",
        "alerting.sinks[1]: invalid URL (check its host and port)",
    ]


def test_escalated_alert_that_resolves_before_the_next_tick_is_still_resolved() -> None:
    # Receivers were told it fired; escalating and resolving within one group_interval must not
    # leave them with an alert that never resolves.
    e = engine(group_wait=0, group_interval=60)
    e.observe([anomaly(severity="warning")], T0)
    assert len(e.flush(T0)) == 1
    e.observe([anomaly(severity="critical")], T0 + 10)
    e.observe([anomaly("resolved", severity="critical", ts=T0 + 20)], T0 + 20)
    assert statuses(e.flush(T0 + 60)) == [[("cpu_high", "resolved", False)]]


def test_alerts_of_a_series_that_stopped_reporting_resolve() -> None:
    # A process exits while its alert fires: no detector will ever send the resolve.
    e = engine()
    gone = anomaly(rule="proc_cpu", name="process.cpu.utilization", pid="42", name_="java")
    stays = anomaly(rule="proc_cpu", name="process.cpu.utilization", pid="7", name_="nginx")
    other_metric = anomaly(rule="mem", name="process.memory.usage", pid="42", name_="java")
    e.observe([gone, stays, other_metric], T0)
    assert len(e.flush(T0 + 30)) == 2  # grouped by alertname
    assert e.resolve_series((gone.name, gone.labels), T0 + 100) == 1
    assert e.resolve_series((gone.name, gone.labels), T0 + 101) == 0  # already resolved
    notes = e.flush(T0 + 330)
    resolved = [a for n in notes for a in n.alerts if a["status"] == "resolved"]
    assert [(a["labels"]["metric"], a["labels"]["pid"]) for a in resolved] == [
        ("process.cpu.utilization", "42")
    ]
    assert resolved[0]["annotations"]["resolved_by"] == "series stopped reporting"
    states = {(r.labels["metric"], r.labels["pid"]): r.state for r in e.alerts.values()}
    assert states == {
        ("process.cpu.utilization", "42"): "resolved",
        ("process.cpu.utilization", "7"): "firing",
        ("process.memory.usage", "42"): "firing",
    }


def test_a_series_gone_resolves_only_its_own_alerts_not_its_exported_twins() -> None:
    # `metric="a"` is kept as exported_metric; a series whose own label is exported_metric="a"
    # is another series with another alert, and goes away on its own.
    e = engine()
    clash = anomaly(name="app.requests", metric="a")
    literal = anomaly(name="app.requests", exported_metric="a")
    e.observe([clash, literal], T0)
    assert len(e.alerts) == 2
    assert e.resolve_series((literal.name, literal.labels), T0 + 100) == 1
    states = {tuple(sorted(r.labels)): r.state for r in e.alerts.values()}
    assert states == {
        ("alertname", "exported_metric", "metric", "severity"): "firing",
        ("alertname", "exported_exported_metric", "metric", "severity"): "resolved",
    }


def test_a_restored_alert_is_not_repeated_before_the_reconcile_confirms_it() -> None:
    first = engine(group_wait=0, repeat_interval=3600)
    first.observe([anomaly(host="web1")], T0)
    assert len(first.flush(T0)) == 1
    persisted = first.take_dirty()

    # The agent was down for two hours: the repeat interval has passed by the restart.
    second = engine(group_wait=0, repeat_interval=3600)
    second.restore(persisted, T0 + 7200)
    assert second.flush(T0 + 7200) == []  # not re-announced while unconfirmed
    assert second.reconcile(T0 + 7320, lambda rec: True) == 0  # still anomalous: confirmed
    notes = second.flush(T0 + 7200 + 300)
    assert statuses(notes) == [[("cpu_high", "firing", False)]]


def test_sent_alerts_carry_external_labels_without_changing_identity() -> None:
    plain = engine(group_wait=0)
    tagged = engine(group_wait=0, external_labels={"env": "prod", "host": "db7"})
    for e in (plain, tagged):
        e.observe([anomaly(host="web1")], T0)  # the series has its own `host` label
        e.observe([anomaly(name="system.memory.utilization", rule="mem", cpu="0")], T0)
    assert plain.alerts.keys() == tagged.alerts.keys()  # same fingerprints
    by_rule = {a["labels"]["alertname"]: a["labels"] for n in tagged.flush(T0) for a in n.alerts}
    assert by_rule["cpu_high"]["host"] == "web1"  # the alert's own label wins
    assert by_rule["cpu_high"]["env"] == "prod"
    assert by_rule["mem"]["host"] == "db7"
    sent = {a["labels"]["alertname"]: a["labels"] for n in plain.flush(T0) for a in n.alerts}
    assert sent["mem"]["host"] == socket.gethostname()  # by default, this machine's name


def test_an_empty_external_label_is_left_out() -> None:
    e = engine(group_wait=0, external_labels={"host": ""})
    e.observe([anomaly(name="system.memory.utilization", rule="mem", cpu="0")], T0)
    (note,) = e.flush(T0)
    assert "host" not in note.alerts[0]["labels"]
