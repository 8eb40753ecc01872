"""The agent's alerter: engine + outbox + one delivery worker per sink, as one async resource.

`observe` only hands anomalies over (it never waits for the database or a receiver); an engine
task applies them, persists alert state and new notifications in one transaction, then wakes
the sink workers. At shutdown the engine takes a last step and every worker gets one delivery
attempt within the deadline; what is left stays in the outbox for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Self

import aiohttp

from infrawatch.alerting.config import AlertingConfig, SinkConfig
from infrawatch.alerting.delivery import SinkWorker
from infrawatch.alerting.engine import Engine
from infrawatch.alerting.fingerprint import series_of_alert
from infrawatch.alerting.outbox import Outbox, OutboxItem, new_notification_id
from infrawatch.alerting.records import AlertRecord
from infrawatch.alerting.silences import SELECT_SQL as SILENCES_SQL
from infrawatch.alerting.silences import from_row as silence_from_row
from infrawatch.alerting.sinks import Sink, build_sink
from infrawatch.alerting.sinks.alertmanager import AlertmanagerSink
from infrawatch.alerting.sinks.log import LogSink
from infrawatch.detect.base import Detector
from infrawatch.logging import at_doubling, describe, get_logger
from infrawatch.model import Anomaly, SeriesKey
from infrawatch.runtime.stats import AgentStats, SinkStats
from infrawatch.storage.store import Store

log = get_logger("infrawatch.alerting")

PERSIST_RETRY = 1.0  # seconds between attempts to persist when the database fails
SILENCE_POLL = 1.0  # seconds between checks for silences written by `infrawatch silence`


def detector_probe(
    detectors: Callable[[], Sequence[Detector]],
) -> Callable[[AlertRecord], bool | None]:
    """Ask the detectors running at call time (a SIGHUP may have replaced them) whether a
    restored alert's rule still fires on its series; None: unknown (no such series or rule)."""

    def probe(rec: AlertRecord) -> bool | None:
        key = series_of_alert(rec.labels)
        if key is None:
            return None
        for detector in detectors():
            if detector.name == rec.detector:
                state = detector.state_of(key, rec.labels.get("alertname", ""))
                return None if state is None else state.anomalous
        return None

    return probe


def effective_sinks(cfg: AlertingConfig) -> list[SinkConfig]:
    """The configured sinks, or one log sink when none are configured."""
    return list(cfg.sinks) or [SinkConfig(name="log", type="log")]


