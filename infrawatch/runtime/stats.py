"""Self-metrics: plain counters the agent keeps about itself, read by /metrics and the final log."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

# Seconds; batch processing is normally milliseconds, a slow disk can make it seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Seconds; a host tick takes milliseconds, a cloud cycle behind slow API calls can take minutes.
TICK_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


@dataclass(slots=True)
class Histogram:
    """A fixed-bucket histogram (cumulative counts are computed when read)."""

    buckets: tuple[float, ...] = LATENCY_BUCKETS
    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        """Record one observation (seconds)."""
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.count += 1


def tick_histogram() -> Histogram:
    """An empty histogram of producer tick durations (seconds)."""
    return Histogram(TICK_BUCKETS, [0] * (len(TICK_BUCKETS) + 1))


@dataclass(slots=True)
class ProducerStats:
    """What one producer did since start (counters only: its interval and series TTL are its
    configuration, which the agent hands to whoever needs it)."""

    collected: int = 0
    dropped: int = 0
    stored: int = 0
    errors: int = 0
    ticks: int = 0
    missed_ticks: int = 0
    consecutive_failures: int = 0
    last_success: float | None = None  # wall clock, epoch seconds
    last_tick_done: float | None = None  # monotonic seconds
    last_tick_seconds: float | None = None  # how long the last finished tick took
    tick_duration: Histogram = field(default_factory=tick_histogram)  # seconds per tick
    overruns: int = 0  # ticks still running when their interval had passed


@dataclass(slots=True)
class ScrapeStats:
    """What one `[[scrape]]` target did since start (kept across a reload that restarts it)."""

    scrapes: int = 0  # scrapes attempted, good or failed
    samples: int = 0  # samples in the responses, before keep/drop and the series cap
    failures: dict[str, int] = field(default_factory=dict)  # failed scrapes by reason
    series: int = 0  # series in the last good scrape, before the cap
    series_dropped: int = 0  # series beyond max_series, summed over scrapes
    up: bool | None = None  # the last scrape's outcome (None: not scraped yet)


@dataclass(slots=True)
class PeerStats:
    """One Alertmanager HA peer of a sink: failed posts since start, and whether it is down now."""

    failures: int = 0  # posts (notifications and keep-alives) the peer did not accept
    outages: int = 0  # times it went from up to down
    down: bool = False


@dataclass(slots=True)
class SinkStats:
    """What one alert sink did since start (notifications, not HTTP requests)."""

    type: str
    sent: int = 0
    failed: int = 0  # given up on: 4xx, too many attempts, too old
    pending: int = 0  # in the outbox, not yet delivered
    attempts: int = 0  # delivery attempts, including retries
    retries: int = 0
    rate_limited: int = 0  # 429 answers
    gone: bool = False  # the receiver said the webhook no longer exists (Discord 404)
    unrecorded: int = 0  # delivered or given up, but the outbox row not yet updated (db busy)
    peers: dict[str, PeerStats] = field(default_factory=dict)  # Alertmanager, by scheme://host:port


@dataclass(slots=True)
class ExporterStats:
    """What one `[[export]]` exporter did since start (samples, not requests)."""

    type: str
    sent: int = 0  # accepted by the receiver
    failed: int = 0  # in attempts that failed and are retried (5xx, 429, timeouts, connection)
    rejected: int = 0  # refused by the receiver (4xx, partial success, out of order): skipped
    lost: int = 0  # aged out of storage.retention before they could be sent
    backlog: int = 0  # stored and not yet sent
    lag_seconds: float = 0.0  # age of the next sample to send (0 when caught up)
    requests: int = 0  # HTTP requests, retries included


@dataclass(slots=True)
class AgentStats:
    """Counters for the whole agent."""

    producers: dict[str, ProducerStats] = field(default_factory=dict)
    batches: int = 0
    anomalies: int = 0
    store_errors: int = 0
    store_dropped: int = 0
    batch_latency: Histogram = field(default_factory=Histogram)
    first_batch_stored: bool = False
    store_open: bool = False
    alert_sinks: dict[str, SinkStats] = field(default_factory=dict)
    exporters: dict[str, ExporterStats] = field(default_factory=dict)
    scrapes: dict[str, ScrapeStats] = field(default_factory=dict)  # by target name

    def scrape(self, target: str) -> ScrapeStats:
        """The stats of scrape target `target`, created on first use."""
        stats = self.scrapes.get(target)
        if stats is None:
            stats = self.scrapes[target] = ScrapeStats()
        return stats

    def producer(self, name: str) -> ProducerStats:
        """The stats of producer `name`, created on first use."""
        stats = self.producers.get(name)
        if stats is None:
            stats = self.producers[name] = ProducerStats()
        return stats

    @property
    def collected(self) -> int:
        """Samples produced by every producer."""
        return sum(p.collected for p in self.producers.values())

    @property
    def dropped(self) -> int:
        """Samples dropped anywhere: full queue or full storage buffer."""
        return sum(p.dropped for p in self.producers.values()) + self.store_dropped

    @property
    def stored(self) -> int:
        """Samples persisted."""
        return sum(p.stored for p in self.producers.values())
