"""Producers: anything that yields batches of samples on its own schedule."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from infrawatch.model import Sample, SeriesKey

# (name prefix, since in epoch seconds) → the timestamps already stored from `since` on, per
# series whose name starts with the prefix. The agent passes `Store.timestamps_since`.
StoredTimestamps = Callable[[str, float], Awaitable[Mapping[SeriesKey, Iterable[float]]]]


@runtime_checkable
class Producer(Protocol):
    """A source of samples. `collect` is called once per tick; the agent owns the schedule.

    Producers are async context managers so each owns its resources (a client session, a
    thread-pool handle) for exactly the agent's lifetime.
    """

    name: str
    interval: float  # seconds between ticks
    series_ttl: float  # seconds a series lives without a refresh, at least (0: learned)

    async def collect(self) -> list[Sample]:
        """Take one reading; raise on failure (the scheduler logs, counts and backs off)."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


@runtime_checkable
class ResumingProducer(Protocol):
    """A producer that re-reads a window of the past (CloudWatch's look-back): at start-up it
    learns which of its points are already stored, so a restart does not emit them again."""

    async def resume(self, stored: StoredTimestamps) -> None:
        """Remember the points `stored` returns as already emitted."""
        ...


class BaseProducer:
    """A producer with nothing to open or close."""

    name: str
    interval: float
    # Seconds a series of this producer stays live without a refresh, at least (0: learned
    # from its cadence alone). Sources that report some series sparsely set it.
    series_ttl: float = 0.0

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


@dataclass(frozen=True, slots=True)
class Timing:
    """A producer's cadence as series expiry needs it: `interval` seconds between ticks, and
    `series_ttl` seconds a series lives without a refresh at least (0: learned)."""

    interval: float
    series_ttl: float = 0.0

    @classmethod
    def of(cls, producer: Producer) -> Timing:
        """The timing `producer` is configured with now."""
        return cls(producer.interval, producer.series_ttl)


@dataclass(frozen=True, slots=True)
class Batch:
    """The samples one producer tick produced."""

    producer: str
    samples: list[Sample]
