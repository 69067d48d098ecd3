"""The HTTP server: uvicorn, with deadlines for clients that send too slowly.

uvicorn closes a keep-alive connection that stays idle for `timeout_keep_alive` seconds, but
has no deadline for a request: a client that connects and sends nothing, or trickles a
request head or body a byte at a time, holds its connection (and, at SIGTERM, the shutdown)
for as long as it likes. `DeadlineH11Protocol` is uvicorn's h11 protocol plus two deadlines:

- the request head must be complete `header_timeout` seconds after the connection opens or,
  on a kept-alive connection, after the next request's first byte; else the connection is
  closed (with a 408 when part of a head arrived);
- the request body must be complete `body_timeout` seconds after its head; else the client
  gets a 408 (when no answer started yet) and the connection is closed. The application
  sees the client gone (`http.disconnect`), which is not an error (main/errors.py).

`python -m main` (`serve`) runs `main:app` with these deadlines, `timeout_keep_alive` and
`timeout_graceful_shutdown`: uvicorn waits at most that long for requests in flight at
SIGTERM before the lifespan's shutdown (intake's grace for runs) starts, so slow clients
cannot delay the exit. Under a bare `uvicorn main:app` the app applies the same at startup
(`adopt_running_server`); the Dockerfile also names them on its command line.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

logger = logging.getLogger(__name__)

HEADER_TIMEOUT_SECONDS = 10.0
BODY_TIMEOUT_SECONDS = 30.0
KEEP_ALIVE_SECONDS = 5
# At SIGTERM, first this wait, then the lifespan's shutdown: together within
# SHUTDOWN_GRACE_SECONDS + 10 s (main/__init__.py keeps the rest of the 10 s).
GRACEFUL_SHUTDOWN_SECONDS = 2

_Part = Literal["head", "body"]
_TIMEOUT_BODY = b"request not received in time\n"


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on the request head and on its body.

    One timer per connection, for the part of a request the client owes now: armed when
    that part starts, cancelled when it is complete. Between requests uvicorn's keep-alive
    timer governs instead. `protocol_with` makes a variant with other deadlines.
    """

    header_timeout: ClassVar[float] = HEADER_TIMEOUT_SECONDS
    body_timeout: ClassVar[float] = BODY_TIMEOUT_SECONDS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._owed: _Part | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch()  # a pipelined request may have started

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _watch(self) -> None:
        """Arm the deadline of what the client owes now (a head, a body, or nothing)."""
        owed = self._now_owed()
        if owed == self._owed:
            return
        self._disarm()
        if owed is not None:
            seconds = self.header_timeout if owed == "head" else self.body_timeout
            self._deadline = self.loop.call_later(seconds, self._expire, owed)
            self._owed = owed

    def _now_owed(self) -> _Part | None:
        if self.transport.is_closing():
            return None
        state = self.conn.their_state
        if state is h11.SEND_BODY:
            return "body"
        # Idle between requests, the keep-alive timer runs until the next request's first byte.
        if state is h11.IDLE and self.timeout_keep_alive_task is None:
            return "head"
        return None

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline, self._owed = None, None

    def _expire(self, owed: _Part) -> None:
        self._deadline, self._owed = None, None
        if self.transport.is_closing():
            return
        seconds = self.header_timeout if owed == "head" else self.body_timeout
        logger.info(
            "closing a connection: request %s not received within %ss",
            owed,
            seconds,
            extra={"client": f"{self.client[0]}:{self.client[1]}" if self.client else None},
        )
        cycle = self.cycle
        if owed == "body" and cycle is not None and not cycle.response_started:
            # The application waits for the body: it now sees the client gone, and its
            # answer, if any, is dropped (uvicorn sends nothing on a disconnected cycle).
            cycle.disconnected = True
            cycle.message_event.set()
            self._send_timeout()
        elif owed == "head" and self.conn.trailing_data[0]:
            self._send_timeout()
        self.transport.close()

    def _send_timeout(self) -> None:
        """Write a 408 with `Connection: close`, if h11 still allows an answer."""
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(_TIMEOUT_BODY)).encode()),
            (b"connection", b"close"),
        ]
        try:
            chunks = [
                self.conn.send(
                    h11.Response(status_code=408, headers=headers, reason=b"Request Timeout")
                ),
                self.conn.send(h11.Data(data=_TIMEOUT_BODY)),
                self.conn.send(h11.EndOfMessage()),
            ]
        except h11.LocalProtocolError:
            return
        self.transport.write(b"".join(chunk for chunk in chunks if chunk))


