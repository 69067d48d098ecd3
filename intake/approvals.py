"""Approval mode's state (CONTRACT §9): every approval of the runtime, and its decision.

`ApprovalDesk` keeps them in memory (STATE_BACKEND=memory); `intake.pg.PgApprovalDesk` in
the database, where a decision taken on any replica reaches the run on another. Both: the
pending ones until a decision or their expiry, the decided ones so that a late second
decision is told 409, not 404. A decision is one atomic step ("is it still pending and
unexpired?" then "approved"): of two operators pressing Approve at the same moment, one
gets the approval and the other a conflict, and the write is sent once, by the run that
waits for it (`agent.approvals.RunApprovals`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from models import Approval, ApprovalStatus

KEEP_DECIDED = 10_000  # decided approvals remembered, so a late decision gets 409


class UnknownApproval(LookupError):
    """No such approval for this incident (404)."""


class ApprovalClosed(Exception):
    """The approval was already decided or expired (409)."""

    def __init__(self, proposal: Proposal) -> None:
        self.proposal = proposal
        by = f" by {proposal.decided_by}" if proposal.decided_by else ""
        super().__init__(f"approval {proposal.approval_id} is already {proposal.status}{by}")


def _epoch_dt(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


@dataclass(slots=True, eq=False)
class Proposal:
    """One approval as the desk keeps it; `view()` is its API form."""

    approval_id: str
    incident_id: str
    occurrence: int
    tool: str
    arguments: dict[str, Any]
    reason: str | None
    requested_at: float
    expires_at: float
    status: ApprovalStatus = ApprovalStatus.PENDING
    decided_by: str | None = None
    decided_at: float | None = None
    note: str | None = None
    result: str | None = None
    decided: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    def new(
        cls,
        *,
        incident_id: str,
        occurrence: int,
        tool: str,
        arguments: dict[str, Any],
        reason: str | None,
        now: float,
        timeout_seconds: float,
    ) -> Proposal:
        """A pending approval with a fresh id, expiring `timeout_seconds` after `now`."""
        return cls(
            approval_id=f"apr_{secrets.token_urlsafe(12)}",
            incident_id=incident_id,
            occurrence=occurrence,
            tool=tool,
            arguments=arguments,
            reason=reason,
            requested_at=now,
            expires_at=now + timeout_seconds,
        )

    def view(self) -> Approval:
        return Approval(
            approval_id=self.approval_id,
            incident_id=self.incident_id,
            occurrence=self.occurrence,
            tool=self.tool,
            arguments=self.arguments,
            reason=self.reason,
            requested_at=_epoch_dt(self.requested_at),
            expires_at=_epoch_dt(self.expires_at),
            status=self.status,
            decided_by=self.decided_by,
            decided_at=None if self.decided_at is None else _epoch_dt(self.decided_at),
            note=self.note,
            result=self.result,
        )

    def describe(self) -> str:
        """The proposed call in one line, with its body, for pages and timelines."""
        return describe_call(self.tool, self.arguments, body=True)


def describe_call(tool: str, arguments: dict[str, Any], *, body: bool = False) -> str:
    """A proposed write in one line: `POST worker /ops/restart` (with `body`: and its JSON
    body), `scale api to 4 replicas`."""
    if tool == "scale_service":
        return f"scale {arguments.get('service')} to {arguments.get('replicas')} replicas"
    method = str(arguments.get("method") or "POST").upper()
    line = f"{method} {arguments.get('service')} {arguments.get('endpoint')}"
    if body:
        line += " " + json.dumps(arguments.get("body") or {}, ensure_ascii=False, sort_keys=True)
    return line


class Desk(Protocol):
    """Where approvals live: `ApprovalDesk` (memory) or `intake.pg.PgApprovalDesk`."""

    timeout_seconds: float

    async def open(
        self,
        *,
        incident_id: str,
        occurrence: int,
        tool: str,
        arguments: dict[str, Any],
        reason: str | None,
    ) -> Proposal: ...

    async def decide(
        self, incident_id: str, approval_id: str, *, approve: bool, note: str, by: str
    ) -> Proposal:
        """`UnknownApproval`, or `ApprovalClosed` when decided already or expired."""
        ...

    async def expire(self, proposal: Proposal, note: str | None = None) -> Proposal: ...
    async def wait(self, proposal: Proposal) -> Proposal: ...
    async def pending(self) -> list[Proposal]: ...
    async def of(self, incident_id: str, occurrence: int) -> list[Proposal]: ...
    async def record(self, proposal: Proposal) -> None:
        """Store what became of an approved write (`Proposal.result`)."""
        ...


class ApprovalDesk:
    """Every approval of the runtime, in memory (STATE_BACKEND=memory)."""

    def __init__(
        self,
        *,
        timeout_seconds: float,
        keep: int = KEEP_DECIDED,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.timeout_seconds = timeout_seconds
        self._keep = keep
        self._clock = clock
        self._approvals: dict[str, Proposal] = {}  # by id, oldest first
        self._decided = 0  # how many of them are no longer pending

    async def open(
        self,
        *,
        incident_id: str,
        occurrence: int,
        tool: str,
        arguments: dict[str, Any],
        reason: str | None,
    ) -> Proposal:
        proposal = Proposal.new(
            incident_id=incident_id,
            occurrence=occurrence,
            tool=tool,
            arguments=arguments,
            reason=reason,
            now=self._clock(),
            timeout_seconds=self.timeout_seconds,
        )
        self._approvals[proposal.approval_id] = proposal
        return proposal

    def get(self, incident_id: str, approval_id: str) -> Proposal:
        proposal = self._approvals.get(approval_id)
        if proposal is None or proposal.incident_id != incident_id:
            raise UnknownApproval(approval_id)
        return proposal

    async def pending(self) -> list[Proposal]:
        return [p for p in self._approvals.values() if p.status is ApprovalStatus.PENDING]

    async def of(self, incident_id: str, occurrence: int) -> list[Proposal]:
        return [
            p
            for p in self._approvals.values()
            if p.incident_id == incident_id and p.occurrence == occurrence
        ]

    async def record(self, proposal: Proposal) -> None:
        pass  # the proposal is the desk's own object

    async def decide(
        self, incident_id: str, approval_id: str, *, approve: bool, note: str, by: str
    ) -> Proposal:
        """Approve or deny a pending approval: `UnknownApproval`, or `ApprovalClosed` when
        it was decided already or expired (its deadline passed, even if its run has not
        noticed yet)."""
        proposal = self.get(incident_id, approval_id)
        if proposal.status is ApprovalStatus.PENDING and self._clock() >= proposal.expires_at:
            self._close(proposal, ApprovalStatus.EXPIRED, by="runtime", note=None)
        if proposal.status is not ApprovalStatus.PENDING:
            raise ApprovalClosed(proposal)
        status = ApprovalStatus.APPROVED if approve else ApprovalStatus.DENIED
        self._close(proposal, status, by=by, note=note or None)
        return proposal

    async def expire(self, proposal: Proposal, note: str | None = None) -> Proposal:
        """No decision came in time (or the run ended): expired, unless one came first."""
        if proposal.status is ApprovalStatus.PENDING:
            self._close(proposal, ApprovalStatus.EXPIRED, by="runtime", note=note)
        return proposal

    async def wait(self, proposal: Proposal) -> Proposal:
        """The proposal once decided, or expired at its deadline."""
        remaining = proposal.expires_at - self._clock()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(remaining, 0.0)):
                await proposal.decided.wait()
        return await self.expire(proposal)

    def _close(
        self, proposal: Proposal, status: ApprovalStatus, *, by: str, note: str | None
    ) -> None:
        proposal.status = status
        proposal.decided_by = by
        proposal.decided_at = self._clock()
        proposal.note = note
        proposal.decided.set()
        self._decided += 1
        self._forget_oldest()

    def _forget_oldest(self) -> None:
        """Past KEEP_DECIDED decided approvals, forget the oldest decided ones."""
        if self._decided <= self._keep:
            return
        for approval_id in list(self._approvals):
            if self._decided <= self._keep:
                break
            if self._approvals[approval_id].status is not ApprovalStatus.PENDING:
                del self._approvals[approval_id]
                self._decided -= 1
