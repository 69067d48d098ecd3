"""PagerDuty: Events API v2 (trigger, acknowledge, resolve) with retries, and the REST API
(health probe, hand-off to an escalation policy). CONTRACT §6.

Every method returns a value and never raises (except `CancelledError`): a failed page is
an outcome the runtime must report, not an exception to lose.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    retry_if_result,
    stop_after_attempt,
    stop_any,
    wait_exponential_jitter,
)
from tenacity.stop import stop_base

from config import Settings
from models import Alert, Priority
from tools.pagerduty_rest import PagerDutyRest
from tools.redact import Redactor

logger = logging.getLogger(__name__)

SEVERITIES = ("critical", "error", "warning", "info")
MAX_RETRIES = 5
MAX_SUMMARY_CHARS = 1024
MAX_DEDUP_KEY_CHARS = 255
MAX_RETRY_AFTER_SECONDS = 120.0
EVENT_TIMEOUT_SECONDS = 10.0
CLIENT_NAME = "SRE Agent Runtime"
_backoff = wait_exponential_jitter(initial=1, max=30, jitter=1)


@dataclass(slots=True)
class EscalationResult:
    """What happened to one Events API call."""

    ok: bool
    action: str  # "trigger" | "acknowledge" | "resolve"
    dedup_key: str
    status_code: int | None
    attempts: int
    error: str | None = None
    shadow: bool = False  # True: withheld in shadow mode, nothing sent
    policy_handoff: str | None = None  # result of the escalation-policy hand-off, if attempted


@dataclass(frozen=True, slots=True)
class Escalation:
    """A page to make for one alert's incident: what its Events API trigger says."""

    alert: Alert
    summary: str
    trace_id: str
    severity: str | None = None  # None or not a PagerDuty severity: from the alert
    details: str | None = None  # findings, free text
    report_file: str | None = None  # the report that will hold the findings
    extra: Mapping[str, Any] | None = None  # more custom_details (an approval's proposed call)


def severity_for(alert: Alert, critical: bool) -> str:
    """PagerDuty severity: critical for P1 or a critical service, then error, warning, info."""
    if critical or alert.priority is Priority.P1:
        return "critical"
    return {Priority.P2: "error", Priority.P3: "warning"}.get(alert.priority, "info")


def dedup_key_for(incident_id: str) -> str:
    """The Events API dedup key for an incident: its id, shortened (stably) past 255 chars."""
    if len(incident_id) <= MAX_DEDUP_KEY_CHARS:
        return incident_id
    digest = hashlib.sha256(incident_id.encode()).hexdigest()[:16]
    return f"{incident_id[: MAX_DEDUP_KEY_CHARS - 17]}#{digest}"


def _retryable(response: httpx.Response) -> bool:
    return response.status_code == 429 or response.status_code >= 500


def _retry_after(state: RetryCallState) -> float | None:
    """Seconds from the last response's `Retry-After`, when it carries a number."""
    outcome = state.outcome
    if outcome is None or outcome.failed:
        return None
    return _retry_after_seconds(outcome.result())


