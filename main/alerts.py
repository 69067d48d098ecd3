"""`/alerts/*`: what intake holds and has recently finished, and each incident's report.

`GET /alerts` answers one page: the cost of a call is bounded by `limit`, not by the queue.
Its cursor is the queue order key of the last queued alert shown (priority, then arrival),
base64url-encoded; intake finds where the next page starts by bisection.
"""

from __future__ import annotations

import asyncio
import base64
import re
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse, Response

from intake import AlertRecord
from intake.sanitize import safe
from main.auth import OpsAuth
from main.deps import Runtime, RuntimeDep
from main.errors import ClientError
from models import AlertDetail, AlertList, ErrorResponse, Transcript

router = APIRouter(prefix="/alerts", tags=["alerts"], dependencies=[OpsAuth])

DEFAULT_PAGE = 100
MAX_PAGE = 1000
ECHOED_ID_CHARS = 256  # the longest incident id a webhook accepts
MAX_CURSOR_CHARS = 64
_CURSOR_TEXT = re.compile(r"q([0-9]{1,19})")

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Missing or wrong Bearer token."},
    404: {
        "model": ErrorResponse,
        "description": "No such incident or occurrence (or no report or run yet).",
    },
    422: {"model": ErrorResponse, "description": "`occurrence` is not a positive integer."},
}
_PAGE_ERRORS: dict[int | str, dict[str, Any]] = {
    401: _ERRORS[401],
    422: {
        "model": ErrorResponse,
        "description": "`limit` outside 1-1000, or a `cursor` that no page handed out.",
    },
}

Limit = Annotated[
    int,
    Query(ge=1, le=MAX_PAGE, description="Caps each list (running, queued, recent)."),
]
Occurrence = Annotated[
    int | None,
    Query(ge=1, le=2**53, description="Which occurrence of the incident; the latest if absent."),
]
Cursor = Annotated[
    str | None,
    Query(
        max_length=MAX_CURSOR_CHARS,
        description="`next_cursor` of the previous page: the queued alerts after it.",
    ),
]


@router.get("", response_model=AlertList, responses=_PAGE_ERRORS)
async def list_alerts(
    runtime: RuntimeDep, limit: Limit = DEFAULT_PAGE, cursor: Cursor = None
) -> AlertList:
    """Running alerts, one page of the queue (best priority, then oldest) and the last 100
    finished (newest first), each list capped at `limit`. `next_cursor` pages on through
    the queue (running and recent are the current ones on every page); null on the last
    page."""
    intake = runtime.intake
    queued, last = await intake.queued_page(limit=limit, after=_after(cursor))
    return AlertList(
        running=[r.summary() for r in await intake.running(limit)],
        queued=[r.summary() for r in queued],
        recent=[r.summary() for r in await intake.recent(limit)],
        next_cursor=None if last is None else encode_cursor(last),
    )


def encode_cursor(order: int) -> str:
    """The opaque cursor for "queued alerts after the one whose order key is `order`"."""
    return base64.urlsafe_b64encode(f"q{order}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int | None:
    """The order key in a cursor made by `encode_cursor`, or None if it is not one."""
    try:
        text = base64.b64decode(cursor + "=" * (-len(cursor) % 4), b"-_", validate=True)
    except ValueError:  # binascii.Error, or a character that is not ASCII
        return None
    match = _CURSOR_TEXT.fullmatch(text.decode("latin-1"))
    return int(match.group(1)) if match else None


def _after(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    order = decode_cursor(cursor)
    if order is None:
        problem = {"loc": ["query", "cursor"], "msg": "not a cursor", "type": "value_error"}
        raise ClientError(422, "invalid_request", [problem])
    return order


@router.get(
    "/{incident_id:path}/report",
    response_class=PlainTextResponse,
    responses={**_ERRORS, 200: {"content": {"text/markdown": {}}}},
)
async def get_report(
    incident_id: str, runtime: RuntimeDep, occurrence: Occurrence = None
) -> PlainTextResponse:
    """The markdown report of the incident's latest occurrence (or of `occurrence`)."""
    record = await _occurrence(runtime, incident_id, occurrence)
    text = await runtime.intake.report(record)
    if text is None:
        raise ClientError(404, "not_found", f"no report for {_named(record)} yet")
    return PlainTextResponse(text, media_type="text/markdown; charset=utf-8")


@router.get("/{incident_id:path}/transcript", response_model=Transcript, responses=_ERRORS)
async def get_transcript(
    incident_id: str, runtime: RuntimeDep, occurrence: Occurrence = None
) -> Response:
    """The run's conversation exactly as sent to and received from the LLM, redacted: every
    turn's request (messages, tools offered), response, token usage and tool results."""
    record = await _occurrence(runtime, incident_id, occurrence)
    transcript = await runtime.intake.transcript(record)
    if transcript is None:
        why = (
            "is no longer kept (only the last 100 finished occurrences keep theirs)"
            if record.turns
            else "does not exist: it had no agent run"
        )
        raise ClientError(404, "not_found", f"the run transcript of {_named(record)} {why}")

    def render() -> str:
        view = transcript.view(
            incident_id=record.incident_id,
            occurrence=record.occurrence,
            redact=runtime.redactor.redact,
        )
        return view.model_dump_json()

    # Each turn repeats the conversation so far: a long run's transcript is megabytes,
    # built and encoded in a thread so the event loop keeps serving webhooks meanwhile.
    return Response(await asyncio.to_thread(render), media_type="application/json")


@router.get("/{incident_id:path}", response_model=AlertDetail, responses=_ERRORS)
async def get_alert(
    incident_id: str, runtime: RuntimeDep, occurrence: Occurrence = None
) -> AlertDetail:
    """One occurrence of an incident (the latest unless `occurrence` is given): its alert,
    timeline, tool calls, tokens, outcome and report file, and every remembered occurrence
    of the incident."""
    record = await _occurrence(runtime, incident_id, occurrence)
    latest = record if occurrence is None else await runtime.intake.get(incident_id)
    return record.detail(latest)


async def _occurrence(runtime: Runtime, incident_id: str, occurrence: int | None) -> AlertRecord:
    record = await runtime.intake.get(incident_id, occurrence)
    if record is not None:
        return record
    if occurrence is None or await runtime.intake.get(incident_id) is None:
        raise ClientError(404, "not_found", f"unknown incident {_echo(incident_id)!r}")
    raise ClientError(
        404, "not_found", f"no occurrence {occurrence} of {_echo(incident_id)!r} is remembered"
    )


def _named(record: AlertRecord) -> str:
    return f"{_echo(record.incident_id)!r} occurrence {record.occurrence}"


def _echo(incident_id: str) -> str:
    """An id from the URL as an error may repeat it: clean, and cut to a known id's length."""
    return safe(incident_id, ECHOED_ID_CHARS)
