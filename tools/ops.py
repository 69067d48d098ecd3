"""The one place that calls a monitored service's `/ops/*` API.

The URL is always the registry's base URL plus a path the guardrails produced. Requests
carry the ops bearer token and the run's trace id, never follow redirects, and are bounded
in time (OPS_TIMEOUT_SECONDS, for the whole exchange) and in size (MAX_BODY_BYTES).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
from opentelemetry import trace

import telemetry
from config import ServiceEntry
from state import service_dependency
from tools.errors import ToolError
from tools.registry import JsonObject, ToolDeps

tracer = trace.get_tracer(__name__)

MAX_BODY_BYTES = 1_048_576


async def call_ops(
    deps: ToolDeps,
    entry: ServiceEntry,
    *,
    path: str,
    method: str,
    body: dict[str, Any] | None,
    trace_id: str,
) -> JsonObject:
    """`{"status_code", "body"}` of a 2xx answer; a `ToolError` otherwise."""
    attributes = {"sre_agent.service": entry.name, "http.request.method": method, "url.path": path}
    dependency, started = service_dependency(entry.name), time.perf_counter()
    with tracer.start_as_current_span(telemetry.SPAN_TOOL_CALL_OPS, attributes=attributes) as span:
        try:
            status, text = await _exchange(deps, entry, path, method, body, trace_id)
        except ToolError as exc:  # unreachable or too slow: the service is failing
            deps.observer.record_dependency(dependency, ok=False, detail=str(exc))
            raise
        span.set_attribute("http.response.status_code", status)
    latency_ms = (time.perf_counter() - started) * 1000
    detail = f"HTTP {status} from {path}"
    deps.observer.record_dependency(
        dependency, ok=status < 500, detail=detail, latency_ms=latency_ms
    )
    result: JsonObject = {"status_code": status, "body": _parse(text)}
    if not 200 <= status < 300:
        raise ToolError(f"HTTP {status} from {entry.name} {path}", result)
    return result


async def _exchange(
    deps: ToolDeps,
    entry: ServiceEntry,
    path: str,
    method: str,
    body: dict[str, Any] | None,
    trace_id: str,
) -> tuple[int, str]:
    token = deps.settings.ops_auth_token.get_secret_value()
    headers = {"Authorization": f"Bearer {token}", "X-Trace-Id": trace_id}
    timeout = deps.settings.ops_timeout_seconds
    request = deps.http.build_request(
        method, entry.base_url + path, json=body, headers=headers, timeout=timeout
    )
    try:
        async with asyncio.timeout(timeout):
            response = await deps.http.send(request, stream=True, follow_redirects=False)
            try:
                return response.status_code, await _read_capped(response)
            finally:
                await response.aclose()
    except (TimeoutError, httpx.TimeoutException) as exc:
        raise ToolError(f"timed out after {timeout:g}s calling {entry.name} {path}") from exc
    except httpx.HTTPError as exc:
        raise ToolError(f"could not reach {entry.name} {path}: {type(exc).__name__}") from exc


async def _read_capped(response: httpx.Response) -> str:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            break
    data = b"".join(chunks)[:MAX_BODY_BYTES]
    return data.decode(response.encoding or "utf-8", errors="replace")


def _parse(text: str) -> Any:
    """The body as JSON when it is JSON, else as text."""
    try:
        return json.loads(text)
    except ValueError:
        return text
