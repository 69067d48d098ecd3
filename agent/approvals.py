"""Approval mode, the run's side (CONTRACT §9): a remediation write waits for a human.

`RunApprovals` is the `tools.context.Approver` a run's tools call in approve mode: it
proposes the write at the desk (`intake.approvals`), pages "Approval needed:" so a human
learns of it, stops the run's clock while it waits (the wait does not count against
AGENT_TIMEOUT_SECONDS), puts each step on the occurrence's timeline, and makes the write
only once approved, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from intake import AlertRecord
from intake.approvals import Desk, Proposal
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

APPROVAL_PAGE_SEVERITY = "warning"
ENDED_NOTE = "the run ended before a decision"


def _epoch_dt(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


async def _shielded(step: Awaitable[Any]) -> None:
    """`step` carried out even if the caller is being cancelled (it must not be lost: an
    expiry or a write's result); a failure of it is logged, not raised."""
    task = asyncio.ensure_future(step)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await task
        raise
    except Exception:
        logger.warning("could not store an approval's outcome", exc_info=True)


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
        desk: Desk,
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
        proposal = await self._propose(tool, arguments, reason)
        with self._paused():
            try:
                await self._desk.wait(proposal)
            finally:  # cancelled (shutdown): nobody may approve a write nobody will make
                await self._settle(proposal)
        if proposal.status is ApprovalStatus.DENIED:
            note = self._redactor.redact(proposal.note or "no note")
            raise Refused(f"denied by {proposal.decided_by}: {note}", redacted=True)
        if proposal.status is ApprovalStatus.EXPIRED:
            raise Refused(f"no decision within {self._desk.timeout_seconds:g} s")
        proposal.result = "sent; no result (the call did not complete)"
        try:
            result = await write()
        except ToolError as exc:
            proposal.result = f"sent; failed: {self._redactor.redact(exc.message)[:300]}"
            raise
        else:
            proposal.result = "sent; ok"
        finally:
            await _shielded(self._desk.record(proposal))
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

    async def close(self) -> None:
        """The run ended: whatever is still pending can no longer be made."""
        for proposal in self._proposals:
            if proposal.status is ApprovalStatus.PENDING:
                await self._settle(proposal)

    async def _settle(self, proposal: Proposal) -> None:
        """Expire the proposal unless a decision came first; put the outcome on the
        timeline. Runs to its end even while the run is being cancelled."""
        await _shielded(self._desk.expire(proposal, ENDED_NOTE))
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

    async def _propose(self, tool: str, arguments: dict[str, Any], reason: str | None) -> Proposal:
        record = self._record
        shown = json.loads(self._redactor.redact(json.dumps(arguments, ensure_ascii=False)))
        proposal = await self._desk.open(
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
