"""PagerDuty REST API v2: the `/ops/health` probe and the best-effort escalation-policy hand-off.

The hand-off runs after a successful trigger: find the incident the event created
(`GET /incidents?incident_key=<dedup key>`; events are processed asynchronously, so it may
take a moment to appear) and reassign it (`PUT /incidents/{id}` with an
`escalation_policy_reference`). Its result is a sentence for the report, never an exception.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from config import Settings

logger = logging.getLogger(__name__)

REST_TIMEOUT_SECONDS = 5.0
LOOKUP_ATTEMPTS = 3
LOOKUP_DELAY_SECONDS = 1.0
_INCIDENT_ID = re.compile(r"[A-Za-z0-9]{1,64}")


class HandOffError(Exception):
    """The hand-off could not be completed; the message says why."""


class PagerDutyRest:
    """The few REST calls the runtime makes, with the token and API version headers."""

    def __init__(
        self,
        *,
        http: httpx.AsyncClient,
        settings: Settings,
        sleep: Callable[[float], Awaitable[None]],
        clock: Callable[[], float],
    ) -> None:
        self._http = http
        self._settings = settings
        self._sleep = sleep
        self._clock = clock

    def _headers(self, trace_id: str | None = None) -> dict[str, str]:
        token = self._settings.pagerduty_api_token.get_secret_value()
        headers = {
            "Authorization": f"Token token={token}",
            "Accept": "application/vnd.pagerduty+json;version=2",
        }
        if trace_id:
            headers["X-Trace-Id"] = trace_id
        if self._settings.pagerduty_from_email:
            headers["From"] = self._settings.pagerduty_from_email
        return headers

    def _url(self, path: str) -> str:
        return self._settings.pagerduty_api_url + path

    async def probe(self) -> tuple[bool, str]:
        """(ok, detail): `GET /abilities` answers 2xx with the token."""
        try:
            response = await self._http.get(
                self._url("/abilities"), headers=self._headers(), timeout=REST_TIMEOUT_SECONDS
            )
        except httpx.HTTPError as exc:
            return False, f"PagerDuty REST API unreachable: {type(exc).__name__}"
        if response.is_success:
            return True, f"HTTP {response.status_code}"
        return False, f"HTTP {response.status_code} from PagerDuty REST API /abilities"

    async def hand_off(self, dedup_key: str, *, trace_id: str, deadline: float | None) -> str:
        """Reassign the incident to PAGERDUTY_ESCALATION_POLICY_ID; describe what happened."""
        policy = self._settings.pagerduty_escalation_policy_id
        try:
            incident_id = await self._find_incident(dedup_key, trace_id, deadline)
            await self._reassign(incident_id, str(policy), trace_id)
        except (HandOffError, httpx.HTTPError, ValueError, AttributeError) as exc:
            reason = str(exc) if isinstance(exc, HandOffError) else type(exc).__name__
            logger.warning("PagerDuty hand-off to policy %s failed: %s", policy, reason)
            return f"failed: {reason}"
        logger.info("PagerDuty incident %s handed to escalation policy %s", incident_id, policy)
        return f"handed to escalation policy {policy} (incident {incident_id})"

    async def _find_incident(self, dedup_key: str, trace_id: str, deadline: float | None) -> str:
        for attempt in range(1, LOOKUP_ATTEMPTS + 1):
            incident_id = await self._lookup(dedup_key, trace_id)
            if incident_id is not None:
                return incident_id
            if attempt == LOOKUP_ATTEMPTS or not self._can_wait(deadline):
                break
            await self._sleep(LOOKUP_DELAY_SECONDS * attempt)
        raise HandOffError(f"no PagerDuty incident found for dedup key {dedup_key}")

    def _can_wait(self, deadline: float | None) -> bool:
        return deadline is None or self._clock() + LOOKUP_DELAY_SECONDS < deadline

    async def _lookup(self, dedup_key: str, trace_id: str) -> str | None:
        response = await self._http.get(
            self._url("/incidents"),
            params={"incident_key": dedup_key},
            headers=self._headers(trace_id),
            timeout=REST_TIMEOUT_SECONDS,
        )
        if not response.is_success:
            raise HandOffError(f"HTTP {response.status_code} from GET /incidents")
        incidents: list[dict[str, Any]] = response.json().get("incidents") or []
        if not incidents:
            return None
        incident_id = str(incidents[0].get("id", ""))
        if not _INCIDENT_ID.fullmatch(incident_id):
            raise HandOffError("GET /incidents returned an incident without a valid id")
        return incident_id

    async def _reassign(self, incident_id: str, policy: str, trace_id: str) -> None:
        body = {
            "incident": {
                "type": "incident_reference",
                "escalation_policy": {"id": policy, "type": "escalation_policy_reference"},
            }
        }
        response = await self._http.put(
            self._url(f"/incidents/{incident_id}"),
            json=body,
            headers=self._headers(trace_id),
            timeout=REST_TIMEOUT_SECONDS,
        )
        if not response.is_success:
            raise HandOffError(f"HTTP {response.status_code} from PUT /incidents/{incident_id}")
