"""A fake OpenAI-compatible chat-completions server, driven by the real `openai` client.

Each request gets the next `Step` of a script, or whatever a `policy` function returns for
the request's messages. Every request body is recorded. Usage blocks are exact, so tests
can check token accounting to the token.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


@dataclass(frozen=True)
class Call:
    """One tool call the fake model makes."""

    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)


@dataclass(frozen=True)
class Step:
    """One model answer: tool calls, or text, or an HTTP error."""

    calls: tuple[Call, ...] = ()
    text: str | None = None
    status: int = 200
    error: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    prompt_tokens: int = 100
    completion_tokens: int = 20
    # Sent as `usage.prompt_tokens_details.cached_tokens` when set (left out when None, as
    # providers without prompt caching do).
    cached_tokens: int | None = None
    hold: asyncio.Event | None = None  # the answer waits until the test sets it
    raw: bytes | None = None  # served as the whole 200 body, as is (JSON too deep to encode)


def tools(*calls: Call, **kw: Any) -> Step:
    return Step(calls=calls, **kw)


def say(text: str, **kw: Any) -> Step:
    return Step(text=text, **kw)


def verbatim(body: bytes, **kw: Any) -> Step:
    return Step(raw=body, **kw)


def deep_answer(levels: int) -> bytes:
    """A 200 body whose message content nests `levels` lists (no usage block)."""
    message = b'{"role": "assistant", "content": ' + b"[" * levels + b"]" * levels + b"}"
    return b'{"choices": [{"index": 0, "message": ' + message + b', "finish_reason": "stop"}]}'


def fail(status: int, code: str | None = None, *, message: str = "fake error", **kw: Any) -> Step:
    error = {"error": {"message": message, "type": code or "server_error", "code": code}}
    return Step(status=status, error=error, **kw)


Policy = Callable[[list[dict[str, Any]]], Step]


@dataclass
class FakeLLM:
    """Serve `script` in order (then `policy`, then a final text answer)."""

    script: list[Step] = field(default_factory=list)
    policy: Policy | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    usage_served: dict[str, int] = field(
        default_factory=lambda: {"prompt_tokens": 0, "completion_tokens": 0}
    )
    _ids: itertools.count[int] = field(default_factory=itertools.count)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> Starlette:
        routes = [
            Route(path, self._complete, methods=["POST"])
            for path in ("/chat/completions", "/v1/chat/completions")
        ]
        return Starlette(routes=routes)

    async def _complete(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        self._arrived.set()
        step = self._next(body["messages"])
        if step.hold is not None:
            await step.hold.wait()
        if step.status != 200:
            return JSONResponse(step.error, status_code=step.status, headers=step.headers)
        if step.raw is not None:
            return Response(step.raw, media_type="application/json", headers=step.headers)
        self.usage_served["prompt_tokens"] += step.prompt_tokens
        self.usage_served["completion_tokens"] += step.completion_tokens
        return JSONResponse(self._completion(body, step), headers=step.headers)

    def _next(self, messages: list[dict[str, Any]]) -> Step:
        if self.script:
            return self.script.pop(0)
        if self.policy is not None:
            return self.policy(messages)
        return say("Diagnosis complete. No further action.")

    def _completion(self, body: dict[str, Any], step: Step) -> dict[str, Any]:
        number = next(self._ids)
        message: dict[str, Any] = {"role": "assistant", "content": step.text}
        if step.calls:
            message["tool_calls"] = [
                {
                    "id": f"call_{number}_{index}",
                    "type": "function",
                    "function": {"name": call.name, "arguments": _arguments(call)},
                }
                for index, call in enumerate(step.calls)
            ]
        return {
            "id": f"chatcmpl-fake-{number}",
            "object": "chat.completion",
            "created": 1_700_000_000 + number,
            "model": body.get("model", "fake"),
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": "tool_calls" if step.calls else "stop",
                }
            ],
            "usage": _usage(step),
        }

    async def wait_for_requests(self, count: int) -> None:
        """Wait until at least `count` requests have arrived (answered or held)."""
        while len(self.requests) < count:
            self._arrived.clear()
            await self._arrived.wait()

    @property
    def total_tokens(self) -> int:
        return self.usage_served["prompt_tokens"] + self.usage_served["completion_tokens"]


def _usage(step: Step) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "prompt_tokens": step.prompt_tokens,
        "completion_tokens": step.completion_tokens,
        "total_tokens": step.prompt_tokens + step.completion_tokens,
    }
    if step.cached_tokens is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": step.cached_tokens}
    return usage


def _arguments(call: Call) -> str:
    return call.arguments if isinstance(call.arguments, str) else json.dumps(call.arguments)


def tool_results(messages: list[dict[str, Any]]) -> list[str]:
    """The contents of the tool messages so far (for policies that react to results)."""
    return [str(m.get("content", "")) for m in messages if m.get("role") == "tool"]
