"""The record intake keeps for each accepted incident, and what a submit returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from models import (
    Alert,
    AlertDetail,
    AlertStatus,
    AlertSummary,
    TimelineEntry,
    TokenUsage,
    ToolCallRecord,
)


@dataclass(frozen=True, slots=True)
class SubmitOutcome:
    """What intake decided for one alert; the webhook handler maps it to the response."""

    status: AlertStatus
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Step:
    """One timeline entry. A plain slotted value: intake writes three per alert, and a
    pydantic model each was a visible share of the per-alert cost."""

    at: datetime
    status: AlertStatus
    note: str | None = None


@dataclass(slots=True)
class Tokens:
    input: int = 0
    output: int = 0
    total: int = 0


@dataclass(slots=True)
class AlertRecord:
    """One incident from arrival to its terminal status.

    Intake owns `status`, `timeline` and the queue fields; the agent run fills in
    `tool_calls`, `tokens`, `outcome` and `report_file`, and drains `notices` each turn.
    """

    alert: Alert
    trace_id: str
    enqueued_at: float
    seq: int
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    status: AlertStatus = AlertStatus.QUEUED
    reason: str | None = None
    timeline: list[Step] = field(default_factory=list)
    repeats: int = 0
    notices: list[str] = field(default_factory=list)
    resolved_upstream: bool = False
    carrier: dict[str, str] = field(default_factory=dict)
    tool_calls: list[ToolCallRecord] = field(default_factory=list)
    tokens: Tokens = field(default_factory=Tokens)
    turns: int = 0
    outcome: str | None = None
    report_file: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def incident_id(self) -> str:
        return self.alert.incident_id

    @property
    def service(self) -> str | None:
        return self.alert.service

    def move(self, status: AlertStatus, reason: str | None = None) -> None:
        """Record a status change on the timeline."""
        self.status = status
        if reason is not None:
            self.reason = reason
        self.timeline.append(Step(datetime.now(UTC), status, reason))

    def take_notices(self) -> list[str]:
        """What arrived for this incident since the last turn (repeats, resolution)."""
        notices, self.notices = self.notices, []
        return notices

    def summary(self) -> AlertSummary:
        return AlertSummary(
            incident_id=self.incident_id,
            service=self.service,
            priority=self.alert.priority,
            status=self.status,
            summary=self.alert.summary,
            received_at=self.received_at,
            repeats=self.repeats,
        )

    def detail(self) -> AlertDetail:
        return AlertDetail(
            incident_id=self.incident_id,
            service=self.service,
            priority=self.alert.priority,
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
