"""Notification payload → Discord and Slack messages that always fit the documented limits.

Lengths are counted in UTF-16 code units (what JavaScript's `.length` counts; never fewer than
code points), so a message fits whichever way the receiver counts. Whatever is cut is said in
the message itself ("… 3 more alerts not shown").
"""

from __future__ import annotations

from typing import Any

DISCORD_CONTENT = 2000
DISCORD_EMBEDS = 10
DISCORD_TITLE = 256
DISCORD_DESCRIPTION = 4096
DISCORD_FIELDS = 25
DISCORD_FIELD_NAME = 256
DISCORD_FIELD_VALUE = 1024
DISCORD_FOOTER = 2048
DISCORD_TOTAL = 6000

SLACK_BLOCKS = 50
SLACK_SECTION_TEXT = 3000
SLACK_HEADER_TEXT = 150
SLACK_FALLBACK_TEXT = 3000

COLORS = {"critical": 0xE74C3C, "warning": 0xF39C12, "info": 0x3498DB}
COLOR_RESOLVED = 0x2ECC71
COLOR_FLAPPING = 0x9B59B6
ELLIPSIS = "…"
_NOTE_RESERVE = 60  # room kept for a "… N more not shown" field


def clean(text: object) -> str:
    """A string that is valid Unicode (lone surrogates become "?")."""
    return str(text).encode("utf-8", "replace").decode("utf-8")


