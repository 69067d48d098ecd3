"""Agent runs: queued records dispatched onto at most `concurrency` long-lived workers.

One run per service at a time, at most `concurrency` in all; the next run is the queue's
(`intake.queue.Queue`: best priority, then oldest, among free services). Runs are executed
by workers, not a task each: each worker is either running one record or parked on a
future. Dispatch decides which record runs next synchronously (the record is RUNNING when
`dispatch` returns) and hands it to a parked worker, or starts a worker while there are
fewer than `concurrency`. A worker that finishes a run takes the next record itself, so
with a backlog no run costs a trip through the event loop or a future; once the workers
have held the loop for `HOLD_SECONDS` without suspending, the next run yields first, so
runs that never suspend cannot starve the webhooks. Workers start in an empty context: a
run never inherits the request that happened to start its worker.

What a run's end means is the caller's (`ended`); `Workers` only keeps the slots.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

from intake.queue import Queue
from intake.records import AlertRecord
from models import AlertStatus
from telemetry import SPAN_PROCESS_ALERT, incident_id_var, trace_id_var

logger = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

HOLD_SECONDS = 0.005


class Runner(Protocol):
    """Runs the agent for one record and returns the terminal status (resolved/escalated)."""

    def __call__(self, record: AlertRecord) -> Awaitable[AlertStatus]: ...


class Workers:
    """The queue, the services busy running, the runs and the workers that run them."""

    def __init__(
        self,
        *,
        runner: Runner,
        concurrency: int,
        clock: Callable[[], float],
        spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]],
        ended: Callable[[AlertRecord, AlertStatus | None], None],
        released: Callable[[], None],
    ) -> None:
        """`spawn` starts a worker (in an empty context) in the owner's task group;
        `ended(record, status)` is called when a run returns (status None: it raised);
        `released()` once its service is free again."""
        self.queue = Queue()
        self.running: dict[str, asyncio.Task[None]] = {}  # incident id -> its worker
        self.workers: set[asyncio.Task[None]] = set()
        self._runner = runner
        self._concurrency = concurrency
        self._clock = clock
        self._spawn = spawn
        self._ended = ended
        self._released = released
        self._busy: set[str] = set()
        self._parked: list[tuple[asyncio.Future[AlertRecord], asyncio.Task[None]]] = []
        self._resumed_at = 0.0  # when a worker last came back from the event loop
        self._no_runs = asyncio.Event()
        self._no_runs.set()

    def enqueue(self, record: AlertRecord) -> None:
        """Queue a record (QUEUED, with a service); `dispatch` starts what can start."""
        if self.queue.push(record):  # a new head supersedes its service's last offer
            self._offer(record.service or "")

    def dispatch(self) -> None:
        """Start runs while there is room, each on a parked worker or a new one."""
        while (record := self._pick()) is not None:
            self._start(record, self._free_worker(record))

    async def wait_runs(self, seconds: float) -> None:
        """Return when no run is going, or after `seconds`."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._no_runs.wait()

    async def stop(self, seconds: float) -> None:
        """Cancel every worker (cutting off the runs still going) and wait for them."""
        workers = list(self.workers)
        for worker in workers:
            worker.cancel()
        if workers:
            await asyncio.wait(workers, timeout=seconds)

    # -- dispatch ------------------------------------------------------------------------------

    def _offer(self, service: str) -> None:
        """Make a free service's best queued record its dispatch candidate."""
        if service not in self._busy:
            self.queue.offer(service)

    def _pick(self) -> AlertRecord | None:
        """If there is room, take the next record to run: best priority, then oldest,
        among free services. The caller starts it."""
        if len(self.running) >= self._concurrency:
            return None
        return self.queue.pop_next()

    def _free_worker(self, record: AlertRecord) -> asyncio.Task[None]:
        """Hand `record` to a parked worker, or start a worker for it (fewer than the limit
        are alive, since each is running or parked)."""
        while self._parked:
            slot, worker = self._parked.pop()
            if not slot.done():  # a parked worker cancelled by shutdown has a cancelled slot
                slot.set_result(record)
                return worker
        worker = self._spawn(self._work(record))
        self.workers.add(worker)
        worker.add_done_callback(self.workers.discard)
        return worker

    def _start(self, record: AlertRecord, worker: asyncio.Task[None]) -> None:
        service = record.service
        assert service is not None
        self._busy.add(service)
        if not self.running:
            self._no_runs.clear()  # the first run
        self.running[record.incident_id] = worker
        record.move(AlertStatus.RUNNING)

    # -- runs ----------------------------------------------------------------------------------

    async def _work(self, record: AlertRecord) -> None:
        """A worker: run a record, then take the next one itself while there is a backlog
        (no trip through the event loop), else park until dispatch hands it one."""
        worker = asyncio.current_task()
        assert worker is not None
        loop = asyncio.get_running_loop()
        self._resumed_at = self._clock()
        while True:
            await self._run(record)
            following = self._pick()
            if following is None:
                slot: asyncio.Future[AlertRecord] = loop.create_future()
                self._parked.append((slot, worker))
                following = await slot
                self._resumed_at = self._clock()
            else:
                self._start(following, worker)
            record = following

    async def _run(self, record: AlertRecord) -> None:
        """Run the agent for one record: its end goes to `ended` (None when it raised), a
        cancellation (shutdown) propagates, and the service is released whatever happens."""
        try:
            if self._clock() - self._resumed_at >= HOLD_SECONDS:
                await asyncio.sleep(0)  # let the loop serve webhooks between instant runs
                self._resumed_at = self._clock()
            trace_id_var.set(record.trace_id)
            incident_id_var.set(record.incident_id)
            status: AlertStatus | None
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
                status = None
            self._ended(record, status)
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
        self.running.pop(record.incident_id, None)
        if not self.running:
            self._no_runs.set()
        self._busy.discard(service)
        if self.queue.holds(service):
            self._offer(service)
        self._released()
