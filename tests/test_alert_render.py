"""Any labels and annotations, however long or odd, render within Discord's and Slack's limits."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infrawatch.alerting.render import render_discord, render_slack, truncate, ulen
from tests.support_receivers import validate_discord, validate_slack

text = st.text(max_size=3000) | st.text(alphabet="😀a&<>`*\u200b \n", max_size=5000)
label_map = st.dictionaries(text, text, max_size=40)


def _alert(labels: dict[str, str], annotations: dict[str, str], status: str) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": "rule", **labels},
        "annotations": annotations,
        "startsAt": "2027-01-15T08:00:00.000Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "fingerprint": "0123456789abcdef",
        "flapping": status == "flapping",
    }


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(label_map, label_map, st.sampled_from(["firing", "resolved", "flapping"])),
        min_size=1,
        max_size=30,
    ),
    st.integers(min_value=0, max_value=5),
)
def test_any_alerts_render_within_limits(
    alerts: list[tuple[dict[str, str], dict[str, str], str]], truncated: int
) -> None:
    payload = {"alerts": [_alert(*a) for a in alerts], "truncatedAlerts": truncated}
    discord = render_discord(payload)
    assert validate_discord(discord) == []
    slack = render_slack(payload)
    assert validate_slack(slack) == []
    if len(alerts) > 10 or truncated:
        assert "not shown" in discord["content"]
    if len(alerts) > 48 or truncated:
        assert "not shown" in slack["text"]


def test_cut_text_is_marked_and_never_splits_a_character() -> None:
    assert truncate("😀" * 10, 5) == "😀😀…"
    assert ulen(truncate("😀" * 10, 5)) == 5
    many = {f"label{i}": "v" * 900 for i in range(40)}
    discord = render_discord({"alerts": [_alert(many, {"summary": "x" * 5000}, "firing")] * 12})
    assert validate_discord(discord) == []
    assert len(discord["embeds"]) == 10
    assert "2 more alert(s) not shown" in discord["content"]
    fields = [f for e in discord["embeds"] for f in e.get("fields", [])]
    assert any("not shown" in f["value"] for f in fields)
    assert discord["allowed_mentions"] == {"parse": []}
    slack = render_slack({"alerts": [_alert(many, {"summary": "<&>" * 2000}, "firing")] * 60})
    assert validate_slack(slack) == []
    section = slack["blocks"][1]["text"]["text"]
    assert section.endswith("…")
    assert "&lt;" in section
    assert slack["blocks"][-1]["elements"][0]["text"] == "12 more alert(s) not shown"
