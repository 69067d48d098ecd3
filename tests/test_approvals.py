"""The approval desk's rules (CONTRACT §9): one decision per approval, expiry, and what it
remembers. End to end (the run's side, the API) in tests/e2e/test_approvals_e2e.py."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.approvals import ApprovalClosed, ApprovalDesk, Proposal, UnknownApproval
from models import ApprovalStatus


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def open_one(desk: ApprovalDesk, incident: str = "inc-1") -> Proposal:
    return desk.open(
        incident_id=incident,
        occurrence=1,
        tool="call_ops_endpoint",
        arguments={"service": "api", "endpoint": "/ops/restart", "method": "POST", "body": {}},
        reason=None,
    )


def test_a_decision_closes_the_approval_and_a_second_one_conflicts() -> None:
    desk = ApprovalDesk(timeout_seconds=60, clock=Clock())
    proposal = open_one(desk)
    decided = desk.decide("inc-1", proposal.approval_id, approve=True, note="ok", by="ana")
    with pytest.raises(ApprovalClosed, match="already approved by ana"):
        desk.decide("inc-1", proposal.approval_id, approve=False, note="", by="bo")
    assert decided.status is ApprovalStatus.APPROVED
    assert (decided.decided_by, decided.note, decided.decided_at) == ("ana", "ok", 1_000.0)
    assert desk.pending() == []


def test_unknown_ids_and_another_incidents_approval_are_unknown() -> None:
    desk = ApprovalDesk(timeout_seconds=60)
    proposal = open_one(desk)
    with pytest.raises(UnknownApproval):
        desk.decide("inc-1", "apr_unknown", approve=True, note="", by="token")
    with pytest.raises(UnknownApproval):
        desk.decide("inc-2", proposal.approval_id, approve=True, note="", by="token")
    assert desk.pending() == [proposal]


def test_a_decision_after_the_deadline_conflicts_even_before_the_run_noticed() -> None:
    clock = Clock()
    desk = ApprovalDesk(timeout_seconds=60, clock=clock)
    proposal = open_one(desk)
    clock.now += 60
    with pytest.raises(ApprovalClosed, match="already expired by runtime"):
        desk.decide("inc-1", proposal.approval_id, approve=True, note="", by="token")
    assert proposal.status is ApprovalStatus.EXPIRED


def test_expiry_never_overrides_a_decision() -> None:
    desk = ApprovalDesk(timeout_seconds=60)
    proposal = open_one(desk)
    desk.decide("inc-1", proposal.approval_id, approve=True, note="", by="token")
    assert desk.expire(proposal, "the run ended").status is ApprovalStatus.APPROVED


async def test_wait_returns_the_decision_or_expires_at_the_deadline() -> None:
    desk = ApprovalDesk(timeout_seconds=30)
    decided, waited = open_one(desk), open_one(desk, "inc-2")
    waiter = asyncio.create_task(desk.wait(decided))
    await asyncio.sleep(0)  # the waiter is waiting
    desk.decide("inc-1", decided.approval_id, approve=False, note="no", by="token")
    assert (await waiter).status is ApprovalStatus.DENIED
    short = ApprovalDesk(timeout_seconds=0.01)
    expiring = open_one(short)
    assert (await short.wait(expiring)).status is ApprovalStatus.EXPIRED
    assert waited.status is ApprovalStatus.PENDING


def test_decided_approvals_are_forgotten_past_the_bound_and_pending_ones_never() -> None:
    desk = ApprovalDesk(timeout_seconds=60, keep=3)
    waiting = open_one(desk, "waiting")
    decided = [open_one(desk, f"inc-{n}") for n in range(5)]
    for proposal in decided:
        desk.decide(proposal.incident_id, proposal.approval_id, approve=True, note="", by="t")
    with pytest.raises(UnknownApproval):
        desk.get("inc-0", decided[0].approval_id)
    assert desk.get("inc-4", decided[4].approval_id) is decided[4]
    assert desk.get("inc-2", decided[2].approval_id) is decided[2]
    assert desk.pending() == [waiting]


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
    clock = Clock()
    desk = ApprovalDesk(timeout_seconds=60, clock=clock)
    proposal = open_one(desk)
    first: ApprovalStatus | None = None
    accepted = 0
    for action, value in steps:
        if action == "tick":
            clock.now += value
        elif action == "expire":
            desk.expire(proposal)
            first = first or ApprovalStatus.EXPIRED
        else:
            approve, who = value
            before, late = proposal.status, clock.now >= proposal.expires_at
            try:
                desk.decide("inc-1", proposal.approval_id, approve=approve, note="", by=who)
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
