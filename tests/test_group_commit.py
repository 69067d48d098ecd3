"""Group commit (`intake.pg.group`): webhooks that arrive together share one transaction, and
each caller still gets exactly its own results, or its own failure."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from intake.pg.group import GroupCommit


class Shared(Exception):
    """A failure of the whole group (like the database being unreachable)."""


class Transactions:
    """A fake `transact`: records each call's items; a call can be held open, and items
    named "bad" fail it."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.open = 0
        self.most_open = 0
        self.hold: asyncio.Event | None = None
        self.started = asyncio.Event()
        self.fail_with: Exception | None = None

    async def __call__(self, items: list[str]) -> list[str]:
        self.calls.append(items)
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        self.started.set()
        try:
            if self.hold is not None:
                await self.hold.wait()
            await asyncio.sleep(0)
            if self.fail_with is not None:
                raise self.fail_with
            if "bad" in items:
                raise ValueError("cannot decide 'bad'")
            return [item.upper() for item in items]
        finally:
            self.open -= 1


def grouped(
    transactions: Transactions, *, committers: int = 1, max_items: int = 100
) -> GroupCommit[str, str]:
    return GroupCommit(transactions, committers=committers, max_items=max_items, shared=(Shared,))


async def held_first_call(
    transactions: Transactions, group: GroupCommit[str, str]
) -> tuple[asyncio.Event, asyncio.Task[list[str]]]:
    """A first caller whose transaction is in progress (held) when the test goes on."""
    release = transactions.hold = asyncio.Event()
    first = asyncio.create_task(group.submit(["first"]))
    await transactions.started.wait()
    return release, first


async def test_a_lone_caller_is_transacted_at_once() -> None:
    transactions = Transactions()
    results = await grouped(transactions).submit(["a", "b"])
    assert results == ["A", "B"]
    assert transactions.calls == [["a", "b"]]


async def test_a_webhook_sent_as_soon_as_the_last_was_answered_is_transacted() -> None:
    """The committer that answered it has found nobody waiting but has not ended yet (its
    task's done callbacks run after the caller resumes): the new webhook must not wait for it."""
    transactions = Transactions()
    group = grouped(transactions)
    for n in range(3):
        async with asyncio.timeout(5):
            assert await group.submit([str(n)]) == [str(n)]
    assert transactions.calls == [["0"], ["1"], ["2"]]


async def test_callers_that_arrive_during_a_transaction_share_the_next_one() -> None:
    transactions = Transactions()
    group = grouped(transactions)
    release, first = await held_first_call(transactions, group)
    later = [asyncio.create_task(group.submit(items)) for items in (["b"], ["c", "d"], ["e"])]
    await asyncio.sleep(0)  # they are waiting
    release.set()
    assert await first == ["FIRST"]
    assert [await task for task in later] == [["B"], ["C", "D"], ["E"]]
    assert transactions.calls == [["first"], ["b", "c", "d", "e"]]


async def test_a_group_stops_at_max_items_and_a_larger_webhook_goes_alone() -> None:
    transactions = Transactions()
    group = grouped(transactions, max_items=3)
    release, first = await held_first_call(transactions, group)
    sizes = (["a", "b"], ["c"], ["d"], ["e", "f", "g", "h"], ["i"])
    later = [asyncio.create_task(group.submit(items)) for items in sizes]
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(first, *later)
    assert transactions.calls == [
        ["first"],
        ["a", "b", "c"],
        ["d"],  # the next webhook would make it 5
        ["e", "f", "g", "h"],  # larger than max_items: whole, alone
        ["i"],
    ]


async def test_no_more_than_the_committers_run_at_once() -> None:
    transactions = Transactions()
    group = grouped(transactions, committers=2, max_items=1)
    transactions.hold = release = asyncio.Event()
    tasks = [asyncio.create_task(group.submit([str(n)])) for n in range(10)]
    await transactions.started.wait()
    await asyncio.sleep(0)
    assert transactions.open == 2
    release.set()
    assert await asyncio.gather(*tasks) == [[str(n)] for n in range(10)]
    assert transactions.most_open == 2


