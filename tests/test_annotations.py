"""Annotation templates: safe substitution, config errors, defaults, and every sink renders them
(Discord, Slack and a webhook on loopback; the real Alertmanager's API)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from infrawatch.alerting.config import AlertingConfig
from infrawatch.alerting.engine import Engine
from infrawatch.alerting.records import annotations_for
from infrawatch.alerting.render import (
    DISCORD_FIELD_VALUE,
    render_discord,
    render_slack,
)
from infrawatch.alerting.service import AlertService
from infrawatch.annotations import check_template, render
from infrawatch.detect.config import AnalysisConfig, ThresholdRule
from infrawatch.detect.threshold import ThresholdDetector
from infrawatch.model import Anomaly, make_labels
from infrawatch.storage.store import Store
from tests.support_alertmanager import available, run_alertmanager
from tests.support_detect import feed
from tests.support_receivers import (
    DiscordReceiver,
    Receiver,
    SlackReceiver,
    validate_discord,
    validate_slack,
)

RUNBOOK = "https://wiki.example.internal/runbooks/disk(full)?team=ops&x=1"
TEMPLATES = {
    "summary": "Filesystem {labels.mountpoint} is {value} full (above {evidence.level})",
    "description": "{evidence.summary}; rule {rule} ({severity}, {detector})",
    "runbook_url": RUNBOOK,
    "owner": "{labels.team}",
}


def _render(template: str, **over: Any) -> str:
    args: dict[str, Any] = {
        "value": 0.9312,
        "metric": "system.filesystem.utilization",
        "labels": {"mountpoint": "/var", "host": "web-1"},
        "evidence": {"level": 0.85, "op": ">", "for_s": 600.0, "z": 6.12345},
        "summary": "value 93.1 % > 85.0 %",
        "severity": "critical",
        "rule": "filesystem_full",
        "detector": "threshold",
        "score": 1.0,
    }
    return render(template, **{**args, **over})


def disk(status: str = "firing", annotations: dict[str, str] | None = None) -> Anomaly:
    return Anomaly(
        name="system.filesystem.utilization",
        labels=make_labels({"mountpoint": "/var", "device": "sda1"}),
        ts=time.time(),
        value=0.9312,
        detector="threshold",
        rule="filesystem_full",
        severity="critical",
        status=status,  # type: ignore[arg-type]
        evidence={"level": 0.85, "op": ">"},
        summary="system.filesystem.utilization 93.1 % > 85.0 % (critical)",
        annotations=TEMPLATES if annotations is None else annotations,
    )


# -- the substitution ----------------------------------------------------------------------------


def test_placeholders_are_filled_in() -> None:
    assert _render(TEMPLATES["summary"]) == "Filesystem /var is 93.1 % full (above 85.0 %)"
    assert _render("{metric} {score} {evidence.op} {evidence.z} {evidence.for_s}") == (
        "system.filesystem.utilization 1.000 > 6.123 600"
    )
    assert _render("{evidence.summary}") == "value 93.1 % > 85.0 %"
    # Not a utilization: four significant digits, levels too.
    assert _render("{value} vs {evidence.level}", metric="up", value=0.0) == "0 vs 0.85"
    assert _render("{{value}} costs {{ {value} }}") == "{value} costs { 93.1 % }"
    assert _render("{ value }") == "93.1 %"


def test_missing_labels_and_evidence_render_empty() -> None:
    assert _render("[{labels.nope}|{evidence.nope}]") == "[|]"


def test_no_attribute_access_or_format_specs() -> None:
    # What str.format would evaluate is either rejected at load or just a dictionary lookup.
    for bad in ("{value.__class__}", "{value!r}", "{value:>10}", "{labels[0]}", "{0}", "{}"):
        with pytest.raises(ValueError, match="unknown placeholder"):
            check_template(bad)
    assert _render("{labels.__class__}") == ""


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("Disk {labels.mountpoint is full", "unmatched '{' at character 6"),
        ("oops }", "unmatched '}' at character 6"),
        ("{valu}", r"unknown placeholder \{valu\}"),
        ("{labels}", r"unknown placeholder \{labels\}"),
        ("{labels.a-b}", r"unknown placeholder \{labels.a-b\}"),
    ],
)
def test_malformed_templates_are_config_errors_naming_the_field(
    template: str, message: str
) -> None:
    with pytest.raises(ValidationError, match=rf"annotations\.summary: {message}"):
        ThresholdRule.model_validate(
            {"name": "x", "metric": "m", "warning": 1, "annotations": {"summary": template}}
        )
    with pytest.raises(ValidationError, match=message):
        AnalysisConfig.model_validate({"zscore": {"annotations": {"summary": template}}})


def test_cli_check_reports_a_bad_template_on_one_line(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[analysis.novelty]\nannotations = { runbook_url = "https://x/{runbook" }\n')
    result = subprocess.run(
        [sys.executable, "-m", "infrawatch", "check", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "analysis.novelty.annotations: annotations.runbook_url: unmatched '{' at character 11"
        " (write {{ for a literal brace)"
    )


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60), st.dictionaries(st.text(max_size=5), st.text(max_size=10)))
def test_any_checked_template_renders_without_error(template: str, labels: dict[str, str]) -> None:
    try:
        check_template(template)
    except ValueError:
        return
    assert isinstance(_render(template, labels=labels), str)


# -- the engine and the shipped defaults --------------------------------------------------------


def test_engine_renders_the_rules_templates_over_its_defaults() -> None:
    notes = annotations_for(disk())
    assert notes["summary"] == "Filesystem /var is 93.1 % full (above 85.0 %)"
    assert notes["description"] == (
        "system.filesystem.utilization 93.1 % > 85.0 % (critical); rule filesystem_full"
        " (critical, threshold)"
    )
    assert notes["runbook_url"] == RUNBOOK
    assert "owner" not in notes  # only a missing label: rendered empty, left out
    assert notes["evidence_level"] == "0.85"  # the raw evidence is still there
    # Without templates the detector's own summary stays.
    assert annotations_for(disk(annotations={}))["summary"] == disk().summary


def test_default_rules_and_detectors_have_readable_summaries() -> None:
    config = AnalysisConfig()
    assert all(rule.annotations.get("summary") for rule in config.threshold)
    detector = ThresholdDetector(config.threshold)
    engine = Engine(AlertingConfig(), ["log"])
    fired = [
        a
        for _, a in feed(
            detector,
            [0.99] * 4,
            name="system.filesystem.utilization",
            labels=(("mountpoint", "/srv"),),
            step=300,
        )
    ]
    fired += [a for _, a in feed(detector, [0.991] * 3, name="system.cpu.utilization", step=300)]
    engine.observe(fired, time.time())
    summaries = sorted(rec.annotations["summary"] for rec in engine.alerts.values())
    assert summaries == [
        "CPU busy: 99.1 % above 97.0 % for 5 minutes",
        "Filesystem /srv is 99.0 % full (above 95.0 %)",
    ]
    zscore = annotations_for(
        Anomaly(
            "requests", (), 0.0, 50.0, "zscore", "zscore", "warning", "firing",
            summary="value 50 is 6.0σ above the 1d mean 10",
            annotations=config.zscore.annotations,
        )
    )  # fmt: skip
    assert zscore["summary"] == "requests is unusual: value 50 is 6.0σ above the 1d mean 10"


# -- what each sink shows -------------------------------------------------------------------------


def _payload(**annotations: str) -> dict[str, Any]:
    alert = {
        "status": "firing",
        "labels": {"alertname": "filesystem_full", "severity": "critical", "mountpoint": "/var"},
        "annotations": annotations,
        "startsAt": "2026-01-01T00:00:00.000Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "fingerprint": "0123456789abcdef",
        "generatorURL": "https://infrawatch.example/#/chart?x=1",
        "flapping": False,
    }
    return {"alerts": [alert], "truncatedAlerts": 0}


def test_discord_shows_summary_description_and_runbook_link() -> None:
    body = render_discord(
        _payload(summary="Disk full", description="Clean /var/log", runbook_url=RUNBOOK)
    )
    [embed] = body["embeds"]
    assert embed["description"] == "Disk full\nClean /var/log"
    runbook = embed["fields"][0]
    assert runbook["name"] == "runbook"
    # Parentheses are escaped so the Markdown link does not end early.
    assert runbook["value"] == (
        "[Open runbook](https://wiki.example.internal/runbooks/disk%28full%29?team=ops&x=1)"
    )
    assert validate_discord(body) == []


def test_slack_shows_summary_description_and_runbook_link() -> None:
    body = render_slack(
        _payload(summary="Disk full", description="Clean <b>", runbook_url=RUNBOOK + "|x")
    )
    text = body["blocks"][1]["text"]["text"]
    assert "Disk full\nClean &lt;b&gt;" in text
    assert text.endswith(
        "<https://wiki.example.internal/runbooks/disk(full)?team=ops&amp;x=1%7Cx|Runbook>"
        " · <https://infrawatch.example/#/chart?x=1|Open chart>"
    )
    assert validate_slack(body) == []


def test_a_runbook_that_is_not_a_link_or_too_long_is_never_cut() -> None:
    plain = render_discord(_payload(runbook_url="see the wiki"))
    assert {"name": "runbook_url", "value": "see the wiki", "inline": True} in plain["embeds"][0][
        "fields"
    ]
    long_url = "https://wiki.example.internal/" + "a" * DISCORD_FIELD_VALUE
    body = render_discord(_payload(runbook_url=long_url))
    values = [f["value"] for f in body["embeds"][0].get("fields", [])]
    assert not any("[Open runbook]" in v for v in values)
    assert validate_discord(body) == []
    slack = render_slack(_payload(runbook_url="https://x.example/" + "b" * 3000))
    assert "|Runbook>" not in slack["blocks"][1]["text"]["text"]
    assert validate_slack(slack) == []


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["summary", "description", "runbook_url", "owner", "x" * 300]),
        st.one_of(
            st.text(max_size=5000),
            st.builds(lambda t: "https://r.example/" + t, st.text(max_size=2000)),
        ),
    )
)
def test_annotations_never_break_the_limits(annotations: dict[str, str]) -> None:
    payload = _payload(**annotations)
    payload["alerts"] *= 12
    assert validate_discord(render_discord(payload)) == []
    assert validate_slack(render_slack(payload)) == []


async def test_real_receivers_get_the_rendered_annotations(tmp_path: Path) -> None:
    discord, slack, hook = DiscordReceiver(), SlackReceiver(), Receiver()
    for receiver in (discord, slack, hook):
        await receiver.start()
    try:
        cfg = AlertingConfig.model_validate(
            {
                "group_wait": 0,
                "sinks": [
                    {"name": "d", "type": "discord", "url": discord.url},
                    {"name": "s", "type": "slack", "url": slack.url},
                    {"name": "w", "type": "webhook", "url": hook.url},
                ],
            }
        )
        async with Store(tmp_path / "a.db") as store, AlertService(cfg, store) as svc:
            await svc.observe([disk()])
            for receiver in (discord, slack, hook):
                await receiver.wait_until(lambda r: len(r.accepted()) == 1)
        [d] = discord.accepted()
        embed = d.json["embeds"][0]
        assert embed["description"].startswith("Filesystem /var is 93.1 % full")
        assert embed["fields"][0]["value"].startswith("[Open runbook](https://wiki.example")
        [s] = slack.accepted()
        assert "|Runbook>" in s.json["blocks"][1]["text"]["text"]
        [w] = hook.accepted()
        annotations = w.json["alerts"][0]["annotations"]
        assert annotations["summary"] == "Filesystem /var is 93.1 % full (above 85.0 %)"
        assert annotations["runbook_url"] == RUNBOOK
        assert w.json["commonAnnotations"]["runbook_url"] == RUNBOOK
    finally:
        for receiver in (discord, slack, hook):
            await receiver.stop()


async def test_real_alertmanager_shows_the_annotations(tmp_path: Path) -> None:
    if not available():
        pytest.fail("prometheus-alertmanager is not installed: run `make test` (it installs it)")
    async with run_alertmanager(tmp_path) as am:
        cfg = AlertingConfig.model_validate(
            {"group_wait": 0, "sinks": [{"name": "am", "type": "alertmanager", "urls": [am.url]}]}
        )
        async with Store(tmp_path / "a.db") as store, AlertService(cfg, store) as svc:
            await svc.observe([disk()])
            await svc.workers["am"].wait_until(lambda s: s.sent == 1)
            [alert] = await am.alerts()
    assert alert["labels"]["alertname"] == "filesystem_full"
    shown = alert["annotations"]
    assert shown["summary"] == "Filesystem /var is 93.1 % full (above 85.0 %)"
    assert shown["description"].endswith("rule filesystem_full (critical, threshold)")
    assert shown["runbook_url"] == RUNBOOK
    assert "owner" not in shown
