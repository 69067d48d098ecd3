"""`POST /webhook/{provider}`: authenticate, read a bounded body, parse, submit, answer 202.

The handler never waits for the agent: intake decides at once and runs happen later. Text
from the platform is made safe here, once (`intake.parsers`): the body decoded bounded and
clean, each alert's id checked, its summary, labels and url cleaned, redacted and cut.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import SecretStr

from intake import Draining, SubmitOutcome
from intake.parsers import (
    Ignored,
    PayloadError,
    TooDeep,
    decode_json,
    left_out,
    parse_webhook,
    redactor_for_body,
)
from intake.service import DatabaseUnavailable
from main.auth import token_matches
from main.deps import Runtime
from main.errors import ClientError, field_errors
from models import AlertStatus, ErrorResponse, Provider, WebhookResponse

logger = logging.getLogger(__name__)

router = APIRouter(tags=["webhooks"])

RETRY_AFTER_SECONDS = "30"
DATABASE_RETRY_AFTER_SECONDS = "10"
INLINE_PARSE_BYTES = 64 * 1024

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in {
        401: "Missing or wrong token.",
        404: "Unknown provider.",
        413: "Body larger than WEBHOOK_MAX_BODY_BYTES.",
        422: "Invalid JSON, JSON nested deeper than 64 levels, not the provider's payload "
        "shape, or an incident id over 256 characters (see `detail[].loc`).",
        503: "Draining or shutting down; retry after `Retry-After` seconds.",
    }.items()
}


@router.post(
    "/webhook/{provider}",
    status_code=202,
    response_model=WebhookResponse,
    responses=_ERRORS,
    summary="Receive an alert notification from a monitoring platform",
)
async def receive_webhook(
    provider: str,
    request: Request,
    auth_token: Annotated[
        str | None, Query(description="Webhook token, for platforms that cannot set headers.")
    ] = None,
) -> Response:
    """Accepts `gcp`, `datadog`, `newrelic`, `alertmanager`, `grafana`, `cloudwatch` and
    `generic`. Auth: `?auth_token=`, `Authorization: Bearer`, or HTTP Basic with the token
    as password. Each alert in the body gets one result: queued, deduplicated, ignored,
    resolved or escalated."""
    # The hottest route: the runtime is read directly rather than through a dependency, and
    # the body is serialized once here instead of being re-validated against the response
    # model (which still documents it; tests validate every 202 against it).
    runtime: Runtime = request.app.state.runtime
    platform = _provider(provider)
    _authenticate(request, auth_token, runtime.settings.webhook_token)
    if not runtime.intake.accepting:
        raise _draining()
    body = await _read_body(request, runtime.settings.webhook_max_body_bytes, runtime)
    runtime.state.record_webhook("received")
    items, missing = await _parse_off_loop(platform, body, runtime)
    if missing:
        _report_left_out(platform, missing, runtime)
    results = await _submit_all(platform, items, runtime, request.state.trace_id)
    _count(results, runtime)
    content = {"trace_id": request.state.trace_id, "alerts": results}
    return Response(json.dumps(content), status_code=202, media_type="application/json")


def _provider(name: str) -> Provider:
    try:
        return Provider(name.lower())
    except ValueError:
        known = ", ".join(p.value for p in Provider)
        raise ClientError(404, "unknown_provider", f"provider must be one of: {known}") from None


def _authenticate(request: Request, query_token: str | None, expected: SecretStr) -> None:
    """Constant-time check of every presented form; 401 when none matches."""
    presented = [query_token, *_header_tokens(request.headers.get("authorization"))]
    presented = [token for token in presented if token]
    if not any([token_matches(token, expected) for token in presented]):  # noqa: C419 - all compared
        reason = "wrong token" if presented else "missing token"
        raise ClientError(
            401,
            "unauthorized",
            reason,
            headers={"WWW-Authenticate": 'Bearer, Basic realm="webhook"'},
        )


def _header_tokens(header: str | None) -> list[str]:
    scheme, _, value = (header or "").partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return [value]
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return []
        return [decoded.partition(":")[2]]
    return []


def _draining() -> ClientError:
    return ClientError(
        503,
        "draining",
        "not accepting alerts now",
        headers={"Retry-After": RETRY_AFTER_SECONDS},
        refusal=True,
    )


async def _read_body(request: Request, limit: int, runtime: Runtime) -> bytes:
    """Read at most `limit` bytes: refuse early on Content-Length, stop streaming past it."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit, runtime)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit, runtime)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int, runtime: Runtime) -> ClientError:
    runtime.state.record_webhook("failed")
    return ClientError(413, "payload_too_large", f"body exceeds {limit} bytes")


