"""Slow and vanishing clients against the real app under uvicorn with `DeadlineH11Protocol`.

Raw sockets on loopback: a client that sends part of a request head, part of a body, or
nothing, is closed by the server; one that goes away mid-body is neither an error log nor
a 5xx. Small deadlines keep the tests short; every wait for the server to act is a read
until EOF under a generous bound, never a sleep. The last test runs `python -m main` as a
subprocess and sends it SIGTERM while a slow client holds a request open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from demo.simulators.server import free_port
from main import create_app
from main.server import protocol_with
from tests.conftest import TEST_SECRETS, SettingsFactory
from tests.e2e.test_shutdown_e2e import (
    EXIT_MARGIN_SECONDS,
    GRACE_SECONDS,
    ROOT,
    runtime_environment,
    uvicorn_process,
    wait_until_serving,
)

HEAD_SECONDS = 0.5
BODY_SECONDS = 0.5
BOUND_SECONDS = 10.0  # generous: only a server that never closes takes this long
TOKEN = TEST_SECRETS["ops_auth_token"]
WEBHOOK = f"/webhook/generic?auth_token={TOKEN}"
WEBHOOK_ROUTE = "POST /webhook/{provider}"


@dataclass
class Served:
    app: FastAPI
    server: uvicorn.Server
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)

    async def requests_done(self) -> None:
        """Wait for every request the server has started to finish (its ASGI task)."""
        tasks = set(self.server.server_state.tasks)
        if tasks:
            await asyncio.wait(tasks, timeout=BOUND_SECONDS)

    async def webhook_counts(self) -> dict[str, int]:
        async with httpx.AsyncClient(base_url=self.url) as client:
            metrics = (await client.get("/ops/metrics")).json()
        by_route: dict[str, int] = metrics["requests"]["by_route"][WEBHOOK_ROUTE]
        return by_route

    async def errors(self) -> list[object]:
        async with httpx.AsyncClient(base_url=self.url) as client:
            errors: list[object] = (await client.get("/ops/errors")).json()["errors"]
        return errors


@contextlib.asynccontextmanager
async def deadline_server(
    make_settings: SettingsFactory, *, keep_alive: int = 60
) -> AsyncIterator[Served]:
    """The real app (its lifespan running) under uvicorn with small request deadlines."""
    app = create_app(make_settings(llm_api_base_url="http://localhost:1"))
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_config=None,
        http=protocol_with(header_timeout=HEAD_SECONDS, body_timeout=BODY_SECONDS),
        timeout_keep_alive=keep_alive,
    )
    server = uvicorn.Server(config)
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:  # uvicorn's own flag; the loop turns until it is set
            if task.done():
                task.result()
                raise RuntimeError("server exited before it started")
            await asyncio.sleep(0)
        yield Served(app, server, port)
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def served(make_settings: SettingsFactory) -> AsyncIterator[Served]:
    async with deadline_server(make_settings) as running:
        yield running


async def read_to_eof(reader: asyncio.StreamReader) -> tuple[bytes, float]:
    """Everything until the server closes, and how long that took."""
    started = time.monotonic()
    async with asyncio.timeout(BOUND_SECONDS):
        data = await reader.read()
    return data, time.monotonic() - started


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def webhook_head(length: int, *extra: str) -> bytes:
    lines = [
        f"POST {WEBHOOK} HTTP/1.1",
        "Host: 127.0.0.1",
        "Content-Type: application/json",
        f"Content-Length: {length}",
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def test_partial_request_head_gets_408_and_is_closed_after_the_header_timeout(
    served: Served,
) -> None:
    reader, writer = await served.connect()
    writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # no blank line: unfinished
    data, took = await read_to_eof(reader)
    writer.close()
    assert data.startswith(b"HTTP/1.1 408 ")
    assert took >= HEAD_SECONDS * 0.9  # the deadline, not a refusal at once


async def test_connection_that_sends_nothing_is_closed_after_the_header_timeout(
    served: Served,
) -> None:
    reader, writer = await served.connect()
    data, took = await read_to_eof(reader)
    writer.close()
    assert data == b""
    assert took >= HEAD_SECONDS * 0.9


async def test_trickled_body_gets_408_and_is_closed_after_the_body_timeout(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    reader, writer = await served.connect()
    writer.write(webhook_head(1000))
    sent = 0

    async def trickle() -> None:
        nonlocal sent
        with contextlib.suppress(ConnectionError):
            while not writer.is_closing() and not reader.at_eof():
                writer.write(b" ")  # whitespace: valid JSON padding, never a whole body
                await writer.drain()
                sent += 1
                await asyncio.sleep(0.05)  # the slow client under test

    async with asyncio.TaskGroup() as group:
        trickling = group.create_task(trickle())
        data, took = await read_to_eof(reader)
        trickling.cancel()
    writer.close()
    await served.requests_done()
    assert data.startswith(b"HTTP/1.1 408 ")
    assert b"connection: close" in data.lower()
    assert 0 < sent < 1000
    assert took >= BODY_SECONDS * 0.9
    assert (await served.webhook_counts())["server_errors"] == 0
    assert errors_logged(caplog) == []


async def test_client_gone_mid_body_is_no_error_log_and_no_5xx(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    reader, writer = await served.connect()
    # `Expect: 100-continue`: the server says `100 Continue` once the handler reads the body,
    # so the request is under way before the client leaves.
    writer.write(webhook_head(1000, "Expect: 100-continue"))
    async with asyncio.timeout(BOUND_SECONDS):
        interim = await reader.readuntil(b"\r\n\r\n")
    assert interim.startswith(b"HTTP/1.1 100 ")
    writer.write(b'{"incident_id": "half", "summary": ')
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    await served.requests_done()
    counts = await served.webhook_counts()
    assert counts == {"requests": 1, "server_errors": 0}
    assert await served.errors() == []
    assert errors_logged(caplog) == []
    assert any("went away" in r.getMessage() for r in caplog.records)


async def test_idle_keep_alive_connection_is_closed(make_settings: SettingsFactory) -> None:
    async with deadline_server(make_settings, keep_alive=1) as served:
        reader, writer = await served.connect()
        writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        data, _took = await read_to_eof(reader)
        writer.close()
    assert data.startswith(b"HTTP/1.1 200 ")
    assert b"connection: close" not in data.lower()  # kept alive, then closed when idle
    assert data.endswith(b'{"status":"ok"}')


async def test_kept_alive_connection_owes_the_next_head_within_the_header_timeout(
    served: Served,
) -> None:
    reader, writer = await served.connect()
    writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    async with asyncio.timeout(BOUND_SECONDS):
        first = await reader.readuntil(b'{"status":"ok"}')
    writer.write(b"GET /health HTTP/1.1\r\n")  # keep-alive is 60 s; the head deadline rules
    data, took = await read_to_eof(reader)
    writer.close()
    assert first.startswith(b"HTTP/1.1 200 ")
    assert data.startswith(b"HTTP/1.1 408 ")
    assert took >= HEAD_SECONDS * 0.9


async def test_prompt_requests_are_served_on_one_kept_alive_connection(served: Served) -> None:
    # A resolution of nothing active: read, parsed and answered, and no run or page follows.
    body = {"incident_id": "fast", "summary": "Recovered", "service": "api", "state": "resolved"}
    limits = httpx.Limits(max_connections=1)
    async with httpx.AsyncClient(base_url=served.url, limits=limits) as client:
        for _ in range(3):
            assert (await client.get("/health")).status_code == 200
        answer = await client.post(WEBHOOK, json=body)
        assert answer.status_code == 202
        assert answer.json()["alerts"][0]["status"] == "ignored"
        assert (await client.get("/health")).status_code == 200


async def test_python_m_main_closes_slow_clients_and_exits_on_sigterm_despite_one(
    tmp_path: Path,
) -> None:
    env = runtime_environment(
        tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9", "http://127.0.0.1:9"
    )
    port = free_port()
    with (tmp_path / "runtime.log").open("w") as output:
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "main", "--host", "127.0.0.1", "--port", str(port)),
            *("--timeout-header", str(HEAD_SECONDS)),
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=output,
        )
        try:
            await wait_until_serving(f"http://127.0.0.1:{port}", process)
            silent_reader, silent_writer = await asyncio.open_connection("127.0.0.1", port)
            silent, _took = await read_to_eof(silent_reader)
            silent_writer.close()
            # A client mid-body (its body deadline is the default 30 s) when SIGTERM comes.
            slow_reader, slow_writer = await asyncio.open_connection("127.0.0.1", port)
            slow_writer.write(webhook_head(1000, "Expect: 100-continue"))
            async with asyncio.timeout(BOUND_SECONDS):
                await slow_reader.readuntil(b"\r\n\r\n")
            process.send_signal(signal.SIGTERM)
            stopped_at = time.monotonic()
            code = await asyncio.wait_for(process.wait(), GRACE_SECONDS + EXIT_MARGIN_SECONDS)
            took = time.monotonic() - stopped_at
            slow_writer.close()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert silent == b""
    assert code in (0, -signal.SIGTERM)
    assert took < GRACE_SECONDS + 10  # CONTRACT §3: grace plus 10 s, whatever the clients
    assert "Application shutdown complete" in (tmp_path / "runtime.log").read_text()


async def test_bare_uvicorn_main_app_gets_the_deadlines_and_exits_on_sigterm_despite_a_slow_client(
    tmp_path: Path,
) -> None:
    """The contract's start command, without flags: the app gives its server the deadlines."""
    env = runtime_environment(
        tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9", "http://127.0.0.1:9"
    )
    async with uvicorn_process(env, tmp_path / "runtime.log") as (process, url):
        port = int(url.rsplit(":", 1)[1])
        slow_reader, slow_writer = await asyncio.open_connection("127.0.0.1", port)
        slow_writer.write(webhook_head(1000, "Expect: 100-continue"))
        async with asyncio.timeout(BOUND_SECONDS):
            await slow_reader.readuntil(b"\r\n\r\n")  # its request is under way, body owed
        process.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        code = await asyncio.wait_for(process.wait(), GRACE_SECONDS + EXIT_MARGIN_SECONDS)
        took = time.monotonic() - stopped_at
        slow_writer.close()
    log = (tmp_path / "runtime.log").read_text()
    assert "serving with request deadlines (protocol DeadlineH11Protocol, 2s" in log
    assert code in (0, -signal.SIGTERM)
    assert took < GRACE_SECONDS + 10  # uvicorn alone would wait for that body forever
