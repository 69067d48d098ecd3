"""The approval desks' rules (CONTRACT §9): one decision per approval, expiry, and what they
remember. The same tests run against the in-memory desk and the PostgreSQL one (on a real
server); end to end (the run's side, the API) in tests/e2e/test_approvals_e2e.py."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.resume import restore, saved
from agent.transcript import Transcript
from intake import Limits
from intake.approvals import ApprovalClosed, ApprovalDesk, Desk, Proposal, UnknownApproval
from intake.pg.approvals import PgApprovalDesk
from intake.pg.service import PgIntake
from models import ApprovalStatus
from tests.fakes.runner import FakeRunner, RecordingFinalizer


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@contextlib.asynccontextmanager
async def desk_of(kind: str, database_url: str, timeout_seconds: float) -> AsyncIterator[Desk]:
    if kind == "memory":
        yield ApprovalDesk(timeout_seconds=timeout_seconds)
        return
    intake = PgIntake(
        conninfo=database_url,
        runner=FakeRunner(limit=1),
        finalize=RecordingFinalizer(),
        limits=Limits(),
        lease_seconds=30,
        restore=restore,
        saved=saved,
        load_transcript=Transcript.load,
    )
    desk = PgApprovalDesk(intake, timeout_seconds=timeout_seconds)
    async with intake:
        yield desk


@pytest.fixture(params=["memory", "postgres"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def url(kind: str, request: pytest.FixtureRequest) -> str:
    """A fresh database for the PostgreSQL desk (none is started for the memory one)."""
    return str(request.getfixturevalue("database_url")) if kind == "postgres" else ""


async def open_one(desk: Desk, incident: str = "inc-1") -> Proposal:
    return await desk.open(
        incident_id=incident,
        occurrence=1,
        tool="call_ops_endpoint",
        arguments={"service": "api", "endpoint": "/ops/restart", "method": "POST", "body": {}},
        reason=None,
    )


def ids(proposals: list[Proposal]) -> list[str]:
    return [p.approval_id for p in proposals]


async def test_a_decision_closes_the_approval_and_a_second_one_conflicts(
    kind: str, url: str
) -> None:
    async with desk_of(kind, url, 60) as desk:
        proposal = await open_one(desk)
        decided = await desk.decide(
            "inc-1", proposal.approval_id, approve=True, note="ok", by="ana"
        )
        with pytest.raises(ApprovalClosed, match="already approved by ana"):
            await desk.decide("inc-1", proposal.approval_id, approve=False, note="", by="bo")
        pending = await desk.pending()
        stored = await desk.of("inc-1", 1)
    assert decided.status is ApprovalStatus.APPROVED
    assert (decided.decided_by, decided.note) == ("ana", "ok")
    assert decided.decided_at is not None
    assert pending == []
    assert [p.status for p in stored] == [ApprovalStatus.APPROVED]


async def test_unknown_ids_and_another_incidents_approval_are_unknown(kind: str, url: str) -> None:
    async with desk_of(kind, url, 60) as desk:
        proposal = await open_one(desk)
        with pytest.raises(UnknownApproval):
            await desk.decide("inc-1", "apr_unknown", approve=True, note="", by="token")
        with pytest.raises(UnknownApproval):
            await desk.decide("inc-2", proposal.approval_id, approve=True, note="", by="token")
        pending = await desk.pending()
    assert ids(pending) == [proposal.approval_id]


async def test_a_decision_after_the_deadline_conflicts_even_before_the_run_noticed(
    kind: str, url: str
) -> None:
    async with desk_of(kind, url, 0) as desk:  # its deadline is past once it is open
        proposal = await open_one(desk)
        with pytest.raises(ApprovalClosed, match="already expired by runtime"):
            await desk.decide("inc-1", proposal.approval_id, approve=True, note="", by="token")


async def test_expiry_never_overrides_a_decision(kind: str, url: str) -> None:
    async with desk_of(kind, url, 60) as desk:
        proposal = await open_one(desk)
        await desk.decide("inc-1", proposal.approval_id, approve=True, note="", by="token")
        expired = await desk.expire(proposal, "the run ended")
    assert expired.status is ApprovalStatus.APPROVED


async def test_wait_returns_the_decision_or_expires_at_the_deadline(kind: str, url: str) -> None:
    async with desk_of(kind, url, 30) as desk:
        decided = await open_one(desk)
        async with asyncio.TaskGroup() as group:
            waiter = group.create_task(desk.wait(decided))
            await desk.decide("inc-1", decided.approval_id, approve=False, note="no", by="token")
        result = waiter.result()
    async with desk_of(kind, url, 0) as short:
        expiring = await open_one(short, "inc-2")
        expired = await short.wait(expiring)
    assert (result.status, result.note) == (ApprovalStatus.DENIED, "no")
    assert expired.status is ApprovalStatus.EXPIRED


async def test_concurrent_decisions_let_exactly_one_through(kind: str, url: str) -> None:
    async with desk_of(kind, url, 60) as desk:
        proposal = await open_one(desk)

        async def press(n: int) -> bool:
            try:
                await desk.decide("inc-1", proposal.approval_id, approve=True, note="", by=f"{n}")
            except ApprovalClosed:
                return False
            return True

        outcomes = await asyncio.gather(*(press(n) for n in range(10)))
    assert sorted(outcomes) == [False] * 9 + [True]


async def test_the_memory_desk_forgets_decided_approvals_past_the_bound_never_pending_ones() -> (
    None
):
    desk = ApprovalDesk(timeout_seconds=60, keep=3)
    waiting = await open_one(desk, "waiting")
    decided = [await open_one(desk, f"inc-{n}") for n in range(5)]
    for proposal in decided:
        await desk.decide(proposal.incident_id, proposal.approval_id, approve=True, note="", by="t")
    with pytest.raises(UnknownApproval):
        desk.get("inc-0", decided[0].approval_id)
    assert desk.get("inc-4", decided[4].approval_id) is decided[4]
    assert desk.get("inc-2", decided[2].approval_id) is decided[2]
    assert await desk.pending() == [waiting]


Action = tuple[str, Any]
actions = st.lists(
    st.one_of(
        st.tuples(st.just("decide"), st.tuples(st.booleans(), st.sampled_from(["ana", "bo"]))),
        st.tuples(st.just("expire"), st.none()),
        st.tuples(st.just("tick"), st.floats(min_value=0, max_value=40)),
    ),
    max_size=20,
)


@given(actions)
def test_an_approval_leaves_pending_once_and_keeps_that_status(steps: list[Action]) -> None:
    """Whatever operators, the run and the clock do, in any order: one transition out of
    `pending`, the first; every later decision is refused; and a decision is accepted only
    while pending and before the deadline."""
    asyncio.run(_play(steps))


async def _play(steps: list[Action]) -> None:
    clock = Clock()
    desk = ApprovalDesk(timeout_seconds=60, clock=clock)
    proposal = await open_one(desk)
    first: ApprovalStatus | None = None
    accepted = 0
    for action, value in steps:
        if action == "tick":
            clock.now += value
        elif action == "expire":
            await desk.expire(proposal)
            first = first or ApprovalStatus.EXPIRED
        else:
            approve, who = value
            before, late = proposal.status, clock.now >= proposal.expires_at
            try:
                await desk.decide("inc-1", proposal.approval_id, approve=approve, note="", by=who)
            except ApprovalClosed:
                assert before is not ApprovalStatus.PENDING or late
                first = first or ApprovalStatus.EXPIRED
            else:
                assert before is ApprovalStatus.PENDING
                assert not late
                accepted += 1
                first = first or (ApprovalStatus.APPROVED if approve else ApprovalStatus.DENIED)
        assert proposal.status is (first or ApprovalStatus.PENDING)
    assert accepted <= 1
