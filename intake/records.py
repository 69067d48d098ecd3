"""The record intake keeps for each accepted incident, and what a submit returns."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from models import (
    Alert,
    AlertDetail,
    AlertStatus,
    AlertSummary,
    OccurrenceSummary,
    Priority,
    TimelineEntry,
    TimelineStatus,
    TokenUsage,
    ToolCallRecord,
)

if TYPE_CHECKING:  # the run's own types; intake only carries them
    import asyncio

    from agent.transcript import Transcript
    from tools.context import RunContext

MAX_OCCURRENCES = 100  # remembered per incident (the latest and the 99 before it)

# An int sort key compares faster in the queue's heaps than a (priority, seq) tuple.
_PRIORITY_ORDER = {priority: rank << 48 for rank, priority in enumerate(Priority)}


@dataclass(frozen=True, slots=True)
class SubmitOutcome:
    """What intake decided for one alert; the webhook handler maps it to the response."""

    status: AlertStatus
    reason: str | None = None
    occurrence: int | None = None  # the occurrence it opened or was counted against


@dataclass(slots=True)
class Step:
    """One timeline entry, as `AlertRecord.timeline` presents it."""

    epoch: float
    status: AlertStatus | TimelineStatus
    note: str | None = None

    @property
    def at(self) -> datetime:
        return datetime.fromtimestamp(self.epoch, UTC)


@dataclass(slots=True)
class Tokens:
    input: int = 0
    output: int = 0
    total: int = 0


class AlertRecord:
    """One occurrence of an incident, from arrival to its terminal status and after.

    Intake owns `status`, `timeline` and the queue fields; the agent run fills in
    `tool_calls`, `tokens`, `outcome` and `report_file`, and drains the notices each turn.
    The incident id, service and priority are copied from the alert once, and the run's
    containers are made on first use: intake touches these for every queued alert, and a
    queued alert that never runs needs none of them. A plain slotted class: a dataclass
    `__init__` with this many defaulted fields cost twice as much, once per alert.

    `occurrence` numbers the incident's firing episodes; `previous` links to the one before
    (at most `MAX_OCCURRENCES` are kept linked). After its terminal status a record can still
    gain timeline entries (`resolved_upstream`, `still_firing`) and an escalation.
    """

    __slots__ = (
        "_notices",
        "_steps",
        "closing",
        "finished_at",
        "occurrence",
        "previous",
        "still_firing",
        "_tokens",
        "_tool_calls",
        "alert",
        "carrier",
        "enqueued_at",
        "handoff",
        "incident_id",
        "order",
        "paged_as",
        "outcome",
        "priority",
        "reason",
        "repeats",
        "report_file",
        "resolved_upstream",
        "run",
        "seq",
        "service",
        "status",
        "trace_id",
        "transcript",
        "turns",
    )

    def __init__(
        self,
        alert: Alert,
        *,
        trace_id: str,
        enqueued_at: float,
        seq: int,
        previous: AlertRecord | None = None,
    ) -> None:
        self.alert = alert
        self.trace_id = trace_id
        self.enqueued_at = enqueued_at
        self.seq = seq
        self.incident_id: str = alert.incident_id
        self.service: str | None = alert.service
        self.priority: Priority = alert.priority
        self.order: int = _PRIORITY_ORDER[alert.priority] + seq  # best priority, then oldest
        self.status = AlertStatus.QUEUED
        self.reason: str | None = None
        # The timeline as flat (epoch, status, note) triples: intake writes three entries per
        # alert, and an object each (or a `datetime.now()`) was a visible share of the
        # per-alert cost and of the garbage collector's work. `timeline` builds the steps.
        self._steps: list[Any] = []
        self.repeats = 0
        self.resolved_upstream = False
        self.carrier: dict[str, str] | None = None  # the webhook's trace context, when tracing
        self.turns = 0
        self.outcome: str | None = None
        self.report_file: str | None = None
        self.paged_as: str | None = None  # the PagerDuty dedup key it was paged under
        # True when the run stopped on a limit without a page: intake's finalizer pages and
        # reports, outside the run's slot (the pager may take its time).
        self.handoff = False
        self._notices: list[str] | None = None
        self._tool_calls: list[ToolCallRecord] | None = None
        self._tokens: Tokens | None = None
        # The agent's state for this record's run (what tools found, pages made), kept so
        # that an ending outside the run (a cut-off, a limit) reports what was found.
        self.run: RunContext | None = None
        self.transcript: Transcript | None = None  # the run's conversation with the LLM
        self.previous = previous  # the incident's occurrence before this one
        self.occurrence: int = 1 if previous is None else previous.occurrence + 1
        self.finished_at: float | None = None  # intake's clock, at the terminal status
        self.still_firing = False  # escalated as still firing after the agent's fix
        # The ending under way after the terminal status (page, report, additions to it):
        # each later addition waits for it, so one report is never written twice at once.
        self.closing: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return (
            f"AlertRecord({self.incident_id!r}#{self.occurrence}, {self.status.value}, "
            f"seq={self.seq})"
        )

    @property
    def started_at(self) -> datetime | None:
        """When the platform says this episode began (None when it does not say)."""
        return self.alert.started_at

    @property
    def agent_resolved(self) -> bool:
        """A run concluded this occurrence resolved (the agent's fix)."""
        return self.status is AlertStatus.RESOLVED and self.turns > 0

    def earlier(self) -> list[AlertRecord]:
        """The incident's remembered occurrences before this one, newest first."""
        found, record = [], self.previous
        while record is not None:
            found.append(record)
            record = record.previous
        return found

    def forget_beyond(self, count: int) -> None:
        """Keep this occurrence and at most `count - 1` before it linked."""
        record: AlertRecord | None = self
        for _ in range(count - 1):
            if record is None:
                return
            record = record.previous
        if record is not None:
            record.previous = None

    def lighten(self) -> None:
        """Drop what only the last finished occurrences keep: the raw payload, tool calls,
        the run's state and transcript. Status, timeline, outcome and report file stay."""
        if self.alert.raw is not None:
            self.alert = self.alert.model_copy(update={"raw": None})
        self._tool_calls = None
        self.run = None
        self.transcript = None

    @property
    def tool_calls(self) -> list[ToolCallRecord]:
        if self._tool_calls is None:
            self._tool_calls = []
        return self._tool_calls

    @property
    def tokens(self) -> Tokens:
        if self._tokens is None:
            self._tokens = Tokens()
        return self._tokens

    @property
    def timeline(self) -> list[Step]:
        steps = self._steps
        return [Step(*steps[i : i + 3]) for i in range(0, len(steps), 3)]

    @property
    def received_at(self) -> datetime:
        """When intake took the alert: its first timeline entry."""
        steps = self._steps
        return datetime.fromtimestamp(steps[0], UTC) if steps else datetime.now(UTC)

    def move(self, status: AlertStatus, reason: str | None = None) -> None:
        """Record a status change on the timeline."""
        self.status = status
        if reason is not None:
            self.reason = reason
        self._steps += (time.time(), status, reason)

    def mark(self, event: TimelineStatus, note: str | None = None) -> None:
        """Record an event after the run on the timeline (the status stays)."""
        self._steps += (time.time(), event, note)

    def notify(self, notice: str) -> None:
        """Tell the running agent something at its next turn (a repeat, a resolution)."""
        if self._notices is None:
            self._notices = []
        self._notices.append(notice)

    def take_notices(self) -> list[str]:
        """What arrived for this incident since the last turn (repeats, resolution)."""
        notices, self._notices = self._notices, None
        return notices or []

    def summary(self) -> AlertSummary:
        return AlertSummary(
            incident_id=self.incident_id,
            occurrence=self.occurrence,
            service=self.service,
            priority=self.priority,
            status=self.status,
            summary=self.alert.summary,
            received_at=self.received_at,
            repeats=self.repeats,
            paged_as=self.paged_as,
        )

    def detail(self, latest: AlertRecord | None = None) -> AlertDetail:
        """This occurrence in full; `occurrences` lists the incident's from `latest` (this
        one when not given) back."""
        return AlertDetail(
            incident_id=self.incident_id,
            occurrence=self.occurrence,
            service=self.service,
            priority=self.priority,
            status=self.status,
            reason=self.reason,
            alert=self.alert,
            timeline=[
                TimelineEntry(at=s.at, status=TimelineStatus(s.status), note=s.note)
                for s in self.timeline
            ],
            tool_calls=list(self.tool_calls),
            tokens=TokenUsage(
                input=self.tokens.input, output=self.tokens.output, total=self.tokens.total
            ),
            outcome=self.outcome,
            report_file=self.report_file,
            paged_as=self.paged_as,
            occurrences=[
                r.occurrence_summary() for r in (latest or self, *(latest or self).earlier())
            ],
        )

    def occurrence_summary(self) -> OccurrenceSummary:
        return OccurrenceSummary(
            occurrence=self.occurrence,
            started_at=self.started_at,
            status=self.status,
            outcome=self.outcome,
            report_file=self.report_file,
        )
