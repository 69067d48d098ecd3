"""Public data model: the normalized `Alert`, its priority and statuses, and the API bodies.

Every name here appears in `/openapi.json`; review changes like endpoint paths.
Provider payload models live beside their parsers in `intake.parsers`.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Provider(StrEnum):
    """Monitoring platforms accepted at `POST /webhook/{provider}`."""

    GCP = "gcp"
    DATADOG = "datadog"
    NEWRELIC = "newrelic"
    ALERTMANAGER = "alertmanager"
    GRAFANA = "grafana"
    CLOUDWATCH = "cloudwatch"
    GENERIC = "generic"


class Priority(StrEnum):
    """P1 is the most urgent. Sorting Priority values sorts most urgent first."""

    P1 = "P1"
    P2 = "P2"
    P3 = "P3"
    P4 = "P4"
    P5 = "P5"

    @property
    def rank(self) -> int:
        return int(self.value[1])

    def raised(self) -> Priority:
        """One level more urgent, never above P1 (for alerts on critical services)."""
        return Priority(f"P{max(1, self.rank - 1)}")


class AlertState(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


class AlertStatus(StrEnum):
    """Where an accepted alert is. The last five are terminal."""

    QUEUED = "queued"
    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting_approval"  # running, with a proposed write awaiting a human
    RESOLVED = "resolved"
    ESCALATED = "escalated"
    EXPIRED = "expired"
    DEDUPLICATED = "deduplicated"
    IGNORED = "ignored"

    @property
    def terminal(self) -> bool:
        return self not in _OPEN


_OPEN = (AlertStatus.QUEUED, AlertStatus.RUNNING, AlertStatus.AWAITING_APPROVAL)


class TimelineStatus(StrEnum):
    """A timeline entry: a status the occurrence moved to, or an event after its run."""

    QUEUED = "queued"
    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting_approval"  # a write was proposed (note: its approval id)
    RESOLVED = "resolved"
    ESCALATED = "escalated"
    EXPIRED = "expired"
    DEDUPLICATED = "deduplicated"
    IGNORED = "ignored"
    APPROVED = "approved"  # a human approved a proposed write (note: who, which)
    DENIED = "denied"
    APPROVAL_EXPIRED = "approval_expired"  # no decision within APPROVAL_TIMEOUT_SECONDS
    RESOLVED_UPSTREAM = "resolved_upstream"  # the platform resolved it after the run
    STILL_FIRING = "still_firing"  # still firing RESOLVE_GRACE_SECONDS after the agent's fix


class Alert(BaseModel):
    """One alert from any platform, normalized."""

    model_config = ConfigDict(frozen=True)

    incident_id: str = Field(
        description="Stable per platform incident, prefixed with the provider: `gcp:0.lhvq5o7xpsf`."
    )
    provider: Provider
    service: str | None = Field(
        default=None, description="Registered service name, or null when none matched."
    )
    priority: Priority = Priority.P3
    state: AlertState = AlertState.FIRING
    summary: str = Field(description="Human-readable one-line summary from the platform.")
    started_at: datetime | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    url: str | None = Field(default=None, description="Link back to the platform's incident.")
    raw: Any = Field(default=None, description="The original payload, as received.")


class GenericAlert(BaseModel):
    """Body of `POST /webhook/generic`: this service's own alert schema, for scripts."""

    model_config = ConfigDict(extra="ignore")

    incident_id: str = Field(
        min_length=1,
        max_length=248,
        description="At most 248 characters: the alert's id, `generic:<incident_id>`, is <= 256.",
    )
    summary: str = Field(min_length=1)
    service: str | None = None
    priority: Priority | None = None
    severity: str | None = Field(default=None, description="Used when `priority` is absent.")
    state: AlertState = AlertState.FIRING
    labels: dict[str, str] = Field(default_factory=dict)
    url: str | None = None
    started_at: datetime | None = None


class AlertResult(BaseModel):
    """What intake did with one alert of a webhook request."""

    incident_id: str
    service: str | None
    priority: Priority
    status: AlertStatus
    reason: str | None = None


class WebhookResponse(BaseModel):
    """202 body of `POST /webhook/{provider}`: one result per alert in the request."""

    trace_id: str
    alerts: list[AlertResult]


class ErrorResponse(BaseModel):
    """Body of every 4xx/5xx this service returns."""

    error: str = Field(description="Machine-readable error code.")
    detail: Any = Field(default=None, description="Human-readable explanation or field errors.")
    trace_id: str | None = None


class TimelineEntry(BaseModel):
    at: datetime
    status: TimelineStatus
    note: str | None = None


class ToolCallRecord(BaseModel):
    """One tool call the agent made."""

    turn: int
    name: str
    arguments: Any
    duration_ms: float
    ok: bool
    error: str | None = None


class TokenUsage(BaseModel):
    input: int = 0
    output: int = 0
    total: int = 0


class AlertSummary(BaseModel):
    """One row of `GET /alerts`: one occurrence of an incident."""

    incident_id: str
    occurrence: int = Field(description="Which firing episode of the incident: 1, 2, ...")
    service: str | None
    priority: Priority
    status: AlertStatus
    summary: str
    received_at: datetime
    repeats: int = 0
    paged_as: str | None = Field(
        default=None,
        description="The PagerDuty `dedup_key` this alert was paged under: its incident id, or "
        "`storm:<first incident id>` when it was coalesced into an alert storm (§6); null "
        "when not paged.",
    )


