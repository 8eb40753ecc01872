"""Sinks: where notifications are delivered (Discord, Slack, signed webhook, Alertmanager, log)."""

from __future__ import annotations

import aiohttp

from infrawatch.alerting.config import SinkConfig
from infrawatch.alerting.sinks.alertmanager import AlertmanagerSink
from infrawatch.alerting.sinks.base import DeliveryResult, Sink
from infrawatch.alerting.sinks.discord import DiscordSink
from infrawatch.alerting.sinks.log import LogSink
from infrawatch.alerting.sinks.slack import SlackSink
from infrawatch.alerting.sinks.webhook import WebhookSink


def build_sink(cfg: SinkConfig, session: aiohttp.ClientSession) -> Sink:
    """The sink for one `[[alerting.sinks]]` entry, sharing the agent's ClientSession."""
    if cfg.type == "discord":
        return DiscordSink(cfg, session)
    if cfg.type == "slack":
        return SlackSink(cfg, session)
    if cfg.type == "webhook":
        return WebhookSink(cfg, session)
    if cfg.type == "alertmanager":
        return AlertmanagerSink(cfg, session)
    return LogSink(cfg.name)


__all__ = ["DeliveryResult", "Sink", "build_sink"]
