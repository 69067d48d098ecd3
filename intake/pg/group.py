"""Group commit: the alerts of webhooks that arrive together are decided and committed in
one transaction.

A webhook's own transaction costs the runtime about as much CPU in its fixed part (a pooled
connection, two round trips, BEGIN and COMMIT, the waits on the event loop) as in deciding
its alerts; the database pays a commit (a WAL flush) per transaction. Under load most
webhooks find a transaction already in progress: they wait for it to end and then go
together in the next one, so the fixed part is paid once per group. At low load a webhook
finds a committer free and starts at once: it waits for nothing.

At most `committers` transactions run at a time, each over at most `max_items` items (one
webhook larger than that still goes whole, alone). Items are decided in the order their
webhooks arrived, as if each webhook had its own transaction, one after another.

Each caller gets its own items' results. A failure that is the group's (`shared`, e.g. the
database unreachable) is every caller's; any other failure is retried with each webhook in a
transaction of its own, so one webhook that cannot be decided fails only itself. A caller
that stops waiting (its client left) before its group starts is left out of it; once its
group has started, its items are committed with the others: it got no 202, and the
platform's retry is deduplicated.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass(slots=True)
class _Waiting(Generic[Item, Result]):
    items: Sequence[Item]
    future: asyncio.Future[list[Result]]


class GroupCommit(Generic[Item, Result]):
    """Callers' items, transacted in groups by `transact` (one result per item, in order)."""

    def __init__(
        self,
        transact: Callable[[list[Item]], Awaitable[list[Result]]],
        *,
        committers: int,
        max_items: int,
        shared: tuple[type[Exception], ...] = (),
    ) -> None:
        self._transact = transact
        self._committers = committers
        self._max_items = max_items
        self._shared = shared
        self._waiting: collections.deque[_Waiting[Item, Result]] = collections.deque()
        self._running: set[asyncio.Task[None]] = set()

    async def submit(self, items: Sequence[Item]) -> list[Result]:
        """Transact `items` with whatever else is waiting; their results, once committed."""
        waiting = _Waiting[Item, Result](items, asyncio.get_running_loop().create_future())
        self._waiting.append(waiting)
        if len(self._running) < self._committers:
            task = asyncio.create_task(self._commit_waiting(), name="pg-group-commit")
            self._running.add(task)
            task.add_done_callback(self._ended)
        return await waiting.future

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        """The committers at work. Cancelled, they cancel the callers of their groups, and
        the last one those still waiting."""
        return list(self._running)

    async def _commit_waiting(self) -> None:
        try:
            while group := self._take():
                try:
                    await self._commit(group)
                except BaseException:  # cancelled: the group's callers get no answer
                    for waiting in group:
                        waiting.future.cancel()
                    raise
        finally:
            # Now, not in a done callback (those run later): a caller that arrives after the
            # last `_take` found nobody waiting must find a free place and start a committer.
            self._running.discard(asyncio.current_task())

    def _ended(self, task: asyncio.Task[None]) -> None:
        """A committer ended; one cancelled (even before it started) leaves nobody to
        serve the callers still waiting when it was the last."""
        self._running.discard(task)
        if task.cancelled() and not self._running:
            for waiting in self._waiting:
                waiting.future.cancel()
            self._waiting.clear()

    def _take(self) -> list[_Waiting[Item, Result]]:
        """The next group: the oldest callers still waiting, up to `max_items` items."""
        group: list[_Waiting[Item, Result]] = []
        size = 0
        while self._waiting:
            waiting = self._waiting[0]
            if waiting.future.done():  # its caller stopped waiting
                self._waiting.popleft()
                continue
            if group and size + len(waiting.items) > self._max_items:
                break
            group.append(self._waiting.popleft())
            size += len(waiting.items)
        return group

    async def _commit(self, group: list[_Waiting[Item, Result]]) -> None:
        try:
            results = await self._transact([item for waiting in group for item in waiting.items])
        except Exception as exc:
            if len(group) > 1 and not isinstance(exc, self._shared):
                for waiting in group:
                    await self._commit([waiting])
                return
            for waiting in group:
                if not waiting.future.done():
                    waiting.future.set_exception(exc)
            return
        start = 0
        for waiting in group:
            end = start + len(waiting.items)
            if not waiting.future.done():
                waiting.future.set_result(results[start:end])
            start = end