class AlertService:
    """Implements the Alerter protocol; enter with `async with` (owns the ClientSession)."""

    def __init__(
        self,
        cfg: AlertingConfig,
        store: Store,
        *,
        stats: AgentStats | None = None,
        shutdown_deadline: float = 10.0,
        still_anomalous: Callable[[AlertRecord], bool | None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.stats = stats or AgentStats()
        self.shutdown_deadline = shutdown_deadline
        self.clock = clock
        self.outbox = Outbox(store)
        self.sink_configs = effective_sinks(cfg)
        self.engine = Engine(cfg, [s.name for s in self.sink_configs])
        self.workers: dict[str, SinkWorker] = {}
        self._still_anomalous = still_anomalous or (lambda rec: None)
        self._incoming: list[Anomaly] = []
        self._gone: list[SeriesKey] = []  # series that stopped reporting, for the engine task
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._unsaved_alerts: dict[str, AlertRecord] = {}
        self._unsaved_items: list[OutboxItem] = []
        self._reconcile_at: float | None = None
        self._data_version = 0  # PRAGMA data_version when the silences were last read
        self._tasks: list[asyncio.Task[None]] = []  # sink workers
        self._keepalives: list[asyncio.Task[None]] = []  # Alertmanager re-posts
        self._session: aiohttp.ClientSession | None = None
        self._stack = contextlib.AsyncExitStack()

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        try:
            await self._start()
        except BaseException:
            for task in self._tasks + self._keepalives:
                task.cancel()
            await asyncio.gather(*self._tasks, *self._keepalives, return_exceptions=True)
            await self._stack.aclose()
            raise
        return self

    async def _start(self) -> None:
        self._session = await self._stack.enter_async_context(
            aiohttp.ClientSession()  # sinks.base.post names us in every request
        )
        sinks: list[Sink] = [build_sink(c, self._session) for c in self.sink_configs]
        now = self.clock()
        await self.outbox.prune(now - self.cfg.keep_outbox)
        restored = await self.outbox.load_alerts()
        self.engine.restore(restored, now)
        self._data_version = await self._read_data_version()
        await self._load_silences(at_start=True)
        if any(r.restored for r in restored):
            self._reconcile_at = now + self.cfg.restart_grace
        pending = await self.outbox.pending()
        for item in pending:
            # The receiver may be back: a restart tries each pending item once at once.
            item.next_attempt_at = min(item.next_attempt_at, now)
        for sink in sinks:
            stats = self.stats.alert_sinks[sink.name] = SinkStats(type=sink.type)
            worker = SinkWorker(sink, self.outbox, self.cfg.retry, stats, clock=self.clock)
            worker.add([i for i in pending if i.sink == sink.name])
            self.workers[sink.name] = worker
            self._tasks.append(asyncio.create_task(worker.run(), name=f"sink:{sink.name}"))
            if isinstance(sink, AlertmanagerSink):
                stats.peers = sink.peer_stats  # failures per HA peer, for /metrics
                self._keepalives.append(
                    asyncio.create_task(
                        sink.keepalive(self._firing_payloads(sink.name)), name=f"am:{sink.name}"
                    )
                )
        # Silences from `infrawatch silence` (kept with the keep-alives: cancelled at exit).
        self._keepalives.append(asyncio.create_task(self._watch_silences(), name="silences"))
        orphans = {i.sink for i in pending} - set(self.workers)
        if orphans:
            log.warning("alert.outbox_orphans", sinks=sorted(orphans), hint="sink renamed?")
        self._engine_task = asyncio.create_task(self._engine_loop(), name="alert-engine")
        log.info(
            "alerting.started",
            sinks=[f"{s.name}:{s.type}" for s in sinks],
            routes=[r.name for r in self.engine.routes],
            restored_alerts=len(restored),
            pending_notifications=len(pending),
        )

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        deadline = self.clock() + self.shutdown_deadline
        try:
            background = [self._engine_task, *self._keepalives]
            for task in background:
                task.cancel()
            outcomes = await asyncio.gather(*background, return_exceptions=True)
            for task, outcome in zip(background, outcomes, strict=True):
                if isinstance(outcome, Exception):  # not CancelledError: it ended on its own
                    log.error(
                        "alerting.task_crashed",
                        task=task.get_name(),
                        error=describe(outcome),
                    )
            # Workers finish the attempt in flight (and record it) rather than being cut off.
            for worker in self.workers.values():
                worker.stop_soon()
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=max(0.0, deadline - self.clock()))
            for task in self._tasks:
                task.cancel()
            for task, outcome in zip(
                self._tasks, await asyncio.gather(*self._tasks, return_exceptions=True), strict=True
            ):
                if isinstance(outcome, Exception):
                    log.error(
                        "sink.worker_crashed",
                        task=task.get_name(),
                        error=describe(outcome),
                    )
            try:
                async with asyncio.timeout(max(0.0, deadline - self.clock())):
                    await self._step()
            except Exception as err:  # the store may be gone: nothing more can be kept
                log.error("alerting.final_step_failed", error=describe(err))
            left = 0
            for worker in self.workers.values():
                left += await worker.drain(max(0.0, deadline - self.clock()))
            log.info("alerting.stopped", undelivered=left)
        finally:
            await self._stack.aclose()

    # -- the Alerter protocol --------------------------------------------------------------

    async def observe(self, anomalies: Sequence[Anomaly]) -> None:
        """Hand anomalies to the engine task; returns at once."""
        self._incoming.extend(anomalies)
        self._idle.clear()
        self._wake.set()

    def series_gone(self, key: SeriesKey) -> None:
        """A series stopped reporting: its firing alerts resolve at the engine's next step."""
        self._gone.append(key)
        self._idle.clear()
        self._wake.set()

    # -- what /metrics and the status page show --------------------------------------------

    def active_alerts(self) -> list[AlertRecord]:
        """Alerts that are firing now (flapping ones included), like Prometheus' ALERTS."""
        return [rec for rec in self.engine.alerts.values() if rec.state == "firing"]

    async def settled(self) -> None:
        """Wait until everything observed so far is applied and persisted (for tests)."""
        self._wake.set()
        await self._idle.wait()

    # -- engine task -----------------------------------------------------------------------

    async def _engine_loop(self) -> None:
        while True:
            timeout = self._next_wait()
            self._wake.clear()
            if timeout is None or timeout > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=timeout)
            try:
                await self._step()
            except Exception as exc:
                log.error("alerting.persist_failed", error=describe(exc))
                await asyncio.sleep(PERSIST_RETRY)
                self._wake.set()

    def _next_wait(self) -> float | None:
        if self._incoming or self._gone or self._unsaved_items or self._unsaved_alerts:
            return 0.0
        times = [t for t in (self.engine.next_due(), self._reconcile_at) if t is not None]
        return max(0.0, min(times) - self.clock()) if times else None

    async def _step(self) -> None:
        """Apply incoming anomalies and due timers; persist; hand new items to the workers."""
        now = self.clock()
        anomalies, self._incoming = self._incoming, []
        self.engine.observe(anomalies, now)
        gone, self._gone = self._gone, []
        for key in gone:
            if self.engine.resolve_series(key, now):
                log.info("alert.series_gone", metric=key[0], labels=dict(key[1]))
        if self._reconcile_at is not None and now >= self._reconcile_at:
            self._reconcile_at = None
            resolved = self.engine.reconcile(now, self._still_anomalous)
            if resolved:
                log.info("alert.resolved_while_down", alerts=resolved)
        notes = self.engine.flush(now)
        for note in notes:
            for sink in note.sinks:
                if sink not in self.workers:
                    continue
                nid = new_notification_id()
                self._unsaved_items.append(
                    OutboxItem(
                        nid,
                        sink,
                        note.group_key,
                        note.payload(nid, sink),
                        now,
                        next_attempt_at=now,
                    )
                )
        for rec in self.engine.take_dirty():
            self._unsaved_alerts[rec.fingerprint] = rec
        if self._unsaved_alerts or self._unsaved_items:
            items = self._unsaved_items
            await self.outbox.save(list(self._unsaved_alerts.values()), items)
            self._unsaved_alerts = {}
            self._unsaved_items = []
            by_sink: dict[str, list[OutboxItem]] = {}
            for item in items:
                by_sink.setdefault(item.sink, []).append(item)
            for sink, batch in by_sink.items():
                self.workers[sink].add(batch)
        if not self._incoming and not self._gone:
            self._idle.set()

    # -- silences written by the CLI ----------------------------------------------------------

    async def _read_data_version(self) -> int:
        async with self.store.db.execute("PRAGMA data_version") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def _load_silences(self, *, at_start: bool = False) -> None:
        """Give the engine the stored silences that have not ended (`infrawatch silence`)."""
        sql = SILENCES_SQL + " WHERE ends_at > ? ORDER BY created_at"
        async with self.store.db.execute(sql, (self.clock(),)) as cur:
            records = [silence_from_row(r) for r in await cur.fetchall()]
        self.engine.set_runtime_silences([r.to_silence() for r in records])
        if records or not at_start:
            log.info("alert.silences_loaded", ids=[r.id for r in records])

    async def _watch_silences(self) -> None:
        """Reload the silences when another connection (the CLI) committed to the database.

        `PRAGMA data_version` changes only for other connections' commits, so the agent's own
        writes cost nothing; the CLI writes only the silences table, never alert state."""
        failures = 0
        while True:
            await asyncio.sleep(SILENCE_POLL)
            try:
                version = await self._read_data_version()
                if version != self._data_version:
                    self._data_version = version
                    await self._load_silences()
                    self._wake.set()  # a group that is due anyway sees the change at once
                failures = 0
            except Exception as exc:  # locked or failing disk: try again next tick
                failures += 1
                if at_doubling(failures):
                    log.warning("alert.silences_unreadable", error=describe(exc), failures=failures)

    def _firing_payloads(self, sink: str) -> Callable[[], list[dict[str, Any]]]:
        def firing() -> list[dict[str, Any]]:
            external = self.engine.external_labels
            url, now = self.cfg.external_url, self.clock()
            return [
                rec.as_payload(external, external_url=url, now=now)
                for rec in self.engine.firing_for_sink(sink)
            ]

        return firing


__all__ = ["AlertService", "LogSink", "detector_probe", "effective_sinks"]
