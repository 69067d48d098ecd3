"""LLM retry rules, with the real `openai` client over a mock transport and real error bodies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from agent.completion import TOO_DEEP
from agent.llm import LLM, LLMError

DATA = Path(__file__).parent / "data" / "openai"
OK = json.loads((DATA / "chat-completion-parallel-tool-calls-openai-python.json").read_text())


def error(name: str) -> Any:
    return json.loads((DATA / name).read_text())


class Script:
    """Answers each request with the next (status, body, headers)."""

    def __init__(self, *answers: tuple[int, Any, dict[str, str]]) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        status, body, headers = self.answers.pop(0)
        if isinstance(body, bytes):  # a body the test wrote by hand, e.g. too deep to encode
            return httpx.Response(status, content=body, headers=headers)
        return httpx.Response(status, json=body, headers=headers)


def make_llm(script: Script, slept: list[float], *, now: float = 0.0) -> LLM:
    client = openai.AsyncOpenAI(
        api_key="sk-test",
        base_url="http://llm.test/v1",
        max_retries=0,
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(script)),
    )

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    return LLM(client=client, model="m", sleep=sleep, clock=lambda: now)


async def complete(llm: LLM, deadline: float = 1000.0) -> Any:
    messages = [{"role": "user", "content": "hi"}]
    return await llm.complete(messages, tools=None, deadline=deadline, trace_id="t-1")


async def test_parallel_tool_call_response_parses_with_usage() -> None:
    script = Script((200, OK, {}))
    completion = await complete(make_llm(script, []))
    assert completion.message is not None
    assert [c.function.name for c in completion.message.tool_calls if c.function] == [
        "GetWeatherArgs",
        "get_stock_price",
    ]
    assert completion.usage is not None
    assert script.requests[0].headers["x-trace-id"] == "t-1"


async def test_rate_limit_is_retried_honouring_retry_after_header() -> None:
    slept: list[float] = []
    body = error("error-429-rate-limit-requests-legacy-code-null-nextchat-issue793.json")
    script = Script((429, body, {"retry-after": "7"}), (200, OK, {}))
    await complete(make_llm(script, slept))
    assert slept == [7.0]


async def test_rate_limit_message_hint_is_used_without_a_header() -> None:
    slept: list[float] = []
    body = error("error-429-rate-limit-tokens-tpm-codex-issue88-converted.json")
    script = Script((429, body, {}), (200, OK, {}))
    await complete(make_llm(script, slept))
    assert slept == [1.574]


async def test_server_errors_are_retried_three_times_then_fail() -> None:
    slept: list[float] = []
    body = error("error-500-server-error-chatgpt-vscode-issue100.json")
    script = Script(*[(500, body, {})] * 4)
    with pytest.raises(LLMError) as failed:
        await complete(make_llm(script, slept))
    assert len(script.requests) == 4
    assert len(slept) == 3
    assert slept[0] <= slept[1] * 2  # exponential backoff with jitter
    assert failed.value.status == 500


@pytest.mark.parametrize(
    ("name", "status", "kind"),
    [
        ("error-429-insufficient-quota-nextchat-issue3664.json", 429, "insufficient_quota"),
        (
            "error-400-context-length-exceeded-compact-chathub-issue126.json",
            400,
            "context_length_exceeded",
        ),
        (
            "error-429-request-too-large-tpm-shell-gpt-issue653-converted.json",
            429,
            "request_too_large",
        ),
    ],
)
async def test_errors_that_cannot_succeed_are_not_retried(
    name: str, status: int, kind: str
) -> None:
    script = Script((status, error(name), {}))
    with pytest.raises(LLMError) as failed:
        await complete(make_llm(script, []))
    assert failed.value.kind == kind
    assert len(script.requests) == 1


@pytest.mark.parametrize("status", [401, 403])
async def test_auth_errors_are_not_retried(status: int) -> None:
    script = Script((status, {"error": {"message": "no", "type": "auth", "code": None}}, {}))
    with pytest.raises(LLMError):
        await complete(make_llm(script, []))
    assert len(script.requests) == 1


async def test_no_retry_past_the_deadline() -> None:
    body = error("error-429-rate-limit-requests-legacy-code-null-nextchat-issue793.json")
    script = Script((429, body, {"retry-after": "30"}), (200, OK, {}))
    with pytest.raises(LLMError) as failed:
        await complete(make_llm(script, [], now=990.0), deadline=1000.0)
    assert failed.value.kind == "deadline"
    assert len(script.requests) == 1


async def test_connection_failure_is_retried() -> None:
    calls = 0

    def flaky(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json=OK)

    client = openai.AsyncOpenAI(
        api_key="k",
        base_url="http://llm.test",
        max_retries=0,
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(flaky)),
    )
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    llm = LLM(client=client, model="m", sleep=sleep, clock=lambda: 0.0)
    await complete(llm)
    assert calls == 2
    assert len(slept) == 1


def deep_body(levels: int) -> bytes:
    content = b"[" * levels + b"]" * levels
    return b'{"choices": [{"message": {"role": "assistant", "content": ' + content + b"}}]}"


async def test_answer_too_deep_to_decode_is_unreadable_not_an_error() -> None:
    slept: list[float] = []
    script = Script((200, deep_body(100_000), {"content-type": "application/json"}))
    completion = await complete(make_llm(script, slept))
    assert completion.message is TOO_DEEP
    assert completion.usage is None
    assert len(script.requests) == 1
    assert slept == []


async def test_error_body_too_deep_to_decode_is_still_an_llm_error() -> None:
    script = Script(*[(500, deep_body(100_000), {})] * 4)
    with pytest.raises(LLMError) as failed:
        await complete(make_llm(script, []))
    assert failed.value.status == 500
    assert len(script.requests) == 4
