"""Notification payload → Discord and Slack messages that always fit the documented limits.

Lengths are counted in UTF-16 code units (what JavaScript's `.length` counts; never fewer than
code points), so a message fits whichever way the receiver counts. Whatever is cut is said in
the message itself ("… 3 more alerts not shown").

An alert's chart link (`generatorURL`, made when `alerting.external_url` is set) and its
`runbook_url` annotation are never cut: a cut URL opens the wrong page or none. One too long for
the field it goes in is left out, and that is logged once per kind of message. The `summary` and
`description` annotations are the message's text; other annotations are listed after the labels.
"""

from __future__ import annotations

from typing import Any

from infrawatch.logging import get_logger

log = get_logger("infrawatch.alerting")

DISCORD_CONTENT = 2000
DISCORD_EMBEDS = 10
DISCORD_TITLE = 256
DISCORD_DESCRIPTION = 4096
DISCORD_FIELDS = 25
DISCORD_FIELD_NAME = 256
DISCORD_FIELD_VALUE = 1024
DISCORD_FOOTER = 2048
DISCORD_TOTAL = 6000
DISCORD_URL = 2048  # an embed's url (Discord answers 400 "Must be 2048 or fewer in length")

SLACK_BLOCKS = 50
SLACK_SECTION_TEXT = 3000
SLACK_HEADER_TEXT = 150
SLACK_FALLBACK_TEXT = 3000
# A link's markup may take half a section: the alert's own text keeps the other half.
SLACK_LINK = SLACK_SECTION_TEXT // 2
SLACK_LINK_TEXT = "Open chart"
SLACK_RUNBOOK_TEXT = "Runbook"

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


_links_left_out: set[str] = set()  # kinds of message that dropped a link (logged once each)


def chart_link(alert: dict[str, Any]) -> str:
    """The alert's chart URL (`generatorURL`), or "" when it has none that is http(s)."""
    url = alert.get("generatorURL")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        return ""
    return url


def runbook_link(annotations: dict[str, str]) -> str:
    """The `runbook_url` annotation if it is an http(s) URL (what sinks render as a link)."""
    url = annotations.get("runbook_url", "").strip()
    if not url.startswith(("http://", "https://")) or any(c.isspace() for c in url):
        return ""
    return url


def _too_long(kind: str, length: int, limit: int) -> bool:
    """Whether a link of `length` UTF-16 units exceeds `limit`; the first time for each kind
    of message (discord, slack) this is logged: it will likely recur for the same series."""
    if length <= limit:
        return False
    if kind not in _links_left_out:
        _links_left_out.add(kind)
        log.warning(
            "alert.link_left_out",
            message=kind,
            length=length,
            limit=limit,
            hint="the series' labels make its chart link too long for this field",
        )
    return True


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
        # The title links to the chart; an embed's url does not count toward its 6000.
        link = chart_link(alert)
        if link and not _too_long("discord", ulen(link), DISCORD_URL):
            embed["url"] = link
    footer = truncate(f"fingerprint {clean(alert.get('fingerprint', ''))}", DISCORD_FOOTER)
    if used + ulen(footer) <= budget:
        embed["footer"] = {"text": footer}
        used += ulen(footer)
    starts = str(alert.get("startsAt", ""))
    if starts and not starts.startswith("0001"):
        embed["timestamp"] = starts
    summary = annotations.pop("summary", "")
    # The description annotation reads as the paragraph under the summary, not as a field.
    text = "\n".join(t for t in (summary, annotations.pop("description", "")) if t.strip())
    desc_room = min(DISCORD_DESCRIPTION, max(0, (budget - used) // 2))
    description = truncate(text, desc_room)
    if description.strip():
        embed["description"] = description
        used += ulen(description)
    fields: list[dict[str, Any]] = []
    runbook = runbook_link(annotations)
    if runbook:
        annotations.pop("runbook_url")
        # Markdown link; parentheses in the URL would end it early. Never cut: left out whole.
        target = runbook.replace("(", "%28").replace(")", "%29")
        value = f"[Open runbook]({target})"
        name = "runbook"
        if (
            not _too_long("discord runbook", ulen(value), DISCORD_FIELD_VALUE)
            and used + ulen(name) + ulen(value) + _NOTE_RESERVE <= budget
        ):
            fields.append({"name": name, "value": value, "inline": False})
            used += ulen(name) + ulen(value)
    items = [(k, v) for k, v in labels.items() if k != "alertname"] + list(annotations.items())
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
    description = annotations.pop("description", "")
    runbook = runbook_link(annotations)
    if runbook:
        annotations.pop("runbook_url")
    lines = [f"*{_status_word(alert)}: {slack_escape(labels.pop('alertname', ''))}*"]
    if summary:
        lines.append(slack_escape(summary))
    if description:
        lines.append(slack_escape(description))
    lines.append(" ".join(f"`{slack_escape(k)}={slack_escape(v)}`" for k, v in labels.items()))
    lines.extend(f"{slack_escape(k)}: {slack_escape(v)}" for k, v in annotations.items())
    url = chart_link(alert)
    # "&" in the URL is escaped like any text ("&amp;"); Slack unescapes it inside <…|…>. The
    # link goes last, after the cut: the alert's text makes room for it, never the reverse.
    link = f"<{slack_escape(url)}|{SLACK_LINK_TEXT}>" if url else ""
    if link and _too_long("slack", ulen(link), SLACK_LINK):
        link = ""
    if runbook:
        # "|" would end the URL part of <url|text>; links are never cut, only left out.
        book = f"<{slack_escape(runbook).replace('|', '%7C')}|{SLACK_RUNBOOK_TEXT}>"
        if not _too_long("slack runbook", ulen(book) + 3 + ulen(link), SLACK_LINK):
            link = f"{book} · {link}" if link else book
    room = SLACK_SECTION_TEXT - (ulen(link) + 1 if link else 0)
    text = _slack_truncate("\n".join(line for line in lines if line), room)
    if link:
        text = f"{text}\n{link}" if text.strip() else link
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
