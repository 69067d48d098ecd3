"""The values tools share with the agent loop: the per-run context and each call's outcome."""

from __future__ import annotations

from dataclasses import dataclass, field

from models import Alert
from tools.pagerduty import EscalationResult


@dataclass(slots=True)
class RunContext:
    """Per-run state the tools read and write. One per agent run."""

    alert: Alert
    trace_id: str
    shadow: bool
    deadline: float | None = None  # time.monotonic() deadline of the run, for retries
    escalations: list[EscalationResult] = field(default_factory=list)
    withheld: list[str] = field(default_factory=list)  # shadow mode: writes not made
    report_content: str | None = None  # set by write_incident_report
    report_filename: str | None = None  # the safe name chosen for this occurrence's report
    occurrence: int = 1  # which occurrence of the incident this run is for
    earlier_reports: frozenset[str] = frozenset()  # its earlier occurrences' report files
    read_cache: dict[str, str] = field(default_factory=dict)
    final_text: str | None = None  # the model's last words, when a limit ended the run
    budget_exceeded: bool = False


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """One tool call's result, ready for the model."""

    content: str  # JSON, redacted, cut at TOOL_OUTPUT_MAX_CHARS with a marker
    ok: bool
    error: str | None  # the error message when not ok
    write: bool  # True when the call changed (or would have changed) something outside
