"""`/alerts/*`: what intake holds and has recently finished, and each incident's report."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from main.auth import OpsAuth
from main.deps import RuntimeDep
from main.errors import ClientError
from models import AlertDetail, AlertList, ErrorResponse

router = APIRouter(prefix="/alerts", tags=["alerts"], dependencies=[OpsAuth])

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Missing or wrong Bearer token."},
    404: {"model": ErrorResponse, "description": "No such incident (or no report yet)."},
}


@router.get("", response_model=AlertList, responses=_ERRORS)
async def list_alerts(runtime: RuntimeDep) -> AlertList:
    """Running and queued alerts, and the last 100 finished ones (newest first)."""
    listing = runtime.intake.listing()
    return AlertList(**{key: [r.summary() for r in records] for key, records in listing.items()})


@router.get(
    "/{incident_id:path}/report",
    response_class=PlainTextResponse,
    responses={**_ERRORS, 200: {"content": {"text/markdown": {}}}},
)
async def get_report(incident_id: str, runtime: RuntimeDep) -> PlainTextResponse:
    """The incident's markdown report."""
    record = runtime.intake.get(incident_id)
    text = runtime.reports.read(record.report_file) if record and record.report_file else None
    if text is None:
        raise ClientError(404, "not_found", f"no report for {incident_id!r} yet")
    return PlainTextResponse(text, media_type="text/markdown; charset=utf-8")


@router.get("/{incident_id:path}", response_model=AlertDetail, responses=_ERRORS)
async def get_alert(incident_id: str, runtime: RuntimeDep) -> AlertDetail:
    """One incident: its alert, timeline, tool calls, tokens, outcome and report file."""
    record = runtime.intake.get(incident_id)
    if record is None:
        raise ClientError(404, "not_found", f"unknown incident {incident_id!r}")
    return record.detail()
