"""Outbound clients: cancelling requests under pool contention must never wedge a client.

httpcore 1.0.9's pool leaks a slot for a request cancelled after it was assigned a new
connection but before that connection opened (encode/httpcore#1093); enough of them and
every later request fails with PoolTimeout though no socket is open. Our pools reclaim them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest

from tools.outbound import _never_opened, new_client


@pytest.fixture
async def slow_server() -> AsyncIterator[str]:
    """Answers every request after 0.3 s, on keep-alive connections."""

    handlers: set[asyncio.Task[None]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            await answer(reader, writer)
        finally:
            writer.close()
            handlers.discard(task)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while True:
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = await reader.read(4096)
                    if not chunk:
                        return
                    head += chunk
                await asyncio.sleep(0.3)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                await writer.drain()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}/"
        server.close()
        for task in list(handlers):
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)


async def cancelled_flood(client: httpx.AsyncClient, url: str, count: int) -> None:
    """`count` requests at once, every one cut off by a deadline before it is answered."""

    async def one() -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.1):
                await client.get(url)

    await asyncio.gather(*(one() for _ in range(count)))


def orphans(client: httpx.AsyncClient) -> int:
    """Connections never opened and owned by no request: the slots the defect leaks."""
    pool = client._transport._pool  # type: ignore[attr-defined]
    owned = {id(request.connection) for request in pool._requests}
    return sum(id(c) not in owned and _never_opened(c) for c in pool.connections)


async def test_plain_httpx_pool_leaks_slots_when_requests_are_cancelled(slow_server: str) -> None:
    """The defect this module exists for (if it stops failing, httpcore fixed it)."""
    limits = httpx.Limits(max_connections=20, max_keepalive_connections=20)
    async with httpx.AsyncClient(limits=limits) as client:
        for _ in range(3):  # the race is hit most rounds; three make it all but certain
            await cancelled_flood(client, slow_server, 200)
            if orphans(client):
                break
        assert orphans(client) > 0


async def test_our_pool_reclaims_them_and_the_client_keeps_working(slow_server: str) -> None:
    timeout = httpx.Timeout(5.0, pool=1.0)
    async with new_client(timeout=timeout, max_connections=20) as client:
        for _ in range(3):  # enough rounds to exhaust a leaking pool of 20
            await cancelled_flood(client, slow_server, 200)
        response = await client.get(slow_server)
        assert response.status_code == 200
        assert orphans(client) == 0