def adopt_running_server() -> bool:
    """Under a bare `uvicorn main:app` (the contract's start command), give the server running
    this app what `python -m main` sets: `DeadlineH11Protocol` for the connections it has yet
    to accept, and a bounded wait for requests in flight at SIGTERM. Called at startup,
    before uvicorn accepts a connection. The server is found through the SIGTERM handler it
    installs (its bound `Server.handle_exit`); under anything else (a test's own server,
    another ASGI server) nothing changes and False is returned. Choices made on the command
    line (`--http`, `--timeout-graceful-shutdown`) are kept."""
    server = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
    if not isinstance(server, uvicorn.Server):
        return False
    config = server.config
    if config.http_protocol_class is H11Protocol:
        config.http_protocol_class = DeadlineH11Protocol
    if config.timeout_graceful_shutdown is None:
        config.timeout_graceful_shutdown = GRACEFUL_SHUTDOWN_SECONDS
    logger.info(
        "serving with request deadlines (protocol %s, %ss for requests at SIGTERM)",
        config.http_protocol_class.__name__,
        config.timeout_graceful_shutdown,
    )
    return True


def protocol_with(*, header_timeout: float, body_timeout: float) -> type[DeadlineH11Protocol]:
    """`DeadlineH11Protocol` with other deadlines (for a uvicorn `Config(http=...)`)."""

    class Configured(DeadlineH11Protocol):
        pass

    Configured.header_timeout = header_timeout
    Configured.body_timeout = body_timeout
    return Configured


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    header_timeout: float = HEADER_TIMEOUT_SECONDS,
    body_timeout: float = BODY_TIMEOUT_SECONDS,
    keep_alive: int = KEEP_ALIVE_SECONDS,
    graceful_shutdown: int = GRACEFUL_SHUTDOWN_SECONDS,
) -> None:
    """Run `main:app` as `uvicorn main:app` does, with the deadlines; returns on exit."""
    uvicorn.run(
        "main:app",
        host=host,
        port=port,
        http=protocol_with(header_timeout=header_timeout, body_timeout=body_timeout),
        timeout_keep_alive=keep_alive,
        timeout_graceful_shutdown=graceful_shutdown,
    )


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m main [--host H] [--port P] [--timeout-header S] ...`."""
    args = _parser().parse_args(argv)
    serve(
        host=args.host,
        port=args.port,
        header_timeout=args.timeout_header,
        body_timeout=args.timeout_body,
        keep_alive=args.timeout_keep_alive,
        graceful_shutdown=args.timeout_graceful_shutdown,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m main",
        description="Serve the SRE Agent Runtime (main:app) with request deadlines.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--timeout-header",
        type=float,
        default=HEADER_TIMEOUT_SECONDS,
        help="seconds for a request head (default: %(default)s)",
    )
    parser.add_argument(
        "--timeout-body",
        type=float,
        default=BODY_TIMEOUT_SECONDS,
        help="seconds for a request body after its head (default: %(default)s)",
    )
    parser.add_argument(
        "--timeout-keep-alive",
        type=int,
        default=KEEP_ALIVE_SECONDS,
        help="seconds an idle kept-alive connection stays open (default: %(default)s)",
    )
    parser.add_argument(
        "--timeout-graceful-shutdown",
        type=int,
        default=GRACEFUL_SHUTDOWN_SECONDS,
        help="seconds requests in flight get at SIGTERM (default: %(default)s)",
    )
    return parser
