"""Incident reports (CONTRACT §5): rendered, redacted, written, and logged as one JSON line.

Whatever the model wrote comes first; the runtime's own sections follow, so a report is
complete even when the model wrote nothing or the run was cut off. The model's part is at
most 64 KiB (its text and tool arguments are bounded where they are read); the whole report,
after redaction, is cut to 256 KiB with a marker, the same text in the file and in the log
line.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from intake import AlertRecord
from models import Approval
from tools import EscalationResult, Redactor, RunContext, default_report_name, write_report
from tools.reports import capped

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class ReportInput:
    """Everything a report says beyond the record itself."""

    outcome: str
    stop_reason: str | None = None
    model_text: str | None = None
    escalations: Sequence[EscalationResult] = ()
    withheld: Sequence[str] = ()
    budget_exceeded: bool = False
    shadow: bool = False
    notes: list[str] = field(default_factory=list)
    approvals: Sequence[Approval] | None = None  # approve mode: the proposed writes
    approval_pages: Sequence[EscalationResult] = ()  # "Approval needed" pages and resolves
    console_url: str | None = None  # the incident's console page (PUBLIC_URL)

    @classmethod
    def of(
        cls,
        ctx: RunContext,
        *,
        outcome: str,
        stop_reason: str | None = None,
        notes: Sequence[str] = (),
        console_url: str | None = None,
    ) -> ReportInput:
        """What a run's context says: the model's report (else its last words), the pages
        made or withheld, whether the token budget ran out, the approvals asked for."""
        approver = ctx.approver
        return cls(
            outcome=outcome,
            stop_reason=stop_reason,
            model_text=ctx.report_content or ctx.final_text,
            escalations=ctx.escalations,
            withheld=ctx.withheld,
            budget_exceeded=ctx.budget_exceeded,
            shadow=ctx.shadow,
            notes=list(notes),
            approvals=None if approver is None else approver.views(),
            approval_pages=() if approver is None else approver.pages(),
            console_url=console_url,
        )


def render(record: AlertRecord, report: ReportInput) -> str:
    parts = [
        _failures(report.escalations),
        report.model_text.strip() if report.model_text else _fallback_title(record, report),
        _alert_section(record, report),
        _outcome_section(record, report),
        _escalation_section(report.escalations, report.shadow),
        _timeline_section(record, report.outcome),
        _tool_section(record),
        _withheld_section(report) if report.shadow else "",
        _approvals_section(report) if report.approvals is not None else "",
        _token_section(record, report.budget_exceeded),
    ]
    return "\n\n".join(part for part in parts if part) + "\n"


def _failures(escalations: Sequence[EscalationResult]) -> str:
    return "\n".join(failure_banner(e) for e in escalations if not e.ok and not e.shadow)


def failure_banner(escalation: EscalationResult) -> str:
    """The line a report opens with when a PagerDuty event failed for good."""
    e = escalation
    if e.action != "trigger":
        return (
            f"> **PagerDuty {e.action} FAILED** after {e.attempts} attempt(s): {e.error}. "
            f"Do it by hand in PagerDuty (`{e.dedup_key}`)."
        )
    return (
        f"> **PagerDuty {e.action} FAILED** after {e.attempts} attempt(s): {e.error}. "
        "No human has been paged by this runtime: page the on-call manually."
    )


def _fallback_title(record: AlertRecord, report: ReportInput) -> str:
    lines = [f"# Incident {record.incident_id}: {record.alert.summary}"]
    if report.stop_reason:
        lines.append(f"\nThe agent run ended early ({report.stop_reason}).")
    lines.extend(f"\n{note}" for note in report.notes)
    return "\n".join(lines)


def _alert_section(record: AlertRecord, report: ReportInput) -> str:
    alert = record.alert
    rows = [
        ("Incident", alert.incident_id),
        ("Occurrence", str(record.occurrence)),
        ("Service", alert.service or "(not in the registry)"),
        ("Priority", alert.priority.value),
        ("Provider", alert.provider.value),
        ("Summary", alert.summary),
        ("Started", alert.started_at.isoformat() if alert.started_at else "unknown"),
        ("Link", alert.url or "none"),
        ("Trace ID", record.trace_id),
        ("Repeat notifications", str(record.repeats)),
    ]
    if report.console_url:
        rows.append(("Console", report.console_url))
    return "## Alert\n" + "\n".join(f"- **{k}:** {v}" for k, v in rows)


def _outcome_section(record: AlertRecord, report: ReportInput) -> str:
    lines = [f"- **Outcome:** {report.outcome}"]
    if record.reason:
        lines.append(f"- **Reason:** {record.reason}")
    if report.stop_reason:
        lines.append(f"- **Run stopped by:** {report.stop_reason}")
    if record.resolved_upstream:
        lines.append("- The monitoring platform reported the incident resolved during the run.")
    return "## Outcome\n" + "\n".join(lines)


def _escalation_section(escalations: Sequence[EscalationResult], shadow: bool) -> str:
    if not escalations:
        note = "withheld (shadow mode)" if shadow else "none"
        return f"## Escalation\n- PagerDuty: {note}"
    lines = []
    for e in escalations:
        status = "sent" if e.ok else f"FAILED ({e.error})"
        line = f"- PagerDuty {e.action} `{e.dedup_key}`: {status}, {e.attempts} attempt(s)"
        if e.policy_handoff:
            line += f"; escalation policy: {e.policy_handoff}"
        lines.append(line)
    return "## Escalation\n" + "\n".join(lines)


def _timeline_section(record: AlertRecord, outcome: str) -> str:
    entries = [(e.at, e.status.value, e.note) for e in record.timeline]
    if not record.status.terminal:  # a run reports before intake records its end
        entries.append((datetime.now(UTC), outcome, record.reason))
    lines = [
        f"- {at.strftime('%Y-%m-%dT%H:%M:%SZ')} {status}" + (f" ({note})" if note else "")
        for at, status, note in entries
    ]
    return "## Timeline\n" + "\n".join(lines or ["- (none)"])


def _tool_section(record: AlertRecord) -> str:
    if not record.tool_calls:
        return "## Tool Calls\nNone."
    rows = ["| turn | tool | ok | ms | detail |", "|---|---|---|---|---|"]
    for call in record.tool_calls:
        detail = call.error or _short(call.arguments)
        rows.append(
            f"| {call.turn} | {call.name} | {'yes' if call.ok else 'no'} "
            f"| {call.duration_ms:.0f} | {_cell(detail)} |"
        )
    return "## Tool Calls\n" + "\n".join(rows)


def _withheld_section(report: ReportInput) -> str:
    lines = [f"- {line}" for line in report.withheld] or ["- Nothing: no write was attempted."]
    return "## Would Have Done\n" + "\n".join(lines)


def _approvals_section(report: ReportInput) -> str:
    approvals = report.approvals or ()
    if not approvals:
        return "## Approvals\nNo remediation write was proposed."
    rows = [
        "| approval | proposed | reason | decision | by | at | note | result |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for a in approvals:
        at = a.decided_at.strftime("%Y-%m-%dT%H:%M:%SZ") if a.decided_at else "-"
        cells = [
            a.approval_id,
            f"{a.tool} {_short(a.arguments)}",
            a.reason or "-",
            a.status.value,
            a.decided_by or "-",
            at,
            a.note or "-",
            a.result or "-",
        ]
        rows.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    pages = [
        f"- PagerDuty {p.action} `{p.dedup_key}` (approval page): "
        + ("sent" if p.ok else f"FAILED ({p.error})")
        for p in report.approval_pages
    ]
    section = "## Approvals\n" + "\n".join(rows)
    return section + "\n\n" + "\n".join(pages) if pages else section


def _token_section(record: AlertRecord, budget_exceeded: bool) -> str:
    tokens = record.tokens
    rows = [
        f"- Input tokens: {tokens.input}",
        f"- Output tokens: {tokens.output}",
        f"- Total tokens: {tokens.total}",
        f"- Turns: {record.turns}",
        f"- Budget Exceeded: {'yes' if budget_exceeded else 'no'}",
    ]
    return "## Token Usage\n" + "\n".join(rows)


def _short(value: object, limit: int = 160) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


class ReportStore(Protocol):
    """Where reports live besides INCIDENTS_DIR (STATE_BACKEND=postgres: the database, so
    that every replica serves them and adds to them)."""

    async def save_report(self, record: AlertRecord, name: str, text: str) -> None: ...
    async def report(self, record: AlertRecord) -> str | None: ...


class ReportWriter:
    """Writes a record's report into INCIDENTS_DIR and logs the INCIDENT_REPORT line."""

    def __init__(
        self, *, directory: Path, redactor: Redactor, files: Executor | None = None
    ) -> None:
        """`files`: the threads that write (and fsync) report files; None: the loop's default.
        The runtime gives it its own, wider than the default: writing a burst of reports
        (a storm, a shutdown with a long queue) waits on the disk, not on the CPU."""
        self._directory = directory
        self._redactor = redactor
        self._files = files
        self._fsync = True
        self._durable: ReportStore | None = None

    def keep_in(self, durable: ReportStore) -> None:
        """Keep every report in `durable` too, and add to the report found there."""
        self._durable = durable

    async def write(self, record: AlertRecord, report: ReportInput, filename: str | None) -> str:
        name = filename or default_report_name(record.alert, datetime.now(UTC))
        record.paged_as = next(
            (e.dedup_key for e in report.escalations if e.action == "trigger" and not e.shadow),
            record.paged_as,
        )
        record.outcome = report.outcome
        await self._store(record, name, render(record, report))
        return name

    async def append(
        self, record: AlertRecord, title: str, lines: Sequence[str], banner: str | None = None
    ) -> str:
        """Add a section to the occurrence's report (written anew, whole, like any report;
        one that was never written is started with the alert's title). `banner`: a line
        the report now opens with (a PagerDuty event that failed)."""
        name = record.report_file or default_report_name(record.alert, datetime.now(UTC))
        if self._durable is not None:
            current = await self._durable.report(record)
        else:
            loop = asyncio.get_running_loop()
            current = await loop.run_in_executor(self._files, self.read, name)
        if current is None:
            current = f"# Incident {record.incident_id}: {record.alert.summary}\n"
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        section = f"## {title} ({stamp})\n" + "\n".join(f"- {line}" for line in lines)
        if banner is not None:
            current = banner + "\n\n" + current
        await self._store(record, name, current.rstrip("\n") + "\n\n" + section + "\n")
        return name

    async def _store(self, record: AlertRecord, name: str, report: str) -> None:
        """Redact, cap, write atomically and log the `INCIDENT_REPORT` line."""
        text = capped(self._redactor.redact(report))  # the log line's too
        write = functools.partial(write_report, fsync=self._fsync)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._files, write, self._directory, name, text)
        record.report_file = name
        if self._durable is not None:
            await self._durable.save_report(record, name, text)
        logger.info(
            "INCIDENT_REPORT",
            extra={
                "incident_id": record.incident_id,
                "occurrence": record.occurrence,
                "service": record.service,
                "outcome": record.outcome,
                "report_file": name,
                "report": text,
            },
        )

    def defer_sync(self) -> None:
        """From now on (a shutdown), write each report without its own fsync; `sync` makes
        them all durable at once."""
        self._fsync = False

    async def sync(self) -> None:
        """Flush every deferred write to disk (one `sync` for all of them)."""
        if not self._fsync:
            await asyncio.get_running_loop().run_in_executor(self._files, os.sync)

    def read(self, filename: str) -> str | None:
        try:
            return (self._directory / filename).read_text(encoding="utf-8")
        except OSError:
            return None
