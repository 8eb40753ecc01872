"""The agent's lifecycle: startup, main loop, shutdown.

startup   open the store, restore detectors, open producers/alerter/HTTP (one AsyncExitStack)
main_loop producers and the pipeline run as tasks until `should_exit` (SIGTERM/SIGINT)
shutdown  stop producers → drain the queue through the pipeline within the deadline → flush →
          close everything in reverse order. A second signal exits at once.
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
from pathlib import Path
from typing import Any

from infrawatch.alerting import Alerter, LogAlerter
from infrawatch.alerting.service import AlertService, detector_probe
from infrawatch.collectors.host import HostProducer
from infrawatch.config import Settings
from infrawatch.detect import build_detectors
from infrawatch.detect.restore import restore_detectors
from infrawatch.logging import get_logger
from infrawatch.model import SeriesKey
from infrawatch.runtime.latest import LatestValues
from infrawatch.runtime.pipeline import Pipeline
from infrawatch.runtime.producer import Producer, ResumingProducer
from infrawatch.runtime.queue import BatchQueue
from infrawatch.runtime.reload import Reloader
from infrawatch.runtime.schedule import run_producer
from infrawatch.runtime.stats import AgentStats
from infrawatch.storage.retention import Maintenance
from infrawatch.storage.store import Store
from infrawatch.web.server import HttpServer

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
    return producers


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
        # SIGHUP re-reads the configuration the way it was loaded at start.
        self.config_path = config_path
        self.overrides = dict(overrides or {})
        self.once = once
        self.stats = AgentStats()
        self.should_exit = False
        self.force_exit = False
        self.started_at = time.time()
        self.producers = list(producers) if producers is not None else build_producers(settings)
        self.queue = BatchQueue(
            settings.agent.queue_size, settings.agent.queue_full_policy, self.stats
        )
        self.store = Store(settings.storage.path)
        self.alerter: Alerter = LogAlerter()
        self.alert_service: AlertService | None = None
        self.pipeline: Pipeline | None = None
        self.latest = LatestValues(self.stats, on_expire=self._forget_series)
        self.http: HttpServer | None = None
        self.reloader = Reloader(self)
        self.producer_wakeups = {p.name: asyncio.Event() for p in self.producers}
        self._exit_event = asyncio.Event()
        self._producer_tasks: list[asyncio.Task[None]] = []

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
        await restore_detectors(self.store, detectors, max_history=self.settings.storage.retention)
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
            still_anomalous=detector_probe(detectors),
        )
        self.alerter = await stack.enter_async_context(self.alert_service)
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
            await stack.enter_async_context(producer)
            stats = self.stats.producer(producer.name, producer.interval)
            stats.series_ttl = producer.series_ttl
            if isinstance(producer, ResumingProducer):
                # Points stored before a restart (and replayed into the detectors above) are
                # not emitted again when the producer re-reads its look-back window.
                await producer.resume(self.store.timestamps_since)
        stack.push_async_callback(self.reloader.aclose)
        # --once has nothing to serve, and must work beside a running agent that holds the port.
        if self.settings.http.enabled and not self.once:
            self.http = await stack.enter_async_context(HttpServer(self, self.settings.http))
        log.info(
            "agent.started",
            pid=os.getpid(),
            producers=[p.name for p in self.producers],
            database=str(self.settings.storage.path),
            once=self.once,
        )

    async def main_loop(self) -> None:
        """Run producers and the pipeline until `should_exit` (or one cycle with --once)."""
        assert self.pipeline is not None
        pipeline_task = asyncio.create_task(self.pipeline.run(), name="pipeline")
        # Rollups and retention in small transactions beside the pipeline (not for --once).
        maintenance_task = (
            None
            if self.once
            else asyncio.create_task(
                Maintenance(self.store, self.settings.storage).run(), name="maintenance"
            )
        )
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
        ]
        if self.once:
            await asyncio.gather(*self._producer_tasks)
        else:
            await self._exit_event.wait()
        await self._stop_producers()
        if maintenance_task is not None:
            # Stopped first: the drain that follows must not wait behind a maintenance chunk.
            maintenance_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await maintenance_task
        pipeline_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pipeline_task

    async def _stop_producers(self) -> None:
        for task in self._producer_tasks:
            task.cancel()
        # A tick still running is abandoned (its samples were never accepted, so nothing is lost
        # that was counted); a call blocked in a worker thread does not hold the shutdown up.
        await asyncio.gather(*self._producer_tasks, return_exceptions=True)

    async def shutdown(self) -> None:
        """Drain what was accepted through the pipeline within the deadline; count the rest."""
        assert self.pipeline is not None
        deadline = self.settings.agent.shutdown_deadline
        started = time.monotonic()
        try:
            await asyncio.wait_for(self.pipeline.drain(), timeout=deadline)
        except TimeoutError:
            lost = self.pipeline.abandon()
            log.error("agent.drain_deadline_exceeded", deadline=deadline, dropped_samples=lost)
        if self.alert_service is not None:
            # One budget for the whole shutdown: the alerter's last delivery round (run as the
            # exit stack closes it) gets what the drain left, but at least enough to persist its
            # state, since what it has not written to the outbox would be lost.
            left = deadline - (time.monotonic() - started)
            self.alert_service.shutdown_deadline = max(MIN_ALERTER_SHUTDOWN, left)

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

    # -- signals ---------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT ask for a graceful stop; a second one exits at once."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.handle_exit, sig)
        loop.add_signal_handler(signal.SIGHUP, self.reloader.request)

    def set_producer_interval(self, name: str, seconds: float) -> None:
        """Change a producer's interval live; its scheduler picks it up at once (reload)."""
        for producer in self.producers:
            if producer.name == name and producer.interval != seconds:
                producer.interval = seconds
                self.producer_wakeups.setdefault(name, asyncio.Event()).set()

    def _forget_series(self, key: SeriesKey) -> None:
        # A series that stopped reporting (process exited, instance gone) leaves the detectors,
        # and its firing alerts resolve: no detector will ever send their resolve now.
        if self.pipeline is not None:
            for detector in self.pipeline.detectors:
                detector.forget(key)
        if self.alert_service is not None:
            self.alert_service.series_gone(key)
        self.store.forget_series(key)

    def handle_exit(self, sig: int) -> None:
        """Signal handler: first call starts a graceful shutdown, a second forces exit."""
        if self.should_exit:
            self.force_exit = True
            log.warning("agent.forced_exit", signal=signal.Signals(sig).name)
            sys.stdout.flush()
            os._exit(EXIT_SECOND_SIGNAL)
        self.should_exit = True
        log.info("agent.stopping", signal=signal.Signals(sig).name)
        self._exit_event.set()


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
