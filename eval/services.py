"""The services of one scenario, simulated from its `services` section.

A simulated service answers only the endpoints the scenario defines; anything else is a 404,
as a real service would answer. It checks the runtime's Bearer token like a real `/ops/*`
API, records every request it got (the actions the agent took), and after a call to an
endpoint with `after`, answers the endpoints listed there differently from then on (a
restart making `/ops/status` healthy).

`under_prefixes` serves all of a run's simulators from one server (a prefix each): one
server to start and stop per run instead of one per simulator.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from demo.simulators.ops_service import RecordedRequest
from eval.scenario import Answer, endpoint_key


@dataclass
class ScenarioService:
    """One simulated service: its current answers and what it was asked."""

    name: str
    token: str
    answers: dict[str, Answer]
    requests: list[RecordedRequest] = field(default_factory=list)
    # Set at every request; the services of one run share it (`asked`).
    asked: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> Starlette:
        methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
        return Starlette(routes=[Route("/{path:path}", self.handle, methods=methods)])

    async def handle(self, request: Request) -> Response:
        recorded = await _record(request)
        self.requests.append(recorded)
        self.asked.set()
        if recorded.headers.get("authorization") != f"Bearer {self.token}":
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        answer = self.answers.get(endpoint_key(recorded.method, recorded.path))
        if answer is None:
            return JSONResponse({"error": f"no such endpoint {recorded.path}"}, status_code=404)
        self.answers.update(answer.after)
        return JSONResponse(answer.body, status_code=answer.status)

    def actions(self) -> list[str]:
        """Every request it got, as `METHOD service /ops/path`, in order."""
        return [f"{r.method} {self.name} {r.path.rstrip('/')}" for r in self.requests]


async def asked(services: Mapping[str, ScenarioService], count: int) -> None:
    """Return once the services (sharing one `asked` event) have answered `count` requests
    in all; at once when there are none to ask."""
    if not services:
        return
    event = next(iter(services.values())).asked
    while sum(len(s.requests) for s in services.values()) < count:
        event.clear()
        await event.wait()


async def _record(request: Request) -> RecordedRequest:
    raw = await request.body()
    try:
        body = await request.json() if raw else None
    except ValueError:
        body = raw.decode("utf-8", errors="replace")
    headers = dict(request.headers)
    return RecordedRequest(request.method, request.url.path, request.url.query, headers, body)


def under_prefixes(apps: Mapping[str, ASGIApp]) -> ASGIApp:
    """One ASGI app serving each of `apps` under its prefix (`/svc/checkout/ops/status` is
    `/ops/status` to the app of `/svc/checkout`), so each sees the paths it would see alone;
    anything else is a 404. Serve it with `lifespan="off"`."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        for prefix, inner in apps.items():
            if path.startswith(prefix + "/"):
                rest = path[len(prefix) :]
                await inner({**scope, "path": rest, "raw_path": rest.encode()}, receive, send)
                return
        await JSONResponse({"error": "not found"}, status_code=404)(scope, receive, send)

    return app
