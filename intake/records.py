"""The record intake keeps for each accepted incident, and what a submit returns."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

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


@dataclass(slots=True)
class AlertRecord:
    """One incident from arrival to its terminal status.

    Intake owns `status`, `timeline` and the queue fields; the agent run fills in
    `tool_calls`, `tokens`, `outcome` and `report_file`, and drains the notices each turn.
    The incident id, service and priority are copied from the alert once, and the run's
    containers are made on first use: intake touches these for every queued alert, and a
    queued alert that never runs needs none of them.
    """

    alert: Alert
    trace_id: str
    enqueued_at: float
    seq: int
    incident_id: str = field(init=False)
    service: str | None = field(init=False)
    priority: Priority = field(init=False)
    order: int = field(init=False)  # queue order: best priority first, then oldest
    status: AlertStatus = AlertStatus.QUEUED
    reason: str | None = None
    # The timeline as flat (epoch, status, note) triples: intake writes three entries per
    # alert, and an object each (or a `datetime.now()`) was a visible share of the
    # per-alert cost and of the garbage collector's work. `timeline` builds the steps.
    _steps: list[Any] = field(default_factory=list)
    repeats: int = 0
    resolved_upstream: bool = False
    carrier: dict[str, str] | None = None  # the webhook's trace context, when tracing
    turns: int = 0
    outcome: str | None = None
    report_file: str | None = None
    _notices: list[str] | None = None
    _tool_calls: list[ToolCallRecord] | None = None
    _tokens: Tokens | None = None
    _extra: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        alert = self.alert
        self.incident_id = alert.incident_id
        self.service = alert.service
        self.priority = alert.priority
        self.order = _PRIORITY_ORDER[alert.priority] + self.seq

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
    def extra(self) -> dict[str, Any]:
        """Free-form run state (the agent's context for a cut-off report)."""
        if self._extra is None:
            self._extra = {}
        return self._extra

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
        )