class AlertList(BaseModel):
    """Body of `GET /alerts`: one page of the queue, with what runs and has just finished.

    `limit` caps each list. `next_cursor` pages over `queued`, the one long list; `running`
    (at most MAX_CONCURRENT_ALERTS) and `recent` (at most 100) are the current ones on every
    page.
    """

    running: list[AlertSummary] = Field(description="Alerts running now, in start order.")
    queued: list[AlertSummary] = Field(
        description="One page of the queue, in queue order: best priority, then oldest."
    )
    recent: list[AlertSummary] = Field(description="The last 100 finished alerts, newest first.")
    next_cursor: str | None = Field(
        description="Pass as `?cursor=` for the queued alerts after this page; null on the "
        "last page. Opaque. It stays valid while alerts come and go: one queued meanwhile "
        "shows up on a later page if it sorts after the cursor."
    )


class TranscriptRequest(BaseModel):
    """What the runtime sent the LLM in one turn."""

    messages: list[dict[str, Any]] = Field(
        description="The whole conversation as sent: system prompt, alert, earlier turns."
    )
    tools: list[str] = Field(description="Names of the tools offered (none on the last turn).")


class TranscriptResponse(BaseModel):
    """What the LLM answered in one turn (its text cut to 64 KiB, as the runtime read it)."""

    content: str | None = None
    tool_calls: list[dict[str, Any]] = Field(default_factory=list)


class TranscriptUsage(BaseModel):
    """Tokens of one turn, from `response.usage`."""

    input: int = 0
    output: int = 0
    cached: int | None = Field(
        default=None,
        description="Prompt tokens served from the provider's cache "
        "(`usage.prompt_tokens_details.cached_tokens`); null when the API does not say.",
    )


class TranscriptToolResult(BaseModel):
    """One tool call's result, as given back to the model."""

    tool_call_id: str
    name: str
    content: str
    ok: bool


class TranscriptTurn(BaseModel):
    turn: int
    at: datetime
    request: TranscriptRequest
    response: TranscriptResponse
    usage: TranscriptUsage
    tool_results: list[TranscriptToolResult] = Field(default_factory=list)


class Transcript(BaseModel):
    """Body of `GET /alerts/{incident_id}/transcript`: one run's conversation, redacted."""

    incident_id: str
    occurrence: int
    model: str
    turns: list[TranscriptTurn]


class OccurrenceSummary(BaseModel):
    """One remembered occurrence of an incident, in `AlertDetail.occurrences`."""

    occurrence: int
    started_at: datetime | None = Field(
        description="When the platform says this episode began; null when it does not say."
    )
    status: AlertStatus
    outcome: str | None = None
    report_file: str | None = None


class ApprovalStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"


class Approval(BaseModel):
    """A remediation write the agent proposed in `AGENT_MODE=approve` (CONTRACT §9)."""

    approval_id: str
    incident_id: str
    occurrence: int
    tool: str = Field(description="`call_ops_endpoint` (a POST) or `scale_service`.")
    arguments: dict[str, Any] = Field(description="The call as the model made it, redacted.")
    reason: str | None = Field(default=None, description="Why the agent wants it.")
    requested_at: datetime
    expires_at: datetime
    status: ApprovalStatus
    decided_by: str | None = Field(
        default=None,
        description="The `CONSOLE_IDENTITY_HEADER` user, else `token`; `runtime` when it expired.",
    )
    decided_at: datetime | None = None
    note: str | None = None
    result: str | None = Field(
        default=None, description="Approved: what became of the write once sent."
    )


class ApprovalDecision(BaseModel):
    """Body of `POST /alerts/{incident_id}/approvals/{approval_id}`."""

    model_config = ConfigDict(extra="forbid")

    decision: Literal["approve", "deny"]
    note: str = Field(default="", max_length=2000, description="Shown to the agent and kept.")


class ApprovalList(BaseModel):
    """Body of `GET /approvals`: every pending approval, oldest first."""

    approvals: list[Approval]


class AlertDetail(BaseModel):
    """Body of `GET /alerts/{incident_id}`: one occurrence (the latest unless asked)."""

    incident_id: str
    occurrence: int = Field(description="Which firing episode of the incident: 1, 2, ...")
    service: str | None
    priority: Priority
    status: AlertStatus
    reason: str | None = None
    alert: Alert
    timeline: list[TimelineEntry]
    tool_calls: list[ToolCallRecord]
    tokens: TokenUsage
    outcome: str | None = None
    report_file: str | None = None
    paged_as: str | None = Field(
        default=None,
        description="The PagerDuty `dedup_key` this alert was paged under: its incident id, or "
        "`storm:<first incident id>` when it was coalesced into an alert storm (§6); null "
        "when not paged.",
    )
    approvals: list[Approval] = Field(
        default_factory=list,
        description="The writes this occurrence proposed in approve mode, with their decisions.",
    )
    occurrences: list[OccurrenceSummary] = Field(
        default_factory=list,
        description="Every remembered occurrence of the incident, newest first.",
    )
