"""The runtime as the demo runs it: the real app under uvicorn, its logs in a file.

The runtime's port is bound before its settings are built, so `PUBLIC_URL` (the console
links in PagerDuty events and reports) names the address the runtime really serves on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import uvicorn

from config import Settings
from main import create_app
from telemetry import json_handler


@contextlib.contextmanager
def loopback_socket() -> Iterator[socket.socket]:
    """A TCP socket bound to a free loopback port; its URL is `url_of(sock)`."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        yield sock
    finally:
        sock.close()  # closing twice (uvicorn closed it already) is harmless


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{host}:{port}"


@contextlib.asynccontextmanager
async def runtime(
    settings: Settings, sock: socket.socket, *, to_log_file: Callable[[], None], ops_token: str
) -> AsyncIterator[httpx.AsyncClient]:
    """The real app under uvicorn on `sock`; yields a client of its API (Bearer `ops_token`)."""
    app = create_app(settings)  # configures JSON logging on stdout...
    to_log_file()  # ...which goes to the log file instead
    async with _serving(app, sock):
        headers = {"Authorization": f"Bearer {ops_token}"}
        async with httpx.AsyncClient(base_url=url_of(sock), headers=headers) as client:
            yield client


@contextlib.asynccontextmanager
async def _serving(app: Callable[..., object], sock: socket.socket) -> AsyncIterator[None]:
    """Like `demo.simulators.server.serve`, on a socket bound beforehand."""
    config = uvicorn.Config(app, lifespan="on", log_config=None)
    server = uvicorn.Server(config)
    # This process owns its signals (Ctrl-C); uvicorn must not take SIGINT/SIGTERM from it.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:  # uvicorn's own flag, set on this loop: no clock involved
            if task.done():
                task.result()
                raise RuntimeError("the runtime exited before it started")
            await asyncio.sleep(0)
        yield
    finally:
        server.should_exit = True
        await task


@contextlib.contextmanager
def saved_logging() -> Iterator[None]:
    """Put the root logger back as it was (the app reconfigures it)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


@contextlib.contextmanager
def logs_into(path: Path) -> Iterator[Callable[[], None]]:
    """Send every log line to `path` now, and again whenever the returned function is called
    (after something else reconfigured logging)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as stream:

        def redirect() -> None:
            logging.getLogger().handlers[:] = [json_handler(stream)]

        redirect()
        try:
            yield redirect
        finally:
            logging.getLogger().handlers[:] = []
