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
    Priority,
    TimelineEntry,
    TokenUsage,
    ToolCallRecord,
)

if TYPE_CHECKING:  # the run's own types; intake only carries them
    from agent.transcript import Transcript
    from tools.context import RunContext

# An int sort key compares faster in the queue's heaps than a (priority, seq) tuple.
_PRIORITY_ORDER = {priority: rank << 48 for rank, priority in enumerate(Priority)}


@dataclass(frozen=True, slots=True)
class SubmitOutcome:
    """What intake decided for one alert; the webhook handler maps it to the response."""

    status: AlertStatus
    reason: str | None = None


@dataclass(slots=True)
class Step:
    """One timeline entry, as `AlertRecord.timeline` presents it."""

    epoch: float
    status: AlertStatus
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
    """One incident from arrival to its terminal status.

    Intake owns `status`, `timeline` and the queue fields; the agent run fills in
    `tool_calls`, `tokens`, `outcome` and `report_file`, and drains the notices each turn.
    The incident id, service and priority are copied from the alert once, and the run's
    containers are made on first use: intake touches these for every queued alert, and a
    queued alert that never runs needs none of them. A plain slotted class: a dataclass
    `__init__` with this many defaulted fields cost twice as much, once per alert.
    """

    __slots__ = (
        "_notices",
        "_steps",
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

    def __init__(self, alert: Alert, *, trace_id: str, enqueued_at: float, seq: int) -> None:
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

    def __repr__(self) -> str:
        return f"AlertRecord({self.incident_id!r}, {self.status.value}, seq={self.seq})"

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
            service=self.service,
            priority=self.priority,
            status=self.status,
            summary=self.alert.summary,
            received_at=self.received_at,
            repeats=self.repeats,
            paged_as=self.paged_as,
        )

    def detail(self) -> AlertDetail:
        return AlertDetail(
            incident_id=self.incident_id,
            service=self.service,
            priority=self.priority,
            status=self.status,
            reason=self.reason,
            alert=self.alert,
            timeline=[TimelineEntry(at=s.at, status=s.status, note=s.note) for s in self.timeline],
            tool_calls=list(self.tool_calls),
            tokens=TokenUsage(
                input=self.tokens.input, output=self.tokens.output, total=self.tokens.total
            ),
            outcome=self.outcome,
            report_file=self.report_file,
            paged_as=self.paged_as,
        )
