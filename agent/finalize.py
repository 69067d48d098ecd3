"""Closing records that get no complete run: escalations at intake, expiries, cut-offs.

Intake calls a `Finalizer` for every record that reaches a terminal status without the
agent finishing it: the escalated ones page PagerDuty (unless shadow mode withholds it),
and every one of them gets a report.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from agent.loop import (
    ESCALATION_SECONDS,
    NoRunObserver,
    RunObserver,
    findings,
    observe_escalations,
    triggered,
)
from agent.report import ReportInput, ReportWriter
from config import Settings
from intake import AlertRecord
from models import AlertStatus
from tools import PagerDutyClient, RunContext

logger = logging.getLogger(__name__)

REASONS = {
    "unknown_service": "No registered service matches this alert, so it was not diagnosed.",
    "queue_full": "The intake queue was full, so this alert was escalated without diagnosis.",
    "hourly_token_budget": "The hourly LLM token budget is spent; escalated without diagnosis.",
    "shutdown": "The runtime shut down before this queued alert was diagnosed.",
    "shutdown_grace_exceeded": "The runtime shut down while the agent was still diagnosing.",
    "agent_failed": "The agent run failed unexpectedly; see the runtime's error log.",
    "ttl": "The alert waited in the queue longer than ALERT_QUEUE_TTL_SECONDS and expired.",
    "resolved_before_diagnosis": "The platform resolved the incident before diagnosis began.",
}


class Finalizer:
    def __init__(
        self,
        *,
        pagerduty: PagerDutyClient,
        reports: ReportWriter,
        settings: Settings,
        observer: RunObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._observer = observer or NoRunObserver()
        self._pagerduty = pagerduty
        self._reports = reports
        self._settings = settings
        self._clock = clock

    async def __call__(self, record: AlertRecord) -> None:
        ctx = record.extra.get("ctx")
        if not isinstance(ctx, RunContext):
            ctx = RunContext(
                alert=record.alert, trace_id=record.trace_id, shadow=self._settings.shadow
            )
        if record.status is AlertStatus.ESCALATED and not triggered(ctx):
            await self._page(record, ctx)
        reason = REASONS.get(record.reason or "", record.reason or "")
        report = ReportInput(
            outcome=record.status.value,
            model_text=ctx.report_content,
            escalations=ctx.escalations,
            withheld=ctx.withheld,
            shadow=ctx.shadow,
            notes=[reason] if reason else [],
            stop_reason=record.reason if record.tool_calls else None,
        )
        await self._reports.write(record, report, ctx.report_filename)
        observe_escalations(self._observer, ctx.escalations)

    async def _page(self, record: AlertRecord, ctx: RunContext) -> None:
        summary = f"[SRE agent: {record.reason}] {record.alert.summary}"[:1024]
        if ctx.shadow:
            ctx.withheld.append(f"PagerDuty trigger ({record.reason}): {summary}")
            return
        result = await self._pagerduty.trigger(
            alert=record.alert,
            summary=summary,
            details=REASONS.get(record.reason or "", "") + "\n" + findings(record, None),
            trace_id=record.trace_id,
            deadline=self._clock() + ESCALATION_SECONDS,
        )
        ctx.escalations.append(result)
