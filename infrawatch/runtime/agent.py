"""The agent's lifecycle: startup, main loop, shutdown.

startup   open the store, restore detectors, open producers/alerter/HTTP (one AsyncExitStack)
main_loop producers and the pipeline run as tasks until `should_exit` (SIGTERM/SIGINT)
shutdown  stop producers → drain the queue through the pipeline within the deadline → flush →
          close everything in reverse order. A second signal exits at once.

The agent is what the collaborators act on, through narrow views: the reloader sees it as a
`Reloadable` (apply logging, set intervals, replace detectors), the series timer calls back into
`forget_series`, tests and signal handlers call `request_stop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from infrawatch import logging as iw_logging
from infrawatch.alerting import Alerter, LogAlerter
from infrawatch.alerting.outbox import Outbox
from infrawatch.alerting.service import AlertService, detector_probe
from infrawatch.collectors.host import HostProducer
from infrawatch.collectors.scrape_config import ScrapeTarget
from infrawatch.config import Settings
from infrawatch.detect import build_detectors
from infrawatch.detect import compiled as detectors_compiled
from infrawatch.detect.base import Detector
from infrawatch.detect.restore import restore_detectors
from infrawatch.logging import describe, get_logger
from infrawatch.model import SeriesKey
from infrawatch.runtime.latest import LatestValues
from infrawatch.runtime.pipeline import Pipeline
from infrawatch.runtime.producer import Producer, ResumingProducer, Timing
from infrawatch.runtime.queue import BatchQueue
from infrawatch.runtime.reload import Reloader
from infrawatch.runtime.schedule import run_producer
from infrawatch.runtime.stats import AgentStats
from infrawatch.runtime.status import StatusView
from infrawatch.storage.retention import Maintenance
from infrawatch.storage.store import Store
from infrawatch.web.server import HttpServer

if TYPE_CHECKING:
    from infrawatch.collectors.scrape import ScrapeProducer
    from infrawatch.export.service import ExportService

log = get_logger("infrawatch.runtime.agent")

EXIT_SECOND_SIGNAL = 130  # like a shell's exit on SIGINT: the user insisted
MIN_ALERTER_SHUTDOWN = 1.0  # seconds the alerter always gets at shutdown to persist its state


def build_producers(settings: Settings) -> list[Producer]:
    """The producers the configuration enables (cloud SDKs are imported only when enabled)."""
    producers: list[Producer] = []
    if settings.host.enabled:
        producers.append(HostProducer(settings.host))
    if settings.cloud.aws.enabled:
        # Imports aiobotocore/botocore: only an agent with the cloud producer pays for them.
        from infrawatch.collectors.cloudwatch import CloudWatchProducer

        producers.append(CloudWatchProducer(settings.cloud.aws))
    if settings.textfile.directory is not None:
        from infrawatch.collectors.textfile import TextfileProducer

        producers.append(TextfileProducer(settings.textfile))
    return producers


def build_scrape_producers(
    targets: Sequence[ScrapeTarget], stats: AgentStats
) -> list[ScrapeProducer]:
    """One producer per `[[scrape]]` target; counters kept in `stats` by target name."""
    if not targets:
        return []
    from infrawatch.collectors.scrape import ScrapeProducer

    return [ScrapeProducer(t, stats.scrape(t.name)) for t in targets]


class Agent:
    """One running infrawatch: owns the queue, the pipeline, the producers and their tasks."""

    def __init__(
        self,
        settings: Settings,
        *,
        producers: Sequence[Producer] | None = None,
        once: bool = False,
        config_path: Path | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.once = once
        self.stats = AgentStats()
        self.started_at = time.time()
        self.producers = list(producers) if producers is not None else build_producers(settings)
        # Scrape targets come and go with SIGHUP: each producer's task owns it (opens and
        # closes its session), so removing a target closes exactly its resources.
        self.scrapes = {
            p.target.name: p for p in build_scrape_producers(settings.scrape, self.stats)
        }
        self.producers.extend(self.scrapes.values())
        self.queue = BatchQueue(
            settings.agent.queue_size, settings.agent.queue_full_policy, self.stats
        )
        self.store = Store(settings.storage.path)
        self.alerter: Alerter = LogAlerter()
        self.alert_service: AlertService | None = None
        self.pipeline: Pipeline | None = None
        # Each producer's interval and series TTL, from the producer itself (filled as they
        # open, kept current by set_producer_interval); the series timer reads it live.
        self.timings: dict[str, Timing] = {}
        self.latest = LatestValues(self.timings, on_expire=self.forget_series)
        self.http: HttpServer | None = None
        self.exports: ExportService | None = None
        # SIGHUP re-reads the configuration the way it was loaded at start.
        self.reloader = Reloader(self, config_path=config_path, overrides=overrides)
        self.producer_wakeups = {p.name: asyncio.Event() for p in self.producers}
        self._exit_event = asyncio.Event()
        self._producer_tasks: list[asyncio.Task[None]] = []
        self._scrape_tasks: dict[str, asyncio.Task[None]] = {}
        self._retired_tasks: set[asyncio.Task[None]] = set()  # removed targets, closing
        self._running = False

    # -- lifecycle -------------------------------------------------------------------------

    async def serve(self) -> int:
        """Run until told to stop; return the process exit code."""
        self.install_signal_handlers()
        async with AsyncExitStack() as stack:
            await self.startup(stack)
            await self.main_loop()
            await self.shutdown()
        self.log_stopped()
        return 0

    async def startup(self, stack: AsyncExitStack) -> None:
        """Open every resource in dependency order; the stack closes them in reverse."""
        await stack.enter_async_context(self.store)
        self.stats.store_open = True
        detectors = build_detectors(self.settings.analysis)
        # Threshold rules whose alerts were firing at shutdown: the samples alone can't tell.
        firing = await Outbox(self.store).firing_rules()
        await restore_detectors(
            self.store, detectors, firing=firing, max_history=self.settings.storage.retention
        )
        # The alerter owns its ClientSession and sink workers; the stack closes it before the
        # store, after its last delivery attempt within the shutdown deadline.
        alerting = self.settings.alerting
        if self.once:
            # One cycle and exit: what it finds is sent now, not after a group_wait it won't see.
            alerting = alerting.model_copy(update={"group_wait": 0.0})
        self.alert_service = AlertService(
            alerting,
            self.store,
            stats=self.stats,
            shutdown_deadline=self.settings.agent.shutdown_deadline,
            # The restart reconcile asks the detectors running then: a SIGHUP may replace them.
            still_anomalous=detector_probe(
                lambda: self.pipeline.detectors if self.pipeline is not None else detectors
            ),
        )
        self.alerter = await stack.enter_async_context(self.alert_service)
        if not self.once:
            # One task per [[export]] entry, reading what the pipeline stores; closed before the
            # store. With none configured this only stops the store from logging writes for
            # export. --once leaves export state alone (it may run beside a serving agent).
            from infrawatch.export.service import ExportService

            self.exports = await stack.enter_async_context(
                ExportService(
                    self.settings.export,
                    self.store,
                    self.stats,
                    retention=self.settings.storage.retention,
                    external_labels=self.settings.alerting.sent_labels(),
                )
            )
        self.pipeline = Pipeline(
            self.queue,
            self.store,
            detectors,
            self.alerter,
            self.stats,
            max_batch_samples=self.settings.agent.max_batch_samples,
            buffer_max_samples=self.settings.storage.buffer_max_samples,
            latest=self.latest,
        )
        for producer in self.producers:
            if self._is_scrape(producer):
                self.stats.producer(producer.name)
                self.timings[producer.name] = Timing.of(producer)
                continue  # opened by its own task (main_loop)
            await stack.enter_async_context(producer)
            self.stats.producer(producer.name)
            self.timings[producer.name] = Timing.of(producer)
            if isinstance(producer, ResumingProducer):
                # Points stored before a restart (and replayed into the detectors above) are
                # not emitted again when the producer re-reads its look-back window.
                await producer.resume(self.store.timestamps_since)
        stack.push_async_callback(self.reloader.aclose)
        # --once has nothing to serve, and must work beside a running agent that holds the port.
        if self.settings.http.enabled and not self.once:
            view = StatusView(
                self.stats,
                self.queue,
                self.latest,
                self.producers,
                pipeline=self.pipeline,
                alerts=self.alert_service,
                reloader=self.reloader,
                database=self.settings.storage.path,
                queue_capacity=self.settings.agent.queue_size,
                # Read live: a reload replaces the settings and the threshold rules with them.
                rules=lambda: self.settings.analysis.threshold,
                started=self.started_at,
            )
            self.http = await stack.enter_async_context(HttpServer(view, self.settings.http))
        log.info(
            "agent.started",
            pid=os.getpid(),
            producers=[p.name for p in self.producers],
            database=str(self.settings.storage.path),
            once=self.once,
            detectors_compiled=detectors_compiled(),
        )

    async def main_loop(self) -> None:
        """Run producers and the pipeline until `should_exit` (or one cycle with --once)."""
        pipeline = self._started_pipeline()
        pipeline_task = asyncio.create_task(pipeline.run(), name="pipeline")
        # Rollups and retention in small transactions beside the pipeline (not for --once).
        maintenance_task = (
            None
            if self.once
            else asyncio.create_task(
                Maintenance(self.store, self.settings.storage).run(), name="maintenance"
            )
        )
        # Series expiry on its own timer rather than in the maintenance task: it changes only
        # in-memory state (detectors, alerts, the store's id cache), so it must stay on time
        # while a maintenance chunk waits on a busy database, and it runs with --once too.
        expiry_task = asyncio.create_task(self.latest.run(), name="series-expiry")
        self._producer_tasks = [
            asyncio.create_task(
                run_producer(
                    p,
                    self.queue,
                    self.stats.producers[p.name],
                    once=self.once,
                    wake=self.producer_wakeups.get(p.name),
                ),
                name=f"producer:{p.name}",
            )
            for p in self.producers
            if not self._is_scrape(p)
        ]
        self._running = True
        for scrape in self.scrapes.values():
            self._start_scrape(scrape)
        if self.once:
            await asyncio.gather(*self._producer_tasks, *self._scrape_tasks.values())
        else:
            await self._exit_event.wait()
        await self._stop_producers()
        # Stopped first: the drain that follows must not wait behind a maintenance chunk, and
        # no series expires (resolving its alerts) while the alerter is shutting down.
        for task in (maintenance_task, expiry_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        pipeline_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pipeline_task

    async def _stop_producers(self) -> None:
        tasks = [*self._producer_tasks, *self._scrape_tasks.values(), *self._retired_tasks]
        for task in tasks:
            task.cancel()
        # A tick still running is abandoned (its samples were never accepted, so nothing is lost
        # that was counted); a call blocked in a worker thread does not hold the shutdown up.
        await asyncio.gather(*tasks, return_exceptions=True)

    def _is_scrape(self, producer: Producer) -> bool:
        return any(producer is p for p in self.scrapes.values())

    def _start_scrape(self, producer: ScrapeProducer) -> None:
        self.stats.producer(producer.name)
        self.timings[producer.name] = Timing.of(producer)
        self._scrape_tasks[producer.target.name] = asyncio.create_task(
            self._run_scrape(producer), name=f"producer:{producer.name}"
        )

    async def _run_scrape(self, producer: ScrapeProducer) -> None:
        try:
            async with producer:
                stats = self.stats.producer(producer.name)
                await run_producer(producer, self.queue, stats, once=self.once)
        except Exception as exc:  # opening or closing it failed: the others go on
            log.error("scrape.producer_failed", target=producer.target.name, error=describe(exc))

    async def shutdown(self) -> None:
        """Drain what was accepted through the pipeline within the deadline; count the rest."""
        pipeline = self._started_pipeline()
        deadline = self.settings.agent.shutdown_deadline
        started = time.monotonic()
        try:
            await asyncio.wait_for(pipeline.drain(), timeout=deadline)
        except TimeoutError:
            lost = pipeline.abandon()
            log.error("agent.drain_deadline_exceeded", deadline=deadline, dropped_samples=lost)
        if self.exports is not None and self.exports.exporters:
            # What the drain stored goes out now; what can't within the budget stays behind the
            # cursors for the next start. The alerter keeps its minimum.
            left = deadline - (time.monotonic() - started)
            await self.exports.flush(max(0.0, left - MIN_ALERTER_SHUTDOWN))
        if self.alert_service is not None:
            # One budget for the whole shutdown: the alerter's last delivery round (run as the
            # exit stack closes it) gets what the drain left, but at least enough to persist its
            # state, since what it has not written to the outbox would be lost.
            left = deadline - (time.monotonic() - started)
            self.alert_service.shutdown_deadline = max(MIN_ALERTER_SHUTDOWN, left)

    def _started_pipeline(self) -> Pipeline:
        if self.pipeline is None:
            raise RuntimeError("the agent has not been started (startup first)")
        return self.pipeline

    def log_stopped(self) -> None:
        """The final event: what this run collected, stored and dropped."""
        log.info(
            "agent.stopped",
            collected=self.stats.collected,
            stored=self.stats.stored,
            dropped=self.stats.dropped,
            anomalies=self.stats.anomalies,
            store_errors=self.stats.store_errors,
            uptime=round(time.time() - self.started_at, 3),
        )

    # -- what collaborators call ----------------------------------------------------------

    @property
    def should_exit(self) -> bool:
        """Whether a stop was requested."""
        return self._exit_event.is_set()

    def request_stop(self) -> None:
        """Ask for a graceful stop, like SIGTERM: main_loop returns and shutdown can follow."""
        self._exit_event.set()

    def current_detectors(self) -> Sequence[Detector]:
        """The detectors running now, which a reload may have replaced (none before start-up)."""
        return self.pipeline.detectors if self.pipeline is not None else ()

    def apply_logging(self, level: str, fmt: Literal["auto", "json", "console"]) -> None:
        """Switch the log level and renderer (reload)."""
        iw_logging.configure(level, fmt)

    def replace_detectors(self, detectors: Sequence[Detector]) -> None:
        """Run `detectors` from the next batch on (reload; they are warmed up already)."""
        if self.pipeline is not None:
            self.pipeline.set_detectors(detectors)

    def replace_settings(self, settings: Settings) -> None:
        """Make `settings` the configuration in force (reload)."""
        self.settings = settings

    def replace_scrape_targets(self, targets: Sequence[ScrapeTarget]) -> None:
        """Run exactly `targets` (reload): new ones start now, removed ones stop (their series
        expire as series do), changed ones restart with the new settings."""
        wanted = {t.name: t for t in targets}
        before = set(self.scrapes)
        stop = [n for n, p in self.scrapes.items() if wanted.get(n) != p.target]
        for name in stop:
            producer = self.scrapes.pop(name)
            self.producers[:] = [p for p in self.producers if p is not producer]
            task = self._scrape_tasks.pop(name, None)
            if task is not None:
                # Cancelling the task closes the producer's session (its `async with`).
                task.cancel()
                self._retired_tasks.add(task)
                task.add_done_callback(self._retired_tasks.discard)
        start = [t for n, t in wanted.items() if n not in self.scrapes]
        for producer in build_scrape_producers(start, self.stats):
            self.scrapes[producer.target.name] = producer
            self.producers.append(producer)
            if self._running and not self.should_exit:
                self._start_scrape(producer)
        log.info(
            "scrape.targets_changed",
            added=sorted(set(wanted) - before),
            removed=sorted(before - set(wanted)),
            restarted=sorted(set(stop) & set(wanted)),
        )

    def set_producer_interval(self, name: str, seconds: float) -> None:
        """Change a producer's interval live; its scheduler picks it up at once (reload)."""
        for producer in self.producers:
            if producer.name == name and producer.interval != seconds:
                producer.interval = seconds
                if name in self.timings:
                    self.timings[name] = replace(self.timings[name], interval=seconds)
                self.producer_wakeups.setdefault(name, asyncio.Event()).set()

    def forget_series(self, key: SeriesKey) -> None:
        """A series stopped reporting (the series timer): it leaves the detectors, its firing
        alerts resolve (no detector will ever send their resolve now), its cached id goes."""
        if self.pipeline is not None:
            self.pipeline.forget(key)
        if self.alert_service is not None:
            self.alert_service.series_gone(key)
        self.store.forget_series(key)

    # -- signals ---------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT ask for a graceful stop; a second one exits at once."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.handle_exit, sig)
        loop.add_signal_handler(signal.SIGHUP, self.reloader.request)

    def handle_exit(self, sig: int) -> None:
        """Signal handler: first call starts a graceful shutdown, a second forces exit."""
        if self.should_exit:
            log.warning("agent.forced_exit", signal=signal.Signals(sig).name)
            sys.stdout.flush()
            os._exit(EXIT_SECOND_SIGNAL)
        log.info("agent.stopping", signal=signal.Signals(sig).name)
        self.request_stop()


def run(
    settings: Settings,
    *,
    once: bool = False,
    config_path: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> int:
    """Run the agent on uvloop where available; return the exit code."""
    agent = Agent(settings, once=once, config_path=config_path, overrides=overrides)
    return asyncio_run(agent.serve())


def asyncio_run(coro: Any) -> int:
    """asyncio.run with uvloop's loop factory when uvloop is installed."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux/macOS
        result: int = asyncio.run(coro)
        return result
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        result = runner.run(coro)
    return result
