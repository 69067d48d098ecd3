"""A fake monitored service implementing the `/ops/*` contract, scriptable from tests.

    app, service = make_ops_service(name="worker", token="ops-token", faulty=True)
    async with serve(app) as base_url:
        ...
    service.requests          # every request: method, path, headers, json body
    service.status_codes      # {"/ops/status": 503}: answer that path with this code
    service.hold("/ops/status")   # requests to it wait until service.release(...)
    service.bodies            # {"/ops/config": {...}}: answer that GET path with this body

Behaviour: GET /ops/status|health|metrics|errors|dependencies|config answer plausible
JSON that reflects `faulty`; /ops/echo returns the request as received (headers included);
any POST /ops/* succeeds, and a POST to a remediation path (`remedies`) clears the fault,
so /ops/status goes degraded -> healthy. POST /ops/scale {"replicas": n} sets `replicas`.
With `token` set, a request without `Authorization: Bearer <token>` gets 401.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

REMEDIES = ("/ops/restart", "/ops/scale", "/ops/rollback", "/ops/cache/clear")


@dataclass(slots=True)
class RecordedRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    json: Any


@dataclass
class FakeOpsService:
    """State and script of one fake service. Mutate it freely from the test."""

    name: str = "worker"
    token: str | None = None
    faulty: bool = False
    replicas: int = 2
    remedies: tuple[str, ...] = REMEDIES
    status_codes: dict[str, int] = field(default_factory=dict)
    bodies: dict[str, Any] = field(default_factory=dict)
    delays: dict[str, float] = field(default_factory=dict)
    max_hold_seconds: float = 30.0
    requests: list[RecordedRequest] = field(default_factory=list)
    _holds: dict[str, asyncio.Event] = field(default_factory=dict)
    _arrivals: dict[str, asyncio.Event] = field(default_factory=dict)

    def hold(self, path: str) -> None:
        """Requests to `path` wait (up to `max_hold_seconds`) until `release(path)`."""
        self._holds[path] = asyncio.Event()

    def release(self, path: str | None = None) -> None:
        """Let held requests go: one path, or all. Call it in `finally` so servers stop."""
        for held, event in self._holds.items():
            if path is None or held == path:
                event.set()

    async def arrived(self, path: str) -> None:
        """Wait until a request for `path` has reached the service."""
        if not any(r.path == path for r in self.requests):
            await self._arrivals.setdefault(path, asyncio.Event()).wait()

    def paths(self, method: str | None = None) -> list[str]:
        return [r.path for r in self.requests if method is None or r.method == method]

    async def record(self, request: Request) -> RecordedRequest:
        raw = await request.body()
        try:
            body = await request.json() if raw else None
        except ValueError:
            body = raw.decode("utf-8", errors="replace")
        recorded = RecordedRequest(
            request.method, request.url.path, request.url.query, dict(request.headers), body
        )
        self.requests.append(recorded)
        self._arrivals.setdefault(recorded.path, asyncio.Event()).set()
        return recorded

    async def wait_scripted(self, path: str) -> None:
        if path in self.delays:
            await asyncio.sleep(self.delays[path])
        if path in self._holds:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.max_hold_seconds):
                    await self._holds[path].wait()

    def authorized(self, request: RecordedRequest) -> bool:
        return self.token is None or request.headers.get("authorization") == f"Bearer {self.token}"

    def status(self) -> dict[str, Any]:
        return {
            "service": self.name,
            "status": "degraded" if self.faulty else "healthy",
            "replicas": self.replicas,
            "error_rate": 0.23 if self.faulty else 0.001,
            "latency_p99_ms": 2400 if self.faulty else 180,
            "requests_per_second": 42.0,
        }

    def get_body(self, recorded: RecordedRequest) -> Any:
        if recorded.path in self.bodies:
            return self.bodies[recorded.path]
        return _get_bodies(self, recorded).get(recorded.path)

    def post(self, recorded: RecordedRequest) -> dict[str, Any]:
        if recorded.path == "/ops/scale" and isinstance(recorded.json, dict):
            self.replicas = int(recorded.json.get("replicas", self.replicas))
        remedied = recorded.path in self.remedies
        if remedied:
            self.faulty = False
        return {"ok": True, "action": recorded.path, "remedied": remedied, **self.status()}


def _get_bodies(service: FakeOpsService, recorded: RecordedRequest) -> dict[str, Any]:
    faulty = service.faulty
    return {
        "/ops/status": service.status(),
        "/ops/health": {
            "status": "degraded" if faulty else "healthy",
            "checks": {"database": {"status": "slow" if faulty else "ok", "latency_ms": 900}},
        },
        "/ops/metrics": {"latency_ms": {"p50": 40, "p95": 800, "p99": 2400}, "error_rate": 0.2},
        "/ops/errors": {
            "errors": [{"type": "TimeoutError", "count": 57, "last_message": "db query timed out"}]
            if faulty
            else []
        },
        "/ops/dependencies": {"database": {"status": "degraded" if faulty else "healthy"}},
        "/ops/config": {"service": service.name, "pool_size": 10, "log_level": "INFO"},
        "/ops/echo": {
            "method": recorded.method,
            "path": recorded.path,
            "headers": recorded.headers,
            "json": recorded.json,
        },
    }


def make_ops_service(**options: Any) -> tuple[Starlette, FakeOpsService]:
    """A Starlette app serving the fake, and the fake (keyword options set its fields)."""
    service = FakeOpsService(**options)

    async def handle(request: Request) -> Response:
        recorded = await service.record(request)
        await service.wait_scripted(recorded.path)
        if not service.authorized(recorded):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        code = service.status_codes.get(recorded.path)
        if code is not None and code >= 400:  # a scripted failure changes nothing
            failure = service.bodies.get(recorded.path, {"error": f"scripted HTTP {code}"})
            return JSONResponse(failure, status_code=code)
        body = service.post(recorded) if recorded.method == "POST" else service.get_body(recorded)
        if body is None:
            return JSONResponse({"error": f"no such endpoint {recorded.path}"}, status_code=404)
        return JSONResponse(body, status_code=code or 200)

    app = Starlette(routes=[Route("/{path:path}", handle, methods=["GET", "POST"])])
    return app, service
