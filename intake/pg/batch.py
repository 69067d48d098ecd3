"""One transaction in few round trips: its writes wait, and go to the server with its next
read or with its COMMIT, in one message.

A webhook's transaction (`intake.pg.submit`) is short and hot: every round trip it waits
for holds its incident locks longer, and the queue's row lock that keeps MAX_QUEUE_SIZE
exact is shared by every replica. So its statements are bound on the client (psycopg's
`AsyncClientCursor.mogrify`, the server's own quoting rules) and several are sent as one
simple-protocol query: `BEGIN` goes with the first read, the writes with the next read or
the `COMMIT`. Within the message the statements still run one after another, each with its
own snapshot (READ COMMITTED), so a count after a lock sees what was committed before the
lock was granted.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import psycopg
from psycopg.pq import ExecStatus, TransactionStatus
from psycopg.rows import dict_row

Params = Sequence[Any] | Mapping[str, Any] | None
Rows = list[dict[str, Any]]
Statement = tuple[str, Params]  # a query and its parameters


class Batch:
    """A transaction on `conn` (an autocommit connection) whose writes are deferred."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._cursor = psycopg.AsyncClientCursor(conn, row_factory=dict_row)
        self._pending: list[str] = ["BEGIN"]
        self.committed = False

    def write(self, query: str, params: Params = None) -> None:
        """A statement whose result is not needed; sent with the next `send` or `commit`."""
        self._pending.append(self._cursor.mogrify(query, params))

    async def send(self, *queries: Statement) -> list[Rows]:
        """The deferred writes, then `queries`, in one round trip: each query's rows
        (none for a statement that returns none)."""
        statements = [*self._pending, *(self._cursor.mogrify(q, p) for q, p in queries)]
        skip, self._pending = len(self._pending), []
        await self._cursor.execute(";\n".join(statements), prepare=False)
        results: list[Rows] = []
        for index in range(len(statements)):
            if index >= skip:
                result = self._cursor.pgresult  # (`description` would build its columns)
                has_rows = result is not None and result.status == ExecStatus.TUPLES_OK
                results.append(await self._cursor.fetchall() if has_rows else [])
            self._cursor.nextset()
        return results

    async def commit(self, *queries: Statement) -> list[Rows]:
        """The deferred writes, `queries` and COMMIT, in one round trip: each query's rows."""
        results = await self.send(*queries, ("COMMIT", None))
        self.committed = True
        return results[:-1]


@contextlib.asynccontextmanager
async def transaction(conn: psycopg.AsyncConnection[Any]) -> AsyncIterator[Batch]:
    """A `Batch` on `conn`, rolled back unless the block committed it."""
    batch = Batch(conn)
    try:
        yield batch
    finally:
        status = conn.info.transaction_status
        if not batch.committed and status in (TransactionStatus.INTRANS, TransactionStatus.INERROR):
            # A connection left mid-query (cancelled) is not IDLE: the pool discards it.
            with contextlib.suppress(psycopg.Error):
                await conn.execute("ROLLBACK")
