"""The in-process intake pipeline: dedup, per-service serialization, priority, limit, TTL, drain.

Invariants (property-tested in tests/test_intake_properties.py):
- at most one run per service, at most `limit` runs in all, no incident running twice;
- every accepted alert reaches exactly one terminal status;
- the next run is the oldest alert of the best priority whose service is free.

Data layout (O(log n) per operation, no scan of the whole queue):
- `_queues[service]`: a heap of (priority rank, seq, incident id) per service;
- `_ready`: a heap of the head entry of every *free* service with queued work;
- `_fifo`: queued entries in arrival order, for TTL expiry from the front.
Entries are removed lazily: a heap entry is live only while its record is still queued
with the same `seq`. Everything runs on one event loop, so no locks: no await separates
a check from its update.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

from intake.records import AlertRecord, SubmitOutcome
from models import Alert, AlertState, AlertStatus
from telemetry import SPAN_PROCESS_ALERT, incident_id_var, trace_id_var

logger = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

HISTORY_SIZE = 100


class Runner(Protocol):
    """Runs the agent for one record and returns the terminal status (resolved/escalated)."""

    def __call__(self, record: AlertRecord) -> Awaitable[AlertStatus]: ...


class Finalizer(Protocol):
    """Closes a record that gets no (complete) run: pages when escalated, always reports."""

    def __call__(self, record: AlertRecord) -> Awaitable[None]: ...


class IntakeMetrics(Protocol):
    def record_intake(self, event: str, count: int = 1) -> None: ...
    def set_active(self, *, running: int, queued: int) -> None: ...


class _NoMetrics:
    def record_intake(self, event: str, count: int = 1) -> None:
        pass

    def set_active(self, *, running: int, queued: int) -> None:
        pass


class Draining(Exception):
    """Intake no longer accepts alerts (POST /ops/drain, or shutting down)."""


@dataclass(slots=True)
class Limits:
    concurrency: int = 3
    queue_size: int = 1000
    ttl_seconds: float = 600
    dedup_window_seconds: float = 900
    tick_seconds: float = 1.0


@dataclass(slots=True)
class _Counters:
    received: int = 0
    deduplicated: int = 0
    queued: int = 0
    expired: int = 0
    escalated: int = 0
    resolved: int = 0
    ignored: int = 0
    failed: int = 0


@dataclass(slots=True)
class _Active:
    """Queued and running records and the structures that order them."""

    records: dict[str, AlertRecord] = field(default_factory=dict)
    queues: dict[str, list[tuple[int, int, str]]] = field(default_factory=dict)
    ready: list[tuple[int, int, str]] = field(default_factory=list)
    fifo: deque[tuple[float, int, str]] = field(default_factory=deque)
    busy: set[str] = field(default_factory=set)
    running: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    queued: int = 0


class Intake:
    """Accepts normalized alerts and dispatches agent runs under the contract's rules."""

    def __init__(
        self,
        *,
        runner: Runner,
        finalize: Finalizer,
        limits: Limits | None = None,
        budget_exhausted: Callable[[], bool] = lambda: False,
        metrics: IntakeMetrics | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._runner = runner
        self._finalize = finalize
        self._limits = limits or Limits()
        self._budget_exhausted = budget_exhausted
        self._metrics = metrics or _NoMetrics()
        self._clock = clock or asyncio.get_running_loop().time
        self._active = _Active()
        self._history: OrderedDict[str, AlertRecord] = OrderedDict()
        self._done_at: OrderedDict[str, float] = OrderedDict()
        self._counters = _Counters()
        self._seq = 0
        self._accepting = True
        self._group: asyncio.TaskGroup | None = None
        self._side_tasks: set[asyncio.Task[None]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Intake:
        self._group = asyncio.TaskGroup()
        await self._group.__aenter__()
        self._ticker = self._spawn(self._tick_forever())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close(grace_seconds=0)

    async def close(self, *, grace_seconds: float, cleanup_seconds: float = 15.0) -> None:
        """Stop: refuse new alerts, escalate what is queued, give runs `grace_seconds`, then
        cancel them and escalate each one cut off. Idempotent."""
        if self._group is None:
            return
        self._accepting = False
        for record in self._queued_records():
            self._close_queued(record, AlertStatus.ESCALATED, "shutdown")
        await self._wait_runs(grace_seconds)
        cut_off = [self._active.records[i] for i in self._active.running]
        for task in self._active.running.values():
            task.cancel()
        await self._wait_runs(cleanup_seconds)
        for record in cut_off:
            self._finish(record, AlertStatus.ESCALATED, "shutdown_grace_exceeded", finalize=True)
        await self._wait_side_tasks(cleanup_seconds)
        group, self._group = self._group, None
        await group.__aexit__(None, None, None)

    async def drain(self) -> None:
        """Stop accepting; running and already-queued alerts are still worked off."""
        self._accepting = False

    @property
    def accepting(self) -> bool:
        return self._accepting

    async def wait_idle(self) -> None:
        """Return once nothing is queued or running and every report/page is done."""
        await self._idle.wait()
        while self._side_tasks:
            await asyncio.wait(list(self._side_tasks))

    # -- submit ------------------------------------------------------------------------------

    def submit(self, alert: Alert, *, trace_id: str) -> SubmitOutcome:
        """Decide what happens to one alert. Never blocks, never waits for a run."""
        if not self._accepting:
            raise Draining
        self._counters.received += 1
        self._expire_due()
        if alert.state is AlertState.RESOLVED:
            return self._submit_resolved(alert)
        duplicate = self._deduplicate(alert)
        if duplicate is not None:
            return duplicate
        record = self._new_record(alert, trace_id)
        refusal = self._refusal(alert)
        if refusal is not None:
            self._finish(record, AlertStatus.ESCALATED, refusal, finalize=True)
            return SubmitOutcome(AlertStatus.ESCALATED, refusal)
        self._enqueue(record)
        self._dispatch()
        return SubmitOutcome(AlertStatus.QUEUED)  # accepted; it may already be running

    def _submit_resolved(self, alert: Alert) -> SubmitOutcome:
        record = self._active.records.get(alert.incident_id)
        if record is None:
            return self._ignore("not_active")
        if record.status is AlertStatus.QUEUED:
            self._close_queued(record, AlertStatus.RESOLVED, "resolved_before_diagnosis")
            return SubmitOutcome(AlertStatus.RESOLVED, "resolved_before_diagnosis")
        record.resolved_upstream = True
        record.notices.append(
            f"The monitoring platform reports this incident as resolved: {alert.summary}"
        )
        return self._ignore("running")

    def _deduplicate(self, alert: Alert) -> SubmitOutcome | None:
        record = self._active.records.get(alert.incident_id)
        if record is not None:
            record.repeats += 1
            if record.status is AlertStatus.RUNNING:
                record.notices.append(
                    f"{record.repeats} repeat notification(s) arrived; latest: {alert.summary}"
                )
            return self._deduplicated(record.status.value)
        if alert.incident_id in self._done_at:
            previous = self._history.get(alert.incident_id)
            if previous is not None:
                previous.repeats += 1
            return self._deduplicated("recently_handled")
        return None

    def _refusal(self, alert: Alert) -> str | None:
        if alert.service is None:
            return "unknown_service"
        if self._budget_exhausted():
            return "hourly_token_budget"
        if self._active.queued >= self._limits.queue_size:
            return "queue_full"
        return None

    def _deduplicated(self, reason: str) -> SubmitOutcome:
        self._counters.deduplicated += 1
        self._metrics.record_intake("deduplicated")
        return SubmitOutcome(AlertStatus.DEDUPLICATED, reason)

    def _ignore(self, reason: str) -> SubmitOutcome:
        self._counters.ignored += 1
        return SubmitOutcome(AlertStatus.IGNORED, reason)

    def _new_record(self, alert: Alert, trace_id: str) -> AlertRecord:
        self._seq += 1
        record = AlertRecord(
            alert=alert, trace_id=trace_id, enqueued_at=self._clock(), seq=self._seq
        )
        if trace.get_current_span().is_recording():  # the carrier is empty without OTel
            propagate.inject(record.carrier)
        return record

    # -- queue ---------------------------------------------------------------------------------

    def _enqueue(self, record: AlertRecord) -> None:
        service = record.service
        assert service is not None  # unknown services are refused before queueing
        entry = (record.alert.priority.rank, record.seq, record.incident_id)
        heapq.heappush(self._active.queues.setdefault(service, []), entry)
        self._active.fifo.append((record.enqueued_at, record.seq, record.incident_id))
        self._active.records[record.incident_id] = record
        self._active.queued += 1
        self._counters.queued += 1
        self._metrics.record_intake("queued")
        record.move(AlertStatus.QUEUED)
        self._idle.clear()
        self._offer(service)

    def _live(self, seq: int, incident_id: str) -> bool:
        record = self._active.records.get(incident_id)
        return record is not None and record.seq == seq and record.status is AlertStatus.QUEUED

    def _head(self, service: str) -> tuple[int, int, str] | None:
        heap = self._active.queues.get(service)
        while heap and not self._live(heap[0][1], heap[0][2]):
            heapq.heappop(heap)
        if not heap:
            self._active.queues.pop(service, None)
            return None
        return heap[0]

    def _offer(self, service: str) -> None:
        """Make a free service's best queued alert a dispatch candidate."""
        if service in self._active.busy:
            return
        head = self._head(service)
        if head is not None:
            heapq.heappush(self._active.ready, (head[0], head[1], service))

    def _dispatch(self) -> None:
        """Start runs while there is room: best priority, then oldest, among free services."""
        active = self._active
        while len(active.running) < self._limits.concurrency and active.ready:
            rank, seq, service = heapq.heappop(active.ready)
            head = None if service in active.busy else self._head(service)
            if head is None:
                continue
            if head[:2] != (rank, seq):
                heapq.heappush(active.ready, (head[0], head[1], service))
                continue
            heapq.heappop(active.queues[service])
            self._start(active.records[head[2]])
        self._publish_gauges()

    def _start(self, record: AlertRecord) -> None:
        service = record.service
        assert service is not None
        self._active.queued -= 1
        self._active.busy.add(service)
        record.move(AlertStatus.RUNNING)
        self._active.running[record.incident_id] = self._spawn(self._run(record))

    # -- runs ----------------------------------------------------------------------------------

    async def _run(self, record: AlertRecord) -> None:
        trace_id_var.set(record.trace_id)
        incident_id_var.set(record.incident_id)
        # The webhook's trace context travels inside the record (empty without tracing).
        token = otel_context.attach(propagate.extract(record.carrier)) if record.carrier else None
        try:
            with tracer.start_as_current_span(
                SPAN_PROCESS_ALERT,
                attributes={"incident.id": record.incident_id, "service": record.service or ""},
            ):
                await self._run_agent(record)
        finally:
            if token is not None:
                otel_context.detach(token)
            self._release(record)

    async def _run_agent(self, record: AlertRecord) -> None:
        """Run the agent; a crash is escalated by the runtime, a cancellation propagates."""
        try:
            status = await self._runner(record)
        except asyncio.CancelledError:
            logger.debug("run cancelled by shutdown", extra={"incident_id": record.incident_id})
            raise
        except Exception:
            logger.exception("agent run failed; escalating")
            self._counters.failed += 1
            self._finish(record, AlertStatus.ESCALATED, "agent_failed", finalize=True)
            return
        self._finish(record, status, record.reason, finalize=False)

    def _release(self, record: AlertRecord) -> None:
        service = record.service
        assert service is not None
        self._active.running.pop(record.incident_id, None)
        self._active.busy.discard(service)
        self._offer(service)
        self._dispatch()
        self._check_idle()

    async def _finalize_safely(self, record: AlertRecord) -> None:
        try:
            await self._finalize(record)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("finalizing %s failed", record.incident_id)

    # -- terminal statuses ---------------------------------------------------------------------

    def _close_queued(self, record: AlertRecord, status: AlertStatus, reason: str) -> None:
        self._active.queued -= 1
        self._finish(record, status, reason, finalize=True)
        self._check_idle()

    def _finish(
        self, record: AlertRecord, status: AlertStatus, reason: str | None, *, finalize: bool
    ) -> None:
        """Move a record to its terminal status, into history and the dedup window."""
        if record.status.terminal:
            return
        record.move(status, reason)
        self._active.records.pop(record.incident_id, None)
        self._remember(record)
        self._count_terminal(status)
        if finalize:
            self._spawn(self._finalize_in_context(record), side=True)
        self._publish_gauges()

    def _count_terminal(self, status: AlertStatus) -> None:
        if status is AlertStatus.EXPIRED:
            self._counters.expired += 1
            self._metrics.record_intake("expired")
        elif status is AlertStatus.RESOLVED:
            self._counters.resolved += 1
        elif status is AlertStatus.ESCALATED:
            self._counters.escalated += 1

    async def _finalize_in_context(self, record: AlertRecord) -> None:
        trace_id_var.set(record.trace_id)
        incident_id_var.set(record.incident_id)
        await self._finalize_safely(record)

    def _remember(self, record: AlertRecord) -> None:
        self._history[record.incident_id] = record
        self._history.move_to_end(record.incident_id)
        while len(self._history) > HISTORY_SIZE:
            self._history.popitem(last=False)
        if record.status is not AlertStatus.EXPIRED and self._limits.dedup_window_seconds > 0:
            self._done_at[record.incident_id] = self._clock()
            self._done_at.move_to_end(record.incident_id)

    # -- time ----------------------------------------------------------------------------------

    def tick(self) -> None:
        """Expire queued alerts past their TTL and forget old dedup entries."""
        self._expire_due()
        self._dispatch()

    def _expire_due(self) -> None:
        now = self._clock()
        fifo = self._active.fifo
        while fifo and now - fifo[0][0] >= self._limits.ttl_seconds:
            _, seq, incident_id = fifo.popleft()
            if self._live(seq, incident_id):
                record = self._active.records[incident_id]
                logger.warning("alert expired in queue after %.0fs", now - record.enqueued_at)
                self._close_queued(record, AlertStatus.EXPIRED, "ttl")
        while fifo and not self._live(fifo[0][1], fifo[0][2]):
            fifo.popleft()
        window = self._limits.dedup_window_seconds
        while self._done_at and now - next(iter(self._done_at.values())) >= window:
            self._done_at.popitem(last=False)

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self._limits.tick_seconds)
            self.tick()

    # -- tasks ---------------------------------------------------------------------------------

    def _spawn(self, coro: Any, *, side: bool = False) -> asyncio.Task[None]:
        if self._group is None:
            raise RuntimeError("Intake used outside `async with`")
        task = self._group.create_task(coro)
        if side:
            self._side_tasks.add(task)
            task.add_done_callback(self._side_tasks.discard)
        return task

    async def _wait_runs(self, seconds: float) -> None:
        tasks = list(self._active.running.values())
        if tasks:
            await asyncio.wait(tasks, timeout=seconds)

    async def _wait_side_tasks(self, seconds: float) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        pending = list(self._side_tasks)
        if pending:
            _, late = await asyncio.wait(pending, timeout=seconds)
            for task in late:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*late, return_exceptions=True)

    def _check_idle(self) -> None:
        if not self._active.records:
            self._idle.set()

    def _publish_gauges(self) -> None:
        self._metrics.set_active(running=len(self._active.running), queued=self._active.queued)

    # -- views ---------------------------------------------------------------------------------

    def _queued_records(self) -> list[AlertRecord]:
        return [r for r in self._active.records.values() if r.status is AlertStatus.QUEUED]

    def get(self, incident_id: str) -> AlertRecord | None:
        return self._active.records.get(incident_id) or self._history.get(incident_id)

    def listing(self) -> dict[str, list[AlertRecord]]:
        records = self._active.records.values()
        return {
            "running": [r for r in records if r.status is AlertStatus.RUNNING],
            "queued": sorted(
                (r for r in records if r.status is AlertStatus.QUEUED),
                key=lambda r: (r.alert.priority.rank, r.seq),
            ),
            "recent": list(reversed(self._history.values())),
        }

    def stats(self) -> dict[str, Any]:
        return {
            "running": len(self._active.running),
            "queued": self._active.queued,
            "limit": self._limits.concurrency,
            "queue_max": self._limits.queue_size,
            "draining": not self._accepting,
            **{f"total_{k}": getattr(self._counters, k) for k in _Counters.__slots__},
        }
