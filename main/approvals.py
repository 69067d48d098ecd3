"""Approval mode's API (CONTRACT §9): the pending approvals, and a human's decision.

`POST /alerts/{incident_id}/approvals/{approval_id}` takes the Bearer token, or a console
session with its CSRF token in `X-CSRF-Token`; the console's own forms decide through
`decide` too, so both ways give the same answers (200, 404, 409).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.security import HTTPAuthorizationCredentials

from intake.approvals import ApprovalClosed, UnknownApproval
from main.auth import OpsAuth, Unauthorized, bearer, token_matches
from main.deps import Runtime, RuntimeDep
from main.errors import ClientError
from main.session import CSRF_HEADER, csrf_matches, operator
from models import Approval, ApprovalDecision, ApprovalList, ErrorResponse

router = APIRouter(tags=["approvals"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "No valid Bearer token or console session."},
    403: {"model": ErrorResponse, "description": "A console session without its CSRF token."},
    404: {"model": ErrorResponse, "description": "No such approval for this incident."},
    409: {"model": ErrorResponse, "description": "Already decided, or expired."},
    422: {"model": ErrorResponse, "description": "The body is not a decision."},
}


async def require_operator(
    request: Request,
    runtime: RuntimeDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> str:
    """Dependency: the Bearer token, or a console session whose CSRF token the request
    carries; the operator's name (CONSOLE_IDENTITY_HEADER's user, else `token`)."""
    settings = runtime.settings
    if credentials is not None:
        if not token_matches(credentials.credentials, settings.ops_auth_token):
            raise Unauthorized("invalid Bearer token")
        return operator(request, settings)
    session = runtime.sessions.read(request)
    if session is None:
        raise Unauthorized("missing Bearer token (or console session)")
    if not runtime.sessions.same_origin(request) or not csrf_matches(
        session, request.headers.get(CSRF_HEADER)
    ):
        raise ClientError(403, "forbidden", f"a console session must send its {CSRF_HEADER}")
    return operator(request, settings)


Operator = Annotated[str, Depends(require_operator)]


@router.get("/approvals", response_model=ApprovalList, dependencies=[OpsAuth])
async def list_approvals(runtime: RuntimeDep) -> ApprovalList:
    """Every pending approval, of all incidents, oldest first."""
    return ApprovalList(approvals=[p.view() for p in await runtime.approvals.pending()])


@router.post(
    "/alerts/{incident_id:path}/approvals/{approval_id}",
    response_model=Approval,
    responses=_ERRORS,
)
async def post_decision(
    incident_id: str, approval_id: str, body: ApprovalDecision, runtime: RuntimeDep, who: Operator
) -> Approval:
    """Approve or deny a pending approval. Approved: the agent's run makes the write, once,
    and the model reads its result; denied: the model reads `denied by <who>: <note>`."""
    return await decide(runtime, incident_id, approval_id, body, who)


async def decide(
    runtime: Runtime, incident_id: str, approval_id: str, body: ApprovalDecision, who: str
) -> Approval:
    """The decision, or a 404 (unknown) / 409 (decided already, or expired)."""
    try:
        proposal = await runtime.approvals.decide(
            incident_id, approval_id, approve=body.decision == "approve", note=body.note, by=who
        )
    except UnknownApproval:
        raise ClientError(
            404, "not_found", f"no approval {approval_id[:64]!r} for this incident"
        ) from None
    except ApprovalClosed as exc:
        raise ClientError(409, "conflict", str(exc)) from None
    return proposal.view()
