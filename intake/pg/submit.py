"""Webhooks' alerts on PostgreSQL: decided under §3's rules (`intake.lifecycle`) and
committed in one transaction, before the 202 (the webhooks that arrived together share one:
`intake.pg.group`).

The transaction is a `Batch`, so it usually costs two round trips, whatever it decides:
1. `BEGIN`, the incidents' advisory locks (one global order) and their latest occurrences;
2. the writes, then the queue check of the occurrences it queued, then `COMMIT`.

Every replica's changes to the queue take one row lock (`queue_length`, kept by triggers)
until they commit. A new occurrence is inserted in the last message, so that lock is held
only while the server checks and commits, never while this process decides or waits for
its event loop. It is inserted as queued; one statement (`store.refuse_over`) then refuses
as many of the newest as the queue holds over MAX_QUEUE_SIZE (`queue_full`). The check runs
before a later alert of the transaction reads one of them or takes one off the queue, so
the same ones are refused as if each had counted the queue before it was stored.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from intake.lifecycle import Ending, Firing, Resolution, Windows, on_firing, on_resolved
from intake.pg import store
from intake.pg.batch import Batch
from intake.pipeline import Limits
from intake.records import AlertRecord, SubmitOutcome, repeat_notice, resolved_notice
from models import Alert, AlertState, AlertStatus, TimelineStatus
from telemetry import trace_id_var

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Rules:
    """What the decisions depend on besides the database."""

    limits: Limits
    windows: Windows
    max_tokens_per_hour: int


@dataclass(slots=True)
class _Queued:
    """A new occurrence stored as queued, not yet counted against the queue."""

    index: int  # its alert's position in the transaction
    key: tuple[str, int]  # (incident, occurrence)


Traced = tuple[Alert, str]  # an alert and the trace id of the webhook that brought it


@dataclass
class Submission:
    """One transaction of one or more webhooks' alerts; `decide_all` once."""

    batch: Batch
    rules: Rules
    endings: list[tuple[AlertRecord, Ending]] = field(default_factory=list)
    _outcomes: list[SubmitOutcome] = field(default_factory=list)
    _latest: dict[str, store.Latest | None] = field(default_factory=dict)
    _queued: list[_Queued] = field(default_factory=list)

    async def decide_all(self, alerts: Sequence[Traced]) -> list[SubmitOutcome]:
        """Decide every alert, in order, and commit."""
        incidents = list(dict.fromkeys(a.incident_id for a, _ in alerts))
        locks = store.lock_incidents(incidents)
        *_, rows = await self.batch.send(*locks, store.latest(incidents))
        found = store.latest_of(rows)
        self._latest = {incident_id: found.get(incident_id) for incident_id in incidents}
        for index, (alert, trace_id) in enumerate(alerts):
            trace_id_var.set(trace_id)  # this task's log lines, alert by alert
            self._outcomes.append(await self._decide(index, alert, trace_id))
        await self._count_queued(commit=True)
        return self._outcomes

    async def _count_queued(self, *, commit: bool) -> None:
        """Check the new queued occurrences against the queue's length, newest first; the
        ones over MAX_QUEUE_SIZE are refused (`queue_full`). With `commit`, in the same round
        trip as the writes before it and the COMMIT."""
        newest_first, self._queued = self._queued[::-1], []
        send = self.batch.commit if commit else self.batch.send
        if not newest_first:
            await send()
            return
        size = self.rules.limits.queue_size
        check = store.refuse_over([q.key for q in newest_first], size)
        _, refused = await send(store.NOTIFY_QUEUED, check)
        if not refused:
            return
        index = {q.key: q.index for q in newest_first}
        for row in refused:
            record = store.record_of(row)
            self._outcomes[index[record.incident_id, record.occurrence]] = SubmitOutcome(
                AlertStatus.ESCALATED, "queue_full", record.occurrence
            )
            self.endings.append((record, Ending.CLOSE))

    async def _count_queued_now(self) -> None:
        """Count the new queued occurrences before this webhook reads one of them or takes
        one off the queue, as they would have been counted before a later alert."""
        if self._queued:
            await self._count_queued(commit=False)

    async def _latest_of(self, incident_id: str) -> store.Latest | None:
        """The incident's latest occurrence; read again when an earlier alert of this
        webhook decided on it."""
        if incident_id in self._latest:
            return self._latest.pop(incident_id)
        await self._count_queued_now()
        (rows,) = await self.batch.send(store.latest([incident_id]))
        return store.latest_of(rows).get(incident_id)

    async def _decide(self, index: int, alert: Alert, trace_id: str) -> SubmitOutcome:
        latest = await self._latest_of(alert.incident_id)
        if alert.state is AlertState.RESOLVED:
            return await self._resolve(alert, latest)
        verdict = on_firing(latest, alert.started_at, time.time(), self.rules.windows)
        if latest is None or verdict is Firing.OPEN:
            return await self._open(index, alert, trace_id, latest)
        if verdict is Firing.STILL_FIRING:
            record = await self._load(latest)
            record.repeats += 1
            resolved_for = record.escalate_still_firing(time.time())
            logger.warning(
                "still firing %.0fs after the agent resolved it; escalating",
                resolved_for,
                extra={"incident_id": record.incident_id, "occurrence": record.occurrence},
            )
            self.batch.write(*store.update(record))
            self.endings.append((record, Ending.STILL_FIRING))
            return SubmitOutcome(AlertStatus.ESCALATED, "still_firing", latest.occurrence)
        notice = None
        if verdict is Firing.RUNNING:
            notice = repeat_notice(latest.repeats + 1, alert.summary)
        self.batch.write(*store.add_repeat(latest, notice))
        return SubmitOutcome(AlertStatus.DEDUPLICATED, verdict.value, latest.occurrence)

    async def _open(
        self, index: int, alert: Alert, trace_id: str, latest: store.Latest | None
    ) -> SubmitOutcome:
        occurrence = 1 if latest is None else latest.occurrence + 1
        record = _new(alert, occurrence, trace_id)
        refusal = await self._refusal(record)
        if refusal is not None:
            _refuse(record, refusal)
        self.batch.write(*store.insert(record))
        if refusal is not None:
            self.endings.append((record, Ending.CLOSE))
            return SubmitOutcome(AlertStatus.ESCALATED, refusal, occurrence)
        self._queued.append(_Queued(index, (record.incident_id, occurrence)))  # `_count_queued`
        return SubmitOutcome(AlertStatus.QUEUED, None, occurrence)

    async def _refusal(self, record: AlertRecord) -> str | None:
        """Why a new occurrence is not queued at all (the queue's size is checked at commit)."""
        if record.service is None:
            return "unknown_service"
        ceiling = self.rules.max_tokens_per_hour
        if ceiling > 0:
            (rows,) = await self.batch.send(store.tokens_last_hour())
            if int(rows[0]["tokens"]) >= ceiling:
                return "hourly_token_budget"
        return None

    async def _resolve(self, alert: Alert, latest: store.Latest | None) -> SubmitOutcome:
        verdict = on_resolved(latest, alert.started_at, auto_resolve=self.rules.limits.auto_resolve)
        if latest is None or verdict in (Resolution.STALE, Resolution.REPEATED):
            occurrence = None if latest is None else latest.occurrence
            return SubmitOutcome(AlertStatus.IGNORED, verdict.value, occurrence)
        record = await self._load(latest)
        record.resolved_upstream = True
        if verdict is Resolution.RUNNING:
            record.mark(TimelineStatus.RESOLVED_UPSTREAM, "during the run")
            self.batch.write(*store.update(record))
            self.batch.write(*store.notify_run(latest, resolved_notice(alert.summary)))
            return SubmitOutcome(AlertStatus.IGNORED, verdict.value, latest.occurrence)
        if verdict is Resolution.QUEUED:
            await self._count_queued_now()
            record.move(AlertStatus.RESOLVED, verdict.value)
            record.finished_at = time.time()
            self.batch.write(*store.update(record))
            self.endings.append((record, Ending.CLOSE))
            return SubmitOutcome(AlertStatus.RESOLVED, verdict.value, latest.occurrence)
        record.mark(TimelineStatus.RESOLVED_UPSTREAM)
        self.batch.write(*store.update(record))
        if verdict is Resolution.AUTO_RESOLVE:
            self.endings.append((record, Ending.AUTO_RESOLVE))
            return SubmitOutcome(AlertStatus.RESOLVED, verdict.value, latest.occurrence)
        self.endings.append((record, Ending.RESOLVED_UPSTREAM))
        return SubmitOutcome(AlertStatus.IGNORED, verdict.value, latest.occurrence)

    async def _load(self, latest: store.Latest) -> AlertRecord:
        (rows,) = await self.batch.send(store.one(latest.incident_id, latest.occurrence))
        return store.record_of(rows[0])


def _new(alert: Alert, occurrence: int, trace_id: str) -> AlertRecord:
    record = AlertRecord(alert, trace_id=trace_id, enqueued_at=time.time(), seq=0)
    record.occurrence = occurrence
    record.move(AlertStatus.QUEUED)
    return record


def _refuse(record: AlertRecord, reason: str) -> AlertRecord:
    """A new occurrence escalated without a run (`reason`), finished now."""
    record.move(AlertStatus.ESCALATED, reason)
    record.finished_at = time.time()
    return record