def ulen(text: str) -> int:
    """Length in UTF-16 code units (characters outside the BMP count twice)."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def truncate(text: str, limit: int) -> str:
    """`text` cut to at most `limit` UTF-16 units, ending in "…" when something was cut."""
    if limit <= 0:
        return ""
    if ulen(text) <= limit:
        return text
    room = limit - 1  # the ellipsis
    used = 0
    for i, ch in enumerate(text):
        width = 2 if ord(ch) > 0xFFFF else 1
        if used + width > room:
            return text[:i] + ELLIPSIS
        used += width
    return text  # pragma: no cover - unreachable: ulen(text) > limit


def _nonblank(text: str, fallback: str = "(empty)") -> str:
    return text if text.strip() else fallback


def _status_word(alert: dict[str, Any]) -> str:
    if alert.get("flapping"):
        return "FLAPPING"
    return "RESOLVED" if alert.get("status") == "resolved" else "FIRING"


def headline(payload: dict[str, Any]) -> str:
    """One line naming the notification: "[FIRING:2] cpu_high (route default)"."""
    alerts = payload.get("alerts", [])
    firing = sum(1 for a in alerts if a.get("status") == "firing")
    status = "FIRING" if firing else "RESOLVED"
    count = firing if firing else len(alerts)
    names = sorted({clean(a.get("labels", {}).get("alertname", "")) for a in alerts})
    label = ", ".join(n for n in names if n) or "alerts"
    return f"[{status}:{count}] {label}"


# -- Discord --------------------------------------------------------------------------------


def _discord_embed(alert: dict[str, Any], budget: int) -> tuple[dict[str, Any], int]:
    """One embed for one alert within `budget` counted characters; returns (embed, used)."""
    labels = {clean(k): clean(v) for k, v in alert.get("labels", {}).items()}
    annotations = {clean(k): clean(v) for k, v in alert.get("annotations", {}).items()}
    word = _status_word(alert)
    if alert.get("flapping"):
        color = COLOR_FLAPPING
    elif alert.get("status") == "resolved":
        color = COLOR_RESOLVED
    else:
        color = COLORS.get(labels.get("severity", ""), COLORS["warning"])
    embed: dict[str, Any] = {"color": color}
    used = 0
    title = truncate(f"{word}: {labels.get('alertname', '')}", min(DISCORD_TITLE, budget))
    if title:
        embed["title"] = title
        used += ulen(title)
    footer = truncate(f"fingerprint {clean(alert.get('fingerprint', ''))}", DISCORD_FOOTER)
    if used + ulen(footer) <= budget:
        embed["footer"] = {"text": footer}
        used += ulen(footer)
    starts = str(alert.get("startsAt", ""))
    if starts and not starts.startswith("0001"):
        embed["timestamp"] = starts
    summary = annotations.pop("summary", "")
    desc_room = min(DISCORD_DESCRIPTION, max(0, (budget - used) // 2))
    description = truncate(summary, desc_room)
    if description.strip():
        embed["description"] = description
        used += ulen(description)
    items = [(k, v) for k, v in labels.items() if k != "alertname"] + list(annotations.items())
    fields: list[dict[str, Any]] = []
    for index, (key, value) in enumerate(items):
        name = truncate(_nonblank(key), DISCORD_FIELD_NAME)
        left = len(items) - index
        room = budget - used - ulen(name) - (_NOTE_RESERVE if left > 1 else 0)
        text = truncate(_nonblank(value), min(DISCORD_FIELD_VALUE, room))
        if (len(fields) == DISCORD_FIELDS - 1 and left > 1) or not text.strip() or room < 8:
            note = f"{left} more label(s)/annotation(s) not shown"
            if used + ulen(ELLIPSIS) + ulen(note) <= budget:
                fields.append({"name": ELLIPSIS, "value": note, "inline": False})
                used += ulen(ELLIPSIS) + ulen(note)
            break
        fields.append({"name": name, "value": text, "inline": len(text) <= 40})
        used += ulen(name) + ulen(text)
    if fields:
        embed["fields"] = fields
    return embed, used


def render_discord(payload: dict[str, Any]) -> dict[str, Any]:
    """An execute-webhook body: a headline, one coloured embed per alert, within every limit."""
    alerts = list(payload.get("alerts", []))
    embeds: list[dict[str, Any]] = []
    remaining = DISCORD_TOTAL
    shown = 0
    for index, alert in enumerate(alerts):
        slots = min(len(alerts) - index, DISCORD_EMBEDS - len(embeds))
        if slots <= 0 or remaining < 40:
            break
        embed, used = _discord_embed(alert, remaining // slots)
        embeds.append(embed)
        remaining -= used
        shown += 1
    content = headline(payload)
    omitted = len(alerts) - shown + int(payload.get("truncatedAlerts", 0))
    if omitted:
        content += f" ({omitted} more alert(s) not shown)"
    return {
        "content": truncate(clean(content), DISCORD_CONTENT),
        "embeds": embeds,
        # Label values are untrusted text: never let them ping @everyone or roles.
        "allowed_mentions": {"parse": []},
    }


# -- Slack ----------------------------------------------------------------------------------


def slack_escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_truncate(text: str, limit: int) -> str:
    """Truncate escaped mrkdwn without leaving half an entity ("&am…")."""
    cut = truncate(text, limit)
    if cut != text:
        body = cut[:-1]
        amp = body.rfind("&")
        if amp != -1 and ";" not in body[amp:]:
            cut = body[:amp] + ELLIPSIS
    return cut


def _slack_section(alert: dict[str, Any]) -> dict[str, Any]:
    labels = {clean(k): clean(v) for k, v in alert.get("labels", {}).items()}
    annotations = {clean(k): clean(v) for k, v in alert.get("annotations", {}).items()}
    summary = annotations.pop("summary", "")
    lines = [f"*{_status_word(alert)}: {slack_escape(labels.pop('alertname', ''))}*"]
    if summary:
        lines.append(slack_escape(summary))
    lines.append(" ".join(f"`{slack_escape(k)}={slack_escape(v)}`" for k, v in labels.items()))
    lines.extend(f"{slack_escape(k)}: {slack_escape(v)}" for k, v in annotations.items())
    text = _slack_truncate("\n".join(line for line in lines if line), SLACK_SECTION_TEXT)
    return {"type": "section", "text": {"type": "mrkdwn", "text": _nonblank(text, "(no text)")}}


def render_slack(payload: dict[str, Any]) -> dict[str, Any]:
    """An incoming-webhook body: `text` fallback plus header and one section per alert."""
    alerts = list(payload.get("alerts", []))
    title = clean(headline(payload))
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": truncate(title, SLACK_HEADER_TEXT)},
        }
    ]
    room = SLACK_BLOCKS - 2  # header + a possible "not shown" note
    for alert in alerts[:room]:
        blocks.append(_slack_section(alert))
    omitted = max(0, len(alerts) - room) + int(payload.get("truncatedAlerts", 0))
    if omitted:
        note = f"{omitted} more alert(s) not shown"
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": note}]})
        title += f" ({note})"
    return {"text": _slack_truncate(slack_escape(title), SLACK_FALLBACK_TEXT), "blocks": blocks}
