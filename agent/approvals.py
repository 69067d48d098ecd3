"""Approval mode (CONTRACT §9): a remediation write waits for a human decision.

`ApprovalDesk`, one per runtime, holds every approval: the pending ones until a decision or
their expiry, the decided ones (the last `KEEP_DECIDED`) so that a late second decision is
told 409, not 404. A decision is one synchronous step of the event loop, from "is it still
pending?" to "approved": of two operators pressing Approve at the same moment, one gets the
approval and the other a conflict, and the write is sent once, by the run that waits for it.

`RunApprovals` is one run's side, the `tools.context.Approver` its tools call: it proposes
the write, pages "Approval needed:" so a human learns of it, stops the run's clock while it
waits (the wait does not count against AGENT_TIMEOUT_SECONDS), puts each step on the
occurrence's timeline, and makes the write only once approved.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from intake import AlertRecord
from models import Approval, ApprovalStatus, TimelineStatus
from tools import (
    Escalation,
    EscalationResult,
    Pager,
    Redactor,
    Refused,
    RunContext,
    ToolError,
)

logger = logging.getLogger(__name__)

KEEP_DECIDED = 10_000  # decided approvals remembered, so a late decision gets 409
APPROVAL_PAGE_SEVERITY = "warning"
ENDED_NOTE = "the run ended before a decision"


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
        """The proposed call in one line, for pages, timelines and the model."""
        args = self.arguments
        if self.tool == "scale_service":
            return f"scale {args.get('service')} to {args.get('replicas')} replicas"
        body = json.dumps(args.get("body") or {}, ensure_ascii=False, sort_keys=True)
        return f"POST {args.get('service')} {args.get('endpoint')} {body}"


class ApprovalDesk:
    """Every approval of the runtime (in memory; CONTRACT §8 puts them in the database)."""

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

    def open(
        self,
        *,
        incident_id: str,
        occurrence: int,
        tool: str,
        arguments: dict[str, Any],
        reason: str | None,
    ) -> Proposal:
        now = self._clock()
        proposal = Proposal(
            approval_id=f"apr_{secrets.token_urlsafe(12)}",
            incident_id=incident_id,
            occurrence=occurrence,
            tool=tool,
            arguments=arguments,
            reason=reason,
            requested_at=now,
            expires_at=now + self.timeout_seconds,
        )
        self._approvals[proposal.approval_id] = proposal
        return proposal

    def get(self, incident_id: str, approval_id: str) -> Proposal:
        proposal = self._approvals.get(approval_id)
        if proposal is None or proposal.incident_id != incident_id:
            raise UnknownApproval(approval_id)
        return proposal

    def pending(self) -> list[Proposal]:
        return [p for p in self._approvals.values() if p.status is ApprovalStatus.PENDING]

    def decide(
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

    def expire(self, proposal: Proposal, note: str | None = None) -> Proposal:
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
        return self.expire(proposal)

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


def _done(result: EscalationResult) -> asyncio.Future[EscalationResult]:
    future: asyncio.Future[EscalationResult] = asyncio.get_running_loop().create_future()
    future.set_result(result)
    return future


_TIMELINE = {
    ApprovalStatus.APPROVED: TimelineStatus.APPROVED,
    ApprovalStatus.DENIED: TimelineStatus.DENIED,
    ApprovalStatus.EXPIRED: TimelineStatus.APPROVAL_EXPIRED,
}


class RunApprovals:
    """One run's approvals: the `tools.context.Approver` of a run in approve mode."""

    def __init__(
        self,
        desk: ApprovalDesk,
        record: AlertRecord,
        *,
        pager: Pager,
        redactor: Redactor,
        console_url: str | None,
        report_file: Callable[[], str],
    ) -> None:
        self._desk = desk
        self._record = record
        self._ctx: RunContext | None = None
        self._pager = pager
        self._redactor = redactor
        self._console_url = console_url
        self._report_file = report_file
        self._proposals: list[Proposal] = []
        self._pages: list[asyncio.Future[EscalationResult]] = []
        self._scope: asyncio.Timeout | None = None
        self._waiting = 0
        self._remaining = 0.0
        self._marked: set[str] = set()  # proposals whose decision is on the timeline

    # -- tools.context.Approver -----------------------------------------------------------

    @property
    def waiting(self) -> bool:
        return any(p.status is ApprovalStatus.PENDING for p in self._proposals)

    def views(self) -> list[Approval]:
        return [p.view() for p in self._proposals]

    def pages(self) -> list[EscalationResult]:
        return [page.result() for page in self._pages if page.done() and not page.cancelled()]

    async def send(
        self,
        tool: str,
        arguments: dict[str, Any],
        reason: str | None,
        write: Callable[[], Awaitable[dict[str, Any]]],
    ) -> dict[str, Any]:
        proposal = self._propose(tool, arguments, reason)
        with self._paused():
            try:
                await self._desk.wait(proposal)
            finally:  # cancelled (shutdown): nobody may approve a write nobody will make
                self._desk.expire(proposal, ENDED_NOTE)
                self._decided(proposal)
        if proposal.status is ApprovalStatus.DENIED:
            note = self._redactor.redact(proposal.note or "no note")
            raise Refused(f"denied by {proposal.decided_by}: {note}", redacted=True)
        if proposal.status is ApprovalStatus.EXPIRED:
            raise Refused(f"no decision within {self._desk.timeout_seconds:g} s")
        try:
            result = await write()
        except ToolError as exc:
            proposal.result = f"sent; failed: {self._redactor.redact(exc.message)[:300]}"
            raise
        except BaseException:
            proposal.result = "sent; no result (the call did not complete)"
            raise
        proposal.result = "sent; ok"
        return result

    # -- the run's side ---------------------------------------------------------------------

    def attach(self, ctx: RunContext, scope: asyncio.Timeout) -> None:
        """The run's context and AGENT_TIMEOUT_SECONDS scope: its clock (the scope, and the
        deadline retries keep to) stops while a decision is awaited."""
        self._ctx, self._scope = ctx, scope

    @property
    def expired(self) -> bool:
        """True when a proposal of this run went without a decision."""
        return any(p.status is ApprovalStatus.EXPIRED for p in self._proposals)

    @property
    def paged(self) -> bool:
        return bool(self._pages)

    def close(self) -> None:
        """The run ended: whatever is still pending can no longer be made."""
        for proposal in self._proposals:
            if proposal.status is ApprovalStatus.PENDING:
                self._desk.expire(proposal, ENDED_NOTE)
                self._decided(proposal)

    async def resolve_page(self) -> None:
        """The occurrence ended resolved: resolve the PagerDuty incident that was opened
        only to ask for a decision (a storm's stays open: it holds other incidents)."""
        await asyncio.gather(*self._pages, return_exceptions=True)
        sent = [page for page in self.pages() if page.ok and page.action == "trigger"]
        if not sent or sent[0].dedup_key.startswith("storm:"):
            return
        deadline = self._ctx.deadline if self._ctx is not None else None
        result = await self._pager.resolve(
            dedup_key=sent[0].dedup_key, trace_id=self._record.trace_id, deadline=deadline
        )
        self._pages.append(_done(result))

    def _propose(self, tool: str, arguments: dict[str, Any], reason: str | None) -> Proposal:
        record = self._record
        shown = json.loads(self._redactor.redact(json.dumps(arguments, ensure_ascii=False)))
        proposal = self._desk.open(
            incident_id=record.incident_id,
            occurrence=record.occurrence,
            tool=tool,
            arguments=shown,
            reason=self._redactor.redact(reason) if reason else None,
        )
        self._proposals.append(proposal)
        what = proposal.describe()
        record.mark(TimelineStatus.AWAITING_APPROVAL, f"{proposal.approval_id}: {what}"[:500])
        logger.info("approval %s requested: %s", proposal.approval_id, what[:300])
        self._pages.append(self._page(proposal, what))
        return proposal

    def _page(self, proposal: Proposal, what: str) -> asyncio.Future[EscalationResult]:
        record = self._record
        where = (
            f"in the console: {self._console_url}"
            if self._console_url
            else f"with POST /alerts/<incident id>/approvals/{proposal.approval_id}"
        )
        details = [
            f"The SRE agent proposes: {what}",
            f"Reason: {proposal.reason or '(none given)'}",
            f"Approve or deny {where} before {_epoch_dt(proposal.expires_at).isoformat()}.",
        ]
        return self._pager.submit_trigger(
            Escalation(
                alert=record.alert,
                summary=f"Approval needed: {what} ({record.alert.summary})",
                trace_id=record.trace_id,
                severity=APPROVAL_PAGE_SEVERITY,
                details="\n".join(details),
                report_file=self._report_file(),
                extra={"approval": proposal.view().model_dump(mode="json")},
            )
        )

    def _decided(self, proposal: Proposal) -> None:
        """Put the decision on the timeline (once)."""
        if proposal.approval_id in self._marked:
            return
        self._marked.add(proposal.approval_id)
        status = _TIMELINE[proposal.status]
        # "by token (note)", never "by token: note": the redactor reads `token: x` as a
        # credential and would hide the note's first word.
        note = f"{proposal.approval_id} by {proposal.decided_by}"
        if proposal.note:
            note += f" ({proposal.note})"
        self._record.mark(status, note[:500])
        logger.info(
            "approval %s %s by %s", proposal.approval_id, proposal.status, proposal.decided_by
        )

    @contextlib.contextmanager
    def _paused(self) -> Iterator[None]:
        """Stop the run's clock while the first of its waits lasts; start it again, with
        the time the run had left, when the last one ends."""
        loop = asyncio.get_running_loop()
        scope, ctx = self._scope, self._ctx
        if self._waiting == 0 and scope is not None and ctx is not None:
            when = scope.when()
            self._remaining = 0.0 if when is None else max(when - loop.time(), 0.0)
            scope.reschedule(None)
            ctx.deadline = None
        self._waiting += 1
        try:
            yield
        finally:
            self._waiting -= 1
            if self._waiting == 0 and scope is not None and ctx is not None:
                scope.reschedule(loop.time() + self._remaining)
                ctx.deadline = time.monotonic() + self._remaining