async def test_a_shared_failure_is_every_callers() -> None:
    transactions = Transactions()
    group = grouped(transactions)
    release, first = await held_first_call(transactions, group)
    later = [asyncio.create_task(group.submit([name])) for name in ("a", "b")]
    await asyncio.sleep(0)
    transactions.fail_with = Shared("database unreachable")
    release.set()
    for task in (first, *later):
        with pytest.raises(Shared):
            await task
    assert transactions.calls == [["first"], ["a", "b"]]  # not retried one by one


async def test_a_webhook_that_cannot_be_decided_fails_alone() -> None:
    transactions = Transactions()
    group = grouped(transactions)
    release, first = await held_first_call(transactions, group)
    good, bad, other = (asyncio.create_task(group.submit([n])) for n in ("a", "bad", "c"))
    await asyncio.sleep(0)
    release.set()
    await first
    assert await good == ["A"]
    with pytest.raises(ValueError, match="cannot decide"):
        await bad
    assert await other == ["C"]
    assert transactions.calls == [["first"], ["a", "bad", "c"], ["a"], ["bad"], ["c"]]


async def test_a_caller_gone_before_its_group_started_is_left_out() -> None:
    transactions = Transactions()
    group = grouped(transactions)
    release, first = await held_first_call(transactions, group)
    gone = asyncio.create_task(group.submit(["gone"]))
    stays = asyncio.create_task(group.submit(["stays"]))
    await asyncio.sleep(0)
    gone.cancel()
    release.set()
    await first
    assert await stays == ["STAYS"]
    assert gone.cancelled()
    assert transactions.calls == [["first"], ["stays"]]


async def test_a_caller_gone_once_its_group_started_leaves_the_others_their_results() -> None:
    transactions = Transactions()
    group = grouped(transactions)
    transactions.hold = release = asyncio.Event()
    gone = asyncio.create_task(group.submit(["gone"]))
    await transactions.started.wait()
    gone.cancel()
    await asyncio.sleep(0)
    stays = asyncio.create_task(group.submit(["stays"]))
    release.set()
    assert await stays == ["STAYS"]
    assert gone.cancelled()
    assert transactions.calls == [["gone"], ["stays"]]  # committed: the platform's retry dedups


async def test_a_cancelled_committer_cancels_its_callers_and_those_waiting() -> None:
    transactions = Transactions()
    group = grouped(transactions)
    release, first = await held_first_call(transactions, group)
    waiting = asyncio.create_task(group.submit(["waiting"]))
    await asyncio.sleep(0)
    (committer,) = group.tasks
    committer.cancel()
    for task in (first, waiting):
        with pytest.raises(asyncio.CancelledError):
            await task
    assert not group.tasks
    release.set()


@settings(max_examples=60, deadline=None)
@given(
    webhooks=st.lists(
        st.tuples(st.integers(1, 6), st.integers(0, 3)), min_size=1, max_size=25
    ),  # (alerts, event-loop turns before it arrives)
    committers=st.integers(1, 3),
    max_items=st.integers(1, 8),
)
def test_every_caller_gets_exactly_its_results(
    webhooks: list[tuple[int, int]], committers: int, max_items: int
) -> None:
    """Whatever the arrivals: each item is transacted once, in arrival order within its
    group; a group exceeds max_items only as one webhook alone; each caller gets its own."""

    async def scenario() -> None:
        transactions = Transactions()
        group = grouped(transactions, committers=committers, max_items=max_items)
        arrivals: list[int] = []

        async def caller(number: int, size: int, delay: int) -> list[str]:
            for _ in range(delay):
                await asyncio.sleep(0)
            arrivals.append(number)
            return await group.submit([f"w{number}i{i}" for i in range(size)])

        results = await asyncio.gather(
            *(caller(n, size, delay) for n, (size, delay) in enumerate(webhooks))
        )
        for number, (size, _) in enumerate(webhooks):
            assert results[number] == [f"W{number}I{i}" for i in range(size)]
        flat = [item for call in transactions.calls for item in call]
        every = [f"w{n}i{i}" for n, (size, _) in enumerate(webhooks) for i in range(size)]
        assert sorted(flat) == sorted(every)
        for call in transactions.calls:
            callers = list(dict.fromkeys(int(item[1:].split("i")[0]) for item in call))
            assert callers == sorted(callers, key=arrivals.index)
            assert len(call) <= max_items or len(callers) == 1
        assert transactions.most_open <= committers
        assert not group.tasks

    asyncio.run(scenario())
