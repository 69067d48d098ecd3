"""One demo incident: fire its alert, follow the agent's work, print and keep the report.

Following is polling `GET /alerts/{id}` (what an operator's script would do): each new tool
call and status change is printed as it appears, and in approve mode each proposed write
(`demo.approvals`).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from demo import alerts
from demo.approvals import ApprovalWatch
from demo.console import Console, describe_call, ok_mark

POLL_SECONDS = 0.2
INCIDENT_TIMEOUT_SECONDS = 240.0  # without the time approvals wait for a decision
TERMINAL = {"resolved", "escalated", "expired", "deduplicated", "ignored"}


@dataclass(slots=True)
class IncidentResult:
    """How one demo incident ended."""

    incident_id: str
    service: str
    expected: str
    status: str
    outcome: str | None
    tool_calls: list[dict[str, Any]]
    tokens: int
    report_file: Path | None
    report: str
    approvals: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True)
class Session:
    """What each incident of the demo needs."""

    console: Console
    client: httpx.AsyncClient
    webhook_token: str
    incidents_dir: Path
    watch_approvals: ApprovalWatch


async def incident(session: Session, watch: alerts.Threshold, expected: str) -> IncidentResult:
    """Fire the alert for `watch`, follow it to its report, return how it ended."""
    console = session.console
    payload = alerts.gcp_incident(watch, incident_id=alerts.new_incident_id())
    console.line(f"POST /webhook/gcp  (GCP Cloud Monitoring, schema 1.2, service {watch.service})")
    console.line(f"  summary: {payload['incident']['summary']}", "dim")
    response = await session.client.post(
        "/webhook/gcp", params={"auth_token": session.webhook_token}, json=payload
    )
    console.line(f"  -> {response.status_code} {json.dumps(response.json())}")
    response.raise_for_status()
    incident_id = response.json()["alerts"][0]["incident_id"]
    console.line()
    console.line(
        f"The agent is working (polling GET /alerts/{{id}} every {POLL_SECONDS:g} s):", "bold"
    )
    detail = await _follow(session, incident_id)
    return await _finish(session, detail, expected)


async def _follow(session: Session, incident_id: str) -> dict[str, Any]:
    """Print status changes, tool calls and approvals until the incident has its report."""
    seen, status = 0, ""
    approvals = session.watch_approvals
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(INCIDENT_TIMEOUT_SECONDS) as deadline:
        while True:
            detail: dict[str, Any] = (await session.client.get(f"/alerts/{incident_id}")).json()
            approvals.decided(detail["approvals"])
            for call in detail["tool_calls"][seen:]:
                _print_call(session.console, call)
            seen = len(detail["tool_calls"])
            if detail["status"] != status:
                status = detail["status"]
                session.console.line(f"  [{status}]", "yellow")
            if waiting := await approvals.proposed(detail["approvals"]):
                # the time a proposal waits for a decision is not the agent's time
                later = waiting * approvals.timeout_seconds
                deadline.reschedule((deadline.when() or loop.time()) + later)
            if status in TERMINAL and detail["report_file"]:
                return detail
            await asyncio.sleep(POLL_SECONDS)


def _print_call(console: Console, call: dict[str, Any]) -> None:
    summary = describe_call(call["name"], call["arguments"])
    mark = ok_mark(console, call["ok"])
    error = f"  ({call['error']})" if call.get("error") else ""
    console.line(
        f"  turn {call['turn']:>2}  {call['name']:<22} {summary:<44} {mark} "
        f"{call['duration_ms']:>6.0f} ms{error}"
    )


async def _finish(session: Session, detail: dict[str, Any], expected: str) -> IncidentResult:
    incident_id = detail["incident_id"]
    report = (await session.client.get(f"/alerts/{incident_id}/report")).text
    path = session.incidents_dir / detail["report_file"]
    session.console.line()
    session.console.line(f"Incident report ({incident_id}):", "bold")
    session.console.block(report)
    session.console.line(f"Report file: {path}")
    return IncidentResult(
        incident_id=incident_id,
        service=detail["service"],
        expected=expected,
        status=detail["status"],
        outcome=detail["outcome"],
        tool_calls=detail["tool_calls"],
        tokens=detail["tokens"]["total"],
        report_file=path,
        report=report,
        approvals=detail["approvals"],
    )
