"""Response and request bodies of this service's own `/ops/*` endpoints (in /openapi.json)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from config import LogLevel

HealthStatus = Literal["ok", "degraded", "failing"]
DependencyKind = Literal["llm", "pagerduty", "service", "cloud", "database"]


class LatencyPercentiles(BaseModel):
    """Request latency over the sliding window, in ms (null when no request was seen)."""

    p50: float | None = None
    p95: float | None = None
    p99: float | None = None


class RouteCount(BaseModel):
    """Lifetime requests of one route (at most 64 routes; the rest under `(other)`)."""

    requests: int
    server_errors: int = Field(description="Responses with a 5xx status.")


class RequestMetrics(BaseModel):
    """Traffic, errors and latency of this service's HTTP API."""

    window_total: int = Field(description="Requests in the sliding window.")
    lifetime_total: int = Field(description="Requests since start.")
    rate_per_second: float = Field(description="Requests per second over the window.")
    error_rate: float | None = Field(description="Share of 5xx responses in the window.")
    client_error_rate: float | None = Field(description="Share of 4xx responses in the window.")
    latency_ms: LatencyPercentiles
    by_route: dict[str, RouteCount]


class Saturation(BaseModel):
    """How full the agent run slots and the intake queue are."""

    running: int = Field(description="Agent runs in progress.")
    limit: int = Field(description="MAX_CONCURRENT_ALERTS.")
    ratio: float | None = Field(description="running / limit.")
    queue_depth: int = Field(description="Alerts waiting in the intake queue.")
    queue_max: int = Field(description="MAX_QUEUE_SIZE.")
    queue_fill_ratio: float | None = Field(description="queue_depth / queue_max.")


class WebhookCounters(BaseModel):
    """Webhook alerts since start, by outcome."""

    received: int
    processed: int
    ignored: int
    failed: int


class IntakeCounters(BaseModel):
    """Intake events since start."""

    queued: int
    deduplicated: int
    expired: int


class AgentRunStats(BaseModel):
    """Finished agent runs since start."""

    completed: int
    failed: int
    average_duration_s: float | None
    max_duration_s: float


class TokenUsageStats(BaseModel):
    """LLM tokens since start, and over the rolling hour that MAX_TOKENS_PER_HOUR limits."""

    input: int
    output: int
    total: int
    last_hour: int
    per_incident_average: float | None = Field(description="Tokens per finished agent run.")


class MetricsResponse(BaseModel):
    """Body of `GET /ops/metrics`: the golden signals and the runtime's counters."""

    window_seconds: float = Field(description="Width of the sliding window.")
    uptime_seconds: float
    requests: RequestMetrics
    saturation: Saturation
    webhooks: WebhookCounters
    intake: IntakeCounters
    agent_runs: AgentRunStats
    token_usage: TokenUsageStats


class GoldenSignals(BaseModel):
    """The four golden signals at a glance (details in `/ops/metrics`)."""

    latency_ms: LatencyPercentiles
    request_rate_per_second: float
    error_rate: float | None
    saturation: float | None = Field(description="Running agent runs / MAX_CONCURRENT_ALERTS.")
    queue_depth: int


class StatusResponse(BaseModel):
    """Body of `GET /ops/status`: the verdict, why, and the golden signals."""

    status: Literal["healthy", "degraded", "unhealthy"]
    reasons: list[str] = Field(description="Why the status is not healthy; empty when it is.")
    version: str
    uptime_seconds: float
    mode: Literal["live", "shadow"] = Field(description="AGENT_MODE.")
    draining: bool = Field(description="True after POST /ops/drain: new webhooks get 503.")
    golden_signals: GoldenSignals


class CheckResult(BaseModel):
    """One deep health check."""

    name: str = Field(description="pagerduty, prompt, incidents_dir or llm_dns.")
    status: Literal["ok", "failing"]
    latency_ms: float
    detail: str | None = None


class HealthResponse(BaseModel):
    """Body of `GET /ops/health` (200 when every check is ok, 503 otherwise).

    `failing` when the prompt or the incidents directory is unusable or every check fails;
    `degraded` when only a remote dependency (PagerDuty, LLM DNS) fails.
    """

    status: HealthStatus
    checks: list[CheckResult]


class ServiceConfig(BaseModel):
    """One SERVICE_REGISTRY entry."""

    name: str
    url: str = Field(description="Base URL, any userinfo removed.")
    critical: bool


class ScalingConfig(BaseModel):
    """One SCALING_LIMITS entry."""

    service: str
    min_replicas: int
    max_replicas: int
    mode: Literal["application", "cloud"]


class ConfigResponse(BaseModel):
    """Body of `GET /ops/config`: the effective configuration, with no secret in it."""

    settings: dict[str, Any] = Field(
        description="Every non-secret setting by field name; URLs without userinfo."
    )
    secrets: dict[str, Literal["configured", "not set"]] = Field(
        description="Each secret setting: only whether it is set."
    )
    service_registry: list[ServiceConfig]
    scaling_limits: list[ScalingConfig]


class DependencyStatus(BaseModel):
    """Last seen status of one dependency."""

    name: str
    kind: DependencyKind
    target: str | None = Field(default=None, description="URL or project it is reached at.")
    critical: bool | None = Field(default=None, description="For services: registry flag.")
    status: Literal["ok", "failing", "unknown"] = Field(
        description="`unknown` until the dependency has been used or checked."
    )
    detail: str | None = None
    latency_ms: float | None = None
    last_seen: str | None = Field(default=None, description="ISO-8601 time of the last check.")


class DependenciesResponse(BaseModel):
    """Body of `GET /ops/dependencies`."""

    dependencies: list[DependencyStatus]


class ErrorEntry(BaseModel):
    """Errors of one kind since start."""

    kind: str
    count: int
    last_message: str
    last_seen: str = Field(description="ISO-8601 time of the last occurrence.")


class ErrorsResponse(BaseModel):
    """Body of `GET /ops/errors`: at most 50 kinds, most recently seen first."""

    errors: list[ErrorEntry]


class LogLevelRequest(BaseModel):
    """Body of `POST /ops/loglevel`; the level is case-insensitive."""

    level: LogLevel


class LogLevelResponse(BaseModel):
    """The log level now in force."""

    level: LogLevel


class DrainRequest(BaseModel):
    """Optional body of `POST /ops/drain`: `{"draining": false}` accepts webhooks again."""

    draining: bool = Field(default=True, description="false: stop draining.")


class DrainResponse(BaseModel):
    """Body of `POST /ops/drain`: whether new webhooks are refused; queued and running work
    goes on either way."""

    draining: bool
    running: int
    queued: int
