"""Intake on PostgreSQL (STATE_BACKEND=postgres, CONTRACT §8): the same §3 rules
(`intake.lifecycle`), the state in the database, shared by every replica.

- `submit_all`: a webhook's alerts are decided and committed in one transaction before its
  202, with those of the webhooks that arrived meanwhile (`intake.pg.group`); the database
  unreachable is `DatabaseUnavailable` (the webhook answers 503).
- The dispatcher: woken by `LISTEN` (something queued, a run ended) and at least every
  `POLL_SECONDS` (a lost notification, a lapsed lease), it claims runs (`store.claim`) and
  runs each in a task this intake owns.
- A run holds a lease, renewed every third of RUN_LEASE_SECONDS; its progress (transcript,
  tool calls, tokens, timeline, what the tools found) is stored at every step, and the
  notices of late repeats and resolves are taken from the database there. A run whose lease
  lapsed is taken over by any replica and resumed from its transcript; taken over twice, it
  is escalated instead.
- SIGTERM (`stop`): no more claims; runs get the grace, then are handed back (transcript
  stored, lease released) and queued alerts stay queued for the other replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from intake.lifecycle import Ending, Windows
from intake.pg import schema, store
from intake.pg.batch import transaction
from intake.pg.group import GroupCommit
from intake.pg.submit import Rules, Submission, Traced
from intake.pipeline import Draining, Limits
from intake.records import AlertRecord, SubmitOutcome
from intake.service import DatabaseUnavailable
from intake.workers import Runner
from models import Alert, AlertStatus, TimelineStatus
from telemetry import incident_id_var, trace_id_var

if TYPE_CHECKING:  # the run's own type; intake only carries it
    from agent.transcript import Transcript

logger = logging.getLogger(__name__)

POLL_SECONDS = 1.0
PRUNE_EVERY_SECONDS = 300.0
RETENTION_SECONDS = 30 * 24 * 3600.0  # finished occurrences are kept 30 days
CONNECT_SECONDS = 60.0  # at startup, how long to wait for the database
ACQUIRE_SECONDS = 3.0  # a request waits this long for a connection, then answers 503
RECANCEL_SECONDS = 0.5  # `_cancelled`: how often a task that did not end is cancelled again
TAKEOVERS_ESCALATED = 2  # a run taken over this many times is escalated instead
GROUP_COMMITTERS = 2  # webhook transactions at a time; others wait and go together
GROUP_MAX_ALERTS = 256  # alerts (and incident locks) per group transaction

Finalize = Callable[[AlertRecord, Ending], Awaitable[None]]
Resume = Callable[[AlertRecord, dict[str, Any]], None]


class PgIntake:
    """Intake whose state is PostgreSQL's; one per replica."""

    def __init__(
        self,
        *,
        conninfo: str,
        runner: Runner,
        finalize: Finalize,
        limits: Limits,
        lease_seconds: float,
        restore: Resume,
        saved: Callable[[AlertRecord], tuple[dict[str, Any] | None, dict[str, Any] | None]],
        load_transcript: Callable[[dict[str, Any]], Transcript],
        max_tokens_per_hour: int = 0,
        pool_size: int = 10,
    ) -> None:
        """`restore`: gives a claimed record its run state back (transcript, what the tools
        found); `saved`: a record's (transcript, run state) to store."""
        self.owner = f"{socket.gethostname()}:{uuid.uuid4().hex[:8]}"
        self._pool = AsyncConnectionPool(
            conninfo,
            min_size=2,
            max_size=pool_size,
            open=False,
            timeout=ACQUIRE_SECONDS,
            kwargs={"autocommit": True},
        )
        self._conninfo = conninfo
        self._runner = runner
        self._finalize = finalize
        self._limits = limits
        self._lease = lease_seconds
        self._restore = restore
        self._saved = saved
        self._load_transcript = load_transcript
        self._counts = (0, 0)  # (running, queued) over all replicas, as of the last tick
        windows = Windows(dedup=limits.dedup_window_seconds, grace=limits.resolve_grace_seconds)
        self._rules = Rules(limits, windows, max_tokens_per_hour)
        self._accepting = True
        self._stopped = False
        self._wake = asyncio.Event()
        self._at_limit = False  # the last claim found MAX_CONCURRENT_ALERTS running
        self._runs: dict[tuple[str, int], asyncio.Task[None]] = {}
        self._records: dict[tuple[str, int], AlertRecord] = {}
        self._spent: dict[tuple[str, int], int] = {}  # tokens stored so far, per run
        self._side: set[asyncio.Task[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._listeners: dict[str, Callable[[], None]] = {}
        self._group = GroupCommit(
            self._transact,
            committers=GROUP_COMMITTERS,
            max_items=GROUP_MAX_ALERTS,
            shared=(DatabaseUnavailable,),
        )
        self.received = 0

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> PgIntake:
        await self._pool.open(wait=True, timeout=CONNECT_SECONDS)
        async with self._pool.connection() as conn:
            await schema.migrate(conn)
        self._tasks = [
            asyncio.create_task(self._dispatch_forever(), name="pg-dispatch"),
            asyncio.create_task(self._listen_forever(), name="pg-listen"),
            asyncio.create_task(self._renew_forever(), name="pg-leases"),
            asyncio.create_task(self._tick_forever(), name="pg-tick"),
        ]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close(grace_seconds=0)

    async def stop(self, *, grace_seconds: float, cleanup_seconds: float = 15.0) -> None:
        """SIGTERM: claim nothing more; give runs `grace_seconds`, then hand them back."""
        if self._stopped:
            return
        self._accepting, self._stopped = False, True
        # No new runs and no expiries from here; the leases are still renewed (and
        # decisions still heard) while the runs finish, or another replica would take over a
        # run that is still going.
        claiming = [t for t in self._tasks if t.get_name() in ("pg-dispatch", "pg-tick")]
        await _cancelled(claiming)
        runs = list(self._runs.values())
        if runs:
            await asyncio.wait(runs, timeout=grace_seconds)
        late = [task for task in self._runs.values() if not task.done()]
        await _cancelled(late)
        await _cancelled(self._tasks)
        if late:
            with contextlib.suppress(psycopg.Error):
                async with self._pool.connection() as conn:
                    count = await store.hand_back(conn, self.owner)
                logger.warning("handed %d unfinished run(s) back at shutdown", count)

    async def settle(self, *, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while self._side:
                    await asyncio.wait(list(self._side))

    async def close(self, *, grace_seconds: float, cleanup_seconds: float = 15.0) -> None:
        await self.stop(grace_seconds=grace_seconds, cleanup_seconds=cleanup_seconds)
        if self._group.tasks:  # webhooks in flight get their answers
            await asyncio.wait(self._group.tasks, timeout=cleanup_seconds)
        await _cancelled(self._group.tasks)
        await self.settle(seconds=cleanup_seconds)
        for task in list(self._side):
            task.cancel()
        await asyncio.gather(*self._side, return_exceptions=True)
        await self._pool.close()

    async def drain(self) -> None:
        self._accepting = False

    async def resume(self) -> None:
        self._accepting = not self._stopped

    @property
    def accepting(self) -> bool:
        return self._accepting

    async def wait_idle(self) -> None:
        """Until nothing is queued or running anywhere and this replica's endings are done."""
        while True:
            running, queued = await self.counts_now()
            if not running and not queued and not self._side and not self._runs:
                return
            self._wake.set()
            await asyncio.sleep(0.02)

    # -- submit ------------------------------------------------------------------------------

    async def submit_all(self, alerts: Sequence[Alert], *, trace_id: str) -> list[SubmitOutcome]:
        """Decide and store every alert of one webhook before its 202, in a transaction
        shared with the webhooks that arrived meanwhile.

        A webhook of more than GROUP_MAX_ALERTS goes in parts of that many, one after
        another: a transaction holds one advisory lock per incident, and PostgreSQL's lock
        table is shared and bounded (`max_locks_per_transaction`). Should a later part fail,
        the earlier ones stay stored (the webhook gets a 503, nothing is acknowledged), and
        the platform's retry finds them deduplicated."""
        if not self._accepting:
            raise Draining
        self.received += len(alerts)
        outcomes: list[SubmitOutcome] = []
        for start in range(0, len(alerts), GROUP_MAX_ALERTS):
            part = alerts[start : start + GROUP_MAX_ALERTS]
            outcomes += await self._group.submit([(alert, trace_id) for alert in part])
        return outcomes

    async def _transact(self, alerts: list[Traced]) -> list[SubmitOutcome]:
        """One group's transaction; its endings (pages, reports) once it committed."""
        for attempt in (1, 2):  # a connection the database dropped fails once, then a new one
            try:
                async with self._pool.connection() as conn, transaction(conn) as batch:
                    submission = Submission(batch, self._rules)
                    outcomes = await submission.decide_all(alerts)
                break
            except psycopg.OperationalError as exc:
                if attempt == 2:
                    raise DatabaseUnavailable(str(exc).split("\n", 1)[0]) from exc
        for record, ending in submission.endings:
            self._end(record, ending)
        return outcomes

    # -- dispatch and runs -------------------------------------------------------------------

    def on_notify(self, channel: str, callback: Callable[[], None]) -> None:
        """Call `callback` on every NOTIFY on `channel` (set before the intake starts)."""
        self._listeners[channel] = callback

    def connection(self) -> AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]:
        """A connection of the intake's pool (autocommit), for the approvals desk."""
        return self._pool.connection()

    async def _listen_forever(self) -> None:
        """Wake the dispatcher (and the other listeners) on every NOTIFY; reconnect after a
        database outage."""
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True
                ) as conn:
                    for channel in (store.CHANNEL, *self._listeners):
                        await conn.execute(f"LISTEN {channel}")
                    async for notice in conn.notifies():
                        if notice.channel == store.CHANNEL:
                            self._heard(notice.payload)
                        else:
                            self._listeners[notice.channel]()
            except psycopg.Error as exc:
                logger.debug("LISTEN connection lost: %s", exc)
                await asyncio.sleep(POLL_SECONDS)

    async def _dispatch_forever(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL_SECONDS):
                    await self._wake.wait()
            self._wake.clear()
            try:
                while (nothing := await self._claim_one()) is None:
                    pass
                self._at_limit = nothing is store.NoRun.AT_LIMIT
            except psycopg.Error as exc:
                self._at_limit = False
                logger.warning("dispatch: database unavailable: %s", str(exc)[:200])

    def _heard(self, payload: str) -> None:
        """A NOTIFY on the queue channel. While the runs are at the limit, a new queued
        occurrence cannot start one: only a freed slot (or the poll) wakes the dispatcher,
        which spares a claim transaction per webhook under load."""
        if payload != store.QUEUED:
            self._at_limit = False
        if not self._at_limit:
            self._wake.set()

    async def _claim_one(self) -> store.NoRun | None:
        """Start a run, or say why none started."""
        async with self._pool.connection() as conn:
            claim = await store.claim(
                conn,
                owner=self.owner,
                limit=self._limits.concurrency,
                lease_seconds=self._lease,
                ttl_seconds=self._limits.ttl_seconds,
            )
        if isinstance(claim, store.NoRun):
            return claim
        record = store.record_of(claim.row)
        key = (record.incident_id, record.occurrence)
        running_here = self._runs.get(key)
        if running_here is not None and not running_here.done():
            # Its own lease lapsed (renewals failed) while the run went on here: the claim
            # renewed it; a second task of the same run must not start.
            logger.warning("reclaimed a run still going on this replica; it goes on")
            return None
        if claim.row.get("transcript") is not None or claim.row.get("run_state") is not None:
            self._restore(
                record, {"transcript": claim.row["transcript"], **(claim.row["run_state"] or {})}
            )
        for notice in claim.row.get("notices") or ():
            record.notify(notice)
        self._spent[key] = record.tokens.total if record.turns else 0
        if claim.takeover and claim.row["takeovers"] >= TAKEOVERS_ESCALATED:
            logger.error("run taken over %d times: escalating", claim.row["takeovers"])
            await self._finish(record, AlertStatus.ESCALATED, "taken_over_twice", finalize=True)
            return None
        if claim.takeover or claim.handed_back:
            how = (
                "taken over (its replica stopped renewing the lease)"
                if claim.takeover
                else ("resumed (handed back at a replica's shutdown)")
            )
            record.mark(TimelineStatus.RUNNING, f"{how}; resumed from the stored transcript")
        self._records[key] = record
        task = asyncio.create_task(self._run(record), name=record.incident_id)
        self._runs[key] = task
        # Forgotten when the task ends, however (even cancelled before its first step).
        task.add_done_callback(lambda _done: self._forget(key, task))
        return None

    def _forget(self, key: tuple[str, int], task: asyncio.Task[None]) -> None:
        if self._runs.get(key) is task:
            del self._runs[key]
            self._records.pop(key, None)
            self._spent.pop(key, None)
            self._at_limit = False
            self._wake.set()

    async def _run(self, record: AlertRecord) -> None:
        """One run (forgotten by `_forget` when its task ends)."""
        trace_id_var.set(record.trace_id)
        incident_id_var.set(record.incident_id)
        try:
            await self._execute(record)
        except LeaseLost:
            logger.warning("lease lost: another replica took the run over")
        except psycopg.Error as exc:
            # Nothing more of the run can be stored here. It is not a failed run: it is left
            # to its lease, which lapses (only runs alive here are renewed), and once the
            # database answers again a replica resumes it from its last stored transcript.
            logger.warning(
                "database unavailable during a run: left to be resumed: %s", str(exc)[:200]
            )

    async def _execute(self, record: AlertRecord) -> None:
        """Run the agent and store how the run ended (escalated if the agent failed)."""
        try:
            status: AlertStatus | None = await self._runner(record)
        except asyncio.CancelledError:
            await self._save_progress(record)  # handed back: what was done is kept
            raise
        except (LeaseLost, psycopg.Error):
            raise  # the run is not this replica's to end, or cannot be stored now
        except Exception:
            logger.exception("agent run failed; escalating")
            status = None
        if status is None:
            await self._finish(record, AlertStatus.ESCALATED, "agent_failed", finalize=True)
        else:
            await self._finish(record, status, record.reason, finalize=record.handoff)
            escalated = status is AlertStatus.ESCALATED
            if escalated and record.resolved_upstream and self._limits.auto_resolve:
                self._end(record, Ending.AUTO_RESOLVE)

    async def checkpoint(self, record: AlertRecord) -> None:
        """Store a run's progress and deliver the notices that arrived for it; `LeaseLost`
        when another replica holds the run now."""
        key = (record.incident_id, record.occurrence)
        transcript, run_state = self._saved(record)
        total = record.tokens.total
        spent = total - self._spent.get(key, 0)
        async with self._pool.connection() as conn:
            notices = await store.checkpoint(
                conn,
                record,
                owner=self.owner,
                transcript=transcript,
                run_state=run_state,
                new_tokens=spent,
            )
        if notices is None:
            raise LeaseLost(record.incident_id)
        self._spent[key] = total
        for notice in notices:
            record.notify(notice)

    async def _save_progress(self, record: AlertRecord) -> None:
        with contextlib.suppress(psycopg.Error, LeaseLost):
            async with asyncio.timeout(5):
                await self.checkpoint(record)

    async def _finish(
        self, record: AlertRecord, status: AlertStatus, reason: str | None, *, finalize: bool
    ) -> None:
        record.move(status, reason)
        record.finished_at = time.time()
        transcript, run_state = self._saved(record)
        async with self._pool.connection() as conn:
            stored = await store.finish_run(
                conn, record, owner=self.owner, transcript=transcript, run_state=run_state
            )
            await conn.execute(store.NOTIFY_FREED)
        if not stored:
            logger.warning("run's end not stored: another replica holds it now")
            return
        if finalize:
            self._end(record, Ending.CLOSE)

    def _end(self, record: AlertRecord, ending: Ending) -> None:
        task = asyncio.create_task(self._ending(record, ending), name=record.incident_id)
        self._side.add(task)
        task.add_done_callback(self._side.discard)

    async def _ending(self, record: AlertRecord, ending: Ending) -> None:
        """Page and report, or add to the report (`ReportWriter` stores every report, with
        the outcome and page it records, in the database as it writes it)."""
        trace_id_var.set(record.trace_id)
        incident_id_var.set(record.incident_id)
        try:
            await self._finalize(record, ending)  # its report is stored as it is written
        except Exception:
            logger.exception("%s of %s failed", ending.value, record.incident_id)

    # -- reports -----------------------------------------------------------------------------

    async def save_report(self, record: AlertRecord, name: str, text: str) -> None:
        """A report was written (`ReportWriter`): it is the occurrence's, on every replica."""
        async with self._pool.connection() as conn:
            await store.save_report(conn, record, name, text)

    async def report(self, record: AlertRecord) -> str | None:
        async with self._pool.connection() as conn:
            text: str | None = await store.column(
                conn, "report", record.incident_id, record.occurrence
            )
            return text

    async def transcript(self, record: AlertRecord) -> Transcript | None:
        """The run's conversation (a live run's as recorded on this replica so far)."""
        local = self._records.get((record.incident_id, record.occurrence))
        if local is not None and local.transcript is not None:
            return local.transcript
        async with self._pool.connection() as conn:
            data = await store.column(conn, "transcript", record.incident_id, record.occurrence)
        return None if data is None else self._load_transcript(data)

    # -- time --------------------------------------------------------------------------------

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self._lease / 3)
            # Only these runs are renewed and judged: a run claimed while the renewal is
            # on its way has a fresh lease and is not in it (it must not be stopped).
            alive = [key for key, task in self._runs.items() if not task.done()]
            if not alive:
                continue
            try:
                async with self._pool.connection() as conn:
                    held = await store.renew(conn, self.owner, self._lease, alive)
            except psycopg.Error as exc:
                logger.warning("could not renew run leases: %s", str(exc)[:200])
                continue
            for key in alive:
                task = self._runs.get(key)
                if key not in held and task is not None and not task.done():
                    logger.error("lost the lease of %s#%d: stopping its run", *key)
                    task.cancel()

    async def _tick_forever(self) -> None:
        last_prune = 0.0
        while True:
            await asyncio.sleep(self._limits.tick_seconds)
            try:
                async with self._pool.connection() as conn:
                    expired = await store.expire_due(conn, self._limits.ttl_seconds)
                    self._counts = await store.counts(conn)
                    if time.monotonic() - last_prune > PRUNE_EVERY_SECONDS:
                        last_prune = time.monotonic()
                        await store.prune(conn, RETENTION_SECONDS)
            except psycopg.Error as exc:
                logger.warning("tick: database unavailable: %s", str(exc)[:200])
                continue
            for row in expired:
                record = store.record_of(row)
                logger.warning("alert expired in queue", extra={"incident_id": record.incident_id})
                self._end(record, Ending.CLOSE)

    # -- views -------------------------------------------------------------------------------

    async def get(self, incident_id: str, occurrence: int | None = None) -> AlertRecord | None:
        """The occurrence (the latest when None) with the ones before it linked, and its
        approvals; a run going on here is shown as this replica holds it."""
        async with self._pool.connection() as conn:
            rows = await store.fetch_record(conn, incident_id, occurrence)
            if not rows:
                return None
            records = [store.record_of(row) for row in rows]
            local = self._records.get((incident_id, records[0].occurrence))
            if local is None:
                records[0].approvals_shown = await store.approvals_of(
                    conn, incident_id, records[0].occurrence
                )
            else:
                records[0] = local  # the run going on here, as it is now
        for newer, older in zip(records, records[1:], strict=False):
            newer.previous = older
        return records[0]

    async def running(self, limit: int) -> list[AlertRecord]:
        """The runs of every replica; those waiting for a decision show it."""
        async with self._pool.connection() as conn:
            rows = await store.listing(conn, "status = 'running'", "seq", limit)
            waiting = await store.awaiting_approval(conn)
        records = [store.record_of(r) for r in rows]
        for record in records:
            if (record.incident_id, record.occurrence) in waiting:
                record.awaiting = True
        return records

    async def queued_page(
        self, *, limit: int, after: int | None = None
    ) -> tuple[list[AlertRecord], int | None]:
        """One page of the queue in queue order; `after`: the `order` of the last one shown."""
        where = "status = 'queued'"
        params: tuple[Any, ...] = ()
        if after is not None:
            where += " AND (priority_rank, seq) > (%s, %s)"
            params = ((after >> 48) + 1, after & ((1 << 48) - 1))
        rows = await self._listing(where, "priority_rank, seq", limit + 1, params)
        records = [store.record_of(row) for row in rows[:limit]]
        return records, records[-1].order if len(rows) > limit else None

    async def recent(self, limit: int) -> list[AlertRecord]:
        rows = await self._listing("finished_at IS NOT NULL", "finished_at DESC", limit)
        return [store.record_of(row) for row in rows]

    async def _listing(
        self, where: str, order: str, limit: int, params: tuple[Any, ...] = ()
    ) -> list[dict[str, Any]]:
        async with self._pool.connection() as conn:
            return await store.listing(conn, where, order, limit, params)

    def counts(self) -> tuple[int, int]:
        """(running, queued) over every replica, as of the last tick (at most a second old)."""
        return self._counts

    def stats(self) -> dict[str, Any]:
        running, queued = self._counts
        return {
            "running": running,
            "queued": queued,
            "limit": self._limits.concurrency,
            "queue_max": self._limits.queue_size,
            "draining": not self._accepting,
            "total_received": self.received,
        }

    async def counts_now(self) -> tuple[int, int]:
        async with self._pool.connection() as conn:
            self._counts = await store.counts(conn)
        return self._counts

    async def probe(self) -> str | None:
        """A round trip to the database (raises when it cannot be reached)."""
        async with self._pool.connection() as conn:
            cursor = await conn.execute("SELECT current_setting('server_version')")
            row = await cursor.fetchone()
        stats = self._pool.get_stats()
        return f"PostgreSQL {row[0] if row else '?'}; pool {stats.get('pool_size', 0)} connections"


async def _cancelled(tasks: Sequence[asyncio.Task[None]]) -> None:
    """Cancel `tasks` and wait until they are done.

    Cancelled again every `RECANCEL_SECONDS` until they are: on Python 3.11 a cancellation
    can be lost inside psycopg_pool, which waits for a connection with `asyncio.wait_for`
    (it returns the connection and drops a cancellation that arrives at the same moment),
    and the task would go on forever."""
    pending = set(tasks)
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=RECANCEL_SECONDS)


class LeaseLost(Exception):
    """Another replica holds this run now; this one must stop without writing."""


__all__ = ["DatabaseUnavailable", "LeaseLost", "PgIntake"]