async def _parse_off_loop(
    platform: Provider, body: bytes, runtime: Runtime
) -> tuple[list[Any], int]:
    """Parse a small body inline; a large one (a 5,000-alert notification takes ~150 ms)
    in a thread, so the event loop keeps serving meanwhile."""
    try:
        if len(body) <= INLINE_PARSE_BYTES:
            return _parse(platform, body, runtime)
        return await asyncio.to_thread(_parse, platform, body, runtime)
    except ClientError:
        runtime.state.record_webhook("failed")
        raise


async def _submit_all(
    platform: Provider, items: list[Any], runtime: Runtime, trace_id: str
) -> list[dict[str, Any]]:
    """Hand the alerts to intake (with PostgreSQL: stored before this returns), then one
    `AlertResult` per item, in order, each decision logged."""
    alerts = [item for item in items if not isinstance(item, Ignored)]
    try:
        outcomes = iter(await runtime.intake.submit_all(alerts, trace_id=trace_id))
    except Draining:
        raise _draining() from None
    except DatabaseUnavailable as exc:
        runtime.state.record_error("DatabaseUnavailable", str(exc))
        raise ClientError(
            503,
            "database_unavailable",
            "the state database cannot be reached; nothing was stored: retry later",
            headers={"Retry-After": DATABASE_RETRY_AFTER_SECONDS},
        ) from None
    return [
        _result(platform, item, None if isinstance(item, Ignored) else next(outcomes))
        for item in items
    ]


def _parse(platform: Provider, body: bytes, runtime: Runtime) -> tuple[list[Any], int]:
    """Decode and normalize: the items, and how many alerts the platform left out. Pure, so
    it may run in a worker thread."""
    try:
        payload = decode_json(body)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError and TooDeep alike
        raise ClientError(422, "invalid_json", _json_problem(exc)) from None
    try:
        items = parse_webhook(
            platform,
            payload,
            registry=runtime.settings.service_registry,
            body_size=len(body),
            redactor=redactor_for_body(runtime.redactor, body, payload),
        )
    except PayloadError as exc:
        raise ClientError(422, "invalid_payload", field_errors(exc.errors)) from None
    return items, left_out(platform, payload)


def _report_left_out(platform: Provider, missing: int, runtime: Runtime) -> None:
    """Alerts the platform did not send cannot be diagnosed: say so, loud and counted."""
    message = (
        f"{platform.value} left {missing} alert(s) out of a notification (truncatedAlerts): "
        "raise the receiver's max_alerts"
    )
    logger.warning(message, extra={"truncated_alerts": missing})
    runtime.state.record_error("truncated_alerts", message)


def _json_problem(exc: Exception) -> list[dict[str, Any]]:
    if isinstance(exc, TooDeep):
        return [{"loc": ["body"], "msg": str(exc), "type": "json_too_deep"}]
    if isinstance(exc, json.JSONDecodeError):
        msg = f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    else:
        msg = "body is not UTF-8 JSON"
    return [{"loc": ["body"], "msg": msg, "type": "json_invalid"}]


def _result(platform: Provider, item: Any, outcome: SubmitOutcome | None) -> dict[str, Any]:
    """One `AlertResult`, as the JSON object it is sent as; the decision is logged."""
    if outcome is None:
        status, reason, occurrence = AlertStatus.IGNORED, item.reason, None
    else:
        status, reason, occurrence = outcome.status, outcome.reason, outcome.occurrence
    result = {
        "incident_id": item.incident_id,
        "service": item.service,
        "priority": item.priority.value,
        "status": status.value,
        "reason": reason,
    }
    logger.info(
        "intake_decision", extra={**result, "occurrence": occurrence, "provider": platform.value}
    )
    return result


def _count(results: list[dict[str, Any]], runtime: Runtime) -> None:
    ignored = sum(r["status"] == AlertStatus.IGNORED for r in results)
    if ignored:
        runtime.state.record_webhook("ignored", ignored)
    if len(results) - ignored:
        runtime.state.record_webhook("processed", len(results) - ignored)