def _retry_after_seconds(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        seconds = float(value)
    except ValueError:
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def _wait(state: RetryCallState) -> float:
    retry_after = _retry_after(state)
    return retry_after if retry_after is not None else _backoff(state)


def _last_outcome(state: RetryCallState) -> httpx.Response:
    """After the last attempt: its response, or its transport error re-raised."""
    assert state.outcome is not None  # tenacity calls this only after an attempt
    response: httpx.Response = state.outcome.result()
    return response


class PagerDutyEvents(Protocol):
    """What the agent, its tools and the finalizer page through (`tools.pager.Pager`)."""

    async def trigger(
        self, escalation: Escalation, *, deadline: float | None = None
    ) -> EscalationResult: ...

    async def acknowledge(
        self, *, dedup_key: str, trace_id: str, deadline: float | None = None
    ) -> EscalationResult: ...

    async def resolve(
        self, *, dedup_key: str, trace_id: str, deadline: float | None = None
    ) -> EscalationResult: ...

    async def probe(self) -> tuple[bool, str]: ...


class RateGate:
    """PagerDuty rate-limits per integration key: after a 429, every sender waits out its
    `Retry-After` before the next attempt, not only the one that was refused."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._until = 0.0

    def pause(self, seconds: float) -> None:
        self._until = max(self._until, self._clock() + seconds)

    async def wait(self, deadline: float | None) -> None:
        """Sleep until the pause is over (or, at most, until `deadline`)."""
        until = self._until if deadline is None else min(self._until, deadline)
        delay = until - self._clock()
        if delay > 0:
            await self._sleep(delay)


class _StopAtDeadline(stop_base):
    """Give up rather than sleep past the run's deadline."""

    def __init__(self, deadline: float | None, clock: Callable[[], float]) -> None:
        self._deadline = deadline
        self._clock = clock

    def __call__(self, retry_state: RetryCallState) -> bool:
        if self._deadline is None:
            return False
        return self._clock() + retry_state.upcoming_sleep > self._deadline


class PagerDutyClient:
    """Events API v2 with bounded retries; REST probe and escalation-policy hand-off."""

    def __init__(
        self,
        *,
        http: httpx.AsyncClient,
        settings: Settings,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        gate: RateGate | None = None,
    ) -> None:
        self._http = http
        self._settings = settings
        self._sleep = sleep
        self._clock = clock
        self._gate = gate or RateGate(clock=clock, sleep=sleep)
        self._redactor = Redactor(settings.secret_values())
        self._rest = PagerDutyRest(http=http, settings=settings, sleep=sleep, clock=clock)

    async def trigger(
        self, escalation: Escalation, *, deadline: float | None = None
    ) -> EscalationResult:
        """Page a human for this alert's incident (dedup key = incident id)."""
        event = self.trigger_event(escalation)
        return await self.send_trigger(event, trace_id=escalation.trace_id, deadline=deadline)

    async def send_trigger(
        self, event: dict[str, Any], *, trace_id: str, deadline: float | None = None
    ) -> EscalationResult:
        """Send a built trigger event, then hand it to the escalation policy when set."""
        result = await self._send(event, trace_id=trace_id, deadline=deadline)
        if result.ok and self._settings.pagerduty_escalation_policy_id:
            result.policy_handoff = await self._rest.hand_off(
                result.dedup_key, trace_id=trace_id, deadline=deadline
            )
        return result

    async def acknowledge(
        self, *, dedup_key: str, trace_id: str, deadline: float | None = None
    ) -> EscalationResult:
        event = {"event_action": "acknowledge", "dedup_key": dedup_key}
        return await self._send(event, trace_id=trace_id, deadline=deadline)

    async def resolve(
        self, *, dedup_key: str, trace_id: str, deadline: float | None = None
    ) -> EscalationResult:
        event = {"event_action": "resolve", "dedup_key": dedup_key}
        return await self._send(event, trace_id=trace_id, deadline=deadline)

    async def probe(self) -> tuple[bool, str]:
        """Is the REST API reachable with the token? For `/ops/health`."""
        return await self._rest.probe()

    def trigger_event(self, escalation: Escalation) -> dict[str, Any]:
        """The Events API v2 trigger for this alert's incident (without the routing key)."""
        alert, details = escalation.alert, escalation.details
        service = alert.service or "unknown"
        summary = escalation.summary.strip() or alert.summary or alert.incident_id
        text = self._redactor.redact(summary)
        payload: dict[str, Any] = {
            "summary": text[:MAX_SUMMARY_CHARS],
            "source": service,
            "severity": self.severity(alert, escalation.severity),
            "component": service,
            "custom_details": {
                "findings": self._redactor.redact(details) if details else details,
                "trace_id": escalation.trace_id,
                "report_file": escalation.report_file,
                "incident_id": alert.incident_id,
                "priority": alert.priority.value,
                "service": service,
                **(escalation.extra or {}),
            },
        }
        console = self._settings.console_url(alert.incident_id)
        if console:
            payload["custom_details"]["console_url"] = console
        if alert.started_at is not None:
            payload["timestamp"] = alert.started_at.isoformat()
        event: dict[str, Any] = {
            "event_action": "trigger",
            "dedup_key": alert.incident_id,
            "payload": payload,
            "client": CLIENT_NAME,
        }
        links = [{"href": alert.url, "text": "Alert source"}] if alert.url else []
        if console:
            links.append({"href": console, "text": "SRE agent console"})
        if links:
            event["links"] = links
        return event

    def severity(self, alert: Alert, requested: str | None) -> str:
        """The event's severity: the requested one when valid, else from the alert."""
        wanted = (requested or "").strip().lower()
        if wanted in SEVERITIES:
            return wanted
        entry = self._settings.service(alert.service) if alert.service else None
        return severity_for(alert, critical=entry is not None and entry.critical)

    async def _send(
        self, event: dict[str, Any], *, trace_id: str, deadline: float | None
    ) -> EscalationResult:
        action, dedup_key = event["event_action"], dedup_key_for(event["dedup_key"])
        routing_key = self._settings.pagerduty_routing_key.get_secret_value()
        body = {"routing_key": routing_key, **event, "dedup_key": dedup_key}
        attempts = 0

        async def attempt() -> httpx.Response:
            nonlocal attempts
            await self._gate.wait(deadline)
            attempts += 1
            response = await self._http.post(
                self._settings.pagerduty_events_url,
                json=body,
                headers={"X-Trace-Id": trace_id},
                timeout=self._attempt_timeout(deadline),
            )
            if response.status_code == 429:
                self._gate.pause(_retry_after_seconds(response) or 1.0)
            return response

        try:
            response: httpx.Response = await self._retrying(deadline)(attempt)
        except httpx.HTTPError as exc:
            return self._failed(action, dedup_key, None, attempts, f"{type(exc).__name__}: {exc}")
        if response.is_success:
            logger.info("PagerDuty %s accepted for %s", action, dedup_key)
            return EscalationResult(True, action, dedup_key, response.status_code, attempts)
        error = f"HTTP {response.status_code} from PagerDuty Events API: {response.text[:300]}"
        return self._failed(action, dedup_key, response.status_code, attempts, error)

    def _retrying(self, deadline: float | None) -> AsyncRetrying:
        return AsyncRetrying(
            retry=retry_if_result(_retryable)
            | retry_if_exception_type((httpx.TimeoutException, httpx.TransportError)),
            wait=_wait,
            stop=stop_any(
                stop_after_attempt(MAX_RETRIES + 1), _StopAtDeadline(deadline, self._clock)
            ),
            sleep=self._sleep,
            retry_error_callback=_last_outcome,
        )

    def _attempt_timeout(self, deadline: float | None) -> float:
        if deadline is None:
            return EVENT_TIMEOUT_SECONDS
        return min(EVENT_TIMEOUT_SECONDS, max(deadline - self._clock(), 1.0))

    def _failed(
        self, action: str, dedup_key: str, status: int | None, attempts: int, error: str
    ) -> EscalationResult:
        error = self._redactor.redact(error)
        logger.error(
            "PagerDuty %s failed for %s after %d attempt(s): %s", action, dedup_key, attempts, error
        )
        return EscalationResult(False, action, dedup_key, status, attempts, error)
