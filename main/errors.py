"""Every error response in one place: a flat `ErrorResponse`, never a traceback or input.

A client's mistake is a 4xx naming what is wrong; only our own bugs are 500s, and those
say nothing but `internal_error` and the trace id (the log line has the rest). A client
that goes away before its request is read (`ClientDisconnect`) is neither: it is logged
at INFO and recorded as 499, the status nginx gives it (nobody receives that answer).
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from telemetry import trace_id_var

logger = logging.getLogger(__name__)

CLIENT_CLOSED_REQUEST = 499


class ClientError(Exception):
    """A request we refuse, with the status and a machine-readable code."""

    def __init__(
        self,
        status: int,
        error: str,
        detail: Any = None,
        headers: dict[str, str] | None = None,
        *,
        refusal: bool = False,
    ) -> None:
        """`refusal`: a 5xx the runtime answers by choice (draining), not a failure: it is
        not counted as an error."""
        super().__init__(error)
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = headers
        self.refusal = refusal


def error_body(error: str, detail: Any = None) -> dict[str, Any]:
    return {"error": error, "detail": detail, "trace_id": trace_id_var.get()}


def field_errors(errors: Any) -> list[dict[str, Any]]:
    """Validation errors as `{"loc", "msg", "type"}`, without the offending input."""
    return [
        {
            "loc": list(e.get("loc", ())),
            "msg": str(e.get("msg", "")),
            "type": str(e.get("type", "")),
        }
        for e in errors
    ]


async def _client_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ClientError)
    if exc.refusal:
        request.state.refused = True
    return JSONResponse(
        error_body(exc.error, exc.detail), status_code=exc.status, headers=exc.headers
    )


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse(error_body("invalid_request", field_errors(exc.errors())), status_code=422)


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc.detail, dict) and "error" in exc.detail:
        body = error_body(str(exc.detail["error"]), exc.detail.get("detail"))
    else:
        phrase = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_")
        body = error_body(phrase, exc.detail if isinstance(exc.detail, str) else None)
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


async def _client_gone(request: Request, _exc: Exception) -> Response:
    logger.info(
        "client went away before its request was read: %s %s",
        request.method,
        request.url.path,
    )
    return Response(status_code=CLIENT_CLOSED_REQUEST)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is not None and runtime.state is not None:
        runtime.state.record_error(type(exc).__name__, "unhandled error in a request handler")
    return JSONResponse(error_body("internal_error"), status_code=500)


def install(app: FastAPI) -> None:
    app.add_exception_handler(ClientError, _client_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(ClientDisconnect, _client_gone)
    app.add_exception_handler(Exception, _unexpected)
