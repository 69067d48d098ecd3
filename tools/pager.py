"""The one bounded sender of PagerDuty events (CONTRACT §6).

Every event the runtime sends goes through `Pager`: the model's escalate/acknowledge tools
and the runtime's own escalations (limits, unknown service, queue full, shutdown).
- Submitting never blocks: an event is queued for a few sender workers and its result
  arrives on a future. Callers that wait for it (a tool call, a report that must say
  whether the page went out) wait on that future, shielded: a caller's cancellation never
  cancels a page.
- It sends with its own `PagerDutyClient` on its own HTTP client, so `/ops/*` traffic can
  neither starve nor break paging, and after a 429 every worker waits out `Retry-After`.
- **Storms.** At most `PAGERDUTY_MAX_EVENTS_PER_MINUTE` escalations a minute are paged one
  by one; the next ones are coalesced into one storm incident (`dedup_key`
  `storm:<first incident id>`, summary `Alert storm: ...`) whose `custom_details` list every
  incident id in it, re-sent (the same dedup key, so PagerDuty updates one incident) as
  more arrive, at most every `storm_update_seconds`. A storm whose id list reaches
  `STORM_MAX_ID_CHARS` is closed and the next escalation opens a new one, so every list
  fits in one event. Once the minute has room again, escalations are paged singly again.
- Nothing is lost silently: every future resolves with what happened (delivered,
  coalesced into a delivered storm, or failed, with the reason), and `close` delivers what
  it can before its deadline, then resolves the rest as failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from tools.pagerduty import (
    CLIENT_NAME,
    MAX_SUMMARY_CHARS,
    SEVERITIES,
    Escalation,
    EscalationResult,
    PagerDutyClient,
)

logger = logging.getLogger(__name__)

WORKERS = 4
DELIVERY_SECONDS = 60.0  # an event not delivered this long after submission has failed
STORM_UPDATE_SECONDS = 2.0  # with 60 single pages a minute, well under the Events API limit
STORM_MAX_ID_CHARS = 200_000  # well inside PagerDuty's 512 KB event limit
WINDOW_SECONDS = 60.0
NOT_RUNNING = "the pager is not running"

Send = Callable[[float], Awaitable[EscalationResult]]


@dataclass(slots=True)
class _Job:
    """One event to deliver: `send(deadline)`, and the futures waiting for its result."""

    send: Send
    waiting: list[asyncio.Future[EscalationResult]]
    deadline: float


@dataclass(slots=True)
class _Storm:
    """Escalations coalesced into one PagerDuty incident."""

    key: str
    first_summary: str
    incidents: list[str] = field(default_factory=list)
    services: set[str] = field(default_factory=set)
    severity: int = len(SEVERITIES) - 1  # index into SEVERITIES: the worst seen
    id_chars: int = 0
    waiting: list[asyncio.Future[EscalationResult]] = field(default_factory=list)
    flushing: bool = False  # a flush job is queued or in flight
    sent_at: float | None = None


class Pager:
    """Queues PagerDuty events for a few workers; coalesces escalation storms."""

    def __init__(
        self,
        *,
        client: PagerDutyClient,
        max_per_minute: int,
        clock: Callable[[], float] = time.monotonic,
        workers: int = WORKERS,
        storm_update_seconds: float = STORM_UPDATE_SECONDS,
    ) -> None:
        self._client = client
        self._max_per_minute = max_per_minute
        self._clock = clock
        self._workers = workers
        self._storm_update_seconds = storm_update_seconds
        self._jobs: asyncio.Queue[_Job] = asyncio.Queue()
        self._window: deque[float] = deque()  # when each single escalation was submitted
        self._storm: _Storm | None = None
        # every unresolved future, with the (action, dedup key) it is for
        self._pending: dict[asyncio.Future[EscalationResult], tuple[str, str]] = {}
        self._hurry = asyncio.Event()  # set at shutdown: storm updates stop waiting
        self._group: asyncio.TaskGroup | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Pager:
        self._group = asyncio.TaskGroup()
        await self._group.__aenter__()
        self._tasks = [self._group.create_task(self._work()) for _ in range(self._workers)]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close(seconds=0)

    async def close(self, *, seconds: float) -> None:
        """Deliver what is queued for at most `seconds`, then stop; what was not delivered
        is resolved as failed (its report says so). Idempotent."""
        if self._group is None:
            return
        self.hurry()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._jobs.join()
        for task in self._tasks:
            task.cancel()
        group, self._group = self._group, None
        await group.__aexit__(None, None, None)
        for future, (action, key) in list(self._pending.items()):
            why = "the runtime stopped before it was delivered"
            self._settle(future, _undelivered(action, key, why))

    def hurry(self) -> None:
        """Shutting down: storm updates go out at once instead of waiting for their spacing."""
        self._hurry.set()

    # -- the interface the agent, tools and finalizer use ---------------------------------

    async def trigger(
        self, escalation: Escalation, *, deadline: float | None = None
    ) -> EscalationResult:
        """Escalate this alert's incident (or add it to the storm) and wait for the result
        until `deadline` (a `clock()` time); past it, the page is still delivered."""
        return await self._wait(self.submit_trigger(escalation), deadline)

    async def acknowledge(
        self, *, dedup_key: str, trace_id: str, deadline: float | None = None
    ) -> EscalationResult:
        send = self._bound(self._client.acknowledge, dedup_key=dedup_key, trace_id=trace_id)
        return await self._wait(self._enqueue(send, "acknowledge", dedup_key), deadline)

    async def resolve(
        self, *, dedup_key: str, trace_id: str, deadline: float | None = None
    ) -> EscalationResult:
        send = self._bound(self._client.resolve, dedup_key=dedup_key, trace_id=trace_id)
        return await self._wait(self._enqueue(send, "resolve", dedup_key), deadline)

    async def probe(self) -> tuple[bool, str]:
        return await self._client.probe()

    def submit_trigger(self, escalation: Escalation) -> asyncio.Future[EscalationResult]:
        """Queue an escalation; never blocks. Above the rate it joins the current storm."""
        alert = escalation.alert
        if self._group is None:  # closed: not even a storm will be sent again
            return self._refused("trigger", alert.incident_id)
        if self._rate_exceeded():  # its own event is built only if it opens a storm
            return self._join_storm(escalation)
        event = self._client.trigger_event(escalation)
        self._window.append(self._clock())
        self._storm = None  # the rate has room again: a later flood opens a new storm
        send = self._bound(self._client.send_trigger, event=event, trace_id=escalation.trace_id)
        return self._enqueue(send, "trigger", event["dedup_key"])

    # -- rate and storms ---------------------------------------------------------------------

    def _rate_exceeded(self) -> bool:
        window, now = self._window, self._clock()
        while window and now - window[0] >= WINDOW_SECONDS:
            window.popleft()
        return len(window) >= self._max_per_minute

    def _join_storm(self, escalation: Escalation) -> asyncio.Future[EscalationResult]:
        alert = escalation.alert
        incident_id = alert.incident_id
        storm = self._storm
        if storm is None or storm.id_chars + len(incident_id) > STORM_MAX_ID_CHARS:
            first = self._client.trigger_event(escalation)  # built (and redacted) as for a page
            first_summary = first["payload"]["summary"]
            storm = self._storm = _Storm(key=f"storm:{incident_id}", first_summary=first_summary)
            logger.warning(
                "PagerDuty rate above %d/min: coalescing escalations into %s",
                self._max_per_minute,
                storm.key,
            )
        storm.incidents.append(incident_id)
        storm.id_chars += len(incident_id)
        storm.services.add(alert.service or "unknown")
        severity = self._client.severity(alert, escalation.severity)
        storm.severity = min(storm.severity, SEVERITIES.index(severity))
        future = self._future("trigger", storm.key)
        storm.waiting.append(future)
        if not storm.flushing:
            self._flush(storm)
        return future

    def _flush(self, storm: _Storm) -> None:
        """Queue the sending of the storm's trigger (its waiting escalations with it)."""
        storm.flushing = True
        self._put(_Job(self._storm_sender(storm), [], self._clock() + DELIVERY_SECONDS))

    def _storm_sender(self, storm: _Storm) -> Send:
        async def send(deadline: float) -> EscalationResult:
            await self._space(storm)
            waiting, storm.waiting = storm.waiting, []
            event = self._storm_event(storm)
            trace_id = f"storm-{len(storm.incidents)}"
            try:
                result = await self._client.send_trigger(
                    event, trace_id=trace_id, deadline=deadline
                )
            except Exception as exc:  # the client returns failures; this is a bug
                # Its futures are this sender's, not the job's: settle them here, and keep
                # the storm flushing, or every later escalation would join a storm never sent.
                logger.exception("PagerDuty storm sender failed")
                result = _undelivered("trigger", storm.key, f"sender error: {type(exc).__name__}")
            storm.sent_at = self._clock()
            for future in waiting:
                self._settle(future, result)
            storm.flushing = False
            if storm.waiting:  # more arrived while this one was being sent
                self._flush(storm)
            return result

        return send

    async def _space(self, storm: _Storm) -> None:
        """Updates of one storm go out at most every `storm_update_seconds` (not when closing)."""
        if storm.sent_at is None:
            return
        wait = storm.sent_at + self._storm_update_seconds - self._clock()
        if wait > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._hurry.wait()

    def _storm_event(self, storm: _Storm) -> dict[str, Any]:
        count = len(storm.incidents)
        summary = (
            f"Alert storm: {count} incident(s) escalated above "
            f"{self._max_per_minute} pages/min; first: {storm.first_summary}"
        )
        return {
            "event_action": "trigger",
            "dedup_key": storm.key,
            "client": CLIENT_NAME,
            "payload": {
                "summary": summary[:MAX_SUMMARY_CHARS],
                "source": "sre-agent-runtime",
                "severity": SEVERITIES[storm.severity],
                "custom_details": {
                    "incident_count": count,
                    "incident_ids": list(storm.incidents),
                    "services": sorted(storm.services),
                    "note": "Each incident has its own report and its own /alerts entry.",
                },
            },
        }

    # -- queue and workers -------------------------------------------------------------------

    def _bound(self, method: Callable[..., Awaitable[EscalationResult]], **kwargs: Any) -> Send:
        async def send(deadline: float) -> EscalationResult:
            return await method(**kwargs, deadline=deadline)

        return send

    def _enqueue(self, send: Send, action: str, key: str) -> asyncio.Future[EscalationResult]:
        future = self._future(action, key)
        self._put(_Job(send, [future], self._clock() + DELIVERY_SECONDS))
        return future

    def _put(self, job: _Job) -> None:
        if self._group is None:  # closed: nothing will send it
            for future in job.waiting:
                action, key = self._pending.get(future, ("trigger", ""))
                self._settle(future, _undelivered(action, key, NOT_RUNNING))
            return
        self._jobs.put_nowait(job)

    def _refused(self, action: str, key: str) -> asyncio.Future[EscalationResult]:
        future: asyncio.Future[EscalationResult] = asyncio.get_running_loop().create_future()
        future.set_result(_undelivered(action, key, NOT_RUNNING))
        return future

    def _future(self, action: str, key: str) -> asyncio.Future[EscalationResult]:
        future: asyncio.Future[EscalationResult] = asyncio.get_running_loop().create_future()
        self._pending[future] = (action, key)
        future.add_done_callback(self._forget)
        return future

    def _forget(self, future: asyncio.Future[EscalationResult]) -> None:
        self._pending.pop(future, None)

    async def _work(self) -> None:
        while True:
            job = await self._jobs.get()
            try:
                result = await job.send(job.deadline)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the client returns failures; this is a bug
                logger.exception("PagerDuty sender failed")
                why = f"sender error: {type(exc).__name__}"
                for future in job.waiting:
                    action, key = self._pending.get(future, ("trigger", ""))
                    self._settle(future, _undelivered(action, key, why))
                continue
            finally:
                self._jobs.task_done()
            for future in job.waiting:
                self._settle(future, result)

    async def _wait(
        self, future: asyncio.Future[EscalationResult], deadline: float | None
    ) -> EscalationResult:
        """The result, or (past `deadline`) a failure saying the page is still under way."""
        action, key = self._pending.get(future, ("trigger", ""))
        if deadline is None:
            return await asyncio.shield(future)
        try:
            async with asyncio.timeout(max(deadline - self._clock(), 0.0)):
                return await asyncio.shield(future)
        except TimeoutError:
            return _undelivered(action, key, "still being delivered when the caller's time ran out")

    @staticmethod
    def _settle(future: asyncio.Future[EscalationResult], result: EscalationResult) -> None:
        if not future.done():
            future.set_result(result)


def _undelivered(action: str, key: str, why: str) -> EscalationResult:
    return EscalationResult(
        ok=False, action=action, dedup_key=key, status_code=None, attempts=0, error=why
    )
