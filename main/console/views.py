"""What the console's pages show, built from the same typed values the JSON API returns.

`board` is the incident list (`GET /console`): awaiting approval first, then running, queued
(one page) and recent, and every pending approval. `incident` is one occurrence
(`GET /console/alerts/{id}`): its `AlertDetail`, its approvals split into pending and
decided, its report and its conversation. Building them reads intake on the event loop;
`finish` (report file, transcript, markdown) is meant for a worker thread, like the
transcript endpoint's rendering.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from markupsafe import Markup

from intake.approvals import describe_call
from main.console import markdown
from main.errors import ClientError
from models import (
    AlertDetail,
    AlertStatus,
    AlertSummary,
    Approval,
    ApprovalStatus,
    Transcript,
    TranscriptToolResult,
)

if TYPE_CHECKING:
    from intake import AlertRecord
    from main.deps import Runtime

QUEUED_SHOWN = 100
RECENT_SHOWN = 100
ECHOED_ID_CHARS = 256
REPORT_GRACE = timedelta(seconds=60)  # a finished occurrence's page waits this for its report
_REPORTED = (AlertStatus.RESOLVED, AlertStatus.ESCALATED, AlertStatus.EXPIRED)


def incident_path(incident_id: str, occurrence: int | None = None) -> str:
    """The console page of an incident (its latest occurrence unless `occurrence`)."""
    path = "/console/alerts/" + quote(incident_id, safe=":@")
    return path if occurrence is None else f"{path}?occurrence={occurrence}"


def approval_path(approval: Approval) -> str:
    """Where the decision form about `approval` posts."""
    return f"{incident_path(approval.incident_id)}/approvals/{quote(approval.approval_id)}"


def safe_link(url: str | None) -> str | None:
    """`url` when it is an absolute http(s) URL (a link may be made of it), else None."""
    if url and markdown.link_allowed(url) and not url.lower().startswith("mailto:"):
        return url
    return None


# -- the incident list ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    summary: AlertSummary
    href: str
    outcome: str | None


@dataclass(frozen=True, slots=True)
class Section:
    key: str
    title: str
    rows: list[Row]
    more: int = 0  # how many more there are than shown


@dataclass(frozen=True, slots=True)
class PendingApproval:
    approval: Approval
    what: str
    href: str


@dataclass(frozen=True, slots=True)
class Board:
    sections: list[Section]
    approvals: list[PendingApproval]
    awaiting: int  # occurrences waiting for a decision
    running: int  # the others running
    queued: int

    @property
    def empty(self) -> bool:
        return not any(section.rows for section in self.sections)


async def board(runtime: Runtime) -> Board:
    """Every incident the console lists, in the order an operator wants them."""
    intake = runtime.intake
    running = await intake.running(runtime.settings.max_concurrent_alerts)
    waiting = [r for r in running if r.shown_status is AlertStatus.AWAITING_APPROVAL]
    busy = [r for r in running if r.shown_status is not AlertStatus.AWAITING_APPROVAL]
    queued, _ = await intake.queued_page(limit=QUEUED_SHOWN)
    _, queued_count = intake.counts()
    recent = await intake.recent(RECENT_SHOWN)
    latest = {r.incident_id: r.occurrence for r in reversed(recent)}  # newest wins
    sections = [
        Section("awaiting", "Awaiting approval", _rows(waiting)),
        Section("running", "Running", _rows(busy)),
        Section("queued", "Queued", _rows(queued), max(queued_count - len(queued), 0)),
        Section("recent", "Recently finished", _rows(recent, latest)),
    ]
    approvals = [
        PendingApproval(
            approval=view,
            what=describe_call(view.tool, view.arguments),
            href=incident_path(view.incident_id),
        )
        for view in (p.view() for p in await runtime.approvals.pending())
    ]
    return Board(sections, approvals, len(waiting), len(busy), queued_count)


def _rows(records: list[AlertRecord], latest: dict[str, int] | None = None) -> list[Row]:
    """Rows linking to their incident's page; an occurrence that is not the newest shown
    (`latest`: the newest occurrence listed per incident) links to its own page."""
    return [Row(summary=r.summary(), href=_href(r, latest), outcome=r.outcome) for r in records]


def _href(record: AlertRecord, latest: dict[str, int] | None) -> str:
    if latest is None or latest.get(record.incident_id, record.occurrence) == record.occurrence:
        return incident_path(record.incident_id)
    return incident_path(record.incident_id, record.occurrence)


# -- one incident -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApprovalView:
    approval: Approval
    what: str
    action: str  # the decision form's URL


@dataclass(frozen=True, slots=True)
class Message:
    role: str
    text: str


@dataclass(frozen=True, slots=True)
class Call:
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Turn:
    number: int
    at: datetime
    sent: int  # messages in the request
    tools: list[str]
    tokens: str
    new: list[Message]  # what the request added: prompt, alert, notices
    reply: str | None
    calls: list[Call]
    results: list[TranscriptToolResult]


@dataclass(frozen=True, slots=True)
class Conversation:
    model: str
    turns: list[Turn]


@dataclass(slots=True)
class IncidentView:
    detail: AlertDetail
    latest: int  # the incident's latest occurrence
    pending: list[ApprovalView]
    decided: list[ApprovalView]
    alert_link: str | None
    refresh: bool
    error: str | None = None
    report: Markup | None = None
    conversation: Conversation | None = None
    labels: list[tuple[str, str]] = field(default_factory=list)

    def link(self, occurrence: int) -> str:
        """This incident's page of `occurrence`."""
        return incident_path(
            self.detail.incident_id, None if occurrence == self.latest else occurrence
        )


