"""The console's forms: sign in, sign out, and approve or deny a proposed write.

Signing in takes `OPS_AUTH_TOKEN` and sets the session cookie (`main.session`); a failed
attempt says only that it failed. Every other form needs the session, its CSRF token and
a request from this site (`guard.checked_form`). A decision goes through the same
`main.approvals.decide` as the JSON API, so it answers the same way: done (back to the
incident's page), 404 (no such approval) or 409 (decided already, or expired).
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from main.approvals import decide
from main.auth import token_matches
from main.console import views
from main.console.guard import (
    LOGIN_PATH,
    ConsoleRoute,
    LoginRequired,
    checked_form,
    field,
    local_target,
)
from main.console.pages import incident_page
from main.console.render import page
from main.deps import Runtime, RuntimeDep
from main.errors import ClientError
from main.session import Session, Sessions, operator
from models import ApprovalDecision

logger = logging.getLogger(__name__)

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

NextPage = Annotated[str, Query(alias="next", max_length=2048)]

LOGIN_FAILED = "Sign-in failed."
BAD_DECISION = "A decision is approve or deny, with a note of at most 2000 characters."


@router.get("/console/login")
async def login_form(request: Request, runtime: RuntimeDep, next_page: NextPage = "") -> Response:
    """The sign-in form (a signed-in operator goes straight on to `next`)."""
    target = local_target(next_page)
    if runtime.sessions.read(request) is not None:
        return RedirectResponse(target, status_code=303)
    return _login_page(target)


@router.post("/console/login")
async def login(request: Request, runtime: RuntimeDep) -> Response:
    """`OPS_AUTH_TOKEN` -> a session cookie and on to `next` (a console page of this site)."""
    if not runtime.sessions.same_origin(request):
        raise ClientError(403, "forbidden", "This form was sent from another site.")
    form = await request.form(max_files=0, max_fields=4)
    target = local_target(field(form, "next"))
    client = request.client.host if request.client else "-"
    if not token_matches(field(form, "token"), runtime.settings.ops_auth_token):
        logger.warning("console sign-in refused: wrong token", extra={"client": client})
        return _login_page(target, message=LOGIN_FAILED, status=401)
    response = RedirectResponse(target, status_code=303)
    runtime.sessions.issue(response, request)
    who = operator(request, runtime.settings)
    logger.info("console sign-in by %s", who, extra={"client": client})
    return response


def _login_page(target: str, *, message: str | None = None, status: int = 200) -> HTMLResponse:
    return page("login.html", status=status, next=target, message=message)


@router.post("/console/logout")
async def logout(request: Request, runtime: RuntimeDep) -> Response:
    """End the session (a CSRF-protected form, so no other site can sign anyone out)."""
    session = runtime.sessions.read(request)
    response = RedirectResponse(LOGIN_PATH, status_code=303)
    if session is not None:
        await checked_form(request, runtime, session)
    Sessions.end(response)
    return response


@router.post("/console/alerts/{incident_id:path}/approvals/{approval_id}")
async def decision(
    incident_id: str, approval_id: str, request: Request, runtime: RuntimeDep
) -> Response:
    """Approve or deny one pending approval; back to the incident's page when done."""
    session = runtime.sessions.read(request)
    if session is None:
        raise LoginRequired(views.incident_path(incident_id))
    form = await checked_form(request, runtime, session)
    choice = _decision(field(form, "decision"), field(form, "note"))
    who = operator(request, runtime.settings)
    try:
        approval = await decide(runtime, incident_id, approval_id, choice, who)
    except ClientError as exc:
        return await _refused(request, runtime, session, incident_id, exc)
    record = await runtime.intake.get(incident_id)
    latest = record is None or record.occurrence == approval.occurrence
    target = views.incident_path(incident_id, None if latest else approval.occurrence)
    return RedirectResponse(target, status_code=303)


def _decision(decision: str, note: str) -> ApprovalDecision:
    try:
        return ApprovalDecision.model_validate({"decision": decision, "note": note.strip()})
    except ValidationError:
        raise ClientError(400, "invalid_request", BAD_DECISION) from None


async def _refused(
    request: Request, runtime: Runtime, session: Session, incident_id: str, exc: ClientError
) -> Response:
    """A decision that could not be taken (404, 409): the incident's page says why (or the
    error page, for an incident intake no longer knows)."""
    record = await runtime.intake.get(incident_id)
    if record is None:
        raise exc
    message = exc.detail if isinstance(exc.detail, str) else "the decision was refused"
    error = message[:1].upper() + message[1:] + "."
    return await incident_page(request, runtime, session, record, error=error, status=exc.status)
