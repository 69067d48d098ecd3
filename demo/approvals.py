"""Approve mode in the demo (`--approve`): show each write the agent proposes, and decide it.

The demo follows an incident by polling `GET /alerts/{id}`; each poll's `approvals` go
through `ApprovalWatch`, which prints a proposal once, with the console link to its
incident, and prints its decision once it is made. Who decides is the `ApproveMode`: the
demo itself through the API (`AUTO`, as an operator's script would), or a person in the
console while the demo waits (`CONSOLE`).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import httpx

from demo.console import Console, describe_call

PENDING = "pending"
AUTO_NOTE = "decided by the demo (--auto-approve)"
NOT_AS_PLANNED = ("denied", "expired")  # a decision that changes the expected outcome


class ApproveMode(StrEnum):
    """Who decides the agent's remediation writes."""

    OFF = "off"  # AGENT_MODE=live: the writes are sent at once
    AUTO = "auto"  # the demo approves each one through the API
    CONSOLE = "console"  # an operator decides in the console; the demo waits for it


@dataclass(slots=True)
class ApprovalWatch:
    """The approvals of the demo's incidents, as far as the demo has printed them."""

    console: Console
    client: httpx.AsyncClient
    mode: ApproveMode
    console_link: Callable[[str], str]  # incident id -> its console page
    timeout_seconds: float
    printed: dict[str, str] = field(default_factory=dict)  # approval id -> status shown

    def decided(self, approvals: Sequence[dict[str, Any]]) -> None:
        """Print the decisions made since the last poll (before the calls they let through)."""
        for approval in approvals:
            was_pending = self.printed.get(approval["approval_id"]) == PENDING
            if was_pending and approval["status"] != PENDING:
                self._decided(approval)

    async def proposed(self, approvals: Sequence[dict[str, Any]]) -> int:
        """Print the new proposals (approving them in `AUTO` mode); returns how many there
        are, each of which may keep the incident waiting for a decision."""
        new = [a for a in approvals if a["approval_id"] not in self.printed]
        for approval in new:
            await self._proposed(approval)
        return len(new)

    async def _proposed(self, approval: dict[str, Any]) -> None:
        console = self.console
        self.printed[approval["approval_id"]] = PENDING
        what = describe_call(approval["tool"], approval["arguments"])
        console.line(f"  approval needed  {approval['approval_id']}: {what}", "bold", "yellow")
        if approval.get("reason"):
            console.line(f"    reason:  {approval['reason']}", "dim")
        console.line(f"    console: {self.console_link(approval['incident_id'])}")
        if approval["status"] != PENDING:  # decided between two polls
            self._decided(approval)
        elif self.mode is ApproveMode.AUTO:
            await self._approve(approval)
        else:
            console.line(
                f"    Waiting for your decision: open the link, press Approve or Deny "
                f"(up to {self.timeout_seconds:g} s; Ctrl-C stops the demo)...",
                "bold",
            )

    async def _approve(self, approval: dict[str, Any]) -> None:
        path = f"/alerts/{approval['incident_id']}/approvals/{approval['approval_id']}"
        body = {"decision": "approve", "note": AUTO_NOTE}
        self.console.line("    The demo approves it, as an operator would:")
        self.console.line(f"    POST {path} {json.dumps(body)}")
        response = await self.client.post(path, json=body)
        answer = "" if response.is_success else f" {response.text[:300]}"
        self.console.line(f"    -> {response.status_code}{answer}")

    def _decided(self, approval: dict[str, Any]) -> None:
        self.printed[approval["approval_id"]] = approval["status"]
        self.console.line(f"    {decision(approval)}", *_style(approval["status"]))


def decision(approval: dict[str, Any]) -> str:
    """`approved by token`, `denied by alice: not now`, `expired: no decision within ...`."""
    status, note = approval["status"], approval.get("note")
    if status == "expired":
        return f"expired: {note or 'no decision in time'}"
    return f"{status} by {approval.get('decided_by')}" + (f": {note}" if note else "")


def _style(status: str) -> tuple[str, ...]:
    return ("green",) if status == "approved" else ("red",)


def not_as_planned(approvals: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The approvals whose decision changes what the demo expects (denied or expired)."""
    return [a for a in approvals if a["status"] in NOT_AS_PLANNED]


def tally(approvals: Iterable[dict[str, Any]]) -> str:
    """`2 asked for, 1 approved, 1 denied` (or `none asked for`)."""
    counts = Counter(a["status"] for a in approvals)
    total = sum(counts.values())
    if not total:
        return "none asked for"
    parts = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    return f"{total} asked for, {parts}"
