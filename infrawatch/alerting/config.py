"""`[alerting]`: alert timing (Alertmanager's meanings), routes, silences, flap damping, sinks."""

from __future__ import annotations

import base64
import binascii
import socket
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    Strict,
    field_validator,
    model_validator,
)

from infrawatch.alerting.matchers import parse_matcher
from infrawatch.alerting.timeintervals import (
    Entry,
    TimeInterval,
    parse_days_of_month,
    parse_location,
    parse_months,
    parse_time,
    parse_weekdays,
    parse_years,
)
from infrawatch.units import ConfigModel, Seconds, SecondsOrZero
from infrawatch.validators import http_url

SinkType = Literal["discord", "slack", "webhook", "alertmanager", "log"]


def _time_or_text(value: object) -> object:
    # Lax datetime parsing would also take a number as a Unix time; TOML has a datetime type.
    if isinstance(value, datetime | str):
        return value
    raise ValueError("expected a date and time, e.g. 2026-01-01T00:00:00Z")


# A TOML datetime, or RFC 3339 text (JSON in an environment variable has no datetime type).
Time = Annotated[datetime, BeforeValidator(_time_or_text), Strict(False)]


def _check_matchers(value: list[str]) -> list[str]:
    for text in value:
        parse_matcher(text)  # raises ValueError with the reason
    return value


