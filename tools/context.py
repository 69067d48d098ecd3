"""The values tools share with the agent loop: the per-run context and each call's outcome."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from models import Alert, Approval
from tools.pagerduty import EscalationResult


class Approver(Protocol):
    """Approval mode (CONTRACT §9): a run's remediation writes wait for a human decision.
    Implemented by `agent.approvals.RunApprovals`."""

    async def send(
        self,
        tool: str,
        arguments: dict[str, Any],
        reason: str | None,
        write: Callable[[], Awaitable[dict[str, Any]]],
    ) -> dict[str, Any]:
        """Propose the write, wait for the decision, and make it (`write`, once) if it is
        approved; a denial or expiry raises `Refused` with what the model should read."""
        ...

    @property
    def waiting(self) -> bool:
        """True while a proposal of this run awaits a decision."""
        ...

    def views(self) -> list[Approval]:
        """Every proposal of the run, oldest first."""
        ...

    def pages(self) -> list[EscalationResult]:
        """The "Approval needed" PagerDuty triggers sent so far."""
        ...


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
    approver: Approver | None = None  # approve mode: remediation writes go through it
    nonce: str = ""  # the data blocks' delimiter of this run's conversation (agent.prompt)


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """One tool call's result, ready for the model."""

    content: str  # JSON, redacted, cut at TOOL_OUTPUT_MAX_CHARS with a marker
    ok: bool
    error: str | None  # the error message when not ok
    write: bool  # True when the call changed (or would have changed) something outside
