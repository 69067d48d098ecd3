"""The record intake keeps for each accepted incident, and what a submit returns."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from models import (
    Alert,
    AlertDetail,
    AlertStatus,
    AlertSummary,
    Approval,
    ApprovalStatus,
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
        "_alert",
        "approvals_shown",
        "awaiting",
        "_lean",
        "_notices",
        "_steps",
        "closing",
        "finished_at",
        "occurrence",
        "previous",
        "retired",
        "started_at",
        "still_firing",
        "_tokens",
        "_tool_calls",
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
        self._alert: Alert | None = alert
        self._lean: tuple[Any, ...] = ()  # the alert's fields, when revived from a `Past`
        self.started_at: datetime | None = alert.started_at  # when the episode began
        self.trace_id = trace_id
        self.enqueued_at = enqueued_at
        self.seq = seq
        self.incident_id: str = alert.incident_id
        self.service: str | None = alert.service
        self.priority: Priority = alert.priority
        self.order: int = _PRIORITY_ORDER[alert.priority] + seq  # best priority, then oldest
        self.status = AlertStatus.QUEUED
        self.reason: str | None = None
        # The timeline as flat (epoch, status value, note) triples: intake writes three
        # entries per alert, and an object each (or a `datetime.now()`) was a visible share
        # of the per-alert cost and of the garbage collector's work; plain values pack as
        # they are (`packed`). `timeline` builds the steps.
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
        # The incident's occurrence before this one: a record while open or recent, else
        # packed (`Past`); `intake.history` keeps the links.
        self.previous: AlertRecord | tuple[Any, ...] | None = previous
        self.occurrence: int = 1 if previous is None else previous.occurrence + 1
        self.finished_at: float | None = None  # intake's clock, at the terminal status
        self.still_firing = False  # escalated as still firing after the agent's fix
        self.retired = False  # not among the recent ones: made a `Past` once its ending is done
        # The ending under way after the terminal status (page, report, additions to it):
        # each later addition waits for it, so one report is never written twice at once.
        self.closing: asyncio.Task[None] | None = None
        # A durable store's view of a run on another replica: its approvals, and whether
        # one is pending (`shown_status`); a run here answers from its own `run`.
        self.approvals_shown: list[Approval] | None = None
        self.awaiting = False

    def __repr__(self) -> str:
        return (
            f"AlertRecord({self.incident_id!r}#{self.occurrence}, {self.status.value}, "
            f"seq={self.seq})"
        )

    @property
    def alert(self) -> Alert:
        """The normalized alert (without its raw payload when revived from a `Past`)."""
        alert = self._alert
        if alert is None:
            provider, state, summary, url, labels = self._lean
            alert = self._alert = Alert(
                incident_id=self.incident_id,
                provider=provider,
                service=self.service,
                priority=self.priority,
                state=state,
                summary=summary,
                started_at=self.started_at,
                labels=dict(labels),
                url=url,
            )
        return alert

    @property
    def agent_resolved(self) -> bool:
        """A run concluded this occurrence resolved (the agent's fix)."""
        return self.status is AlertStatus.RESOLVED and self.turns > 0

    def earlier(self) -> list[AlertRecord]:
        """The incident's remembered occurrences before this one, newest first (a packed one
        as a record made to show it)."""
        found: list[AlertRecord] = []
        record = self.previous
        while record is not None:
            if isinstance(record, tuple):
                record = AlertRecord.revived(Past.unpack(record))
            found.append(record)
            record = record.previous
        return found

    def packed(self) -> tuple[Any, ...]:
        """What is remembered of this occurrence once it is neither open nor recent, packed
        (`Past`): the alert without its raw payload, the timeline, the outcome; no tool
        calls, run state or transcript. One flat tuple of plain values: the garbage
        collector stops visiting it after one look, where a record is several objects it
        visits at every full collection. The occurrence before must be packed already."""
        alert, tokens, previous, steps = self.alert, self._tokens, self.previous, self._steps
        assert not isinstance(previous, AlertRecord), "the one before is packed first"
        spent = (tokens.input, tokens.output, tokens.total) if tokens else (0, 0, 0)
        return (  # `Past`'s fields, flat and in order: enums by value (a tuple holding an
            # enum stays tracked by the garbage collector)
            self.incident_id,
            self.occurrence,
            self.status._value_,
            self.reason,
            self.started_at,
            self.finished_at,
            self.still_firing,
            self.resolved_upstream,
            self.turns,
            self.service,
            self.priority._value_,
            self.trace_id,
            self.enqueued_at,
            self.seq,
            self.repeats,
            *spent,
            self.outcome,
            self.report_file,
            self.paged_as,
            alert.provider._value_,
            alert.state._value_,
            alert.summary,
            alert.url,
            previous,
            len(steps),
            *steps,
            *itertools.chain.from_iterable(alert.labels.items()),
        )

    @classmethod
    def revived(cls, past: Past) -> AlertRecord:
        """A record again from what was remembered (to add to its timeline or report, or to
        show it): everything `past` keeps; no tool calls, run state or transcript."""
        record = cls.__new__(cls)
        for name in _REVIVED_NONE:
            setattr(record, name, None)
        record._alert, record._lean = None, past.lean
        record._steps = list(past.steps)
        record.incident_id, record.occurrence = past.incident_id, past.occurrence
        record.status, record.reason = AlertStatus(past.status), past.reason
        record.started_at, record.finished_at = past.started_at, past.finished_at
        record.still_firing, record.resolved_upstream = past.still_firing, past.resolved_upstream
        record.service, record.priority = past.service, Priority(past.priority)
        record.trace_id, record.enqueued_at, record.seq = past.trace_id, past.enqueued_at, past.seq
        record.order = _PRIORITY_ORDER[record.priority] + past.seq
        record.repeats, record.turns = past.repeats, past.turns
        record._tokens = Tokens(*past.tokens) if past.turns else None
        record.outcome, record.report_file = past.outcome, past.report_file
        record.paged_as, record.previous = past.paged_as, past.previous
        record.handoff, record.retired, record.awaiting = False, True, False
        return record

    def state(self) -> dict[str, Any]:
        """What a durable store keeps of this occurrence besides its alert, run and
        transcript: plain JSON-able values (`restored` reads them back)."""
        tokens = self._tokens or Tokens()
        steps = self._steps
        return {
            "status": self.status._value_,
            "reason": self.reason,
            "finished_at": self.finished_at,
            "still_firing": self.still_firing,
            "resolved_upstream": self.resolved_upstream,
            "repeats": self.repeats,
            "turns": self.turns,
            "tokens": [tokens.input, tokens.output, tokens.total],
            "tool_calls": [c.model_dump(mode="json") for c in self._tool_calls or ()],
            "timeline": [list(steps[i : i + 3]) for i in range(0, len(steps), 3)],
            "outcome": self.outcome,
            "report_file": self.report_file,
            "paged_as": self.paged_as,
            "handoff": self.handoff,
        }

    @classmethod
    def restored(
        cls,
        alert: Alert,
        state: dict[str, Any],
        *,
        occurrence: int,
        trace_id: str,
        enqueued_at: float,
        seq: int,
    ) -> AlertRecord:
        """A record from a durable store: its alert and what `state` returned."""
        record = cls(alert, trace_id=trace_id, enqueued_at=enqueued_at, seq=seq)
        record.occurrence = occurrence
        record.status = AlertStatus(state["status"])
        record.reason = state["reason"]
        record.finished_at = state["finished_at"]
        record.still_firing = state["still_firing"]
        record.resolved_upstream = state["resolved_upstream"]
        record.repeats, record.turns = state["repeats"], state["turns"]
        if state["turns"]:
            record._tokens = Tokens(*state["tokens"])
        if state["tool_calls"]:
            record._tool_calls = [ToolCallRecord.model_validate(c) for c in state["tool_calls"]]
        record._steps = [value for step in state["timeline"] for value in step]
        record.outcome, record.report_file = state["outcome"], state["report_file"]
        record.paged_as, record.handoff = state["paged_as"], state["handoff"]
        return record

    def merge_timeline(self, stored: list[list[Any]]) -> list[list[Any]]:
        """Take in the entries another writer added (a durable store's copy of this
        timeline): both sets, once each, in time order. The merged timeline is returned."""
        steps = self._steps
        mine = [tuple(steps[i : i + 3]) for i in range(0, len(steps), 3)]
        merged = sorted(set(mine) | {tuple(entry) for entry in stored}, key=lambda e: e[0])
        self._steps = [value for entry in merged for value in entry]
        return [list(entry) for entry in merged]

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
        return [
            Step(steps[i], _status(steps[i + 1]), steps[i + 2]) for i in range(0, len(steps), 3)
        ]

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
        self._steps += (time.time(), status._value_, reason)

    def mark(self, event: TimelineStatus, note: str | None = None) -> None:
        """Record an event after the run on the timeline (the status stays)."""
        self._steps += (time.time(), event._value_, note)

    def escalate_still_firing(self, now: float) -> float:
        """The agent's fix did not hold (CONTRACT §3): escalated once, as `still_firing`.
        The seconds since the fix (`now` on the clock of `finished_at`)."""
        resolved_for = now - (self.finished_at or now)
        self.still_firing = True
        self.status, self.reason = AlertStatus.ESCALATED, "still_firing"
        self.mark(TimelineStatus.STILL_FIRING, f"still firing {resolved_for:.0f}s after the fix")
        return resolved_for

    def notify(self, notice: str) -> None:
        """Tell the running agent something at its next turn (a repeat, a resolution)."""
        if self._notices is None:
            self._notices = []
        self._notices.append(notice)

    def take_notices(self) -> list[str]:
        """What arrived for this incident since the last turn (repeats, resolution)."""
        notices, self._notices = self._notices, None
        return notices or []

    @property
    def shown_status(self) -> AlertStatus:
        """The status operators see: `awaiting_approval` while a run waits for a human
        decision (intake's rules see it `running`)."""
        if self.status is not AlertStatus.RUNNING:
            return self.status
        run = self.run
        if run is not None and run.approver is not None:
            waiting = run.approver.waiting
        else:
            waiting = self.awaiting or any(
                a.status is ApprovalStatus.PENDING for a in self.approvals_shown or ()
            )
        return AlertStatus.AWAITING_APPROVAL if waiting else AlertStatus.RUNNING

    def summary(self) -> AlertSummary:
        return AlertSummary(
            incident_id=self.incident_id,
            occurrence=self.occurrence,
            service=self.service,
            priority=self.priority,
            status=self.shown_status,
            summary=self.alert.summary,
            received_at=self.received_at,
            repeats=self.repeats,
            paged_as=self.paged_as,
        )

    def detail(self, latest: AlertRecord | None = None) -> AlertDetail:
        """This occurrence in full; `occurrences` lists the incident's from `latest` (this
        one when not given) back."""
        spent = self._tokens or Tokens()
        return AlertDetail(
            incident_id=self.incident_id,
            occurrence=self.occurrence,
            service=self.service,
            priority=self.priority,
            status=self.shown_status,
            reason=self.reason,
            alert=self.alert,
            timeline=[
                TimelineEntry(at=s.at, status=TimelineStatus(s.status), note=s.note)
                for s in self.timeline
            ],
            tool_calls=list(self._tool_calls or ()),
            tokens=TokenUsage(input=spent.input, output=spent.output, total=spent.total),
            outcome=self.outcome,
            report_file=self.report_file,
            paged_as=self.paged_as,
            approvals=self.approvals(),
            occurrences=[
                occurrence_summary(r) for r in (latest or self, *(latest or self).earlier())
            ],
        )

    def approvals(self) -> list[Approval]:
        """The writes this occurrence's run proposed in approve mode."""
        run = self.run
        if run is not None and run.approver is not None:
            return run.approver.views()
        return list(self.approvals_shown or ())


_REVIVED_NONE = (
    "_notices",
    "_tool_calls",
    "approvals_shown",
    "carrier",
    "run",
    "transcript",
    "closing",
)


class Past(NamedTuple):
    """A remembered occurrence that is neither open nor recent, as `AlertRecord.packed`
    packs it: one flat tuple (`unpack` reads it into these fields). The occurrence before
    it is packed inside it."""

    incident_id: str
    occurrence: int
    status: str  # an AlertStatus value
    reason: str | None
    started_at: datetime | None
    finished_at: float | None
    still_firing: bool
    resolved_upstream: bool
    turns: int
    service: str | None
    priority: str
    trace_id: str
    enqueued_at: float
    seq: int
    repeats: int
    tokens: tuple[int, int, int]
    outcome: str | None
    report_file: str | None
    paged_as: str | None
    lean: tuple[Any, ...]  # provider, state, summary, url, labels of the alert
    previous: tuple[Any, ...] | None  # the occurrence before, packed
    steps: tuple[Any, ...]  # (epoch, status value, note) triples

    @classmethod
    def unpack(cls, packed: tuple[Any, ...]) -> Past:
        steps_end = _STEPS + packed[_STEPS - 1]
        labels = packed[steps_end:]
        return cls._make(
            (
                *packed[:15],
                packed[15:18],
                *packed[18:21],
                (*packed[21:25], tuple(zip(labels[::2], labels[1::2], strict=True))),
                packed[PACKED_PREVIOUS],
                packed[_STEPS:steps_end],
            )
        )


# Where `AlertRecord.packed` puts what intake reads without unpacking.
PACKED_OCCURRENCE = 1
PACKED_FINISHED_AT = 5
PACKED_PREVIOUS = 25
_STEPS = 27  # the timeline starts here; its length is just before


def repeat_notice(repeats: int, summary: str) -> str:
    """What a running agent is told of repeat notifications."""
    return f"{repeats} repeat notification(s) arrived; latest: {summary}"


def resolved_notice(summary: str) -> str:
    """What a running agent is told when the platform resolves its incident."""
    return f"The monitoring platform reports this incident as resolved: {summary}"


def occurrence_summary(record: AlertRecord) -> OccurrenceSummary:
    """One row of `AlertDetail.occurrences`."""
    return OccurrenceSummary(
        occurrence=record.occurrence,
        started_at=record.started_at,
        status=record.shown_status,
        outcome=record.outcome,
        report_file=record.report_file,
    )


def _status(value: str) -> AlertStatus | TimelineStatus:
    """A timeline status from its stored value: a status the occurrence moved to, or an
    event after its run."""
    if value in AlertStatus._value2member_map_:
        return AlertStatus(value)
    return TimelineStatus(value)
