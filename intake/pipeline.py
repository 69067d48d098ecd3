"""The in-process intake pipeline: dedup, per-service serialization, priority, limit, TTL, drain.

Invariants (property-tested in tests/test_intake_properties.py):
- at most one run per service, at most `limit` runs in all, no incident running twice;
- every accepted alert reaches exactly one terminal status;
- the next run is the oldest alert of the best priority whose service is free.

The order of the queue (next run, expiry, pages of `GET /alerts`) is `intake.queue.Queue`'s;
this module decides what happens to each alert and owns the runs. Everything runs on one
event loop, so no locks: no await separates a check from its update.

Runs are executed by workers, not a task each: at most `concurrency` long-lived worker
tasks, each either running one record or parked on a future. Dispatch decides which record
runs next synchronously (the record is RUNNING when `submit` returns) and hands it to a
parked worker, or starts a worker while there are fewer than `concurrency`. A worker that
finishes a run takes the next record itself, so with a backlog no run costs a trip through
the event loop or a future; once the workers have held the loop for `HOLD_SECONDS` without
suspending, the next run yields first, so runs that never suspend cannot starve the
webhooks. Workers start in an empty context: a run never inherits the request that happened
to start its worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

from intake.queue import Queue
from intake.records import AlertRecord, SubmitOutcome
from models import Alert, AlertState, AlertStatus
from telemetry import SPAN_PROCESS_ALERT, incident_id_var, trace_id_var

logger = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

HISTORY_SIZE = 100
_QUEUED = SubmitOutcome(AlertStatus.QUEUED)
HOLD_SECONDS = 0.005


class Runner(Protocol):
    """Runs the agent for one record and returns the terminal status (resolved/escalated)."""

    def __call__(self, record: AlertRecord) -> Awaitable[AlertStatus]: ...


class Finalizer(Protocol):
    """Closes a record that gets no (complete) run: pages when escalated, always reports."""

    def __call__(self, record: AlertRecord) -> Awaitable[None]: ...


class IntakeMetrics(Protocol):
    def record_intake(self, event: str, count: int = 1) -> None: ...


class _NoMetrics:
    def record_intake(self, event: str, count: int = 1) -> None:
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
    """Queued and running records: the queue, the services busy running, the workers."""

    records: dict[str, AlertRecord] = field(default_factory=dict)
    queue: Queue = field(default_factory=Queue)
    busy: set[str] = field(default_factory=set)
    running: dict[str, asyncio.Task[None]] = field(default_factory=dict)  # id -> its worker
    parked: list[tuple[asyncio.Future[AlertRecord], asyncio.Task[None]]] = field(
        default_factory=list
    )
    workers: set[asyncio.Task[None]] = field(default_factory=set)
    resumed_at: float = 0.0  # when a worker last came back from the event loop


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
        self._history: dict[str, AlertRecord] = {}  # oldest first (dicts keep insertion order)
        self._done_at: dict[str, float] = {}
        self._counters = _Counters()
        self._seq = 0
        self._accepting = True
        self._stopped = False
        self._group: asyncio.TaskGroup | None = None
        self._side_tasks: set[asyncio.Task[None]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._no_runs = asyncio.Event()
        self._no_runs.set()

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Intake:
        self._group = asyncio.TaskGroup()
        await self._group.__aenter__()
        self._ticker = self._spawn(self._tick_forever())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close(grace_seconds=0)

    async def stop(self, *, grace_seconds: float, cleanup_seconds: float = 15.0) -> None:
        """Refuse new alerts, escalate what is queued at once, give runs `grace_seconds`,
        then cancel them and escalate each one cut off. Pages and reports are under way
        (side tasks) when this returns; `close` waits for them. Idempotent."""
        if self._group is None or self._stopped:
            return
        self._accepting, self._stopped = False, True
        for record in self._queued_records():
            self._close_queued(record, AlertStatus.ESCALATED, "shutdown")
        await self._wait_runs(grace_seconds)
        cut_off = [self._active.records[i] for i in self._active.running]
        await self._stop_workers(cleanup_seconds)
        for record in cut_off:
            self._finish(record, AlertStatus.ESCALATED, "shutdown_grace_exceeded", finalize=True)

    async def settle(self, *, seconds: float) -> None:
        """Wait at most `seconds` for the pages and reports under way; cancel nothing."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while self._side_tasks:
                    await asyncio.wait(list(self._side_tasks))

    async def close(self, *, grace_seconds: float, cleanup_seconds: float = 15.0) -> None:
        """`stop`, then wait at most `cleanup_seconds` for the pages and reports under way
        (those still going then are cancelled). Idempotent."""
        if self._group is None:
            return
        await self.stop(grace_seconds=grace_seconds, cleanup_seconds=cleanup_seconds)
        await self._wait_side_tasks(cleanup_seconds)
        group, self._group = self._group, None
        await group.__aexit__(None, None, None)

    async def drain(self) -> None:
        """Stop accepting; running and already-queued alerts are still worked off."""
        self._accepting = False

    async def resume(self) -> None:
        """Accept alerts again after `drain` (never after `stop`: shutting down is final)."""
        self._accepting = not self._stopped

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
        now = self._clock()
        self._expire_queued(now)
        if alert.state is AlertState.RESOLVED:
            return self._submit_resolved(alert)
        duplicate = self._deduplicate(alert, now)
        if duplicate is not None:
            return duplicate
        record = self._new_record(alert, trace_id, now)
        refusal = self._refusal(record)
        if refusal is not None:
            self._finish(record, AlertStatus.ESCALATED, refusal, finalize=True)
            return SubmitOutcome(AlertStatus.ESCALATED, refusal)
        self._enqueue(record)
        self._dispatch()
        return _QUEUED  # accepted; it may already be running

    def _submit_resolved(self, alert: Alert) -> SubmitOutcome:
        record = self._active.records.get(alert.incident_id)
        if record is None:
            return self._ignore("not_active")
        if record.status is AlertStatus.QUEUED:
            self._close_queued(record, AlertStatus.RESOLVED, "resolved_before_diagnosis")
            return SubmitOutcome(AlertStatus.RESOLVED, "resolved_before_diagnosis")
        record.resolved_upstream = True
        record.notify(f"The monitoring platform reports this incident as resolved: {alert.summary}")
        return self._ignore("running")

    def _deduplicate(self, alert: Alert, now: float) -> SubmitOutcome | None:
        record = self._active.records.get(alert.incident_id)
        if record is not None:
            record.repeats += 1
            if record.status is AlertStatus.RUNNING:
                record.notify(
                    f"{record.repeats} repeat notification(s) arrived; latest: {alert.summary}"
                )
            return self._deduplicated(record.status.value)
        done_at = self._done_at.get(alert.incident_id)
        if done_at is not None and now - done_at < self._limits.dedup_window_seconds:
            previous = self._history.get(alert.incident_id)
            if previous is not None:
                previous.repeats += 1
            return self._deduplicated("recently_handled")
        return None

    def _refusal(self, record: AlertRecord) -> str | None:
        if record.service is None:
            return "unknown_service"
        if self._budget_exhausted():
            return "hourly_token_budget"
        if self._active.queue.size >= self._limits.queue_size:
            return "queue_full"
        return None

    def _deduplicated(self, reason: str) -> SubmitOutcome:
        self._counters.deduplicated += 1
        self._metrics.record_intake("deduplicated")
        return SubmitOutcome(AlertStatus.DEDUPLICATED, reason)

    def _ignore(self, reason: str) -> SubmitOutcome:
        self._counters.ignored += 1
        return SubmitOutcome(AlertStatus.IGNORED, reason)

    def _new_record(self, alert: Alert, trace_id: str, now: float) -> AlertRecord:
        self._seq += 1
        record = AlertRecord(alert=alert, trace_id=trace_id, enqueued_at=now, seq=self._seq)
        context = otel_context.get_current()  # empty unless some span is current
        if context and trace.get_current_span(context).is_recording():
            record.carrier = {}
            propagate.inject(record.carrier, context)
        return record

    # -- queue ---------------------------------------------------------------------------------

    def _enqueue(self, record: AlertRecord) -> None:
        active = self._active
        if not active.records:
            self._idle.clear()  # the first active record
        active.records[record.incident_id] = record
        self._counters.queued += 1
        self._metrics.record_intake("queued")
        record.move(AlertStatus.QUEUED)
        if active.queue.push(record):  # a new head supersedes its service's last offer
            self._offer(record.service or "")

    def _offer(self, service: str) -> None:
        """Make a free service's best queued record its dispatch candidate."""
        if service not in self._active.busy:
            self._active.queue.offer(service)

    def _dispatch(self) -> None:
        """Start runs while there is room, each on a parked worker or a new one."""
        while (record := self._pick()) is not None:
            self._start(record, self._free_worker(record))

    def _pick(self) -> AlertRecord | None:
        """If there is room, take the next record to run: best priority, then oldest,
        among free services. The caller starts it."""
        if len(self._active.running) >= self._limits.concurrency:
            return None
        return self._active.queue.pop_next()

    def _free_worker(self, record: AlertRecord) -> asyncio.Task[None]:
        """Hand `record` to a parked worker, or start a worker for it (fewer than the limit
        are alive, since each is running or parked)."""
        active = self._active
        while active.parked:
            slot, worker = active.parked.pop()
            if not slot.done():  # a parked worker cancelled by shutdown has a cancelled slot
                slot.set_result(record)
                return worker
        worker = self._spawn(self._work(record), context=contextvars.Context())
        active.workers.add(worker)
        worker.add_done_callback(active.workers.discard)
        return worker

    def _start(self, record: AlertRecord, worker: asyncio.Task[None]) -> None:
        service = record.service
        assert service is not None
        active = self._active
        active.busy.add(service)
        if not active.running:
            self._no_runs.clear()  # the first run
        active.running[record.incident_id] = worker
        record.move(AlertStatus.RUNNING)

    # -- runs ----------------------------------------------------------------------------------

    async def _work(self, record: AlertRecord) -> None:
        """A worker: run a record, then take the next one itself while there is a backlog
        (no trip through the event loop), else park until dispatch hands it one."""
        worker = asyncio.current_task()
        assert worker is not None
        loop = asyncio.get_running_loop()
        self._active.resumed_at = self._clock()
        while True:
            await self._run(record)
            following = self._pick()
            if following is None:
                slot: asyncio.Future[AlertRecord] = loop.create_future()
                self._active.parked.append((slot, worker))
                following = await slot
                self._active.resumed_at = self._clock()
            else:
                self._start(following, worker)
            record = following

    async def _run(self, record: AlertRecord) -> None:
        """Run the agent for one record: a crash is escalated by the runtime, a cancellation
        (shutdown) propagates, and the service is released whatever happens."""
        try:
            if self._clock() - self._active.resumed_at >= HOLD_SECONDS:
                await asyncio.sleep(0)  # let the loop serve webhooks between instant runs
                self._active.resumed_at = self._clock()
            trace_id_var.set(record.trace_id)
            incident_id_var.set(record.incident_id)
            try:
                if record.carrier is None:
                    status = await self._runner(record)
                else:
                    status = await self._run_traced(record, record.carrier)
            except asyncio.CancelledError:
                logger.debug("run cancelled by shutdown", extra={"incident_id": record.incident_id})
                raise
            except Exception:
                logger.exception("agent run failed; escalating")
                self._counters.failed += 1
                self._finish(record, AlertStatus.ESCALATED, "agent_failed", finalize=True)
                return
            self._finish(record, status, record.reason, finalize=record.handoff)
        finally:
            self._release(record)

    async def _run_traced(self, record: AlertRecord, carrier: dict[str, str]) -> AlertStatus:
        """The run inside a `process_alert` span in the webhook's trace, whose context
        travels in the record. An alert that did not arrive in a recorded trace runs
        without one, and without a call into the OTel API."""
        token = otel_context.attach(propagate.extract(carrier))
        try:
            with tracer.start_as_current_span(
                SPAN_PROCESS_ALERT,
                attributes={"incident.id": record.incident_id, "service": record.service or ""},
            ):
                return await self._runner(record)
        finally:
            otel_context.detach(token)

    def _release(self, record: AlertRecord) -> None:
        """Free the run's service; the worker dispatches next (or shutdown is under way)."""
        service = record.service
        assert service is not None
        self._active.running.pop(record.incident_id, None)
        if not self._active.running:
            self._no_runs.set()
        self._active.busy.discard(service)
        if self._active.queue.holds(service):
            self._offer(service)
        self._check_idle()

    # -- terminal statuses ---------------------------------------------------------------------

    def _close_queued(self, record: AlertRecord, status: AlertStatus, reason: str) -> None:
        self._active.queue.left()
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
            self._spawn(self._finalize_in_context(record), side=True, name=record.incident_id)

    def _count_terminal(self, status: AlertStatus) -> None:
        if status is AlertStatus.RESOLVED:
            self._counters.resolved += 1
        elif status is AlertStatus.ESCALATED:
            self._counters.escalated += 1
        elif status is AlertStatus.EXPIRED:
            self._counters.expired += 1
            self._metrics.record_intake("expired")

    async def _finalize_in_context(self, record: AlertRecord) -> None:
        """Page and report for a record without a (complete) run; a failure is logged, the
        pipeline goes on (a cancellation, at shutdown, propagates)."""
        trace_id_var.set(record.trace_id)
        incident_id_var.set(record.incident_id)
        try:
            await self._finalize(record)
        except Exception:
            logger.exception("finalizing %s failed", record.incident_id)

    def _remember(self, record: AlertRecord) -> None:
        history, incident_id = self._history, record.incident_id
        history.pop(incident_id, None)  # re-inserted at the end: newest last
        history[incident_id] = record
        if len(history) > HISTORY_SIZE:
            del history[next(iter(history))]
        if record.status is not AlertStatus.EXPIRED and self._limits.dedup_window_seconds > 0:
            self._done_at.pop(incident_id, None)
            self._done_at[incident_id] = self._clock()

    # -- time ----------------------------------------------------------------------------------

    def tick(self) -> None:
        """Expire queued alerts past their TTL, forget old dedup entries, drop dead entries."""
        now = self._clock()
        self._expire_queued(now)
        done_at, window = self._done_at, self._limits.dedup_window_seconds
        while done_at and now - next(iter(done_at.values())) >= window:
            del done_at[next(iter(done_at))]
        self._active.queue.compact()
        self._dispatch()

    def _expire_queued(self, now: float) -> None:
        for record in self._active.queue.take_expired(now, self._limits.ttl_seconds):
            logger.warning("alert expired in queue after %.0fs", now - record.enqueued_at)
            self._close_queued(record, AlertStatus.EXPIRED, "ttl")

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self._limits.tick_seconds)
            self.tick()

    # -- tasks ---------------------------------------------------------------------------------

    def _spawn(
        self,
        coro: Any,
        *,
        side: bool = False,
        context: contextvars.Context | None = None,
        name: str | None = None,
    ) -> asyncio.Task[None]:
        """A task of the intake's group; `side`: a finalization (page and report), named
        by its incident id, that `close` waits for."""
        if self._group is None:
            raise RuntimeError("Intake used outside `async with`")
        task = self._group.create_task(coro, context=context, name=name)
        if side:
            self._side_tasks.add(task)
            task.add_done_callback(self._side_tasks.discard)
        return task

    async def _wait_runs(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._no_runs.wait()

    async def _stop_workers(self, seconds: float) -> None:
        """Cancel every worker (cutting off the runs still going) and wait for them."""
        workers = list(self._active.workers)
        for worker in workers:
            worker.cancel()
        if workers:
            await asyncio.wait(workers, timeout=seconds)

    async def _wait_side_tasks(self, seconds: float) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        pending = list(self._side_tasks)
        if pending:
            _, late = await asyncio.wait(pending, timeout=seconds)
            if late:  # out of time: say which alerts were left without a page or report
                names = sorted(task.get_name() for task in late)
                logger.error(
                    "%d alert(s) left without a finished page and report at shutdown: %s%s",
                    len(names),
                    ", ".join(names[:50]),
                    " ..." if len(names) > 50 else "",
                )
            for task in late:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*late, return_exceptions=True)

    def _check_idle(self) -> None:
        if not self._active.records:
            self._idle.set()

    # -- views ---------------------------------------------------------------------------------

    def _queued_records(self) -> list[AlertRecord]:
        return [r for r in self._active.records.values() if r.status is AlertStatus.QUEUED]

    def get(self, incident_id: str) -> AlertRecord | None:
        return self._active.records.get(incident_id) or self._history.get(incident_id)

    def running_records(self) -> list[AlertRecord]:
        """The records running now (at most `concurrency`), in the order they started."""
        records = self._active.records
        return [r for i in self._active.running if (r := records.get(i)) is not None]

    def recent(self, limit: int = HISTORY_SIZE) -> list[AlertRecord]:
        """The last `limit` finished records (at most `HISTORY_SIZE` are kept), newest first."""
        return list(itertools.islice(reversed(self._history.values()), limit))

    def queued_page(
        self, *, limit: int, after: int | None = None
    ) -> tuple[list[AlertRecord], int | None]:
        """One page of the queue, and the `order` to ask for the next with (`Queue.page`)."""
        return self._active.queue.page(limit=limit, after=after)

    def listing(self) -> dict[str, list[AlertRecord]]:
        """Everything at once: running, every queued record in queue order, the recent.
        O(queue), for tests and tools; `GET /alerts` pages with `queued_page`."""
        return {
            "running": self.running_records(),
            "queued": self._active.queue.in_order(),
            "recent": self.recent(),
        }

    def counts(self) -> tuple[int, int]:
        """(running, queued) right now."""
        return len(self._active.running), self._active.queue.size

    def stats(self) -> dict[str, Any]:
        running, queued = self.counts()
        return {
            "running": running,
            "queued": queued,
            "limit": self._limits.concurrency,
            "queue_max": self._limits.queue_size,
            "draining": not self._accepting,
            **{f"total_{k}": getattr(self._counters, k) for k in _Counters.__slots__},
        }
