"""Approvals in PostgreSQL (STATE_BACKEND=postgres, CONTRACT §8 and §9): a decision taken
on any replica reaches the run waiting on another.

The decision is one conditional UPDATE (`status = 'pending' AND expires_at > now`): of two
operators, on two replicas, pressing Approve at the same moment, the database lets one
through and the other gets a conflict, so the write is made once. The run's replica learns
of it through `NOTIFY` (`CHANNEL`, heard by `PgIntake`'s listener, which calls `wake`), and
polls every `POLL_SECONDS` in case a notification is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from intake.approvals import ApprovalClosed, Proposal, UnknownApproval
from intake.pg import store
from intake.pg.service import PgIntake
from models import ApprovalStatus

CHANNEL = "sre_agent_approvals"
POLL_SECONDS = 0.5


class PgApprovalDesk:
    """The `intake.approvals.Desk` of STATE_BACKEND=postgres, on the intake's pool."""

    def __init__(self, intake: PgIntake, *, timeout_seconds: float) -> None:
        self._intake = intake
        self.timeout_seconds = timeout_seconds
        self._changed = asyncio.Event()
        intake.on_notify(CHANNEL, self.wake)

    def wake(self) -> None:
        """A decision was stored (by any replica): waiting runs look again."""
        self._changed.set()

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
            now=time.time(),
            timeout_seconds=self.timeout_seconds,
        )
        async with self._intake.connection() as conn:
            await conn.execute(
                """INSERT INTO approvals (approval_id, incident_id, occurrence, tool, arguments,
                       reason, requested_at, expires_at, status)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 'pending')""",
                (
                    proposal.approval_id,
                    incident_id,
                    occurrence,
                    tool,
                    Jsonb(arguments),
                    reason,
                    proposal.requested_at,
                    proposal.expires_at,
                ),
            )
        return proposal

    async def decide(
        self, incident_id: str, approval_id: str, *, approve: bool, note: str, by: str
    ) -> Proposal:
        status = ApprovalStatus.APPROVED if approve else ApprovalStatus.DENIED
        now = time.time()
        async with self._intake.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                f"""UPDATE approvals SET status = %s, decided_by = %s, decided_at = %s,
                        note = %s
                    WHERE approval_id = %s AND incident_id = %s AND status = 'pending'
                      AND expires_at > %s
                    RETURNING {store.APPROVAL_FIELDS}""",
                (status.value, by, now, note or None, approval_id, incident_id, now),
            )
            row = await cur.fetchone()
            if row is not None:
                await conn.execute(f"NOTIFY {CHANNEL}")
                return store.proposal_of(row)
        proposal = await self._fetch(incident_id, approval_id)
        if proposal is None:
            raise UnknownApproval(approval_id)
        if proposal.status is ApprovalStatus.PENDING:  # its deadline passed
            proposal = await self.expire(proposal)
        raise ApprovalClosed(proposal)

    async def expire(self, proposal: Proposal, note: str | None = None) -> Proposal:
        """Expired, unless a decision came first (on any replica); `proposal` is brought
        up to date either way."""
        async with self._intake.connection() as conn:
            await conn.execute(
                """UPDATE approvals SET status = 'expired', decided_by = 'runtime',
                       decided_at = %s, note = %s
                   WHERE approval_id = %s AND status = 'pending'""",
                (time.time(), note, proposal.approval_id),
            )
        return await self._refresh(proposal)

    async def wait(self, proposal: Proposal) -> Proposal:
        while True:
            await self._refresh(proposal)
            if proposal.status is not ApprovalStatus.PENDING:
                return proposal
            remaining = proposal.expires_at - time.time()
            if remaining <= 0:
                return await self.expire(proposal)
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(remaining, POLL_SECONDS)):
                    await self._changed.wait()

    async def pending(self) -> list[Proposal]:
        return await self._select("status = 'pending' ORDER BY requested_at", ())

    async def of(self, incident_id: str, occurrence: int) -> list[Proposal]:
        return await self._select(
            "incident_id = %s AND occurrence = %s ORDER BY requested_at", (incident_id, occurrence)
        )

    async def record(self, proposal: Proposal) -> None:
        async with self._intake.connection() as conn:
            await conn.execute(
                "UPDATE approvals SET result = %s WHERE approval_id = %s",
                (proposal.result, proposal.approval_id),
            )

    async def _fetch(self, incident_id: str, approval_id: str) -> Proposal | None:
        found = await self._select(
            "approval_id = %s AND incident_id = %s", (approval_id, incident_id)
        )
        return found[0] if found else None

    async def _refresh(self, proposal: Proposal) -> Proposal:
        stored = await self._fetch(proposal.incident_id, proposal.approval_id)
        if stored is not None:
            for name in ("status", "decided_by", "decided_at", "note", "result"):
                setattr(proposal, name, getattr(stored, name))
            if stored.status is not ApprovalStatus.PENDING:
                proposal.decided.set()
        return proposal

    async def _select(self, where: str, params: tuple[Any, ...]) -> list[Proposal]:
        async with self._intake.connection() as conn:
            return await store.proposals(conn, where, params)