class SinkConfig(ConfigModel):
    """One `[[alerting.sinks]]` entry: where notifications go."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    type: SinkType
    url: SecretStr | None = None
    urls: list[SecretStr] = Field(default_factory=list)
    secret: SecretStr | None = None
    timeout: Seconds = 10.0
    resend_interval: Seconds = 60.0
    resolve_resend: SecondsOrZero = 300.0

    @model_validator(mode="after")
    def _targets(self) -> SinkConfig:
        if self.type == "log":
            if self.url is not None or self.urls:
                raise ValueError("a log sink takes no url")
        elif self.type == "alertmanager":
            if self.url is not None and not self.urls:
                self.urls = [self.url]
                self.url = None
            if not self.urls:
                raise ValueError("alertmanager needs urls = [...] (one per HA peer)")
        elif self.url is None:
            raise ValueError(f"a {self.type} sink needs url")
        if self.secret is not None and self.type != "webhook":
            raise ValueError("secret is only used by webhook sinks")
        secret = self.secret.get_secret_value() if self.secret is not None else ""
        if secret.startswith("whsec_"):
            # Standard Webhooks: base64 after the prefix. Checked here so a typo is a config
            # error at load time, not a crash at start-up (and the message never quotes it).
            try:
                base64.b64decode(secret.removeprefix("whsec_"), validate=True)
            except binascii.Error:
                raise ValueError("secret: the part after whsec_ must be base64") from None
        for url in [*([self.url] if self.url else []), *self.urls]:
            text = url.get_secret_value()
            # The message never echoes the URL: it carries the webhook's token.
            http_url(text)
        return self


class TimeRangeConfig(ConfigModel):
    """One `times` entry: from `start_time` (inclusive) to `end_time` (exclusive), "HH:MM"."""

    start_time: str
    end_time: str

    @model_validator(mode="after")
    def _order(self) -> TimeRangeConfig:
        if parse_time(self.start_time) >= parse_time(self.end_time):
            raise ValueError("start_time must be before end_time (00:00-24:00, same day)")
        return self


class TimeIntervalEntry(ConfigModel):
    """One entry of a named time interval; unset fields match any time (Alertmanager's)."""

    times: list[TimeRangeConfig] | None = None
    weekdays: list[str] | None = None
    days_of_month: list[str] | None = None
    months: list[str] | None = None
    years: list[str] | None = None
    location: str = "UTC"

    @field_validator("weekdays")
    @classmethod
    def _weekdays(cls, value: list[str] | None) -> list[str] | None:
        for text in value or []:
            parse_weekdays(text)
        return value

    @field_validator("days_of_month")
    @classmethod
    def _days(cls, value: list[str] | None) -> list[str] | None:
        for text in value or []:
            parse_days_of_month(text)
        return value

    @field_validator("months")
    @classmethod
    def _months(cls, value: list[str] | None) -> list[str] | None:
        for text in value or []:
            parse_months(text)
        return value

    @field_validator("years")
    @classmethod
    def _years(cls, value: list[str] | None) -> list[str] | None:
        for text in value or []:
            parse_years(text)
        return value

    @field_validator("location")
    @classmethod
    def _location(cls, value: str) -> str:
        parse_location(value)
        return value

    def compile(self) -> Entry:
        """The entry as ranges of numbers, for matching."""

        def ranges(
            texts: list[str] | None, parse: Callable[[str], tuple[int, int]]
        ) -> tuple[tuple[int, int], ...] | None:
            return None if texts is None else tuple(parse(t) for t in texts)

        times = (
            None
            if self.times is None
            else tuple((parse_time(t.start_time), parse_time(t.end_time)) for t in self.times)
        )
        return Entry(
            times,
            ranges(self.weekdays, parse_weekdays),
            ranges(self.days_of_month, parse_days_of_month),
            ranges(self.months, parse_months),
            ranges(self.years, parse_years),
            parse_location(self.location),
        )


class TimeIntervalConfig(ConfigModel):
    """One `[[alerting.time_intervals]]` entry: a named, recurring window routes refer to."""

    name: str = Field(min_length=1)
    time_intervals: list[TimeIntervalEntry] = Field(default_factory=list)

    def compile(self) -> TimeInterval:
        """The interval ready for matching."""
        return TimeInterval(self.name, tuple(e.compile() for e in self.time_intervals))


class RouteConfig(ConfigModel):
    """One `[[alerting.routes]]` entry: alerts matching `matchers` go to `sinks`."""

    name: str = ""
    matchers: list[str] = Field(default_factory=list)
    sinks: list[str] = Field(min_length=1)
    group_by: list[str] | None = None
    group_wait: SecondsOrZero | None = None
    group_interval: Seconds | None = None
    repeat_interval: Seconds | None = None
    send_resolved: bool | None = None
    # Like Alertmanager: keep looking at later routes after this one matched.
    continue_: bool = Field(False, alias="continue")
    # Names of `[[alerting.time_intervals]]`: send nothing inside any mute interval, or outside
    # every active one; what still fires when the window ends is notified then.
    mute_time_intervals: list[str] = Field(default_factory=list)
    active_time_intervals: list[str] = Field(default_factory=list)

    model_config = ConfigDict(populate_by_name=True)

    _matchers = field_validator("matchers")(_check_matchers)


class SilenceConfig(ConfigModel):
    """One `[[alerting.silences]]` entry: matching alerts are not notified between the times."""

    matchers: list[str] = Field(min_length=1)
    starts_at: Time | None = None
    ends_at: Time | None = None
    comment: str = ""

    _matchers = field_validator("matchers")(_check_matchers)

    @field_validator("starts_at", "ends_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("give a time zone, e.g. 2026-01-01T00:00:00Z")
        return value


class FlapConfig(ConfigModel):
    """`[alerting.flap]`: hold alerts that keep flipping state as "flapping"."""

    enabled: bool = True
    max_flips: int = Field(4, ge=1)
    window: Seconds = 600.0
    settle: Seconds = 600.0


class RetryConfig(ConfigModel):
    """`[alerting.retry]`: how sink workers retry failed deliveries."""

    initial_delay: Seconds = 1.0
    max_delay: Seconds = 300.0
    multiplier: float = Field(2.0, ge=1.0)
    max_attempts: int = Field(20, ge=1)
    max_age: Seconds = 86400.0


class AlertingConfig(ConfigModel):
    """Alerting configuration (timers mean what they mean in Alertmanager)."""

    group_by: list[str] = Field(default_factory=lambda: ["alertname"])
    group_wait: SecondsOrZero = 30.0
    group_interval: Seconds = 300.0
    repeat_interval: Seconds = 14400.0
    send_resolved: bool = True
    restart_grace: SecondsOrZero = 120.0
    max_alerts_per_notification: int = Field(100, ge=1)
    keep_outbox: Seconds = 7 * 86400.0
    flap: FlapConfig = FlapConfig()
    retry: RetryConfig = RetryConfig()
    routes: list[RouteConfig] = Field(default_factory=list)
    silences: list[SilenceConfig] = Field(default_factory=list)
    time_intervals: list[TimeIntervalConfig] = Field(default_factory=list)
    sinks: list[SinkConfig] = Field(default_factory=list)
    # Labels added to every alert sent, like Prometheus' external_labels (an alert's own labels
    # win). `host` is this machine's hostname unless set here ("" leaves it out).
    external_labels: dict[str, str] = Field(default_factory=dict)
    # Where people open this agent's page (like Alertmanager's --web.external-url): every
    # notification links to its series' chart there. None: no links (http.listen is usually
    # loopback, and a link to 127.0.0.1 opens nothing on the reader's machine).
    external_url: str | None = None

    @field_validator("external_url")
    @classmethod
    def _page_address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        # Not a secret, but it is sent in every notification: the checks name the problem
        # without needing to quote it.
        parsed = http_url(value, name="")
        if parsed.user is not None or parsed.password is not None:
            raise ValueError("no user or password: the URL is shown to whoever reads an alert")
        if parsed.query_string or parsed.fragment or "?" in value or "#" in value:
            raise ValueError("no ?query or #fragment: links add the page's own #/chart?…")
        return value.rstrip("/") + "/"

    def sent_labels(self) -> dict[str, str]:
        """The external labels as sent: `host` filled in, empty values left out."""
        labels = {"host": socket.gethostname(), **self.external_labels}
        return {k: v for k, v in labels.items() if v}

    @model_validator(mode="after")
    def _references(self) -> AlertingConfig:
        names = [s.name for s in self.sinks]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate sink names: {', '.join(dupes)}")
        known = set(names) | ({"log"} if not self.sinks else set())
        for i, route in enumerate(self.routes):
            unknown = [s for s in route.sinks if s not in known]
            if unknown:
                raise ValueError(f"routes[{i}] names unknown sinks: {', '.join(unknown)}")
        intervals = [t.name for t in self.time_intervals]
        dupes = sorted({n for n in intervals if intervals.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate time_intervals names: {', '.join(dupes)}")
        for i, route in enumerate(self.routes):
            for field in ("mute_time_intervals", "active_time_intervals"):
                unknown = [n for n in getattr(route, field) if n not in intervals]
                if unknown:
                    raise ValueError(
                        f"routes[{i}].{field} names unknown time_intervals: {', '.join(unknown)}"
                    )
        return self
