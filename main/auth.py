"""Bearer-token auth for this service's own write endpoints (`POST /ops/*`, `/alerts/*`).

`require_ops_token` is a FastAPI dependency: `Authorization: Bearer <OPS_AUTH_TOKEN>` or a
401. It raises `Unauthorized`, an `HTTPException` carrying the `ErrorResponse` body and the
`WWW-Authenticate: Bearer` header; `unauthorized_handler` renders it as that flat JSON body.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from main.deps import RuntimeDep
from models import ErrorResponse
from telemetry import trace_id_var

# auto_error=False: a missing or non-Bearer header must give our 401, not FastAPI's 403.
bearer = HTTPBearer(auto_error=False, description="`OPS_AUTH_TOKEN` as a Bearer token.")


class Unauthorized(HTTPException):
    """401 with `WWW-Authenticate: Bearer`; `detail` is the `ErrorResponse` body."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(
            status_code=401,
            detail={"error": "unauthorized", "detail": reason},
            headers={"WWW-Authenticate": "Bearer"},
        )


def token_matches(presented: str | None, expected: SecretStr) -> bool:
    """Constant-time comparison of a presented token with the configured secret."""
    if not presented:
        return False
    return hmac.compare_digest(presented.encode(), expected.get_secret_value().encode())


async def require_ops_token(
    runtime: RuntimeDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """Dependency: pass only with `Authorization: Bearer <OPS_AUTH_TOKEN>`."""
    if credentials is None:
        raise Unauthorized("missing Bearer token")
    if not token_matches(credentials.credentials, runtime.settings.ops_auth_token):
        raise Unauthorized("invalid Bearer token")


OpsAuth = Depends(require_ops_token)


async def unauthorized_handler(_request: Request, exc: Exception) -> JSONResponse:
    """Exception handler for `Unauthorized`: the flat `ErrorResponse` body, header kept."""
    assert isinstance(exc, Unauthorized)  # registered for Unauthorized only
    body = ErrorResponse(error="unauthorized", detail=exc.reason, trace_id=trace_id_var.get())
    return JSONResponse(body.model_dump(), status_code=401, headers=exc.headers)
