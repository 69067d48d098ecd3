"""Calls to cloud APIs over the shared httpx client, and the one place their failures are
translated into `CloudError`: a message that says what went wrong and what to fix.

Both providers' error bodies are understood: Google's `{"error": {"code", "message",
"status"}}` and AWS JSON-protocol `{"__type": "...#Code", "message": ...}` (AWS answers
throttling and access denied with HTTP 400, so the code matters as much as the status).
"""

from __future__ import annotations

import abc
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from tools.arguments import QueryLogsArgs, QueryMetricsArgs
from tools.context import RunContext

MAX_API_MESSAGE = 300


class CloudError(Exception):
    """A cloud query failed; `message` is written for the model, `details` go with it."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def result(self) -> dict[str, Any]:
        """The tool result: `{"error": message, **details}`."""
        return {"error": self.message, **self.details}


def utcnow() -> datetime:
    return datetime.now(UTC)


class CloudQueries(abc.ABC):
    """What the GCP and AWS tools share: a failed query is a readable result, never raised."""

    async def query_logs(self, args: QueryLogsArgs, ctx: RunContext) -> dict[str, Any]:
        try:
            return await self._query_logs(args, ctx.trace_id)
        except CloudError as exc:
            return exc.result()

    async def query_metrics(self, args: QueryMetricsArgs, ctx: RunContext) -> dict[str, Any]:
        try:
            return await self._query_metrics(args, ctx.trace_id)
        except CloudError as exc:
            return exc.result()

    @abc.abstractmethod
    async def _query_logs(self, args: QueryLogsArgs, trace_id: str) -> dict[str, Any]: ...

    @abc.abstractmethod
    async def _query_metrics(self, args: QueryMetricsArgs, trace_id: str) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class Api:
    """One cloud API as the model should hear about it, with the fix for each failure."""

    name: str  # e.g. "Cloud Logging"
    permission_fix: str  # e.g. "grant roles/logging.viewer to the runtime's service account"
    not_found_fix: str
    credentials_fix: str
    bad_request_fix: str = "check the arguments (metric type, aggregation, query)"
    extra: dict[str, str] = field(default_factory=dict)  # error code -> fix


_PERMISSION = {"PERMISSION_DENIED", "AccessDeniedException", "AccessDenied"}
_UNAUTHENTICATED = {
    "UNAUTHENTICATED",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "IncompleteSignature",
    "ExpiredTokenException",
    "InvalidClientTokenId",
}
_QUOTA = {
    "RESOURCE_EXHAUSTED",
    "ThrottlingException",
    "Throttling",
    "LimitExceededException",
    "TooManyRequestsException",
}
_NOT_FOUND = {"NOT_FOUND", "ResourceNotFoundException"}


async def request_json(
    http: httpx.AsyncClient, api: Api, method: str, url: str, **kwargs: Any
) -> dict[str, Any]:
    """Send one request; the decoded JSON object of a 2xx answer, else `CloudError`."""
    try:
        response = await http.request(method, url, **kwargs)
    except httpx.TimeoutException as exc:
        raise CloudError(
            f"{api.name} did not answer in time ({type(exc).__name__}): try again, "
            "or ask for a shorter window",
            retryable=True,
        ) from exc
    except httpx.HTTPError as exc:
        raise CloudError(f"could not reach {api.name}: {type(exc).__name__}") from exc
    if not response.is_success:
        raise failure(api, response)
    return _decode(api, response)


def _decode(api: Api, response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise CloudError(f"{api.name} answered HTTP {response.status_code} without a JSON object")
    return body


def failure(api: Api, response: httpx.Response) -> CloudError:
    """The `CloudError` for a non-2xx answer."""
    code, message = error_code_and_message(response)
    status = response.status_code
    what, fix, retryable = _classify(api, status, code)
    label = f"{api.name} HTTP {status}{f' {code}' if code else ''}"
    said = f" {api.name} said: {message[:MAX_API_MESSAGE]}" if message else ""
    return CloudError(f"{what} ({label}): {fix}.{said}", status=status, retryable=retryable)


def _classify(api: Api, status: int, code: str) -> tuple[str, str, bool]:
    if code in api.extra:
        return "request failed", api.extra[code], False
    if status == 403 or code in _PERMISSION:
        return "permission denied", api.permission_fix, False
    if status == 401 or code in _UNAUTHENTICATED:
        return "credentials rejected", api.credentials_fix, False
    if status == 429 or code in _QUOTA:
        return "rate limited or quota exceeded", "wait and retry with fewer queries", True
    if status == 404 or code in _NOT_FOUND:
        return "not found", api.not_found_fix, False
    if status >= 500:
        return f"{api.name} is unavailable", "try again shortly", True
    return "bad request", api.bad_request_fix, False


def error_code_and_message(response: httpx.Response) -> tuple[str, str]:
    """(error code, message) from a Google or AWS JSON error body; blanks when absent."""
    try:
        body = response.json()
    except ValueError:
        return "", _plain_text(response)
    if not isinstance(body, dict):
        return "", ""
    google = body.get("error")
    if isinstance(google, dict):
        return str(google.get("status") or ""), str(google.get("message") or "")
    aws_type = str(body.get("__type") or response.headers.get("x-amzn-errortype") or "")
    message = body.get("message") or body.get("Message") or ""
    return aws_type.rsplit("#", 1)[-1].split(":", 1)[0], str(message)


def _plain_text(response: httpx.Response) -> str:
    text = response.text.strip()
    return "" if text.startswith("<") else " ".join(text.split())


def dumps_compact(value: Any) -> str:
    """JSON as the executor will send it, for measuring against TOOL_OUTPUT_MAX_CHARS."""
    return json.dumps(value, ensure_ascii=False, default=str)
