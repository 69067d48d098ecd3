"""A fake PagerDuty: Events API v2 (`POST /v2/enqueue`) and the REST API (`GET /abilities`,
`GET /incidents`, `PUT /incidents/{id}`), recording every request, scriptable from tests.

    app, pd = make_fake_pagerduty(api_token="pd-rest-token")
    async with serve(app) as base_url:
        settings = make_settings(**pd.settings_for(base_url))
    pd.events_script.extend([Scripted(429, headers={"Retry-After": "0"}), Scripted(202)])
    pd.events_default = Scripted(500)        # every unscripted event fails
    pd.events                                # recorded enqueue requests (json bodies)
    pd.rate_limit = 10                       # like PagerDuty: 429 + Retry-After above 10 / window
    pd.hold = asyncio.Event()                # events are not answered until it is set

Accepted triggers create an incident (id `Q0001`, ...) keyed by dedup key, so the
escalation-policy hand-off can find it; `lookup_misses` hides it from the first N lookups
(events are processed asynchronously in the real service).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from demo.simulators.ops_service import RecordedRequest


@dataclass(slots=True)
class Scripted:
    """One scripted answer."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def response(self, default_body: Any) -> Response:
        body = self.body if self.body is not None else default_body
        return JSONResponse(body, status_code=self.status, headers=self.headers)


@dataclass
class FakePagerDuty:
    api_token: str | None = None
    events_script: deque[Scripted] = field(default_factory=deque)
    events_default: Scripted = field(default_factory=lambda: Scripted(202))
    abilities_status: int = 200
    lookup_status: int = 200
    lookup_misses: int = 0
    update_status: int = 200
    events: list[RecordedRequest] = field(default_factory=list)
    rest: list[RecordedRequest] = field(default_factory=list)
    incidents: dict[str, dict[str, Any]] = field(default_factory=dict)
    rate_limit: int | None = None  # events accepted per `rate_window` seconds; then 429
    rate_window: float = 60.0
    accepted_at: deque[float] = field(default_factory=deque)
    throttled: int = 0
    hold: asyncio.Event | None = None  # Events API answers wait until it is set (a hung API)

    def settings_for(self, base_url: str) -> dict[str, str]:
        """Settings overrides pointing the client at this fake."""
        return {"pagerduty_events_url": f"{base_url}/v2/enqueue", "pagerduty_api_url": base_url}

    def paged_incidents(self) -> set[str]:
        """Every incident id an accepted trigger names: its dedup key, or, for an alert-storm
        incident (`storm:<id>`), each id its `custom_details.incident_ids` lists."""
        named: set[str] = set()
        for event in (e.json for e in self.events):
            if event.get("event_action") != "trigger":
                continue
            key = str(event.get("dedup_key"))
            if key.startswith("storm:"):
                named.update(event["payload"]["custom_details"]["incident_ids"])
            else:
                named.add(key)
        return named

    def event_actions(self) -> list[str]:
        return [str(e.json.get("event_action")) for e in self.events]

    def updates(self) -> list[RecordedRequest]:
        return [r for r in self.rest if r.method == "PUT"]

    def enqueue(self, event: dict[str, Any]) -> Response:
        refusal = self._over_rate()
        if refusal is not None:
            return refusal
        scripted = self.events_script.popleft() if self.events_script else self.events_default
        ok = {
            "status": "success",
            "message": "Event processed",
            "dedup_key": event.get("dedup_key"),
        }
        if 200 <= scripted.status < 300 and event.get("event_action") == "trigger":
            self._open_incident(str(event.get("dedup_key")))
        return scripted.response(ok if scripted.status < 300 else {"status": "error"})

    def _over_rate(self) -> Response | None:
        """PagerDuty's per-integration-key rate limit: 429 with `Retry-After` when full."""
        if self.rate_limit is None:
            return None
        now = time.monotonic()
        while self.accepted_at and now - self.accepted_at[0] >= self.rate_window:
            self.accepted_at.popleft()
        if len(self.accepted_at) < self.rate_limit:
            self.accepted_at.append(now)
            return None
        self.throttled += 1
        wait = self.rate_window - (now - self.accepted_at[0])
        body = {"status": "throttle event", "message": "Requests for this service are throttled"}
        return JSONResponse(body, status_code=429, headers={"Retry-After": str(math.ceil(wait))})

    def _open_incident(self, dedup_key: str) -> None:
        if dedup_key not in self.incidents:
            incident_id = f"Q{len(self.incidents) + 1:04d}"
            self.incidents[dedup_key] = {"id": incident_id, "incident_key": dedup_key}

    def rest_authorized(self, request: RecordedRequest) -> bool:
        expected = f"Token token={self.api_token}"
        return self.api_token is None or request.headers.get("authorization") == expected

    def lookup(self, incident_key: str) -> Response:
        if self.lookup_status >= 300:
            return JSONResponse({"error": {"message": "scripted"}}, status_code=self.lookup_status)
        if self.lookup_misses > 0:
            self.lookup_misses -= 1
            return JSONResponse({"incidents": []})
        found = [i for k, i in self.incidents.items() if k == incident_key]
        return JSONResponse({"incidents": found})

    def update(self, incident_id: str, body: Any) -> Response:
        if self.update_status >= 300:
            return JSONResponse({"error": {"message": "scripted"}}, status_code=self.update_status)
        return JSONResponse({"incident": {"id": incident_id, **(body or {}).get("incident", {})}})


async def _record(request: Request) -> RecordedRequest:
    raw = await request.body()
    body = await request.json() if raw else None
    return RecordedRequest(
        request.method, request.url.path, request.url.query, dict(request.headers), body
    )


def make_fake_pagerduty(**options: Any) -> tuple[Starlette, FakePagerDuty]:
    """A Starlette app serving the fake, and the fake (keyword options set its fields)."""
    fake = FakePagerDuty(**options)

    async def enqueue(request: Request) -> Response:
        recorded = await _record(request)
        fake.events.append(recorded)
        if fake.hold is not None:
            await fake.hold.wait()
        return fake.enqueue(recorded.json or {})

    async def rest(request: Request) -> Response:
        recorded = await _record(request)
        fake.rest.append(recorded)
        if not fake.rest_authorized(recorded):
            return JSONResponse({"error": {"message": "unauthorized"}}, status_code=401)
        if recorded.path == "/abilities":
            return JSONResponse({"abilities": ["teams"]}, status_code=fake.abilities_status)
        if recorded.path == "/incidents":
            return fake.lookup(request.query_params.get("incident_key", ""))
        return fake.update(request.path_params["incident_id"], recorded.json)

    routes = [
        Route("/v2/enqueue", enqueue, methods=["POST"]),
        Route("/abilities", rest, methods=["GET"]),
        Route("/incidents", rest, methods=["GET"]),
        Route("/incidents/{incident_id}", rest, methods=["PUT"]),
    ]
    return Starlette(routes=routes), fake
