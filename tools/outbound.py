"""Outbound HTTP clients that survive cancellation.

The runtime keeps one client per kind of traffic (monitored services and cloud APIs, the
LLM, PagerDuty), so a flood of one can never starve or break another, and builds each here.

Why not a plain `httpx.AsyncClient`: httpcore 1.0.9's connection pool leaks a slot when a
request is cancelled after the pool assigned it a new connection but before that
connection was opened (encode/httpcore#1093: the connection stays CONNECTING, owned by no
request, neither idle nor closed, so no clean-up branch ever removes it). Run timeouts
cancel requests; enough leaked slots and every later request fails with `PoolTimeout`
while no socket is open. `_ReclaimingPool` drops such orphans each time the pool assigns
requests, which is the clean-up upstream's open fixes add.
"""

from __future__ import annotations

import httpcore
import httpx


class _ReclaimingPool(httpcore.AsyncConnectionPool):
    """httpcore's pool, plus: a connection never opened and owned by no request is dropped."""

    def _assign_requests_to_connections(self) -> list[httpcore.AsyncConnectionInterface]:
        owned = {id(request.connection) for request in self._requests}
        self._connections = [
            connection
            for connection in self._connections
            if id(connection) in owned or not _never_opened(connection)
        ]
        return super()._assign_requests_to_connections()


def _never_opened(connection: httpcore.AsyncConnectionInterface) -> bool:
    # `_connection` is None until the TCP (and TLS) connection is made; a failed connect
    # sets `_connect_failed` and is already reclaimed by httpcore itself.
    return (
        isinstance(connection, httpcore.AsyncHTTPConnection)
        and connection._connection is None
        and not connection._connect_failed
    )


def new_client(
    *, timeout: httpx.Timeout, max_connections: int, max_keepalive: int | None = None
) -> httpx.AsyncClient:
    """An `AsyncClient` whose pool reclaims connections orphaned by cancellation.

    Redirects are never followed: every outbound URL is one the runtime chose.
    """
    limits = httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max_keepalive if max_keepalive is not None else max_connections,
    )
    transport = httpx.AsyncHTTPTransport(limits=limits)
    transport._pool.__class__ = _ReclaimingPool  # same state, one more clean-up rule
    return httpx.AsyncClient(
        transport=transport, timeout=timeout, limits=limits, follow_redirects=False
    )
