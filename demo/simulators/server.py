"""Run any ASGI app under a real uvicorn server on a free loopback port, for the test's span."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

import uvicorn


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def serve(
    app: Callable[..., Any], *, lifespan: Literal["auto", "on", "off"] = "on"
) -> AsyncIterator[str]:
    """Start `app` on 127.0.0.1:<free port>, yield its base URL, stop it on exit.

    Startup is awaited through uvicorn's own `started` flag on the event loop (no sleeps
    against wall-clock); shutdown asks uvicorn to exit and awaits its task.
    """
    config = uvicorn.Config(
        app, host="127.0.0.1", port=free_port(), lifespan=lifespan, log_config=None
    )
    server = uvicorn.Server(config)
    # The test process owns its signals; uvicorn must not take SIGINT/SIGTERM from it.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("server exited before it started")
            await asyncio.sleep(0)
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        await task