async def find(runtime: Runtime, incident_id: str, occurrence: int | None) -> AlertRecord:
    """The occurrence the page is about, or a 404."""
    record = await runtime.intake.get(incident_id, occurrence)
    if record is not None:
        return record
    shown = incident_id[:ECHOED_ID_CHARS]
    if occurrence is None or await runtime.intake.get(incident_id) is None:
        raise ClientError(404, "not_found", f"No incident {shown!r} is known to the runtime.")
    raise ClientError(404, "not_found", f"No occurrence {occurrence} of {shown!r} is remembered.")


async def incident(runtime: Runtime, record: AlertRecord, error: str | None = None) -> IncidentView:
    """The page's values that live in intake (read on the event loop)."""
    latest = await runtime.intake.get(record.incident_id) or record
    detail = record.detail(latest)
    views = [
        ApprovalView(a, describe_call(a.tool, a.arguments), approval_path(a))
        for a in detail.approvals
    ]
    return IncidentView(
        detail=detail,
        latest=latest.occurrence,
        pending=[v for v in views if v.approval.status is ApprovalStatus.PENDING],
        decided=[v for v in views if v.approval.status is not ApprovalStatus.PENDING],
        alert_link=safe_link(detail.alert.url),
        refresh=_open(detail),
        error=error,
        labels=sorted(detail.alert.labels.items()),
    )


def _open(detail: AlertDetail) -> bool:
    """True while the page can still change: the occurrence is open, or it just finished
    and its report is still being written."""
    if not detail.status.terminal:
        return True
    if detail.status not in _REPORTED or detail.report_file is not None:
        return False
    last = detail.timeline[-1].at if detail.timeline else None
    return last is not None and datetime.now(UTC) - last < REPORT_GRACE


def finish(
    view: IncidentView,
    runtime: Runtime,
    record: AlertRecord,
    text: str | None,
    transcript: Any,
) -> IncidentView:
    """Add the report (`text`) and the conversation (`transcript`): redaction and markdown,
    so call it in a worker thread."""
    if text is not None:
        view.report = markdown.render(text)
    if transcript is not None:
        shown = transcript.view(
            incident_id=record.incident_id,
            occurrence=record.occurrence,
            redact=runtime.redactor.redact,
        )
        view.conversation = conversation(shown)
    return view


def conversation(transcript: Transcript) -> Conversation:
    """The run turn by turn. Each request repeats the conversation so far; a turn shows only
    what its request added beyond the previous turn's reply and tool results."""
    turns: list[Turn] = []
    seen = 0
    for turn in transcript.turns:
        messages = turn.request.messages
        added = [
            Message(str(m.get("role", "?")), _text(m.get("content")))
            for m in messages[seen:]
            if m.get("role") not in ("assistant", "tool")
        ]
        seen = len(messages)
        usage = turn.usage
        tokens = f"{usage.input} in / {usage.output} out"
        if usage.cached is not None:
            tokens += f" ({usage.cached} cached)"
        turns.append(
            Turn(
                number=turn.turn,
                at=turn.at,
                sent=len(messages),
                tools=turn.request.tools,
                tokens=tokens,
                new=added,
                reply=turn.response.content,
                calls=[_call(c) for c in turn.response.tool_calls],
                results=turn.tool_results,
            )
        )
    return Conversation(model=transcript.model, turns=turns)


def _call(call: dict[str, Any]) -> Call:
    function = call.get("function")
    if not isinstance(function, dict):
        return Call("?", _text(call))
    name, arguments = str(function.get("name")), function.get("arguments")
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return Call(name, arguments)
    return Call(name, _arguments(arguments))


def _arguments(arguments: Any) -> str:
    """Tool arguments as text: JSON, but a multi-line string (a report) as its lines."""
    if not isinstance(arguments, dict):
        return _text(arguments)
    texts = {k: v for k, v in arguments.items() if isinstance(v, str) and "\n" in v}
    rest = {k: v for k, v in arguments.items() if k not in texts}
    parts = [_text(rest)] if rest else []
    return "\n\n".join([*parts, *(f"{key}:\n{value}" for key, value in texts.items())])


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return json.dumps(content, indent=2, ensure_ascii=False, sort_keys=True, default=str)
