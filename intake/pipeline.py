"""The in-process intake pipeline: occurrences, per-service serialization, priority, limit,
TTL, drain.

Invariants (property-tested in tests/test_intake_properties.py):
- at most one run per service, at most `limit` runs in all, no incident running twice;
- every accepted alert reaches exactly one terminal status; every episode gets at most one
  run, and none is lost;
- the next run is the oldest alert of the best priority whose service is free.

What a new alert means (a new occurrence, a repeat, a resolve) is `intake.lifecycle`'s
rules; what is remembered of past occurrences is `intake.history`'s; the order of the queue
(next run, expiry, pages of `GET /alerts`) is `intake.queue.Queue`'s. This module applies
the rules' verdicts and owns the runs. Everything runs on one event loop, so no locks: no
await separates a check from its update.

Runs happen on `intake.workers.Workers`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

from intake.history import RECENT_SIZE, History
from intake.lifecycle import Ending, Firing, Resolution, Windows, on_firing, on_resolved
from intake.records import AlertRecord, SubmitOutcome, repeat_notice, resolved_notice
from intake.workers import Runner, Workers
from models import Alert, AlertState, AlertStatus, TimelineStatus
from telemetry import incident_id_var, trace_id_var

logger = logging.getLogger(__name__)


class Finalizer(Protocol):
    """The runtime's endings of an occurrence: `CLOSE` one that got no (complete) run (pages
    when escalated, always reports); `STILL_FIRING`, `AUTO_RESOLVE` and `RESOLVED_UPSTREAM`
    after its run (a page or a PagerDuty resolve, and an addition to its report)."""

    def __call__(self, record: AlertRecord, ending: Ending) -> Awaitable[None]: ...


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
    resolve_grace_seconds: float = 300
    auto_resolve: bool = True  # PAGERDUTY_AUTO_RESOLVE
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
        self._finalize = finalize
        self._limits = limits or Limits()
        self._budget_exhausted = budget_exhausted
        self._metrics = metrics or _NoMetrics()
        self._clock = clock or asyncio.get_running_loop().time
        self._records: dict[str, AlertRecord] = {}  # queued and running, by incident id
        limits = self._limits
        self._runs = Workers(
            runner=runner,
            concurrency=limits.concurrency,
            clock=self._clock,
            spawn=self._spawn_worker,
            ended=self._ran,
            released=self._check_idle,
        )
        self._windows = Windows(
            dedup=limits.dedup_window_seconds, grace=limits.resolve_grace_seconds
        )
        self._history = History(window_seconds=limits.dedup_window_seconds)
        self._counters = _Counters()
        self._seq = 0
        self._accepting = True
        self._stopped = False
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

    async def stop(self, *, grace_seconds: float, cleanup_seconds: float = 15.0) -> None:
        """Refuse new alerts, escalate what is queued at once, give runs `grace_seconds`,
        then cancel them and escalate each one cut off. Pages and reports are under way
        (side tasks) when this returns; `close` waits for them. Idempotent."""
        if self._group is None or self._stopped:
            return
        self._accepting, self._stopped = False, True
        for record in self._queued_records():
            self._close_queued(record, AlertStatus.ESCALATED, "shutdown")
        await self._runs.wait_runs(grace_seconds)
        cut_off = [self._records[i] for i in self._runs.running]
        await self._runs.stop(cleanup_seconds)
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
        latest = self._history.latest(alert.incident_id)
        if latest is None and alert.state is AlertState.FIRING:
            return self._open(alert, trace_id, now, None)  # a new incident (`on_firing`)
        outcome = self._decide(alert, trace_id, now, latest)
        if latest is not None and latest.retired and latest.closing is None:
            self._history.retire(latest)  # revived to decide, and nothing is under way
        return outcome

    def _decide(
        self, alert: Alert, trace_id: str, now: float, latest: AlertRecord | None
    ) -> SubmitOutcome:
        """What an alert is, given its incident's latest occurrence (`intake.lifecycle`)."""
        if alert.state is AlertState.RESOLVED:
            return self._resolve(alert, latest)
        verdict = on_firing(latest, alert.started_at, now, self._windows)
        if latest is None or verdict is Firing.OPEN:
            return self._open(alert, trace_id, now, latest)
        latest.repeats += 1
        if verdict is Firing.RUNNING:
            latest.notify(repeat_notice(latest.repeats, alert.summary))
        elif verdict is Firing.STILL_FIRING:
            return self._still_firing(latest, now)
        return self._deduplicated(verdict.value, latest)

    def _open(
        self, alert: Alert, trace_id: str, now: float, previous: AlertRecord | None
    ) -> SubmitOutcome:
        """A new occurrence: queued (it may be running when this returns), or escalated at
        once when intake cannot take it."""
        record = self._new_record(alert, trace_id, now, previous)
        self._history.opened(record)
        refusal = self._refusal(record)
        if refusal is not None:
            self._finish(record, AlertStatus.ESCALATED, refusal, finalize=True)
            return SubmitOutcome(AlertStatus.ESCALATED, refusal, record.occurrence)
        self._enqueue(record)
        self._runs.dispatch()
        return SubmitOutcome(AlertStatus.QUEUED, None, record.occurrence)

    def _still_firing(self, record: AlertRecord, now: float) -> SubmitOutcome:
        """The agent's fix did not hold: escalate the occurrence, once."""
        resolved_for = record.escalate_still_firing(now)
        logger.warning(
            "still firing %.0fs after the agent resolved it; escalating",
            resolved_for,
            extra={"incident_id": record.incident_id, "occurrence": record.occurrence},
        )
        self._counters.escalated += 1
        self._end(record, Ending.STILL_FIRING)
        return SubmitOutcome(AlertStatus.ESCALATED, "still_firing", record.occurrence)

    def _resolve(self, alert: Alert, latest: AlertRecord | None) -> SubmitOutcome:
        """A resolve closes the latest occurrence on the platform's side."""
        verdict = on_resolved(latest, alert.started_at, auto_resolve=self._limits.auto_resolve)
        if latest is None or verdict in (Resolution.STALE, Resolution.REPEATED):
            return self._ignore(verdict.value, latest)
        latest.resolved_upstream = True
        if verdict is Resolution.QUEUED:
            self._close_queued(latest, AlertStatus.RESOLVED, verdict.value)
            return SubmitOutcome(AlertStatus.RESOLVED, verdict.value, latest.occurrence)
        if verdict is Resolution.RUNNING:
            latest.notify(resolved_notice(alert.summary))
            latest.mark(TimelineStatus.RESOLVED_UPSTREAM, "during the run")
            return self._ignore(verdict.value, latest)
        latest.mark(TimelineStatus.RESOLVED_UPSTREAM)
        if verdict is Resolution.AUTO_RESOLVE:
            self._end(latest, Ending.AUTO_RESOLVE)
            return SubmitOutcome(AlertStatus.RESOLVED, verdict.value, latest.occurrence)
        self._end(latest, Ending.RESOLVED_UPSTREAM)
        return self._ignore(verdict.value, latest)

    def _refusal(self, record: AlertRecord) -> str | None:
        if record.service is None:
            return "unknown_service"
        if self._budget_exhausted():
            return "hourly_token_budget"
        if self._runs.queue.size >= self._limits.queue_size:
            return "queue_full"
        return None

    def _deduplicated(self, reason: str, latest: AlertRecord) -> SubmitOutcome:
        self._counters.deduplicated += 1
        self._metrics.record_intake("deduplicated")
        return SubmitOutcome(AlertStatus.DEDUPLICATED, reason, latest.occurrence)

    def _ignore(self, reason: str, latest: AlertRecord | None) -> SubmitOutcome:
        self._counters.ignored += 1
        return SubmitOutcome(
            AlertStatus.IGNORED, reason, None if latest is None else latest.occurrence
        )

    def _new_record(
        self, alert: Alert, trace_id: str, now: float, previous: AlertRecord | None
    ) -> AlertRecord:
        self._seq += 1
        record = AlertRecord(
            alert, trace_id=trace_id, enqueued_at=now, seq=self._seq, previous=previous
        )
        context = otel_context.get_current()  # empty unless some span is current
        if context and trace.get_current_span(context).is_recording():
            record.carrier = {}
            propagate.inject(record.carrier, context)
        return record

    # -- queue and runs ------------------------------------------------------------------------

    def _enqueue(self, record: AlertRecord) -> None:
        if not self._records:
            self._idle.clear()  # the first active record
        self._records[record.incident_id] = record
        self._counters.queued += 1
        self._metrics.record_intake("queued")
        record.move(AlertStatus.QUEUED)
        self._runs.enqueue(record)

    def _spawn_worker(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        return self._spawn(work, context=contextvars.Context())

    def _ran(self, record: AlertRecord, status: AlertStatus | None) -> None:
        """A run returned (`status` None: it raised, and the runtime escalates)."""
        if status is None:
            self._counters.failed += 1
            self._finish(record, AlertStatus.ESCALATED, "agent_failed", finalize=True)
            return
        self._finish(record, status, record.reason, finalize=record.handoff)
        if status is AlertStatus.ESCALATED and record.resolved_upstream:
            self._after_resolved_run(record)

    # -- terminal statuses ---------------------------------------------------------------------

    def _close_queued(self, record: AlertRecord, status: AlertStatus, reason: str) -> None:
        self._runs.queue.left()
        self._finish(record, status, reason, finalize=True)
        self._check_idle()

    def _finish(
        self, record: AlertRecord, status: AlertStatus, reason: str | None, *, finalize: bool
    ) -> None:
        """Move a record to its terminal status, into history and the dedup window."""
        if record.status.terminal:
            return
        record.move(status, reason)
        record.finished_at = self._clock()
        self._records.pop(record.incident_id, None)
        self._history.finished(record)
        self._count_terminal(status)
        if finalize:
            self._end(record, Ending.CLOSE)

    def _count_terminal(self, status: AlertStatus) -> None:
        if status is AlertStatus.RESOLVED:
            self._counters.resolved += 1
        elif status is AlertStatus.ESCALATED:
            self._counters.escalated += 1
        elif status is AlertStatus.EXPIRED:
            self._counters.expired += 1
            self._metrics.record_intake("expired")

    def _after_resolved_run(self, record: AlertRecord) -> None:
        """The platform resolved the incident during a run that ended escalated: its page
        is resolved too, as if the resolve had come after the run."""
        if self._limits.auto_resolve:
            self._end(record, Ending.AUTO_RESOLVE)

    def _end(self, record: AlertRecord, ending: Ending) -> None:
        """Start an ending of the occurrence (a side task named by its incident id), after
        the one under way: the page and report first, then each addition in turn."""
        record.closing = self._spawn(
            self._ending(record, ending, record.closing), side=True, name=record.incident_id
        )

    async def _ending(
        self, record: AlertRecord, ending: Ending, after: asyncio.Task[None] | None
    ) -> None:
        """Page and report (or add to the report); a failure is logged, the pipeline goes
        on (a cancellation, at shutdown, propagates)."""
        if after is not None and not after.done():
            await asyncio.wait([after])
        trace_id_var.set(record.trace_id)
        incident_id_var.set(record.incident_id)
        try:
            await self._finalize(record, ending)
        except Exception:
            logger.exception("%s of %s failed", ending.value, record.incident_id)
        finally:
            if record.closing is asyncio.current_task():  # the last ending asked for
                record.closing = None
                if record.retired:  # it left the recent ones meanwhile
                    self._history.retire(record)

    # -- time ----------------------------------------------------------------------------------

    def tick(self) -> None:
        """Expire queued alerts past their TTL, forget old dedup entries, drop dead entries."""
        now = self._clock()
        self._expire_queued(now)
        self._history.prune(now)
        self._runs.queue.compact()
        self._runs.dispatch()

    def _expire_queued(self, now: float) -> None:
        for record in self._runs.queue.take_expired(now, self._limits.ttl_seconds):
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
        if not self._records:
            self._idle.set()

    # -- views ---------------------------------------------------------------------------------

    def _queued_records(self) -> list[AlertRecord]:
        return [r for r in self._records.values() if r.status is AlertStatus.QUEUED]

    def get(self, incident_id: str, occurrence: int | None = None) -> AlertRecord | None:
        """The incident's latest occurrence, or occurrence `occurrence`, while remembered."""
        return self._history.shown(incident_id, occurrence)

    def running_records(self) -> list[AlertRecord]:
        """The records running now (at most `concurrency`), in the order they started."""
        records = self._records
        return [r for i in self._runs.running if (r := records.get(i)) is not None]

    def recent(self, limit: int = RECENT_SIZE) -> list[AlertRecord]:
        """The last `limit` finished occurrences (at most `RECENT_SIZE`), newest first."""
        return self._history.recent(limit)

    def queued_page(
        self, *, limit: int, after: int | None = None
    ) -> tuple[list[AlertRecord], int | None]:
        """One page of the queue, and the `order` to ask for the next with (`Queue.page`)."""
        return self._runs.queue.page(limit=limit, after=after)

    def listing(self) -> dict[str, list[AlertRecord]]:
        """Everything at once: running, every queued record in queue order, the recent.
        O(queue), for tests and tools; `GET /alerts` pages with `queued_page`."""
        return {
            "running": self.running_records(),
            "queued": self._runs.queue.in_order(),
            "recent": self.recent(),
        }

    def counts(self) -> tuple[int, int]:
        """(running, queued) right now."""
        return len(self._runs.running), self._runs.queue.size

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
