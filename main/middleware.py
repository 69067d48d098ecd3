"""Pure-ASGI middleware: the request's trace id, and its cost recorded in `state`."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from telemetry import trace_id_var

_TRACE_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


def trace_id_from(headers: list[tuple[bytes, bytes]]) -> str:
    """The inbound `X-Trace-Id` when it is 1-128 of `[A-Za-z0-9._-]`, else a new UUID4."""
    for name, value in headers:
        if name == b"x-trace-id":
            text = value.decode("latin-1")
            if _TRACE_ID.match(text):
                return text
            break
    return str(uuid.uuid4())


class TraceMiddleware:
    """Sets `trace_id_var` for the request, returns `X-Trace-Id`, records the request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        trace_id = trace_id_from(scope["headers"])
        scope.setdefault("state", {})["trace_id"] = trace_id
        token = trace_id_var.set(trace_id)
        status = 500
        header = (b"x-trace-id", trace_id.encode())

        async def send_with_trace(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_trace)
        finally:
            trace_id_var.reset(token)
            _record(scope, status, time.perf_counter() - started)


def _record(scope: Scope, status: int, duration_s: float) -> None:
    runtime: Any = getattr(scope.get("app"), "state", None)
    runtime = getattr(runtime, "runtime", None)
    if runtime is None or runtime.state is None:
        return
    route = scope.get("route")
    path = getattr(route, "path", None) or "unmatched"
    refused = bool(scope.get("state", {}).get("refused"))  # set by main.errors
    runtime.state.record_request(
        route=f"{scope['method']} {path}", status=status, duration_s=duration_s, refused=refused
    )
