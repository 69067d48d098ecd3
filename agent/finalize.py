"""The runtime's own endings of an occurrence (`intake.Ending`).

`CLOSE`: every record that reaches a terminal status without the agent concluding it (a
limit or an LLM failure stopped the run, an escalation at intake, an expiry, a shutdown
cut-off). The escalated ones are paged through the pager (unless shadow mode withholds it),
the report is written once the pager says what became of the page, and the outcome is
observed.

After the run: `STILL_FIRING` pages that the agent's fix did not clear the alert;
`AUTO_RESOLVE` resolves the PagerDuty incident the occurrence was paged under;
`RESOLVED_UPSTREAM` only records that the platform resolved it. Each adds a section to the
occurrence's report. Intake runs all of this outside any run's slot, so a slow PagerDuty
holds no run, and one ending of an occurrence after the other.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from agent.loop import (
    NoRunObserver,
    RunObserver,
    findings,
    observe_escalations,
    run_context,
    triggered,
)
from agent.report import ReportInput, ReportWriter, failure_banner
from config import Settings
from intake import AlertRecord, Ending
from models import AlertStatus
from tools import Escalation, EscalationResult, Pager, RunContext, promised_report_name
from tools.pagerduty import dedup_key_for

logger = logging.getLogger(__name__)

# Finalizations doing their own work at once, in each step (handing the page over; rendering
# and writing the report). A flood (a 5,000-alert webhook, a shutdown with 20,000 queued)
# starts a task each; unbounded, they would all be ready in one turn of the event loop and
# hold it for seconds. One bound per step: a page never waits behind a backlog of reports.
ADMISSION = 16

REASONS = {
    "unknown_service": "No registered service matches this alert, so it was not diagnosed.",
    "queue_full": "The intake queue was full, so this alert was escalated without diagnosis.",
    "hourly_token_budget": "The hourly LLM token budget is spent; escalated without diagnosis.",
    "shutdown": "The runtime shut down before this queued alert was diagnosed.",
    "shutdown_grace_exceeded": "The runtime shut down while the agent was still diagnosing.",
    "agent_failed": "The agent run failed unexpectedly; see the runtime's error log.",
    "ttl": "The alert waited in the queue longer than ALERT_QUEUE_TTL_SECONDS and expired.",
    "resolved_before_diagnosis": "The platform resolved the incident before diagnosis began.",
    "still_firing": "The platform still reports the alert firing after the agent resolved it: "
    "the remediation did not clear it.",
    "timeout": "The run reached AGENT_TIMEOUT_SECONDS before the agent concluded.",
    "max_turns": "The run reached AGENT_MAX_TURNS before the agent concluded.",
    "token_budget": "The run reached MAX_TOKENS_PER_INCIDENT before the agent concluded.",
    "approval_expired": "A remediation the agent proposed got no human decision within "
    "APPROVAL_TIMEOUT_SECONDS, and the agent did not escalate, so the runtime did.",
}


def explain(reason: str | None) -> str:
    """A sentence for an operator; LLM failures (`llm_error: <kind>`) are named as such."""
    if reason and reason.startswith("llm_error"):
        return f"The LLM API failed for good ({reason}), so the agent could not conclude."
    return REASONS.get(reason or "", reason or "")


class Finalizer:
    def __init__(
        self,
        *,
        pager: Pager,
        reports: ReportWriter,
        settings: Settings,
        observer: RunObserver | None = None,
    ) -> None:
        self._observer = observer or NoRunObserver()
        self._pager = pager
        self._reports = reports
        self._settings = settings
        self._paging = asyncio.Semaphore(ADMISSION)
        self._writing = asyncio.Semaphore(ADMISSION)

    async def __call__(self, record: AlertRecord, ending: Ending = Ending.CLOSE) -> None:
        if ending is Ending.CLOSE:
            await self._close(record)
        elif ending is Ending.STILL_FIRING:
            await self._still_firing(record)
        else:
            await self._resolved_upstream(record, resolve=ending is Ending.AUTO_RESOLVE)

    async def _close(self, record: AlertRecord) -> None:
        async with self._paging:
            ctx = record.run
            if ctx is None:
                ctx = record.run = run_context(record, shadow=self._settings.shadow)
            name = promised_report_name(ctx, datetime.now(UTC))
            page = None
            if record.status is AlertStatus.ESCALATED and not triggered(ctx):
                page = self._page(record, ctx, name)
        if page is not None:
            ctx.escalations.append(await page)  # the pager's result; it takes its time
        async with self._writing:
            await self._report(record, ctx, name)

    async def _report(self, record: AlertRecord, ctx: RunContext, name: str) -> None:
        reason = explain(record.reason)
        report = ReportInput.of(
            ctx,
            outcome=record.status.value,
            stop_reason=record.reason if record.turns else None,
            notes=[reason] if reason else [],
            console_url=self._settings.console_url(record.incident_id),
        )
        await self._reports.write(record, report, name)
        observe_escalations(self._observer, ctx.escalations)

    def _page(
        self, record: AlertRecord, ctx: RunContext, report_file: str
    ) -> asyncio.Future[EscalationResult] | None:
        """Hand the page to the pager (None in shadow mode: it is listed as withheld)."""
        summary = f"[SRE agent: {record.reason}] {record.alert.summary}"
        if ctx.shadow:
            ctx.withheld.append(f"PagerDuty trigger ({record.reason}): {summary}")
            return None
        return self._pager.submit_trigger(
            Escalation(
                alert=record.alert,
                summary=summary,
                trace_id=record.trace_id,
                details=explain(record.reason) + "\n" + findings(record, ctx.final_text),
                report_file=report_file,
            )
        )

    async def _still_firing(self, record: AlertRecord) -> None:
        """Page that the remediation did not clear the alert, and add it to the report."""
        lines = [
            "The monitoring platform still reports this incident firing more than "
            f"RESOLVE_GRACE_SECONDS ({self._settings.resolve_grace_seconds:g}s) after the "
            "agent resolved it: the remediation did not clear the alert. Escalated.",
        ]
        async with self._paging:
            page = self._page(
                record, run_context(record, shadow=self._settings.shadow), record.report_file or ""
            )
        failure = None
        if page is None:
            lines.append("PagerDuty trigger withheld (shadow mode).")
        else:
            result = await page
            record.paged_as = result.dedup_key
            lines.append(_sent(result))
            failure = _failure(result)
            observe_escalations(self._observer, [result])
        record.outcome = AlertStatus.ESCALATED.value
        async with self._writing:
            await self._reports.append(record, "Still firing after the fix", lines, failure)

    async def _resolved_upstream(self, record: AlertRecord, *, resolve: bool) -> None:
        """Record the platform's resolve in the report; with `resolve`, resolve the
        PagerDuty incident the occurrence was paged under (a storm's stays open: it holds
        other incidents)."""
        lines = ["The monitoring platform reported the incident resolved."]
        failure = None
        if resolve:
            key = record.paged_as or dedup_key_for(record.incident_id)
            if key.startswith("storm:"):
                lines.append(f"It was paged as part of `{key}`, which stays open for the others.")
            elif self._settings.shadow:
                lines.append(f"PagerDuty resolve `{key}` withheld (shadow mode).")
            else:
                result = await self._pager.resolve(dedup_key=key, trace_id=record.trace_id)
                lines.append(_sent(result))
                failure = _failure(result)
                observe_escalations(self._observer, [result])
        async with self._writing:
            await self._reports.append(record, "Resolved by the platform", lines, failure)


def _failure(result: EscalationResult) -> str | None:
    """The warning a report opens with when a PagerDuty event failed for good."""
    return None if result.ok else failure_banner(result)


def _sent(result: EscalationResult) -> str:
    status = "sent" if result.ok else f"FAILED ({result.error})"
    return f"PagerDuty {result.action} `{result.dedup_key}`: {status}, {result.attempts} attempt(s)"
