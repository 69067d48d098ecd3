"""The arguments of each tool (CONTRACT §4), as pydantic models.

These models are both the validation of the model's untrusted JSON and the source of the
JSON schemas offered to it, so field descriptions are written for the model.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from config import LowerCase, UpperCase

ServiceName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=63),
    Field(description="Registered service name, exactly as in the alert or service registry."),
]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
LogSeverity = Literal[
    "DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL", "ALERT", "EMERGENCY"
]


class ToolArguments(BaseModel):
    """Base of every tool's arguments: unknown fields are an error, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class CallOpsArgs(ToolArguments):
    service: ServiceName
    endpoint: str = Field(
        max_length=200,
        description="Path under /ops/ on that service, e.g. /ops/status, /ops/metrics, "
        "/ops/errors, /ops/dependencies, /ops/config, /ops/health; a bare 'status' means "
        "/ops/status. Path only: no host, query string or '..'.",
    )
    method: Annotated[Literal["GET", "POST"], UpperCase] = Field(
        default="GET",
        description="GET to read (default). POST only for a remediation the service offers, "
        "e.g. /ops/restart or /ops/cache/clear.",
    )
    body: dict[str, Any] | None = Field(
        default=None, description="JSON object to send with POST; omit for GET."
    )


class QueryLogsArgs(ToolArguments):
    service: ServiceName
    query: str | None = Field(
        default=None,
        max_length=2000,
        description="Optional free text to search for in log messages (always matched as text).",
    )
    severity: Annotated[LogSeverity | None, UpperCase] = Field(
        default=None, description="Optional minimum severity, e.g. ERROR."
    )
    minutes: int = Field(default=30, ge=1, le=10080, description="How far back to look.")
    limit: int = Field(default=50, ge=1, le=500, description="Maximum entries to return.")


class QueryMetricsArgs(ToolArguments):
    service: ServiceName
    metric_type: str = Field(
        min_length=1,
        max_length=256,
        description="Metric to read, e.g. run.googleapis.com/request_latencies (GCP) or "
        "CPUUtilization (AWS).",
    )
    minutes: int = Field(default=60, ge=1, le=10080, description="How far back to look.")
    aggregation: str | None = Field(
        default=None,
        max_length=64,
        description="Optional aligner/statistic, e.g. mean, max, p99, sum.",
    )


class ScaleArgs(ToolArguments):
    service: ServiceName
    replicas: int = Field(ge=0, le=10000, description="Target replica count, within the bounds.")
    reason: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)
    ] = Field(description="Why scaling fixes this incident; recorded for the audit trail.")


class EscalateArgs(ToolArguments):
    summary: Annotated[Text, Field(description="One line for the on-call human (<= 1024 chars).")]
    severity: str | None = Field(
        default=None,
        max_length=32,
        description="critical, error, warning or info; omit to derive it from the alert.",
    )
    details: str | None = Field(
        default=None,
        max_length=50_000,
        description="Findings so far: what you checked, what you saw, what you tried.",
    )


class AcknowledgeArgs(ToolArguments):
    action: Annotated[Literal["acknowledge", "resolve"], LowerCase] = Field(
        description="acknowledge: a human need not act yet; resolve: the incident is over."
    )
    note: str | None = Field(
        default=None, max_length=2000, description="Optional reason, kept in the audit trail."
    )


class ReportArgs(ToolArguments):
    content: Annotated[Text, Field(description="The incident report, in markdown.")]
    filename: str | None = Field(
        default=None,
        max_length=200,
        description="Optional plain file name such as api-latency.md (no directories). "
        "Omit to use the default name. One file per incident: later calls overwrite it.",
    )
